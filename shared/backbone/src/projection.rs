//! Read models fed from a service's own events table, with a stored position.
//!
//! Each batch is applied in one transaction together with the projection's cursor
//! move, so a crash never applies an event twice or skips one. `replay` empties the
//! projection's tables and resets its cursor in one transaction, then applies every
//! event again: the rows come out identical to the live ones.

use std::sync::Arc;
use std::time::Duration;

use careloop_backoff::Backoff;
use sqlx::{PgConnection, PgPool};

use crate::metrics;
use crate::outbox::{self, StoredEvent, Wakeup};
use crate::shutdown::Shutdown;

#[async_trait::async_trait]
pub trait Projection: Send + Sync + 'static {
    /// Unique within the service; the name `careloop replay` takes.
    fn name(&self) -> &'static str;
    /// The tables this projection owns (schema-qualified), emptied by replay.
    fn tables(&self) -> &'static [&'static str];
    /// The event types it applies (`None`: every event of the schema). Others are
    /// not even read.
    fn event_types(&self) -> Option<&'static [&'static str]> {
        None
    }
    /// Applies one event to the read model.
    async fn apply(&self, event: &StoredEvent, tx: &mut PgConnection) -> anyhow::Result<()>;
}

/// The channel on which read models say what changed, once the change is committed
/// (the console's live updates listen to it).
pub const CHANGES: &str = "careloop_changes";

/// Says which aggregates a batch changed in read model `name`, as
/// `{"read_model": name, "ids": [...]}` (ids of aggregates: referrals, peers, plans;
/// never PHI). The ids are left out when they would not fit a notification.
async fn notify_changes(
    tx: &mut PgConnection,
    name: &str,
    events: &[StoredEvent],
) -> sqlx::Result<()> {
    let mut ids: Vec<&str> = events.iter().map(|e| e.aggregate_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    let mut payload = serde_json::json!({"read_model": name, "ids": ids}).to_string();
    if payload.len() > 7_000 {
        payload = serde_json::json!({"read_model": name, "ids": null}).to_string();
    }
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(CHANGES)
        .bind(payload)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

#[derive(Clone)]
pub struct ProjectionRunner {
    pool: PgPool,
    schema: &'static str,
    projection: Arc<dyn Projection>,
    types: Option<Vec<String>>,
}

const BATCH: i64 = 500;
/// How long a projection waits after a failed batch.
const RETRY: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));

impl ProjectionRunner {
    pub fn new(pool: PgPool, schema: &'static str, projection: Arc<dyn Projection>) -> Self {
        let types = projection
            .event_types()
            .map(|t| t.iter().map(|s| s.to_string()).collect());
        ProjectionRunner {
            pool,
            schema,
            projection,
            types,
        }
    }

    pub fn name(&self) -> &'static str {
        self.projection.name()
    }

    /// The tables the read model owns.
    pub fn tables(&self) -> &'static [&'static str] {
        self.projection.tables()
    }

    fn cursor_name(&self) -> String {
        format!("projection:{}", self.projection.name())
    }

    /// Applies one batch; returns how many events it applied.
    pub async fn step(&self) -> anyhow::Result<usize> {
        let mut tx = self.pool.begin().await?;
        let cursor = outbox::lock_cursor(&mut tx, self.schema, &self.cursor_name()).await?;
        let events =
            outbox::read_after(&mut tx, self.schema, &cursor, self.types.as_deref(), BATCH).await?;
        for event in &events {
            self.projection.apply(event, &mut tx).await.map_err(|e| {
                e.context(format!(
                    "projection {} applying {} {}",
                    self.name(),
                    event.event_type,
                    event.event_id
                ))
            })?;
        }
        if let Some(last) = events.last() {
            outbox::advance_cursor(&mut tx, self.schema, &cursor, last).await?;
            notify_changes(&mut tx, self.name(), &events).await?;
        }
        tx.commit().await?;
        Ok(events.len())
    }

    /// How many events this read model has not applied yet, and when the oldest was
    /// recorded.
    pub async fn backlog(
        &self,
        conn: &mut PgConnection,
    ) -> sqlx::Result<(i64, Option<chrono::DateTime<chrono::Utc>>)> {
        outbox::pending(
            conn,
            self.schema,
            &self.cursor_name(),
            self.types.as_deref(),
        )
        .await
    }

    /// Applies everything committed so far.
    pub async fn catch_up(&self) -> anyhow::Result<usize> {
        let mut total = 0;
        loop {
            let n = self.step().await?;
            total += n;
            if n == 0 {
                return Ok(total);
            }
        }
    }

    /// Rebuilds the read model from the first event.
    pub async fn replay(&self) -> anyhow::Result<usize> {
        let mut tx = self.pool.begin().await?;
        outbox::lock_cursor(&mut tx, self.schema, &self.cursor_name()).await?;
        for table in self.projection.tables() {
            sqlx::query(&format!("DELETE FROM {table}"))
                .execute(&mut *tx)
                .await?;
        }
        outbox::reset_cursor(&mut tx, self.schema, &self.cursor_name()).await?;
        tx.commit().await?;
        self.catch_up().await
    }

    pub async fn run(self, mut shutdown: Shutdown) {
        let mut wakeup = Wakeup::new(self.pool.clone(), self.schema, Duration::from_millis(500));
        let mut retries = RETRY.start();
        while !shutdown.is_triggered() {
            if let Err(e) = self.catch_up().await {
                tracing::error!(projection = self.name(), error = %format!("{e:#}"), "projection failed; will retry");
                self.pending().await;
                tokio::select! {
                    _ = retries.wait() => {}
                    _ = shutdown.wait() => {}
                }
                continue;
            }
            retries.reset();
            let pending = self.pending().await;
            tokio::select! {
                _ = wakeup.wait(pending > 0) => {}
                _ = shutdown.wait() => {}
            }
        }
    }

    /// Events not applied yet (also those not readable yet); updates
    /// `careloop_projection_lag_seconds`.
    async fn pending(&self) -> i64 {
        let Ok(mut conn) = self.pool.acquire().await else {
            return 0;
        };
        match outbox::pending(
            &mut conn,
            self.schema,
            &self.cursor_name(),
            self.types.as_deref(),
        )
        .await
        {
            Ok((n, oldest)) => {
                let lag = oldest
                    .map(|t| (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
                    .unwrap_or(0.0);
                metrics::PROJECTION_LAG
                    .with_label_values(&[self.name()])
                    .set(lag);
                n
            }
            Err(_) => 0,
        }
    }
}
