//! The closed loop's outbox: each status change of a ReferralTask becomes a delivery
//! to send, for facilities that configured a webhook, and a notification for each
//! matching FHIR subscription ([`crate::subscriptions::outbox`]).
//!
//! Fed from intake's own events with a stored position, like a projection, in the same
//! transaction as the position moves, so no change is lost or queued twice across a
//! crash. It is not a read model: a replay would send the hospital every change
//! again, so `careloop replay` does not offer it.

use anyhow::Context;
use careloop_backbone::{Projection, StoredEvent};
use sqlx::PgConnection;

use crate::domain::TaskEvent;

pub struct WebhookOutbox;

#[async_trait::async_trait]
impl Projection for WebhookOutbox {
    fn name(&self) -> &'static str {
        "webhook-outbox"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    fn event_types(&self) -> Option<&'static [&'static str]> {
        Some(&["TaskStatusChanged"])
    }

    /// Its rows are sent to hospitals: each batch is on disk before anything is sent.
    fn durable_batches(&self) -> bool {
        true
    }

    async fn apply(&self, events: &[StoredEvent], tx: &mut PgConnection) -> anyhow::Result<()> {
        for e in events {
            queue(e, tx)
                .await
                .with_context(|| format!("queueing {} {}", e.event_type, e.event_id))?;
        }
        Ok(())
    }
}

/// Queues the notifications of one status change (other events: none).
async fn queue(e: &StoredEvent, tx: &mut PgConnection) -> anyhow::Result<()> {
    let TaskEvent::TaskStatusChanged { change: c, .. } = e.decode()? else {
        return Ok(());
    };
    crate::subscriptions::outbox::queue(tx, e, &c).await?;
    let configured: Option<String> =
        sqlx::query_scalar("SELECT facility FROM intake.facility_webhooks WHERE facility = $1")
            .bind(&c.facility)
            .fetch_optional(&mut *tx)
            .await?;
    if configured.is_none() {
        return Ok(());
    }
    let body = serde_json::json!({
        "event_id": e.event_id,
        "type": "referral.status_changed",
        "referral_id": e.aggregate_id,
        "facility": c.facility,
        "status": c.status.as_str(),
        "reason": c.reason,
        "occurred_at": c.occurred_at,
    })
    .to_string();
    sqlx::query(
        "INSERT INTO intake.webhook_deliveries (event_id, facility, referral_id, status, body)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (event_id) DO NOTHING",
    )
    .bind(e.event_id.to_string())
    .bind(&c.facility)
    .bind(&e.aggregate_id)
    .bind(c.status.as_str())
    .bind(body)
    .execute(&mut *tx)
    .await?;
    Ok(())
}
