//! The projection that writes the `referrals` read model. A batch of events costs three
//! statements however long it is: the rows of the referrals it names are read, the
//! events are folded into them in memory (`fold`, a pure function with its tests
//! below), and the rows and the timeline lines are written back in one statement each
//! (`careloop_backbone::rows`).
//! That is what lets `careloop replay referrals` rebuild from many thousands of events
//! a second, and keeps a busy live batch to three statements.

use careloop_backbone::{Projection, StoredEvent, rows};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::PgConnection;

use crate::domain::{DueKind, ReferralEvent, Status};

pub struct Referrals;

#[async_trait::async_trait]
impl Projection for Referrals {
    fn name(&self) -> &'static str {
        "referrals"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["referral.referrals", "referral.referral_timeline"]
    }

    /// The queue coordinators work from, and the referral a hospital reads right after
    /// its own `201`: read at the pace of the referral's own way.
    fn pace(&self) -> std::time::Duration {
        careloop_backbone::outbox::PACE
    }

    async fn apply(&self, events: &[StoredEvent], tx: &mut PgConnection) -> anyhow::Result<()> {
        let referrals = events.iter().filter(|e| e.aggregate_type == "Referral");
        let mut timeline = Vec::new();
        rows::fold(tx, "referrals", "referral_id", referrals, |row, e| {
            timeline.push(fold(row, e, &e.decode()?)?);
            Ok(())
        })
        .await?;
        rows::insert(tx, "referral_timeline", &timeline).await
    }
}

/// Every column of `referrals`, as the projection holds a row while applying a batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct QueueRow {
    referral_id: String,
    person_ref: String,
    facility: String,
    status: String,
    status_reason: Option<String>,
    priority: String,
    peer_id: Option<String>,
    waitlisted: bool,
    attempt: i32,
    #[serde(serialize_with = "rows::micros")]
    discharged_at: DateTime<Utc>,
    #[serde(serialize_with = "rows::micros")]
    acceptance_due_at: DateTime<Utc>,
    #[serde(serialize_with = "rows::micros")]
    first_contact_due_at: DateTime<Utc>,
    acceptance_overdue: bool,
    first_contact_overdue: bool,
    #[serde(serialize_with = "rows::micros")]
    received_at: DateTime<Utc>,
    #[serde(serialize_with = "rows::micros")]
    updated_at: DateTime<Utc>,
}

/// One line of a referral's timeline.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct TimelineRow {
    referral_id: String,
    sequence: i64,
    #[serde(serialize_with = "rows::micros")]
    at: DateTime<Utc>,
    event: String,
    /// The referral's status after the event.
    status: String,
    actor: Option<String>,
    reason: Option<String>,
    detail: serde_json::Value,
}

/// What one event does to its referral's queue row (`None` until the referral is
/// received), and the timeline line it adds. Every event moves `updated_at` to when it
/// was recorded; one that changes the status also sets the status's reason.
fn fold(
    row: &mut Option<QueueRow>,
    e: &StoredEvent,
    event: &ReferralEvent,
) -> anyhow::Result<TimelineRow> {
    let at = e.recorded_at;
    if let ReferralEvent::ReferralReceived(r) = event {
        anyhow::ensure!(
            row.is_none(),
            "referral {} was already received",
            e.aggregate_id
        );
        *row = Some(QueueRow {
            referral_id: e.aggregate_id.clone(),
            person_ref: r.person_ref.clone(),
            facility: r.facility.clone(),
            status: Status::Received.as_str().to_string(),
            status_reason: None,
            priority: r.priority.as_str().to_string(),
            peer_id: None,
            waitlisted: false,
            attempt: 1,
            discharged_at: r.discharged_at,
            acceptance_due_at: r.acceptance_due_at,
            first_contact_due_at: r.first_contact_due_at,
            acceptance_overdue: false,
            first_contact_overdue: false,
            received_at: at,
            updated_at: at,
        });
    }
    let Some(r) = row.as_mut() else {
        anyhow::bail!(
            "referral {} has no row: it was never received",
            e.aggregate_id
        );
    };
    match event {
        ReferralEvent::ReferralWaitlisted { .. } => r.waitlisted = true,
        ReferralEvent::ReferralAccepted { peer_id, .. } => {
            r.peer_id = Some(peer_id.clone());
            r.waitlisted = false;
        }
        ReferralEvent::ReferralRerouted { attempt, .. } => {
            r.attempt = *attempt as i32;
            r.peer_id = None;
            r.waitlisted = false;
        }
        ReferralEvent::ReferralPeerChanged { to, .. } => r.peer_id = to.clone(),
        ReferralEvent::ReferralOverdue { kind, .. } => match kind {
            DueKind::Acceptance => r.acceptance_overdue = true,
            DueKind::FirstContact => r.first_contact_overdue = true,
        },
        _ => {}
    }
    let (reason, detail) = timeline_entry(event);
    r.updated_at = at;
    if let Some(status) = event.new_status() {
        r.status = status.as_str().to_string();
        r.status_reason = reason.clone();
    }
    Ok(TimelineRow {
        referral_id: e.aggregate_id.clone(),
        sequence: e.sequence,
        at,
        event: e.event_type.clone(),
        status: r.status.clone(),
        actor: e.meta("actor").map(str::to_string),
        reason,
        detail,
    })
}

