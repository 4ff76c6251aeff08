//! The consumer side of the ReferralTask: referral status changes and the peer who
//! holds the referral, recorded as intake's own events (so they replay) by commands
//! that name their cause (so a redelivered event changes nothing).

use std::sync::Arc;

use careloop_backbone::store::{self, Cqrs, Start};
use careloop_backbone::{EventHandler, Incoming};
use careloop_events::{Payload, ReferralStatus, from_timestamp};
use sqlx::PgConnection;

use crate::domain::{ReferralTask, StatusChange, TaskCommand};

pub struct TaskMirror {
    pub tasks: Arc<Cqrs<ReferralTask>>,
}

/// The status change an integration event reports, if it reports one.
pub fn status_change(event: &Incoming) -> Option<(String, StatusChange)> {
    let occurred_at = from_timestamp(event.envelope.occurred_at.as_ref());
    let change = |facility: &str, status, reason: &str, person_ref: Option<&str>| StatusChange {
        facility: facility.to_string(),
        person_ref: person_ref.map(str::to_string),
        status,
        reason: (!reason.is_empty()).then(|| reason.to_string()),
        occurred_at,
    };
    let (id, c) = match &event.payload {
        Payload::ReferralReceived(r) => (
            &r.referral_id,
            change(
                &r.facility,
                ReferralStatus::Received,
                "",
                Some(&r.person_ref),
            ),
        ),
        Payload::ReferralAccepted(a) => (
            &a.referral_id,
            change(&a.facility, ReferralStatus::Accepted, "", None),
        ),
        Payload::ReferralRejected(r) => (
            &r.referral_id,
            change(&r.facility, ReferralStatus::Rejected, &r.reason_code, None),
        ),
        Payload::ReferralCancelled(c) => (
            &c.referral_id,
            change(&c.facility, ReferralStatus::Cancelled, &c.reason, None),
        ),
        Payload::ReferralStatusChanged(s) => (
            &s.referral_id,
            change(&s.facility, s.new_status()?, &s.reason, None),
        ),
        _ => return None,
    };
    Some((id.clone(), c))
}

#[async_trait::async_trait]
impl EventHandler for TaskMirror {
    async fn handle(&self, event: &Incoming, _tx: &mut PgConnection) -> anyhow::Result<()> {
        let cause = event.envelope.event_id.clone();
        let (referral_id, command) = match &event.payload {
            Payload::PeerAssigned(a) => (
                a.referral_id.clone(),
                TaskCommand::NoteHolder {
                    facility: a.facility.clone(),
                    peer_id: a.peer_id.clone(),
                    cause,
                },
            ),
            Payload::PeerUnassigned(u) if !u.peer_id.is_empty() => (
                u.referral_id.clone(),
                TaskCommand::NoteRelease {
                    peer_id: u.peer_id.clone(),
                    cause,
                },
            ),
            _ => match status_change(event) {
                Some((id, change)) => (id, TaskCommand::MirrorStatus { change, cause }),
                None => return Ok(()),
            },
        };
        let meta = event.metadata(crate::SERVICE);
        // A referral's task starts with its first status, received.
        let start = Start::new_when(matches!(
            &command,
            TaskCommand::MirrorStatus { change, .. } if change.status == ReferralStatus::Received
        ));
        store::execute_from(&self.tasks, &referral_id, command, &meta, start)
            .await
            .map_err(store::into_anyhow)
    }
}
