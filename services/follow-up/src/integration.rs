//! The follow-up service's integration events. Contact notes never leave the service.

use careloop_backbone::{IntegrationMapper, StoredEvent};
use careloop_events::{Payload, timestamp, v1};

use crate::domain::{FollowUpEvent, events_wire_name as wire};

pub struct Mapper;

impl IntegrationMapper for Mapper {
    fn published_types(&self) -> &'static [&'static str] {
        // FollowUpOverdue stays inside the service: nothing consumed it, and the
        // coordinators' overdue list reads the follow-up read model.
        &[
            "ContactRecorded",
            "FollowUpClosed",
            "ReadmissionLinked",
            "ReadmissionUnlinked",
        ]
    }

    fn to_integration(&self, event: &StoredEvent) -> anyhow::Result<Payload> {
        let referral_id = event.aggregate_id.clone();
        Ok(match event.decode::<FollowUpEvent>()? {
            FollowUpEvent::ContactRecorded { peer_id, contact } => {
                Payload::ContactRecorded(v1::ContactRecorded {
                    referral_id,
                    contact_id: contact.contact_id,
                    peer_id,
                    occurred_at: Some(timestamp(contact.occurred_at)),
                    channel: wire(&contact.channel),
                    outcome: contact.outcome.as_str().into(),
                    support_types: contact.support_types.iter().map(wire).collect(),
                    outcome_code: v1::ContactOutcome::from(contact.outcome) as i32,
                })
            }
            FollowUpEvent::FollowUpClosed {
                outcome, reason, ..
            } => Payload::FollowUpClosed(v1::FollowUpClosed::new(referral_id, outcome, reason)),
            FollowUpEvent::ReadmissionLinked {
                admission_id,
                admitted_at,
                ..
            } => Payload::ReadmissionLinked(v1::ReadmissionLinked {
                referral_id,
                admission_id,
                admitted_at: Some(timestamp(admitted_at)),
            }),
            FollowUpEvent::ReadmissionUnlinked { admission_id, .. } => {
                Payload::ReadmissionUnlinked(v1::ReadmissionUnlinked {
                    referral_id,
                    admission_id,
                })
            }
            other => anyhow::bail!(
                "{} is not published",
                cqrs_es::DomainEvent::event_type(&other)
            ),
        })
    }
}
