//! The peer-assignment service's integration events. Peer profiles (names) stay here.

use careloop_backbone::{IntegrationMapper, StoredEvent};
use careloop_events::{Payload, timestamp, v1};

use crate::domain::AssignmentEvent;

pub struct Mapper;

impl IntegrationMapper for Mapper {
    fn published_types(&self) -> &'static [&'static str] {
        &[
            "PeerAssigned",
            "AssignmentWaitlisted",
            "AssignmentReleased",
            "AssignmentReopened",
        ]
    }

    fn to_integration(&self, event: &StoredEvent) -> anyhow::Result<Payload> {
        let referral_id = event.aggregate_id.clone();
        match event.decode::<AssignmentEvent>()? {
            AssignmentEvent::PeerAssigned { peer_id, request } => {
                let priority = match request.priority.as_str() {
                    "asap" => v1::Priority::Asap,
                    "urgent" => v1::Priority::Urgent,
                    _ => v1::Priority::Routine,
                };
                Ok(Payload::PeerAssigned(v1::PeerAssigned {
                    referral_id,
                    peer_id,
                    person_ref: request.person_ref,
                    facility: request.facility,
                    discharged_at: Some(timestamp(request.discharged_at)),
                    priority: priority as i32,
                    first_contact_due_at: Some(timestamp(request.first_contact_due_at)),
                }))
            }
            AssignmentEvent::AssignmentWaitlisted { reason } => {
                Ok(Payload::AssignmentWaitlisted(v1::AssignmentWaitlisted {
                    referral_id,
                    reason,
                }))
            }
            AssignmentEvent::AssignmentReleased { peer_id, reason } => {
                Ok(Payload::PeerUnassigned(v1::PeerUnassigned {
                    referral_id,
                    peer_id: peer_id.unwrap_or_default(),
                    reason,
                }))
            }
            AssignmentEvent::AssignmentReopened { released_peer, .. } => {
                Ok(Payload::PeerUnassigned(v1::PeerUnassigned {
                    referral_id,
                    peer_id: released_peer.unwrap_or_default(),
                    reason: "referral sent back to matching".into(),
                }))
            }
            other => anyhow::bail!("{other:?} is not published"),
        }
    }
}
