//! The `tasks` read model: one row per referral with the status the referral service
//! reported and the peer who holds it (`referral_tasks`), rebuilt from the
//! ReferralTask events (`careloop replay tasks`), and every query on it.

use careloop_backbone::{Projection, StoredEvent, rows};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};

use crate::domain::TaskEvent;

pub struct Tasks;

#[async_trait::async_trait]
impl Projection for Tasks {
    fn name(&self) -> &'static str {
        "tasks"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["intake.referral_tasks"]
    }

    /// The FHIR Task a hospital reads right after it created it: read at the pace of the referral's own way.
    fn pace(&self) -> std::time::Duration {
        careloop_backbone::outbox::PACE
    }

    fn event_types(&self) -> Option<&'static [&'static str]> {
        Some(&["TaskStatusChanged", "TaskHolderChanged"])
    }

    /// Three statements per batch however long (`careloop_backbone::rows::fold`).
    async fn apply(&self, events: &[StoredEvent], tx: &mut PgConnection) -> anyhow::Result<()> {
        rows::fold(tx, "referral_tasks", "referral_id", events, |row, e| {
            fold(row, e, e.decode()?);
            Ok(())
        })
        .await
    }
}

/// Every column of `referral_tasks`, as the projection holds a row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StoredTask {
    referral_id: String,
    person_ref: Option<String>,
    facility: String,
    status: String,
    reason: Option<String>,
    #[serde(serialize_with = "rows::micros_opt")]
    authored_on: Option<DateTime<Utc>>,
    #[serde(serialize_with = "rows::micros")]
    last_updated: DateTime<Utc>,
    peer_id: Option<String>,
    last_peer_id: Option<String>,
}

/// What one event does to its referral's Task row (`None` before the first). The
/// status events come from one consumer and the holder events from another, so either
/// may come first: a holder change before any status makes a `requested` Task, and
/// the first status keeps the facility and fills in what the holder change could not
/// know. Only a status moves `last_updated` of an existing row.
fn fold(row: &mut Option<StoredTask>, e: &StoredEvent, event: TaskEvent) {
    match (row.as_mut(), event) {
        (None, TaskEvent::TaskStatusChanged { change: c, .. }) => {
            *row = Some(StoredTask {
                referral_id: e.aggregate_id.clone(),
                person_ref: c.person_ref,
                facility: c.facility,
                status: c.status.as_str().to_string(),
                reason: c.reason,
                authored_on: Some(c.occurred_at),
                last_updated: c.occurred_at,
                peer_id: None,
                last_peer_id: None,
            })
        }
        (Some(t), TaskEvent::TaskStatusChanged { change: c, .. }) => {
            t.status = c.status.as_str().to_string();
            t.reason = c.reason;
            t.last_updated = c.occurred_at;
            t.person_ref = t.person_ref.take().or(c.person_ref);
            t.authored_on = t.authored_on.or(Some(c.occurred_at));
        }
        (
            None,
            TaskEvent::TaskHolderChanged {
                facility, peer_id, ..
            },
        ) => {
            *row = Some(StoredTask {
                referral_id: e.aggregate_id.clone(),
                person_ref: None,
                facility,
                status: "requested".to_string(),
                reason: None,
                authored_on: None,
                last_updated: e.recorded_at,
                last_peer_id: peer_id.clone(),
                peer_id,
            })
        }
        (Some(t), TaskEvent::TaskHolderChanged { peer_id, .. }) => {
            t.last_peer_id = peer_id.clone().or(t.last_peer_id.take());
            t.peer_id = peer_id;
        }
    }
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TaskRow {
    pub referral_id: String,
    pub person_ref: Option<String>,
    pub facility: String,
    pub status: String,
    pub reason: Option<String>,
    pub authored_on: Option<DateTime<Utc>>,
    pub last_updated: DateTime<Utc>,
}

const SELECT: &str = "SELECT referral_id, person_ref, facility, status, reason, authored_on,
    last_updated FROM intake.referral_tasks";

pub async fn get(pool: &PgPool, id: &str) -> sqlx::Result<Option<TaskRow>> {
    sqlx::query_as(&format!("{SELECT} WHERE referral_id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await
}

/// What a Task (or ServiceRequest) search asks for.
#[derive(Debug, Default)]
pub struct TaskSearch<'a> {
    /// The facility every match must belong to (the requester, and for a hospital
    /// its own); two different ones match nothing.
    pub facility: Option<&'a str>,
    pub focus: Option<&'a str>,
    pub person_ref: Option<&'a str>,
    /// `_lastUpdated` bounds: the instant and whether it is included.
    pub updated_from: Option<(DateTime<Utc>, bool)>,
    pub updated_to: Option<(DateTime<Utc>, bool)>,
    /// careloop's statuses (a FHIR `requested` is requested or received).
    pub statuses: Option<Vec<String>>,
    /// The page starts after this (last_updated, referral_id).
    pub after: Option<(DateTime<Utc>, String)>,
    pub limit: i64,
}

/// The conditions of a search ($1 to $10), shared by the page and its count.
const MATCHES: &str = "WHERE ($1::text IS NULL OR facility = $1)
       AND ($2::text IS NULL OR referral_id = $2)
       AND ($3::text IS NULL OR person_ref = $3)
       AND ($4::timestamptz IS NULL OR last_updated > $4 OR ($5 AND last_updated = $4))
       AND ($6::timestamptz IS NULL OR last_updated < $6 OR ($7 AND last_updated = $6))
       AND ($8::text[] IS NULL OR status = ANY($8))";

fn bind_matches<'q, O>(
    query: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    q: &'q TaskSearch<'_>,
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
    query
        .bind(q.facility)
        .bind(q.focus)
        .bind(q.person_ref)
        .bind(q.updated_from.map(|b| b.0))
        .bind(q.updated_from.is_some_and(|b| b.1))
        .bind(q.updated_to.map(|b| b.0))
        .bind(q.updated_to.is_some_and(|b| b.1))
        .bind(q.statuses.as_deref())
}

/// Tasks by last change, then referral id (a stable order for paging).
pub async fn search(pool: &PgPool, q: &TaskSearch<'_>) -> sqlx::Result<Vec<TaskRow>> {
    let sql = format!(
        "{SELECT} {MATCHES}
           AND ($9::timestamptz IS NULL OR (last_updated, referral_id) > ($9, $10))
         ORDER BY last_updated, referral_id LIMIT $11"
    );
    bind_matches(sqlx::query_as(&sql), q)
        .bind(q.after.as_ref().map(|a| a.0))
        .bind(q.after.as_ref().map(|a| a.1.clone()))
        .bind(q.limit)
        .fetch_all(pool)
        .await
}

/// How many Tasks match, every page together.
pub async fn count(pool: &PgPool, q: &TaskSearch<'_>) -> sqlx::Result<i64> {
    let sql = format!("SELECT count(*) FROM intake.referral_tasks {MATCHES}");
    let (n,): (i64,) = bind_matches(sqlx::query_as(&sql), q)
        .fetch_one(pool)
        .await?;
    Ok(n)
}

/// The peer who holds the referral (`None` when nobody does, or it is unknown).
/// How a peer may read the person of a referral.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerAccess {
    /// The peer holds the referral (and staff who may read it at all).
    Full,
    /// The referral completed and this peer held it last: they make the caring
    /// contacts the person may have agreed to (while the person's consent stands).
    LastHolder,
    None,
}

