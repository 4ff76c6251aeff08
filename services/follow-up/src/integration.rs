//! The follow-up service's integration events. Contact notes never leave the service.

use careloop_backbone::{IntegrationMapper, StoredEvent};
use careloop_events::{Payload, timestamp, v1};

use crate::domain::FollowUpEvent;
use crate::domain::events_wire_name as wire;

pub struct Mapper;

impl IntegrationMapper for Mapper {
    fn published_types(&self) -> &'static [&'static str] {
        &["ContactRecorded"]
    }

    fn to_integration(&self, event: &StoredEvent) -> anyhow::Result<Payload> {
        match event.decode::<FollowUpEvent>()? {
            FollowUpEvent::ContactRecorded { peer_id, contact } => {
                Ok(Payload::ContactRecorded(v1::ContactRecorded {
                    referral_id: event.aggregate_id.clone(),
                    contact_id: contact.contact_id,
                    peer_id,
                    occurred_at: Some(timestamp(contact.occurred_at)),
                    channel: wire(&contact.channel),
                    outcome: wire(&contact.outcome),
                    support_types: contact.support_types.iter().map(wire).collect(),
                }))
            }
            other => anyhow::bail!("{other:?} is not published"),
        }
    }
}
