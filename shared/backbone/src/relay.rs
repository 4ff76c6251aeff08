//! The outbox relay: publishes a service's committed events to JetStream.
//!
//! One pass, all in one Postgres transaction holding the relay's cursor lock:
//! [`Relay::next_batch`] reads committed events after the cursor,
//! [`Relay::publish`] sends each as an integration event with `Nats-Msg-Id` = event id
//! and waits for JetStream's acknowledgement, and [`Relay::commit`] moves the cursor.
//!
//! A crash before `commit` leaves the cursor where it was: the next pass sends the
//! batch again, JetStream drops the re-sends within its duplicate window (same
//! `Nats-Msg-Id`) and consumers drop anything older (their processed records). A crash
//! before `publish` loses nothing: the events are in Postgres and the cursor has not
//! moved. While NATS is down, `publish` fails, the transaction rolls back and the pass
//! is retried with backoff: commands keep succeeding meanwhile.
//!
//! A stream that NATS lost (a server restarted with an empty store, a stream deleted
//! by hand) is healed from Postgres: [`Relay::check_stream`] runs after every failed
//! pass and every [`STREAM_CHECK`]; it creates the stream if it is missing and compares
//! the stream's creation time with the one recorded in `stream_marks`. A different
//! one means every event published before may be gone, so the cursor goes back to the
//! start and everything is published again (consumers drop what they have applied),
//! with an error logged and `careloop_stream_resets_total` counted.
//! `careloop redrive` does the same by hand ([`Relay::redrive`]).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_nats::HeaderMap;
use careloop_backoff::Backoff;
use careloop_events::v1::Envelope;
use careloop_events::{Payload, timestamp};
use prost::Message;
use sqlx::{PgPool, Postgres, Transaction};

use crate::metrics;
use crate::nats::EventStream;
use crate::outbox::{self, Cursor, StoredEvent, Wakeup};
use crate::shutdown::Shutdown;

/// Turns a service's own (JSON) events into integration events. Each event type is
/// either always published or never: PHI-bearing events are simply not listed.
pub trait IntegrationMapper: Send + Sync + 'static {
    /// The event types this service publishes.
    fn published_types(&self) -> &'static [&'static str];
    /// The integration payload for one stored event of a published type.
    fn to_integration(&self, event: &StoredEvent) -> anyhow::Result<Payload>;
}

pub struct Relay {
    pool: PgPool,
    stream: EventStream,
    service: &'static str,
    schema: &'static str,
    mapper: Arc<dyn IntegrationMapper>,
    types: Vec<String>,
}

/// A batch read under the cursor lock; dropping it without `commit` rolls back.
pub struct Batch {
    tx: Transaction<'static, Postgres>,
    cursor: Cursor,
    pub events: Vec<StoredEvent>,
    /// The horizon the batch was read up to.
    until: Option<outbox::Place>,
    /// Events of this batch parked as dead letters (counted once committed).
    parked: u64,
    /// When each event JetStream acknowledged was recorded (observed once committed).
    published: Vec<chrono::DateTime<chrono::Utc>>,
}

const CURSOR: &str = "relay";
const BATCH: i64 = 256;
/// How long the relay waits after a failed pass (NATS or Postgres unavailable).
const RETRY: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
/// How often a working relay checks that its stream is the one it published to.
pub const STREAM_CHECK: Duration = Duration::from_secs(10);
/// How often `careloop_outbox_pending` is counted (a count reads every unpublished
/// event, so not at every look).
const COUNT_EVERY: Duration = Duration::from_secs(1);

impl Relay {
    pub fn new(
        pool: PgPool,
        stream: EventStream,
        service: &'static str,
        schema: &'static str,
        mapper: Arc<dyn IntegrationMapper>,
    ) -> Self {
        let types = mapper
            .published_types()
            .iter()
            .map(|s| s.to_string())
            .collect();
        Relay {
            pool,
            stream,
            service,
            schema,
            mapper,
            types,
        }
    }

    /// The event types this relay publishes.
    pub fn published_types(&self) -> Vec<String> {
        self.types.clone()
    }

    /// Reads the next committed events to publish, holding the relay's cursor lock.
    pub async fn next_batch(&self) -> anyhow::Result<Batch> {
        let mut tx = self.pool.begin().await?;
        outbox::commit_without_waiting_for_disk(&mut tx).await?;
        let cursor = outbox::lock_cursor(&mut tx, self.schema, CURSOR).await?;
        // Up to the horizon, so the cursor moves past events never published (see
        // `outbox::horizon`).
        let until = outbox::horizon(&mut tx, self.schema).await?;
        let events = outbox::read_after(
            &mut tx,
            self.schema,
            &cursor,
            until.as_ref(),
            Some(&self.types),
            BATCH,
            outbox::Previous::Find,
        )
        .await?;
        Ok(Batch {
            tx,
            cursor,
            events,
            until,
            parked: 0,
            published: Vec::new(),
        })
    }

