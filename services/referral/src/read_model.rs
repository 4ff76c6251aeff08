//! The `referrals` read model: one row per referral (the coordinator queue) and its
//! timeline, rebuilt from the referral service's own events
//! (`careloop replay referrals`). Times come from the events, never from `now()`, so
//! a replay yields the same rows.

use careloop_backbone::{Projection, StoredEvent};
use serde_json::json;
use sqlx::PgConnection;

use crate::domain::{DueKind, ReferralEvent};

pub struct Referrals;

#[async_trait::async_trait]
impl Projection for Referrals {
    fn name(&self) -> &'static str {
        "referrals"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["referral.referrals", "referral.referral_timeline"]
    }

    async fn apply(&self, e: &StoredEvent, tx: &mut PgConnection) -> anyhow::Result<()> {
        if e.aggregate_type != "Referral" {
            return Ok(());
        }
        let event: ReferralEvent = e.decode()?;
        let id = &e.aggregate_id;
        let at = e.recorded_at;
        let (reason, detail) = match &event {
            ReferralEvent::ReferralReceived(r) => {
                sqlx::query(
                    "INSERT INTO referral.referrals (referral_id, person_ref, facility, status,
                        priority, discharged_at, acceptance_due_at, first_contact_due_at,
                        received_at, updated_at)
                     VALUES ($1, $2, $3, 'received', $4, $5, $6, $7, $8, $8)",
                )
                .bind(id)
                .bind(&r.person_ref)
                .bind(&r.facility)
                .bind(r.priority.as_str())
                .bind(r.discharged_at)
                .bind(r.acceptance_due_at)
                .bind(r.first_contact_due_at)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                (
                    None,
                    json!({"priority": r.priority, "acceptance_due_at": r.acceptance_due_at,
                           "first_contact_due_at": r.first_contact_due_at}),
                )
            }
            ReferralEvent::ReferralWaitlisted { reason } => {
                update(tx, id, "waitlisted = true", at).await?;
                (Some(reason.clone()), json!({"waitlisted": true}))
            }
            ReferralEvent::ReferralAccepted { peer_id, .. } => {
                sqlx::query(
                    "UPDATE referral.referrals SET peer_id = $2, waitlisted = false WHERE referral_id = $1",
                )
                .bind(id)
                .bind(peer_id)
                .execute(&mut *tx)
                .await?;
                (None, json!({"peer_id": peer_id}))
            }
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
            } => {
                sqlx::query(
                    "UPDATE referral.referrals SET attempt = $2, peer_id = NULL, waitlisted = false
                     WHERE referral_id = $1",
                )
                .bind(id)
                .bind(*attempt as i32)
                .execute(&mut *tx)
                .await?;
                (Some(reason.clone()), json!({"attempt": attempt}))
            }
            ReferralEvent::ReferralCompleted { reason, from, .. }
            | ReferralEvent::ReferralFailed { reason, from, .. } => {
                (Some(reason.clone()), json!({"from": from}))
            }
            ReferralEvent::ReadmissionNoted {
                admission_id,
                admitted_at,
            } => {
                update(tx, id, "referral_id = referral_id", at).await?;
                (
                    None,
                    json!({"admission_id": admission_id, "admitted_at": admitted_at}),
                )
            }
            ReferralEvent::FirstReachNoted {
                contact_id,
                occurred_at,
            } => {
                update(tx, id, "referral_id = referral_id", at).await?;
                (
                    None,
                    json!({"contact_id": contact_id, "reached_at": occurred_at,
                           "applies_when": "accepted"}),
                )
            }
            ReferralEvent::ReferralPeerChanged { from, to } => {
                sqlx::query(
                    "UPDATE referral.referrals SET peer_id = $2, updated_at = $3 WHERE referral_id = $1",
                )
                .bind(id)
                .bind(to)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                (None, json!({"from_peer_id": from, "to_peer_id": to}))
            }
            ReferralEvent::ReferralOverdue { kind, due_at, .. } => {
                let column = match kind {
                    DueKind::Acceptance => "acceptance_overdue = true",
                    DueKind::FirstContact => "first_contact_overdue = true",
                };
                update(tx, id, column, at).await?;
                (None, json!({"overdue": kind, "due_at": due_at}))
            }
        };
        if let Some(status) = event.new_status() {
            sqlx::query(
                "UPDATE referral.referrals SET status = $2, status_reason = $3, updated_at = $4
                 WHERE referral_id = $1",
            )
            .bind(id)
            .bind(status.as_str())
            .bind(&reason)
            .bind(at)
            .execute(&mut *tx)
            .await?;
        } else {
            update(tx, id, "referral_id = referral_id", at).await?;
        }
        let status: String =
            sqlx::query_scalar("SELECT status FROM referral.referrals WHERE referral_id = $1")
                .bind(id)
                .fetch_one(&mut *tx)
                .await?;
        sqlx::query(
            "INSERT INTO referral.referral_timeline (referral_id, sequence, at, event, status,
                actor, reason, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(id)
        .bind(e.sequence)
        .bind(at)
        .bind(&e.event_type)
        .bind(status)
        .bind(e.meta("actor"))
        .bind(reason)
        .bind(detail)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

/// Sets `assignment` (a fixed SQL fragment) and moves `updated_at`.
async fn update(
    tx: &mut PgConnection,
    id: &str,
    assignment: &'static str,
    at: chrono::DateTime<chrono::Utc>,
) -> sqlx::Result<()> {
    sqlx::query(&format!(
        "UPDATE referral.referrals SET {assignment}, updated_at = $2 WHERE referral_id = $1"
    ))
    .bind(id)
    .bind(at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
