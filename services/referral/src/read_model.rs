//! The `referrals` read model: one row per referral and its timeline, rebuilt from
//! the referral service's own events (`careloop replay referrals`).

use careloop_backbone::{Projection, StoredEvent};
use sqlx::PgConnection;

use crate::domain::{ReferralEvent, Status};

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
        let (status, detail) = match &event {
            ReferralEvent::ReferralReceived {
                person_ref,
                facility,
                discharged_at,
                priority,
                first_contact_due_at,
                ..
            } => {
                sqlx::query(
                    "INSERT INTO referral.referrals (referral_id, person_ref, facility, status,
                        priority, discharged_at, first_contact_due_at, received_at, updated_at)
                     VALUES ($1, $2, $3, 'received', $4, $5, $6, $7, $7)",
                )
                .bind(id)
                .bind(person_ref)
                .bind(facility)
                .bind(priority.as_str())
                .bind(discharged_at)
                .bind(first_contact_due_at)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                (
                    Status::Received,
                    serde_json::json!({"priority": priority, "first_contact_due_at": first_contact_due_at}),
                )
            }
            ReferralEvent::ReferralWaitlisted { reason } => {
                sqlx::query(
                    "UPDATE referral.referrals SET waitlisted = true, updated_at = $2 WHERE referral_id = $1",
                )
                .bind(id)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                (
                    Status::Received,
                    serde_json::json!({"waitlisted": true, "reason": reason}),
                )
            }
            ReferralEvent::ReferralAccepted { peer_id, .. } => {
                sqlx::query(
                    "UPDATE referral.referrals SET status = 'accepted', peer_id = $2, waitlisted = false,
                        updated_at = $3 WHERE referral_id = $1",
                )
                .bind(id)
                .bind(peer_id)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                (Status::Accepted, serde_json::json!({"peer_id": peer_id}))
            }
            ReferralEvent::FollowUpStarted {
                contact_id,
                occurred_at,
                ..
            } => {
                set_status(tx, id, Status::InProgress, at).await?;
                (
                    Status::InProgress,
                    serde_json::json!({"contact_id": contact_id, "reached_at": occurred_at}),
                )
            }
            ReferralEvent::ReferralCancelled { reason, .. } => {
                set_status(tx, id, Status::Cancelled, at).await?;
                (Status::Cancelled, serde_json::json!({"reason": reason}))
            }
        };
        sqlx::query(
            "INSERT INTO referral.referral_timeline (referral_id, sequence, at, event, status, actor, detail)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(id)
        .bind(e.sequence)
        .bind(at)
        .bind(&e.event_type)
        .bind(status.as_str())
        .bind(e.meta("actor"))
        .bind(detail)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

async fn set_status(
    tx: &mut PgConnection,
    id: &str,
    status: Status,
    at: chrono::DateTime<chrono::Utc>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE referral.referrals SET status = $2, updated_at = $3 WHERE referral_id = $1",
    )
    .bind(id)
    .bind(status.as_str())
    .bind(at)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
