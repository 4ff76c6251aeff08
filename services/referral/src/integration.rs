//! The referral service's integration events (what other services may know).

use careloop_backbone::{IntegrationMapper, StoredEvent};
use careloop_events::{Payload, timestamp, v1};

use crate::domain::{ReferralEvent, Status};

pub struct Mapper;

impl IntegrationMapper for Mapper {
    fn published_types(&self) -> &'static [&'static str] {
        &[
            "ReferralReceived",
            "ReferralAccepted",
            "FollowUpStarted",
            "ReferralCancelled",
        ]
    }

    fn to_integration(&self, event: &StoredEvent) -> anyhow::Result<Payload> {
        let referral_id = event.aggregate_id.clone();
        let domain: ReferralEvent = event.decode()?;
        Ok(match domain {
            ReferralEvent::ReferralReceived {
                person_ref,
                facility,
                discharged_at,
                priority,
                first_contact_due_at,
                matching,
                ..
            } => Payload::ReferralReceived(v1::ReferralReceived {
                referral_id,
                person_ref,
                facility,
                discharged_at: Some(timestamp(discharged_at)),
                priority: priority.to_proto() as i32,
                first_contact_due_at: Some(timestamp(first_contact_due_at)),
                matching: Some(v1::MatchingInputs {
                    language: matching.language,
                    preferred_peer_gender: matching.preferred_peer_gender.unwrap_or_default(),
                    lived_experience: matching.lived_experience,
                    contact_modes: matching.contact_modes,
                    region: matching.region.unwrap_or_default(),
                    needs: matching.needs,
                }),
            }),
            ReferralEvent::ReferralAccepted { peer_id, facility } => {
                Payload::ReferralAccepted(v1::ReferralAccepted {
                    referral_id,
                    peer_id,
                    facility,
                })
            }
            ReferralEvent::FollowUpStarted { facility, .. } => {
                Payload::ReferralStatusChanged(v1::ReferralStatusChanged {
                    referral_id,
                    facility,
                    from_status: Status::Accepted.as_str().into(),
                    to_status: Status::InProgress.as_str().into(),
                    reason: "person reached".into(),
                })
            }
            ReferralEvent::ReferralCancelled { reason, facility } => {
                Payload::ReferralCancelled(v1::ReferralCancelled {
                    referral_id,
                    facility,
                    reason,
                })
            }
            ReferralEvent::ReferralWaitlisted { .. } => {
                anyhow::bail!("ReferralWaitlisted is not published")
            }
        })
    }
}
