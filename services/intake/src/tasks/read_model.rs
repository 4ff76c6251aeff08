//! The `tasks` read model: one row per referral with the status the referral service
//! reported and the peer who holds it (`referral_tasks`), rebuilt from the
//! ReferralTask events (`careloop replay tasks`), and every query on it.

use careloop_backbone::{Projection, StoredEvent};
use chrono::{DateTime, Utc};
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

    fn event_types(&self) -> Option<&'static [&'static str]> {
        Some(&["TaskStatusChanged", "TaskHolderChanged"])
    }

    async fn apply(&self, e: &StoredEvent, tx: &mut PgConnection) -> anyhow::Result<()> {
        match e.decode::<TaskEvent>()? {
            TaskEvent::TaskStatusChanged { change: c, .. } => {
                sqlx::query(
                    "INSERT INTO referral_tasks (referral_id, person_ref, facility, status,
                         reason, authored_on, last_updated)
                     VALUES ($1, $2, $3, $4, $5, $6, $6)
                     ON CONFLICT (referral_id) DO UPDATE SET status = $4, reason = $5,
                         last_updated = $6,
                         person_ref = COALESCE(referral_tasks.person_ref, $2),
                         authored_on = COALESCE(referral_tasks.authored_on, $6)",
                )
                .bind(&e.aggregate_id)
                .bind(&c.person_ref)
                .bind(&c.facility)
                .bind(c.status.as_str())
                .bind(&c.reason)
                .bind(c.occurred_at)
                .execute(&mut *tx)
                .await?;
            }
            TaskEvent::TaskHolderChanged {
                facility, peer_id, ..
            } => {
                sqlx::query(
                    "INSERT INTO referral_tasks (referral_id, facility, status, last_updated,
                         peer_id, last_peer_id)
                     VALUES ($1, $2, 'requested', $3, $4, $4)
                     ON CONFLICT (referral_id) DO UPDATE SET peer_id = $4,
                         last_peer_id = COALESCE($4, referral_tasks.last_peer_id)",
                )
                .bind(&e.aggregate_id)
                .bind(&facility)
                .bind(e.recorded_at)
                .bind(&peer_id)
                .execute(&mut *tx)
                .await?;
            }
        }
        Ok(())
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