/// The reason and the detail a timeline line shows for an event.
fn timeline_entry(event: &ReferralEvent) -> (Option<String>, serde_json::Value) {
    match event {
        ReferralEvent::ReferralReceived(r) => (
            None,
            json!({"priority": r.priority, "acceptance_due_at": r.acceptance_due_at,
                   "first_contact_due_at": r.first_contact_due_at}),
        ),
        ReferralEvent::ReferralWaitlisted { reason } => {
            (Some(reason.clone()), json!({"waitlisted": true}))
        }
        ReferralEvent::ReferralAccepted { peer_id, .. } => (None, json!({"peer_id": peer_id})),
        ReferralEvent::FollowUpStarted {
            contact_id,
            occurred_at,
            ..
        } => (
            None,
            json!({"contact_id": contact_id, "reached_at": occurred_at}),
        ),
        ReferralEvent::ReferralRejected { code, reason, .. } => (
            Some(match reason {
                Some(r) => format!("{}: {r}", code.as_str()),
                None => code.as_str().to_string(),
            }),
            json!({"reason_code": code}),
        ),
        ReferralEvent::ReferralHeld { reason, from, .. } => {
            (Some(reason.clone()), json!({"from": from}))
        }
        ReferralEvent::ReferralResumed { reason, .. }
        | ReferralEvent::ReferralCancelled { reason, .. } => (Some(reason.clone()), json!({})),
        ReferralEvent::ReferralEnteredInError { reason, from, .. } => {
            (Some(reason.clone()), json!({"from": from}))
        }
        ReferralEvent::ReferralRerouted {
            attempt, reason, ..
        } => (Some(reason.clone()), json!({"attempt": attempt})),
        ReferralEvent::ReferralCompleted { reason, from, .. }
        | ReferralEvent::ReferralFailed { reason, from, .. } => {
            (Some(reason.clone()), json!({"from": from}))
        }
        ReferralEvent::ReadmissionNoted {
            admission_id,
            admitted_at,
        } => (
            None,
            json!({"admission_id": admission_id, "admitted_at": admitted_at}),
        ),
        ReferralEvent::ReadmissionCancelled { admission_id } => (
            Some("the hospital cancelled the admission".to_string()),
            json!({"admission_id": admission_id}),
        ),
        ReferralEvent::FirstReachNoted {
            contact_id,
            occurred_at,
        } => (
            None,
            json!({"contact_id": contact_id, "reached_at": occurred_at,
                   "applies_when": "accepted"}),
        ),
        ReferralEvent::ReferralPeerChanged { from, to, reason } => (
            reason.clone(),
            json!({"from_peer_id": from, "to_peer_id": to}),
        ),
        ReferralEvent::ReferralOverdue { kind, due_at, .. } => {
            (None, json!({"overdue": kind, "due_at": due_at}))
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::domain::{Priority, Received};

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 2, 9, minute, 0).unwrap()
    }

    /// `event` as the store holds it: the referral's `sequence`th, recorded at minute
    /// `sequence`, by a coordinator.
    fn stored(sequence: i64, event: &ReferralEvent) -> StoredEvent {
        StoredEvent {
            metadata: json!({"actor": "coordinator-1"}),
            ..StoredEvent::of("Referral", "ref-1", sequence, at(sequence as u32), event)
        }
    }

    fn received() -> Received {
        Received {
            referral_id: "ref-1".into(),
            person_ref: "person-1".into(),
            facility: "north".into(),
            discharged_at: at(0),
            priority: Priority::Urgent,
            acceptance_due_at: at(30),
            first_contact_due_at: at(50),
            matching: Default::default(),
        }
    }

    /// Folds `events` (sequences 1, 2, ...) into a row from nothing.
    fn given(events: &[ReferralEvent]) -> (Option<QueueRow>, Vec<TimelineRow>) {
        let mut row = None;
        let lines = events
            .iter()
            .enumerate()
            .map(|(i, e)| fold(&mut row, &stored(i as i64 + 1, e), e).unwrap())
            .collect();
        (row, lines)
    }

    #[test]
    fn an_accepted_referral_shows_its_peer_and_each_status_on_its_timeline() {
        let (row, lines) = given(&[
            ReferralEvent::ReferralReceived(received()),
            ReferralEvent::ReferralWaitlisted {
                reason: "no peer has room".into(),
            },
            ReferralEvent::ReferralAccepted {
                peer_id: "peer-7".into(),
                facility: "north".into(),
            },
        ]);
        let row = row.unwrap();
        assert_eq!(row.status, "accepted");
        assert_eq!(row.peer_id.as_deref(), Some("peer-7"));
        assert!(!row.waitlisted, "acceptance ends the wait");
        assert_eq!((row.received_at, row.updated_at), (at(1), at(3)));
        let statuses: Vec<&str> = lines.iter().map(|l| l.status.as_str()).collect();
        assert_eq!(statuses, ["received", "received", "accepted"]);
        assert_eq!(lines[1].reason.as_deref(), Some("no peer has room"));
        assert_eq!(lines[2].actor.as_deref(), Some("coordinator-1"));
    }

    #[test]
    fn an_overdue_mark_sets_its_flag_and_leaves_the_status_and_its_reason() {
        let (row, lines) = given(&[
            ReferralEvent::ReferralReceived(received()),
            ReferralEvent::ReferralWaitlisted {
                reason: "no peer has room".into(),
            },
            ReferralEvent::ReferralOverdue {
                kind: DueKind::Acceptance,
                due_at: at(30),
                facility: "north".into(),
            },
        ]);
        let row = row.unwrap();
        assert!(row.acceptance_overdue && !row.first_contact_overdue);
        assert_eq!((row.status.as_str(), row.status_reason), ("received", None));
        assert_eq!(row.updated_at, at(3));
        assert_eq!(lines[2].detail["overdue"], "acceptance");
    }

    #[test]
    fn a_reroute_clears_the_peer_and_counts_the_attempt() {
        let (row, _) = given(&[
            ReferralEvent::ReferralReceived(received()),
            ReferralEvent::ReferralAccepted {
                peer_id: "peer-7".into(),
                facility: "north".into(),
            },
            ReferralEvent::ReferralRerouted {
                attempt: 2,
                reason: "the peer declined".into(),
                referral: received(),
            },
        ]);
        let row = row.unwrap();
        assert_eq!((row.attempt, row.peer_id), (2, None));
        assert_eq!(row.status, "received");
        assert_eq!(row.status_reason.as_deref(), Some("the peer declined"));
    }

    #[test]
    fn an_event_without_a_received_referral_is_refused() {
        let mut row = None;
        let accepted = ReferralEvent::ReferralAccepted {
            peer_id: "peer-7".into(),
            facility: "north".into(),
        };
        assert!(fold(&mut row, &stored(1, &accepted), &accepted).is_err());
        let received = ReferralEvent::ReferralReceived(received());
        fold(&mut row, &stored(1, &received), &received).unwrap();
        let again = fold(&mut row, &stored(2, &received), &received);
        assert!(again.is_err(), "a second ReferralReceived is refused");
    }
}