/// How `peer_id` may read the person of a referral.
pub async fn peer_access(
    pool: &PgPool,
    referral_id: &str,
    peer_id: &str,
) -> sqlx::Result<PeerAccess> {
    let row: Option<(bool, bool)> = sqlx::query_as(
        "SELECT COALESCE(peer_id = $2, false),
                COALESCE(peer_id IS NULL AND status = 'completed' AND last_peer_id = $2, false)
         FROM intake.referral_tasks WHERE referral_id = $1",
    )
    .bind(referral_id)
    .bind(peer_id)
    .fetch_optional(pool)
    .await?;
    Ok(match row {
        Some((true, _)) => PeerAccess::Full,
        Some((_, true)) => PeerAccess::LastHolder,
        _ => PeerAccess::None,
    })
}

#[cfg(test)]
mod tests {
    use careloop_events::ReferralStatus;
    use chrono::TimeZone;

    use super::*;
    use crate::domain::StatusChange;

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 2, 9, minute, 0).unwrap()
    }

    fn stored(minute: u32, event: &TaskEvent) -> StoredEvent {
        StoredEvent::of("ReferralTask", "ref-1", minute as i64, at(minute), event)
    }

    fn status(status: ReferralStatus, minute: u32) -> TaskEvent {
        TaskEvent::TaskStatusChanged {
            change: StatusChange {
                facility: "north".into(),
                person_ref: Some("person-1".into()),
                status,
                reason: None,
                occurred_at: at(minute),
            },
            cause: "test".into(),
        }
    }

    fn holder(peer_id: Option<&str>) -> TaskEvent {
        TaskEvent::TaskHolderChanged {
            facility: "north".into(),
            peer_id: peer_id.map(str::to_string),
            cause: "test".into(),
        }
    }

    /// Folds `(minute recorded, event)` in order from no row.
    fn given(events: &[(u32, TaskEvent)]) -> StoredTask {
        let mut row = None;
        for (minute, event) in events {
            fold(&mut row, &stored(*minute, event), event.clone());
        }
        row.unwrap()
    }

    #[test]
    fn a_holder_known_before_any_status_makes_a_requested_task_the_status_then_fills() {
        let before = given(&[(1, holder(Some("peer-7")))]);
        assert_eq!(
            (before.status.as_str(), before.last_updated),
            ("requested", at(1))
        );
        assert_eq!((before.person_ref, before.authored_on), (None, None));
        let after = given(&[
            (1, holder(Some("peer-7"))),
            (2, status(ReferralStatus::Accepted, 2)),
        ]);
        assert_eq!(after.status, "accepted");
        assert_eq!(after.person_ref.as_deref(), Some("person-1"));
        assert_eq!(
            (after.authored_on, after.last_updated),
            (Some(at(2)), at(2))
        );
        assert_eq!(after.peer_id.as_deref(), Some("peer-7"));
    }

    #[test]
    fn a_release_keeps_the_last_holder_and_the_version_time() {
        let task = given(&[
            (1, status(ReferralStatus::Received, 1)),
            (2, holder(Some("peer-7"))),
            (3, holder(None)),
        ]);
        assert_eq!(
            (task.peer_id, task.last_peer_id.as_deref()),
            (None, Some("peer-7"))
        );
        assert_eq!(
            task.last_updated,
            at(1),
            "a holder change is not a new status"
        );
        assert_eq!(task.authored_on, Some(at(1)));
    }
}