    /// Publishes every event of `batch` and waits for JetStream to store each.
    ///
    /// An event that cannot be turned into an integration event (a bug, or a stored
    /// event this build cannot read) is parked in the dead-letter table, counted in
    /// `careloop_dead_letters`, and skipped, instead of stopping the service's
    /// publishing for good.
    pub async fn publish(&self, batch: &mut Batch) -> anyhow::Result<()> {
        if batch.events.is_empty() {
            return Ok(());
        }
        // Nothing goes to JetStream that a crash of Postgres could still take back.
        outbox::wait_for_disk(&self.pool, self.schema, CURSOR).await?;
        let mut acks = Vec::with_capacity(batch.events.len());
        for event in &batch.events {
            let envelope = match self.envelope(event) {
                Ok(e) => e,
                Err(e) => {
                    self.park(&mut batch.tx, event, &format!("{e:#}")).await?;
                    batch.parked += 1;
                    continue;
                }
            };
            let subject = self
                .stream
                .namespace
                .event_subject(self.service, &envelope.event_type);
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Msg-Id", event.event_id.to_string().as_str());
            headers.insert("Careloop-Correlation-Id", envelope.correlation_id.as_str());
            let ack = self
                .stream
                .js
                .publish_with_headers(subject, headers, envelope.encode_to_vec().into())
                .await
                .context("publishing to JetStream")?;
            acks.push(ack);
            batch.published.push(event.recorded_at);
        }
        for ack in acks {
            ack.await
                .context("waiting for JetStream to store an event")?;
        }
        Ok(())
    }

