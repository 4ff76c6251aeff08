//! The `referrals` read model: one row per referral (the coordinator queue) and its
//! timeline, rebuilt from the referral service's own events
//! (`careloop replay referrals`), and every query on it. Times come from the events,
//! never from `now()`, so a replay yields the same rows. The rules the queries apply
//! (which statuses leave a deadline open) come from the domain as bound parameters.

mod projection;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::domain::DueKind;

pub use projection::Referrals;

/// A row of the queue.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct ReferralRow {
    pub referral_id: String,
    pub person_ref: String,
    pub facility: String,
    pub status: String,
    pub status_reason: Option<String>,
    pub priority: String,
    #[serde(rename = "assigned_peer_id")]
    pub peer_id: Option<String>,
    pub waitlisted: bool,
    pub attempt: i32,
    pub discharged_at: DateTime<Utc>,
    pub acceptance_due_at: DateTime<Utc>,
    pub first_contact_due_at: DateTime<Utc>,
    /// A due time has passed and is still unmet.
    pub overdue: bool,
    pub received_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct TimelineEntry {
    pub at: DateTime<Utc>,
    pub event: String,
    pub status: String,
    pub actor: Option<String>,
    pub reason: Option<String>,
    pub detail: serde_json::Value,
}

/// Every row with its `overdue` flag: a deadline marked overdue while its statuses
/// ($1 for acceptance, $2 for the first contact) leave it open.
const ROWS: &str = "SELECT referral_id, person_ref, facility, status, status_reason, priority,
    peer_id, waitlisted, attempt, discharged_at, acceptance_due_at, first_contact_due_at,
    ((acceptance_overdue AND status = ANY($1)) OR (first_contact_overdue AND status = ANY($2)))
        AS overdue,
    received_at, updated_at
    FROM referral.referrals";

fn open_statuses(kind: DueKind) -> Vec<&'static str> {
    kind.open_status_names()
}

pub async fn get(pool: &PgPool, id: &str) -> sqlx::Result<Option<ReferralRow>> {
    sqlx::query_as(&format!("{ROWS} WHERE referral_id = $3"))
        .bind(open_statuses(DueKind::Acceptance))
        .bind(open_statuses(DueKind::FirstContact))
        .bind(id)
        .fetch_optional(pool)
        .await
}

pub async fn timeline(pool: &PgPool, id: &str) -> sqlx::Result<Vec<TimelineEntry>> {
    sqlx::query_as(
        "SELECT at, event, status, actor, reason, detail FROM referral.referral_timeline
         WHERE referral_id = $1 ORDER BY sequence",
    )
    .bind(id)
    .fetch_all(pool)
    .await
}

/// What the queue is filtered by; pages follow `after` (updated_at, referral_id).
#[derive(Debug, Default)]
pub struct QueueFilter {
    pub status: Option<String>,
    pub facility: Option<String>,
    pub priority: Option<String>,
    pub overdue: Option<bool>,
    pub peer_id: Option<String>,
    pub updated_since: Option<DateTime<Utc>>,
    pub after: Option<(DateTime<Utc>, String)>,
    pub limit: i64,
}

/// The queue, oldest change first (stable under concurrent changes).
pub async fn queue(pool: &PgPool, f: &QueueFilter) -> sqlx::Result<Vec<ReferralRow>> {
    sqlx::query_as(&format!(
        "SELECT * FROM ({ROWS}) r
         WHERE ($3::text IS NULL OR status = $3)
           AND ($4::text IS NULL OR facility = $4)
           AND ($5::text IS NULL OR priority = $5)
           AND ($6::bool IS NULL OR overdue = $6)
           AND ($7::text IS NULL OR peer_id = $7)
           AND ($8::timestamptz IS NULL OR updated_at > $8)
           AND ($9::timestamptz IS NULL OR (updated_at, referral_id) > ($9, $10))
         ORDER BY updated_at, referral_id
         LIMIT $11"
    ))
    .bind(open_statuses(DueKind::Acceptance))
    .bind(open_statuses(DueKind::FirstContact))
    .bind(&f.status)
    .bind(&f.facility)
    .bind(&f.priority)
    .bind(f.overdue)
    .bind(&f.peer_id)
    .bind(f.updated_since)
    .bind(f.after.as_ref().map(|a| a.0))
    .bind(f.after.as_ref().map(|a| a.1.clone()))
    .bind(f.limit)
    .fetch_all(pool)
    .await
}

/// (status, referrals, of which overdue) for one facility or all.
pub async fn counts(
    pool: &PgPool,
    facility: Option<&str>,
) -> sqlx::Result<Vec<(String, i64, i64)>> {
    sqlx::query_as(&format!(
        "SELECT status, count(*), count(*) FILTER (WHERE overdue)
         FROM ({ROWS}) r
         WHERE ($3::text IS NULL OR facility = $3)
         GROUP BY status ORDER BY status"
    ))
    .bind(open_statuses(DueKind::Acceptance))
    .bind(open_statuses(DueKind::FirstContact))
    .bind(facility)
    .fetch_all(pool)
    .await
}

/// Open referrals past a due time and not yet marked, as of `now`: what the
/// deadline check asks the aggregate to mark.
pub async fn due_for_marking(
    pool: &PgPool,
    now: DateTime<Utc>,
    limit: i64,
) -> sqlx::Result<Vec<(String, DueKind)>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT referral_id, 'acceptance' FROM referral.referrals
         WHERE status = ANY($2) AND NOT acceptance_overdue AND acceptance_due_at <= $1
         UNION ALL
         SELECT referral_id, 'first_contact' FROM referral.referrals
         WHERE status = ANY($3) AND NOT first_contact_overdue AND first_contact_due_at <= $1
         LIMIT $4",
    )
    .bind(now)
    .bind(open_statuses(DueKind::Acceptance))
    .bind(open_statuses(DueKind::FirstContact))
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(id, kind)| {
            let kind = DueKind::ALL
                .into_iter()
                .find(|k| k.as_str() == kind)
                .unwrap_or(DueKind::FirstContact);
            (id, kind)
        })
        .collect())
}
