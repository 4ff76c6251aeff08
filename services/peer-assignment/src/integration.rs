//! The peer-assignment service's integration events. Peer profiles (names) stay here.

use careloop_backbone::{IntegrationMapper, StoredEvent};
use careloop_events::{Payload, timestamp, v1};

use crate::domain::{AssignmentEvent, AssignmentRequest};

pub struct Mapper;

impl IntegrationMapper for Mapper {
    fn published_types(&self) -> &'static [&'static str] {
        &[
            "PeerAssigned",
            "PeerReassigned",
            "AssignmentWaitlisted",
            "AssignmentReleased",
            "AssignmentReopened",
            "AssignmentHandedBack",
        ]
    }

    fn to_integration(&self, event: &StoredEvent) -> anyhow::Result<Payload> {
        let referral_id = event.aggregate_id.clone();
        let unassigned = |peer_id: Option<String>, reason: String| {
            Payload::PeerUnassigned(v1::PeerUnassigned {
                referral_id: referral_id.clone(),
                peer_id: peer_id.unwrap_or_default(),
                reason,
            })
        };
        Ok(match event.decode::<AssignmentEvent>()? {
            AssignmentEvent::PeerAssigned {
                peer_id,
                request,
                attempt,
            } => assigned(
                referral_id,
                peer_id,
                request,
                attempt,
                String::new(),
                String::new(),
            ),
            AssignmentEvent::PeerReassigned {
                to_peer: peer_id,
                request,
                attempt,
                reason,
                ..
            } => {
                let actor = event.meta("actor").unwrap_or_default().to_string();
                assigned(referral_id, peer_id, request, attempt, reason, actor)
            }
            AssignmentEvent::AssignmentWaitlisted { reason } => {
                Payload::AssignmentWaitlisted(v1::AssignmentWaitlisted {
                    referral_id,
                    reason,
                })
            }
            AssignmentEvent::AssignmentReleased { peer_id, reason } => unassigned(peer_id, reason),
            AssignmentEvent::AssignmentReopened { released_peer, .. } => {
                unassigned(released_peer, "referral sent back to matching".into())
            }
            AssignmentEvent::AssignmentHandedBack {
                peer_id, reason, ..
            } => unassigned(Some(peer_id), reason),
            other => anyhow::bail!("{other:?} is not published"),
        })
    }
}

fn assigned(
    referral_id: String,
    peer_id: String,
    request: AssignmentRequest,
    attempt: u32,
    reason: String,
    actor: String,
) -> Payload {
    let priority = v1::Priority::from(request.priority);
    Payload::PeerAssigned(v1::PeerAssigned {
        referral_id,
        peer_id,
        person_ref: request.person_ref,
        facility: request.facility,
        discharged_at: Some(timestamp(request.discharged_at)),
        priority: priority as i32,
        first_contact_due_at: Some(timestamp(request.first_contact_due_at)),
        attempt: attempt.max(1),
        reason,
        actor,
    })
}
