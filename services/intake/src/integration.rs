//! Intake's integration events. Person events (PHI) are never published; a submitted
//! referral travels with its `person_ref` and non-identifying matching inputs only.

use careloop_backbone::{IntegrationMapper, StoredEvent};
use careloop_events::{Payload, timestamp, v1};

use crate::domain::{AdmissionEvent, SubmissionEvent};

pub struct Mapper;

impl IntegrationMapper for Mapper {
    fn published_types(&self) -> &'static [&'static str] {
        &["ReferralSubmitted", "AdmissionRecorded"]
    }

    fn to_integration(&self, event: &StoredEvent) -> anyhow::Result<Payload> {
        if event.event_type == "AdmissionRecorded" {
            let AdmissionEvent::AdmissionRecorded(a) = event.decode()?;
            return Ok(Payload::AdmissionRecorded(v1::AdmissionRecorded {
                admission_id: event.aggregate_id.clone(),
                person_ref: a.person_ref,
                facility: a.facility,
                admitted_at: Some(timestamp(a.admitted_at)),
                unit: a.unit,
            }));
        }
        let SubmissionEvent::ReferralSubmitted(s) = event.decode()?;
        let channel = match s.channel.as_str() {
            "fhir" => v1::Channel::Fhir,
            "hl7" => v1::Channel::Hl7,
            _ => v1::Channel::Api,
        };
        Ok(Payload::ReferralSubmitted(v1::ReferralSubmitted {
            referral_id: s.referral_id,
            person_ref: s.person_ref,
            facility: s.facility,
            channel: channel as i32,
            discharged_at: Some(timestamp(s.discharged_at)),
            unit: s.unit,
            risk_level: s.risk_level.as_str().to_string(),
            priority: s.risk_level.priority() as i32,
            matching: Some(v1::MatchingInputs {
                language: s.language,
                preferred_peer_gender: s.preferences.peer_gender.unwrap_or_default(),
                lived_experience: s.preferences.lived_experience,
                contact_modes: s.preferences.contact_modes,
                region: s.region.unwrap_or_default(),
                needs: s.needs,
            }),
        }))
    }
}
