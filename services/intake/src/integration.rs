//! Intake's integration events. Person events (PHI) are never published, except the
//! facts that consent was revoked and that the person was erased; a submitted referral travels with its `person_ref`
//! and non-identifying matching inputs only.

use careloop_backbone::{IntegrationMapper, StoredEvent};
use careloop_events::{Payload, timestamp, v1};

use crate::domain::{
    AdmissionEvent, EncounterEvent, PersonEvent, SubmissionEvent, SubmittedReferral,
};

pub struct Mapper;

impl IntegrationMapper for Mapper {
    fn published_types(&self) -> &'static [&'static str] {
        &[
            "ReferralSubmitted",
            "ReferralWithdrawn",
            "AdmissionRecorded",
            "AdmissionCancelled",
            "EncounterRecorded",
            "ConsentRevoked",
            "PersonErased",
        ]
    }

    fn to_integration(&self, event: &StoredEvent) -> anyhow::Result<Payload> {
        let id = event.aggregate_id.clone();
        Ok(match event.aggregate_type.as_str() {
            "Admission" => match event.decode::<AdmissionEvent>()? {
                AdmissionEvent::AdmissionRecorded(a) => {
                    Payload::AdmissionRecorded(v1::AdmissionRecorded {
                        admission_id: id,
                        person_ref: a.person_ref,
                        facility: a.facility,
                        admitted_at: Some(timestamp(a.admitted_at)),
                        unit: a.unit,
                    })
                }
                AdmissionEvent::AdmissionCancelled { reason, person_ref } => {
                    Payload::AdmissionCancelled(v1::AdmissionCancelled {
                        admission_id: id,
                        person_ref,
                        reason,
                    })
                }
            },
            "Encounter" => {
                let EncounterEvent::EncounterRecorded(e) = event.decode::<EncounterEvent>()?;
                Payload::EncounterRecorded(v1::EncounterRecorded {
                    encounter_id: id,
                    person_ref: e.person_ref,
                    facility: e.facility,
                    encounter_class: e.class.as_str().to_string(),
                    started_at: Some(timestamp(e.started_at)),
                    ended_at: e.ended_at.map(timestamp),
                })
            }
            "Person" => match event.decode::<PersonEvent>()? {
                PersonEvent::ConsentRevoked { revoked_at, reason } => {
                    Payload::ConsentRevoked(v1::ConsentRevoked {
                        person_ref: id,
                        revoked_at: Some(timestamp(revoked_at)),
                        reason,
                    })
                }
                PersonEvent::PersonErased { erased_at, cause } => {
                    Payload::PersonErased(v1::PersonErased {
                        person_ref: id,
                        erased_at: Some(timestamp(erased_at)),
                        cause: cause.as_str().to_string(),
                    })
                }
                _ => anyhow::bail!(
                    "person events other than ConsentRevoked and PersonErased are never published"
                ),
            },
            _ => match event.decode::<SubmissionEvent>()? {
                SubmissionEvent::ReferralSubmitted(s) => submitted(*s),
                SubmissionEvent::ReferralWithdrawn { reason, facility } => {
                    Payload::ReferralWithdrawn(v1::ReferralWithdrawn {
                        referral_id: id,
                        facility,
                        reason,
                    })
                }
            },
        })
    }
}

pub(crate) fn submitted(s: SubmittedReferral) -> Payload {
    let matching = s.matching();
    Payload::ReferralSubmitted(v1::ReferralSubmitted {
        referral_id: s.referral_id,
        person_ref: s.person_ref,
        facility: s.facility,
        channel: v1::Channel::from(s.channel) as i32,
        discharged_at: Some(timestamp(s.discharged_at)),
        unit: s.unit,
        risk_level: s.risk_level.as_str().to_string(),
        priority: v1::Priority::from(s.risk_level.priority()) as i32,
        matching: Some(matching.into()),
    })
}
