//! Queues event notifications: called by the closed loop's outbox for each
//! TaskStatusChanged, in its transaction (see [`crate::closed_loop::outbox`]).

use careloop_backbone::StoredEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::StatusChange;
use crate::fhir::task::OWNER;

/// Whether a reference filter (`Organization/x` or `x`) names `organization`.
fn names(filter: &str, organization: &str) -> bool {
    filter == organization || format!("Organization/{filter}") == organization
}

/// The FHIR Task status of a change (`received` shows as `requested`).
fn task_status(change: &StatusChange) -> &'static str {
    match change.status.as_str() {
        "received" => "requested",
        other => other,
    }
}

/// A live subscription of the facility: id and its owner, requester, status filters.
type Filters = (Uuid, Option<String>, Option<String>, Option<Vec<String>>);

/// One numbered notification for each subscription of the change's facility whose
/// filters it matches. Numbers are taken from the subscription's counter in this
/// transaction: they never repeat or skip, and a change is queued once.
pub async fn queue(
    tx: &mut PgConnection,
    e: &StoredEvent,
    change: &StatusChange,
) -> anyhow::Result<()> {
    let subscriptions: Vec<Filters> = sqlx::query_as(
        "SELECT id, filter_owner, filter_requester, filter_status FROM intake.fhir_subscriptions
             WHERE facility = $1 AND status IN ('requested', 'active', 'error')
             ORDER BY id FOR UPDATE",
    )
    .bind(&change.facility)
    .fetch_all(&mut *tx)
    .await?;
    if subscriptions.is_empty() {
        return Ok(());
    }
    let requester = format!("Organization/{}", change.facility);
    let status = task_status(change);
    let version: i64 = sqlx::query_scalar(
        "SELECT 1 + count(*) FROM intake.events
         WHERE aggregate_type = 'ReferralTask' AND aggregate_id = $1
           AND event_type = 'TaskStatusChanged' AND sequence <= $2",
    )
    .bind(&e.aggregate_id)
    .bind(e.sequence)
    .fetch_one(&mut *tx)
    .await?;
    for (id, owner, req, statuses) in subscriptions {
        let matches = owner.as_deref().is_none_or(|o| names(o, OWNER))
            && req.as_deref().is_none_or(|r| names(r, &requester))
            && statuses
                .as_ref()
                .is_none_or(|s| s.iter().any(|s| s == status || s == change.status.as_str()));
        if !matches {
            continue;
        }
        let queued: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM intake.fhir_notifications WHERE subscription_id = $1 AND event_id = $2",
        )
        .bind(id)
        .bind(e.event_id.to_string())
        .fetch_optional(&mut *tx)
        .await?;
        if queued.is_some() {
            continue;
        }
        let number: i64 = sqlx::query_scalar(
            "UPDATE intake.fhir_subscriptions SET events_since_start = events_since_start + 1
             WHERE id = $1 RETURNING events_since_start",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO intake.fhir_notifications
                 (subscription_id, kind, event_number, event_id, referral_id, task_version, occurred_at)
             VALUES ($1, 'event-notification', $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(number)
        .bind(e.event_id.to_string())
        .bind(&e.aggregate_id)
        .bind(version as i32)
        .bind(change.occurred_at)
        .execute(&mut *tx)
        .await?;
    }
    Ok(())
}
