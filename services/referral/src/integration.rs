//! The referral service's integration events (what other services may know). Every
//! status change is published: the specific events other services act on, and
//! ReferralStatusChanged for the rest, so the hospital hears of each one.

use careloop_backbone::{IntegrationMapper, StoredEvent};
use careloop_events::{Payload, timestamp, v1};

use crate::domain::{Received, ReferralEvent, Status};

pub struct Mapper;

impl IntegrationMapper for Mapper {
    fn published_types(&self) -> &'static [&'static str] {
        &[
            "ReferralReceived",
            "ReferralAccepted",
            "FollowUpStarted",
            "ReferralRejected",
            "ReferralHeld",
            "ReferralResumed",
            "ReferralCancelled",
            "ReferralEnteredInError",
            "ReferralRerouted",
            "ReferralCompleted",
            "ReferralFailed",
        ]
    }

    fn to_integration(&self, event: &StoredEvent) -> anyhow::Result<Payload> {
        let referral_id = event.aggregate_id.clone();
        let changed = |facility: String, from: Status, to: Status, reason: String| {
            Payload::ReferralStatusChanged(v1::ReferralStatusChanged::new(
                referral_id.clone(),
                facility,
                from,
                to,
                reason,
            ))
        };
        Ok(match event.decode::<ReferralEvent>()? {
            ReferralEvent::ReferralReceived(r) => received(r, 1),
            ReferralEvent::ReferralRerouted {
                attempt, referral, ..
            } => received(referral, attempt),
            ReferralEvent::ReferralAccepted { peer_id, facility } => {
                Payload::ReferralAccepted(v1::ReferralAccepted {
                    referral_id,
                    peer_id,
                    facility,
                })
            }
            ReferralEvent::FollowUpStarted { facility, .. } => changed(
                facility,
                Status::Accepted,
                Status::InProgress,
                "person reached".into(),
            ),
            ReferralEvent::ReferralRejected {
                code,
                reason,
                facility,
            } => Payload::ReferralRejected(v1::ReferralRejected {
                referral_id,
                reason_code: code.as_str().into(),
                facility,
                reason: reason.unwrap_or_default(),
            }),
            ReferralEvent::ReferralHeld {
                from,
                reason,
                facility,
            } => changed(facility, from, Status::OnHold, reason),
            ReferralEvent::ReferralResumed {
                to,
                reason,
                facility,
            } => changed(facility, Status::OnHold, to, reason),
            ReferralEvent::ReferralCancelled { reason, facility } => {
                Payload::ReferralCancelled(v1::ReferralCancelled {
                    referral_id,
                    facility,
                    reason,
                })
            }
            ReferralEvent::ReferralEnteredInError {
                from,
                reason,
                facility,
            } => changed(facility, from, Status::EnteredInError, reason),
            ReferralEvent::ReferralCompleted {
                from,
                reason,
                facility,
            } => changed(facility, from, Status::Completed, reason),
            ReferralEvent::ReferralFailed {
                from,
                reason,
                facility,
            } => changed(facility, from, Status::Failed, reason),
            other @ (ReferralEvent::ReferralWaitlisted { .. }
            | ReferralEvent::ReferralOverdue { .. }
            | ReferralEvent::ReadmissionNoted { .. }
            | ReferralEvent::ReadmissionCancelled { .. }
            | ReferralEvent::ReferralPeerChanged { .. }
            | ReferralEvent::FirstReachNoted { .. }) => {
                anyhow::bail!("{} is not published", other_name(&other))
            }
        })
    }
}

fn other_name(e: &ReferralEvent) -> String {
    cqrs_es::DomainEvent::event_type(e)
}

fn received(r: Received, attempt: u32) -> Payload {
    Payload::ReferralReceived(v1::ReferralReceived {
        referral_id: r.referral_id,
        person_ref: r.person_ref,
        facility: r.facility,
        discharged_at: Some(timestamp(r.discharged_at)),
        priority: v1::Priority::from(r.priority) as i32,
        first_contact_due_at: Some(timestamp(r.first_contact_due_at)),
        matching: Some(r.matching.into()),
        attempt,
        acceptance_due_at: Some(timestamp(r.acceptance_due_at)),
    })
}
