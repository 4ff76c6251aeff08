//! The consumer side: each referral status change becomes a delivery to send, for
//! facilities that configured a webhook.

use careloop_backbone::{EventHandler, Incoming};
use careloop_events::{Payload, from_timestamp};
use sqlx::PgConnection;

pub struct StatusChanges;

#[async_trait::async_trait]
impl EventHandler for StatusChanges {
    async fn handle(&self, event: &Incoming, tx: &mut PgConnection) -> anyhow::Result<()> {
        let (referral_id, facility, status, reason) = match &event.payload {
            Payload::ReferralReceived(r) => (&r.referral_id, &r.facility, "received", ""),
            Payload::ReferralAccepted(a) => (&a.referral_id, &a.facility, "accepted", ""),
            Payload::ReferralRejected(r) => (
                &r.referral_id,
                &r.facility,
                "rejected",
                r.reason_code.as_str(),
            ),
            Payload::ReferralCancelled(c) => {
                (&c.referral_id, &c.facility, "cancelled", c.reason.as_str())
            }
            Payload::ReferralStatusChanged(s) => (
                &s.referral_id,
                &s.facility,
                s.to_status.as_str(),
                s.reason.as_str(),
            ),
            _ => return Ok(()),
        };
        // The FHIR Task mirrors every status change (GET /fhir/Task).
        let at = from_timestamp(event.envelope.occurred_at.as_ref());
        let person_ref = match &event.payload {
            Payload::ReferralReceived(r) => Some(r.person_ref.clone()),
            _ => None,
        };
        sqlx::query(
            "INSERT INTO intake.referral_tasks (referral_id, person_ref, facility, status, reason,
                 authored_on, last_updated)
             VALUES ($1, $2, $3, $4, $5, $6, $6)
             ON CONFLICT (referral_id) DO UPDATE SET status = $4, reason = $5, last_updated = $6,
                 person_ref = COALESCE(intake.referral_tasks.person_ref, $2)",
        )
        .bind(referral_id)
        .bind(person_ref)
        .bind(facility)
        .bind(status)
        .bind((!reason.is_empty()).then_some(reason))
        .bind(at)
        .execute(&mut *tx)
        .await?;
        let configured: Option<String> =
            sqlx::query_scalar("SELECT facility FROM intake.facility_webhooks WHERE facility = $1")
                .bind(facility)
                .fetch_optional(&mut *tx)
                .await?;
        if configured.is_none() {
            return Ok(());
        }
        let env = &event.envelope;
        let body = serde_json::json!({
            "event_id": env.event_id,
            "type": "referral.status_changed",
            "referral_id": referral_id,
            "facility": facility,
            "status": status,
            "reason": (!reason.is_empty()).then_some(reason),
            "occurred_at": from_timestamp(env.occurred_at.as_ref()),
        })
        .to_string();
        sqlx::query(
            "INSERT INTO intake.webhook_deliveries (event_id, facility, referral_id, status, body)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(&env.event_id)
        .bind(facility)
        .bind(referral_id)
        .bind(status)
        .bind(body)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}
