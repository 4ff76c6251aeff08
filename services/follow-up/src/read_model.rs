//! The `followups` read model: plans (the peers' worklists) and the contact log.

use careloop_backbone::{Projection, StoredEvent};
use sqlx::PgConnection;

use crate::domain::{FollowUpEvent, Outcome, events_wire_name as wire};

pub struct FollowUps;

#[async_trait::async_trait]
impl Projection for FollowUps {
    fn name(&self) -> &'static str {
        "followups"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["follow_up.followups", "follow_up.contacts"]
    }

    async fn apply(&self, e: &StoredEvent, tx: &mut PgConnection) -> anyhow::Result<()> {
        match e.decode::<FollowUpEvent>()? {
            FollowUpEvent::PlanStarted {
                peer_id,
                facility,
                priority,
                discharged_at,
                first_contact_due_at,
            } => {
                sqlx::query(
                    "INSERT INTO follow_up.followups (referral_id, peer_id, facility, priority,
                        discharged_at, first_contact_due_at, started_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                )
                .bind(&e.aggregate_id)
                .bind(peer_id)
                .bind(facility)
                .bind(priority)
                .bind(discharged_at)
                .bind(first_contact_due_at)
                .bind(e.recorded_at)
                .execute(&mut *tx)
                .await?;
            }
            FollowUpEvent::ContactRecorded { peer_id, contact } => {
                sqlx::query(
                    "INSERT INTO follow_up.contacts (contact_id, referral_id, peer_id, occurred_at,
                        channel, outcome, support_types, duration_minutes, recorded_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(&contact.contact_id)
                .bind(&e.aggregate_id)
                .bind(peer_id)
                .bind(contact.occurred_at)
                .bind(wire(&contact.channel))
                .bind(wire(&contact.outcome))
                .bind(contact.support_types.iter().map(wire).collect::<Vec<_>>())
                .bind(contact.duration_minutes.map(|d| d as i32))
                .bind(e.recorded_at)
                .execute(&mut *tx)
                .await?;
                // The first reach is the earliest reached contact, whatever the order
                // of entry (back-entry is normal).
                let reached = (contact.outcome == Outcome::Reached).then_some(contact.occurred_at);
                sqlx::query(
                    "UPDATE follow_up.followups SET attempts = attempts + 1, updated_at = $2,
                        first_reached_at = CASE
                            WHEN $3::timestamptz IS NULL THEN first_reached_at
                            ELSE LEAST(COALESCE(first_reached_at, $3), $3) END
                     WHERE referral_id = $1",
                )
                .bind(&e.aggregate_id)
                .bind(e.recorded_at)
                .bind(reached)
                .execute(&mut *tx)
                .await?;
            }
        }
        Ok(())
    }
}
