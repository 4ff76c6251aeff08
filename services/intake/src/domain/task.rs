//! The ReferralTask: the hospital's view of one referral. It mirrors the status the
//! referral service reports (shown as a FHIR Task, pushed to the facility's webhook)
//! and notes the peer who holds the referral (who alone, besides coordinators, reads
//! the person's contact card).
//!
//! It is the state of a process manager fed by intake's consumers of the referral
//! and peer-assignment services' events, kept as intake's own events: the
//! `referral_tasks` read model rebuilds from them (`careloop replay tasks`), and each
//! status change is one version of the Task. Every change records the id of the
//! event that caused it, so a redelivered event changes nothing.

use std::collections::BTreeSet;

use careloop_events::ReferralStatus;
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

/// A status the referral service reported.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusChange {
    pub facility: String,
    /// Known from ReferralReceived on.
    pub person_ref: Option<String>,
    pub status: ReferralStatus,
    pub reason: Option<String>,
    /// When the referral service recorded the change.
    pub occurred_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReferralTask {
    pub facility: Option<String>,
    pub status: Option<ReferralStatus>,
    pub holder: Option<String>,
    /// The source events already applied.
    applied: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum TaskCommand {
    /// The referral's status changed (`cause`: the source event's id).
    MirrorStatus { change: StatusChange, cause: String },
    /// A peer now holds the referral.
    NoteHolder {
        facility: String,
        peer_id: String,
        cause: String,
    },
    /// `peer_id` no longer holds the referral (nothing changes if another peer does).
    NoteRelease { peer_id: String, cause: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TaskEvent {
    TaskStatusChanged {
        change: StatusChange,
        cause: String,
    },
    TaskHolderChanged {
        facility: String,
        peer_id: Option<String>,
        cause: String,
    },
}

impl DomainEvent for TaskEvent {
    fn event_type(&self) -> String {
        match self {
            TaskEvent::TaskStatusChanged { .. } => "TaskStatusChanged",
            TaskEvent::TaskHolderChanged { .. } => "TaskHolderChanged",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

/// Mirroring is never refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TaskError {}

impl Aggregate for ReferralTask {
    const TYPE: &'static str = "ReferralTask";
    type Command = TaskCommand;
    type Event = TaskEvent;
    type Error = TaskError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let cause = match &command {
            TaskCommand::MirrorStatus { cause, .. }
            | TaskCommand::NoteHolder { cause, .. }
            | TaskCommand::NoteRelease { cause, .. } => cause.clone(),
        };
        if self.applied.contains(&cause) {
            return Ok(());
        }
        let event = match command {
            TaskCommand::MirrorStatus { change, cause } => {
                TaskEvent::TaskStatusChanged { change, cause }
            }
            TaskCommand::NoteHolder {
                facility,
                peer_id,
                cause,
            } => {
                if self.holder.as_deref() == Some(peer_id.as_str()) {
                    return Ok(());
                }
                TaskEvent::TaskHolderChanged {
                    facility,
                    peer_id: Some(peer_id),
                    cause,
                }
            }
            TaskCommand::NoteRelease { peer_id, cause } => {
                if self.holder.as_deref() != Some(peer_id.as_str()) {
                    return Ok(());
                }
                TaskEvent::TaskHolderChanged {
                    facility: self.facility.clone().unwrap_or_default(),
                    peer_id: None,
                    cause,
                }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            TaskEvent::TaskStatusChanged { change, cause } => {
                self.facility = Some(change.facility);
                self.status = Some(change.status);
                self.applied.insert(cause);
            }
            TaskEvent::TaskHolderChanged {
                facility,
                peer_id,
                cause,
            } => {
                self.facility.get_or_insert(facility);
                self.holder = peer_id;
                self.applied.insert(cause);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<ReferralTask>;

    fn change(status: ReferralStatus) -> StatusChange {
        StatusChange {
            facility: "st-marys".into(),
            person_ref: None,
            status,
            reason: None,
            occurred_at: "2026-11-20T15:30:00Z".parse().unwrap(),
        }
    }

    fn changed(status: ReferralStatus, cause: &str) -> TaskEvent {
        TaskEvent::TaskStatusChanged {
            change: change(status),
            cause: cause.into(),
        }
    }

    #[tokio::test]
    async fn a_redelivered_event_changes_nothing() {
        Given::with(())
            .given(vec![changed(ReferralStatus::Received, "e1")])
            .when_async(TaskCommand::MirrorStatus {
                change: change(ReferralStatus::Received),
                cause: "e1".into(),
            })
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn a_status_reached_twice_is_two_versions() {
        // on-hold → accepted → on-hold: each change is a version of the Task.
        Given::with(())
            .given(vec![
                changed(ReferralStatus::OnHold, "e1"),
                changed(ReferralStatus::Accepted, "e2"),
            ])
            .when_async(TaskCommand::MirrorStatus {
                change: change(ReferralStatus::OnHold),
                cause: "e3".into(),
            })
            .await
            .then_expect_events(vec![changed(ReferralStatus::OnHold, "e3")]);
    }

    #[tokio::test]
    async fn a_release_by_a_peer_who_no_longer_holds_it_changes_nothing() {
        let held = |peer: &str, cause: &str| TaskEvent::TaskHolderChanged {
            facility: "st-marys".into(),
            peer_id: Some(peer.into()),
            cause: cause.into(),
        };
        Given::with(())
            .given(vec![held("p1", "e1"), held("p2", "e2")])
            .when_async(TaskCommand::NoteRelease {
                peer_id: "p1".into(),
                cause: "e3".into(),
            })
            .await
            .then_expect_events(vec![]);
    }
}