    async fn park(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        event: &StoredEvent,
        error: &str,
    ) -> anyhow::Result<()> {
        tracing::error!(event_id = %event.event_id, event_type = %event.event_type, error, "event cannot be published; parked in dead_letters");
        sqlx::query(&format!(
            "INSERT INTO {}.dead_letters (consumer, subject, event_id, event_type, aggregate_type,
                 aggregate_id, aggregate_sequence, message, error, deliveries)
             VALUES ('relay', '', $1, $2, $3, $4, $5, $6, $7, 0)",
            self.schema
        ))
        .bind(event.event_id.to_string())
        .bind(&event.event_type)
        .bind(&event.aggregate_type)
        .bind(&event.aggregate_id)
        .bind(event.sequence)
        .bind(event.payload.to_string().into_bytes())
        .bind(error)
        .execute(&mut **tx)
        .await?;
        Ok(())
    }

    /// Moves the cursor past the batch and releases the lock.
    pub async fn commit(&self, mut batch: Batch) -> anyhow::Result<usize> {
        let n = batch.events.len();
        let complete = (n as i64) < BATCH;
        outbox::advance_past(
            &mut batch.tx,
            self.schema,
            &batch.cursor,
            &batch.events,
            batch.until.as_ref(),
            complete,
        )
        .await?;
        batch.tx.commit().await?;
        let now = chrono::Utc::now();
        let delay = metrics::RELAY_DELAY.with_label_values(&[self.service]);
        for recorded in &batch.published {
            delay.observe((now - *recorded).to_std().unwrap_or_default().as_secs_f64());
        }
        if batch.parked > 0 {
            metrics::count_dead_letters(&self.pool, self.service, self.schema).await;
        }
        Ok(n)
    }

    /// Publishes everything committed so far; returns how many events it sent.
    pub async fn publish_pending(&self) -> anyhow::Result<usize> {
        let mut total = 0;
        loop {
            let mut batch = self.next_batch().await?;
            let n = batch.events.len();
            if n > 0 {
                self.publish(&mut batch).await?;
            }
            // Also when empty: the cursor may move past events never published.
            total += self.commit(batch).await?;
            if (n as i64) < BATCH {
                return Ok(total);
            }
        }
    }

    /// Runs until `shutdown`, waking on new events and retrying with backoff on errors.
    pub async fn run(self, mut shutdown: Shutdown) {
        let mut wakeup = Wakeup::new(self.pool.clone(), self.schema, Duration::from_millis(500));
        let mut retries = RETRY.start();
        let mut next_check = tokio::time::Instant::now();
        let mut next_count = tokio::time::Instant::now();
        while !shutdown.is_triggered() {
            if tokio::time::Instant::now() >= next_check {
                if let Err(e) = self.check_stream().await {
                    tracing::debug!(service = self.service, error = %format!("{e:#}"), "event stream not reachable");
                }
                next_check = tokio::time::Instant::now() + STREAM_CHECK;
            }
            if tokio::time::Instant::now() >= next_count {
                self.count_pending().await;
                next_count = tokio::time::Instant::now() + COUNT_EVERY;
            }
            // One query to look; a pass (a transaction) only when there is
            // something to publish.
            let look = outbox::look(&self.pool, self.schema, CURSOR, Some(&self.types)).await;
            if let Some(backlog) = look.filter(|b| !b.worth_a_pass()) {
                tokio::select! {
                    _ = wakeup.wait(backlog.waiting()) => {}
                    _ = shutdown.wait() => {}
                }
                continue;
            }
            match self.publish_pending().await {
                Ok(_) => {
                    retries.reset();
                    tokio::select! {
                        _ = wakeup.breathe() => {}
                        _ = shutdown.wait() => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(service = self.service, error = %format!("{e:#}"), "relay pass failed; will retry");
                    // The stream may be gone: look before the next pass.
                    next_check = tokio::time::Instant::now();
                    tokio::select! {
                        _ = retries.wait() => {}
                        _ = shutdown.wait() => {}
                    }
                }
            }
        }
    }

    /// Makes sure the stream exists and is the one this service published to; if it
    /// was lost (created again since), sends every event again. Returns how many
    /// events will be published again (0 when the stream was not reset).
    pub async fn check_stream(&self) -> anyhow::Result<i64> {
        let created = self.stream.incarnation().await?;
        let incarnation = created
            .format(&time::format_description::well_known::Rfc3339)
            .context("formatting the stream's creation time")?;
        let stream = self.stream.namespace.stream_name();
        let mut tx = self.pool.begin().await?;
        outbox::lock_cursor(&mut tx, self.schema, CURSOR).await?;
        let known: Option<String> = sqlx::query_scalar(&format!(
            "SELECT incarnation FROM {}.stream_marks WHERE stream = $1",
            self.schema
        ))
        .bind(&stream)
        .fetch_optional(&mut *tx)
        .await?;
        if known.as_deref() == Some(incarnation.as_str()) {
            return Ok(0);
        }
        let resend = match &known {
            // First look at this stream: nothing was published to another one.
            None => 0,
            Some(before) => {
                outbox::rewind_cursor(&mut tx, self.schema, CURSOR, None).await?;
                let (n, _) =
                    outbox::pending(&mut tx, self.schema, CURSOR, Some(&self.types)).await?;
                tracing::error!(
                    service = self.service,
                    stream = %stream,
                    was_created = %before,
                    now_created = %incarnation,
                    events = n,
                    "the event stream was lost and created again (NATS lost its store?): \
                     publishing all of this service's events again from Postgres; \
                     consumers skip what they already applied"
                );
                metrics::STREAM_RESETS
                    .with_label_values(&[self.service])
                    .inc();
                n
            }
        };
        sqlx::query(&format!(
            "INSERT INTO {}.stream_marks (stream, incarnation) VALUES ($1, $2)
             ON CONFLICT (stream) DO UPDATE SET incarnation = $2, marked_at = now()",
            self.schema
        ))
        .bind(&stream)
        .bind(&incarnation)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(resend)
    }

    /// Publishes again every event recorded since `since` (every event when `None`):
    /// `careloop redrive`. The cursor only ever moves back; the running relay picks
    /// the events up at its next pass. Returns how many events will be sent.
    pub async fn redrive(
        &self,
        since: Option<chrono::DateTime<chrono::Utc>>,
    ) -> anyhow::Result<i64> {
        let mut tx = self.pool.begin().await?;
        outbox::lock_cursor(&mut tx, self.schema, CURSOR).await?;
        outbox::rewind_cursor(&mut tx, self.schema, CURSOR, since).await?;
        let (n, _) = outbox::pending(&mut tx, self.schema, CURSOR, Some(&self.types)).await?;
        tx.commit().await?;
        Ok(n)
    }

    /// Counts the committed events not yet published (also those not readable yet)
    /// into `careloop_outbox_pending`; left as it was when the database does not
    /// answer.
    async fn count_pending(&self) {
        let Ok(mut conn) = self.pool.acquire().await else {
            return;
        };
        if let Ok((n, _)) = outbox::pending(&mut conn, self.schema, CURSOR, Some(&self.types)).await
        {
            metrics::OUTBOX_PENDING
                .with_label_values(&[self.service])
                .set(n);
        }
    }

    fn envelope(&self, event: &StoredEvent) -> anyhow::Result<Envelope> {
        let payload = self
            .mapper
            .to_integration(event)
            .with_context(|| format!("mapping {} {}", event.event_type, event.event_id))?;
        Ok(Envelope {
            event_id: event.event_id.to_string(),
            event_type: payload.event_type().to_string(),
            occurred_at: Some(timestamp(event.recorded_at)),
            correlation_id: event.meta("correlation_id").unwrap_or_default().to_string(),
            causation_id: event.meta("causation_id").unwrap_or_default().to_string(),
            source_service: self.service.to_string(),
            aggregate_type: event.aggregate_type.clone(),
            aggregate_id: event.aggregate_id.clone(),
            aggregate_sequence: event.sequence as u64,
            previous_sequence: event.previous_sequence as u64,
            actor: event.meta("actor").unwrap_or_default().to_string(),
            payload: Some(payload),
        })
    }
}
