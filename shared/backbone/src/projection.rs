//! Read models fed from a service's own events table, with a stored position.
//!
//! Each batch is applied in one transaction together with the projection's cursor
//! move, so a crash never applies an event twice or skips one.
//!
//! `replay` rebuilds a read model without blanking it: every event is applied again
//! into a shadow copy of the projection's tables (schema `<schema>_rebuild_<name>`)
//! while the live tables keep serving and catching up; then, in one transaction
//! holding the live cursor, the shadow catches up to the live cursor's events, its
//! rows replace the live rows and the live cursor takes the shadow's position.
//! Readers see the old model until that commit and the new one after it, never an
//! empty or partial one (Postgres's MVCC: the replacing `DELETE`/`INSERT` is invisible
//! until commit). A crash mid-rebuild leaves the live model as it was.
//!
//! The copy keeps only its tables' keys (primary keys, unique and exclusion
//! constraints, unique indexes: what `apply` looks rows up and upserts by). Their
//! other indexes serve readers, who read the live tables, which keep theirs: the
//! swap copies rows into them. So a rebuild does not keep indexes nobody uses up to
//! date row by row.
//!
//! So that the same `apply` can write either copy, projections name their own tables
//! unqualified, and each batch runs with `search_path` set to the live schema, or to
//! the shadow schema first while rebuilding.

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
    /// The tables this projection owns (schema-qualified, in the runner's schema),
    /// rebuilt by replay. `apply` names them unqualified (see the module note).
    fn tables(&self) -> &'static [&'static str];
    /// The event types it applies (`None`: every event of the schema). Others are
    /// not even read.
    fn event_types(&self) -> Option<&'static [&'static str]> {
        None
    }
    /// Whether each batch waits for the disk before its commit returns. A read
    /// model's does not ([`outbox::commit_without_waiting_for_disk`]): a batch a crash
    /// of Postgres loses is applied again, rows and cursor together. A projection
    /// whose rows are sent outside careloop says yes, so that nothing is sent that a
    /// crash could take back and queue a second time.
    fn durable_batches(&self) -> bool {
        false
    }
    /// How often at most it passes under load ([`outbox::Wakeup`]): a read model
    /// someone reads right after their own write says [`outbox::PACE`]; the others
    /// take the events of [`outbox::BACKGROUND_PACE`] in one pass.
    fn pace(&self) -> Duration {
        outbox::BACKGROUND_PACE
    }
    /// Applies a batch of events, in order, to the read model, naming the projection's
    /// own tables without their schema. A read model with a row per aggregate reads the
    /// rows a batch touches, folds the events into them and writes them back in a few
    /// statements however long the batch ([`crate::rows::fold`]): that is what makes a
    /// replay fast, and a busy live batch cheap. It finds rows by their tables' keys
    /// only: a rebuild's copy has no other index (see the module note).
    async fn apply(&self, events: &[StoredEvent], tx: &mut PgConnection) -> anyhow::Result<()>;
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
    // No ids (a rebuild swapped in) or too many to fit: "anything may have changed".
    if events.is_empty() || payload.len() > 7_000 {
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

/// Events per transaction while rebuilding into the shadow copy (nobody reads it, so
/// longer transactions cost no one anything and save commits).
const REBUILD_BATCH: i64 = 5000;
/// How long a projection waits after a failed batch.
const RETRY: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));

/// Drops the indexes of the copy `{shadow}.{table}` that neither are unique nor back a
/// constraint: the readers' (see the module note). Only ever in the copy's schema.
async fn drop_readers_indexes(
    tx: &mut PgConnection,
    shadow: &str,
    table: &str,
) -> anyhow::Result<()> {
    let drops: Vec<String> = sqlx::query_scalar(
        "SELECT format('DROP INDEX %I.%I', n.nspname, x.relname)
         FROM pg_index i
         JOIN pg_class x ON x.oid = i.indexrelid
         JOIN pg_class t ON t.oid = i.indrelid
         JOIN pg_namespace n ON n.oid = t.relnamespace
         WHERE n.nspname = $1 AND t.relname = $2 AND NOT i.indisunique
           AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)",
    )
    .bind(shadow)
    .bind(table)
    .fetch_all(&mut *tx)
    .await?;
    for drop in drops {
        sqlx::query(&drop).execute(&mut *tx).await?;
    }
    Ok(())
}

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

    fn shadow_cursor_name(&self) -> String {
        format!("rebuild:{}", self.projection.name())
    }

    /// The schema a rebuild writes into.
    fn shadow_schema(&self) -> String {
        format!("{}_rebuild_{}", self.schema, self.projection.name())
    }

    /// Applies the next batch of events to the live tables, or to the shadow copy
    /// when `shadow`, in `tx`; returns the events applied.
    async fn apply_batch(
        &self,
        tx: &mut PgConnection,
        shadow: bool,
    ) -> anyhow::Result<Vec<StoredEvent>> {
        let (cursor_name, search_path) = if shadow {
            (
                self.shadow_cursor_name(),
                format!("{}, {}, public", self.shadow_schema(), self.schema),
            )
        } else {
            (self.cursor_name(), format!("{}, public", self.schema))
        };
        sqlx::query(&format!("SET LOCAL search_path TO {search_path}"))
            .execute(&mut *tx)
            .await?;
        let cursor = outbox::lock_cursor(&mut *tx, self.schema, &cursor_name).await?;
        let limit = if shadow { REBUILD_BATCH } else { BATCH };
        // A read model of some event types only reads up to the horizon, so that its
        // cursor can move past the other types' events (see `outbox::horizon`).
        let until = match self.types {
            Some(_) => outbox::horizon(&mut *tx, self.schema).await?,
            None => None,
        };
        let events = outbox::read_after(
            &mut *tx,
            self.schema,
            &cursor,
            until.as_ref(),
            self.types.as_deref(),
            limit,
            outbox::Previous::Skip,
        )
        .await?;
        if !events.is_empty() {
            self.projection
                .apply(&events, &mut *tx)
                .await
                .map_err(|e| e.context(format!("projection {}", self.name())))?;
        }
        let complete = (events.len() as i64) < limit;
        outbox::advance_past(
            &mut *tx,
            self.schema,
            &cursor,
            &events,
            until.as_ref(),
            complete,
        )
        .await?;
        Ok(events)
    }

    /// Applies one batch; returns how many events it applied.
    pub async fn step(&self) -> anyhow::Result<usize> {
        let mut tx = self.pool.begin().await?;
        if !self.projection.durable_batches() {
            outbox::commit_without_waiting_for_disk(&mut tx).await?;
        }
        let events = self.apply_batch(&mut tx, false).await?;
        if !events.is_empty() {
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

    /// Applies everything committed so far: batches until one is not full (a full
    /// one may have left more behind; one that is not took everything readable).
    pub async fn catch_up(&self) -> anyhow::Result<usize> {
        let mut total = 0;
        loop {
            let n = self.step().await?;
            total += n;
            if (n as i64) < BATCH {
                return Ok(total);
            }
        }
    }

    /// Rebuilds the read model from the first event, without blanking it (see the
    /// module note); returns how many events were applied. One rebuild of a read
    /// model runs at a time.
    pub async fn replay(&self) -> anyhow::Result<usize> {
        let key = format!("careloop.rebuild:{}:{}", self.schema, self.name());
        // A session lock, held on this connection for the whole rebuild.
        let mut guard = self.pool.acquire().await?;
        let ours: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtextextended($1, 0))")
            .bind(&key)
            .fetch_one(&mut *guard)
            .await?;
        if !ours {
            anyhow::bail!("a rebuild of {} is already running", self.name());
        }
        let rebuilt = self.rebuild().await;
        let _ = sqlx::query("SELECT pg_advisory_unlock(hashtextextended($1, 0))")
            .bind(&key)
            .execute(&mut *guard)
            .await;
        rebuilt
    }

    /// The projection's tables, unqualified; each must be in the runner's schema.
    fn own_tables(&self) -> anyhow::Result<Vec<&'static str>> {
        self.projection
            .tables()
            .iter()
            .map(|t| match t.split_once('.') {
                Some((schema, table)) if schema == self.schema => Ok(table),
                _ => Err(anyhow::anyhow!(
                    "projection {}: table {t} is not in schema {}",
                    self.name(),
                    self.schema
                )),
            })
            .collect()
    }

    async fn rebuild(&self) -> anyhow::Result<usize> {
        let tables = self.own_tables()?;
        let (live, shadow) = (self.schema, self.shadow_schema());
        // 1. An empty copy of the tables (columns, defaults, constraints, indexes).
        let mut tx = self.pool.begin().await?;
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {shadow} CASCADE"))
            .execute(&mut *tx)
            .await?;
        sqlx::query(&format!("CREATE SCHEMA {shadow}"))
            .execute(&mut *tx)
            .await?;
        for t in &tables {
            sqlx::query(&format!(
                "CREATE TABLE {shadow}.{t} (LIKE {live}.{t} INCLUDING ALL)"
            ))
            .execute(&mut *tx)
            .await?;
            drop_readers_indexes(&mut tx, &shadow, t).await?;
        }
        sqlx::query(&format!("DELETE FROM {live}.cursors WHERE name = $1"))
            .bind(self.shadow_cursor_name())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        // 2. Every event into the copy, batch by batch; the live model keeps serving
        // and catching up meanwhile.
        let mut applied = 0;
        for batch in 1u64.. {
            let mut tx = self.pool.begin().await?;
            let n = self.apply_batch(&mut tx, true).await?.len();
            tx.commit().await?;
            applied += n;
            if n == 0 {
                break;
            }
            // The copy starts empty and without statistics; as it grows, the planner
            // must learn its size and keys, or a batch's lookups by key turn into
            // scans of the whole copy. After batches 1, 2, 4, 8, ...: a few ANALYZEs
            // in all, however long the history.
            if batch.is_power_of_two() {
                for t in &tables {
                    sqlx::query(&format!("ANALYZE {shadow}.{t}"))
                        .execute(&self.pool)
                        .await?;
                }
            }
        }
        // 3. The swap, holding the live cursor (the live runner waits): the copy
        // catches up, its rows replace the live ones, the live cursor takes its place.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET LOCAL statement_timeout = 0")
            .execute(&mut *tx)
            .await?;
        let live_cursor = outbox::lock_cursor(&mut tx, live, &self.cursor_name()).await?;
        loop {
            let n = self.apply_batch(&mut tx, true).await?.len();
            applied += n;
            if n == 0 {
                break;
            }
        }
        let rebuilt = outbox::lock_cursor(&mut tx, live, &self.shadow_cursor_name()).await?;
        for t in &tables {
            sqlx::query(&format!("DELETE FROM {live}.{t}"))
                .execute(&mut *tx)
                .await?;
            sqlx::query(&format!(
                "INSERT INTO {live}.{t} SELECT * FROM {shadow}.{t}"
            ))
            .execute(&mut *tx)
            .await?;
        }
        outbox::set_cursor(
            &mut tx,
            live,
            &live_cursor.name,
            &rebuilt.txid,
            rebuilt.position,
        )
        .await?;
        sqlx::query(&format!("DELETE FROM {live}.cursors WHERE name = $1"))
            .bind(&rebuilt.name)
            .execute(&mut *tx)
            .await?;
        notify_changes(&mut tx, self.name(), &[]).await?;
        tx.commit().await?;
        // 4. The copy is no longer needed.
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {shadow} CASCADE"))
            .execute(&self.pool)
            .await?;
        Ok(applied)
    }

    /// Runs until `shutdown`: looks (one query) whenever events may have committed,
    /// and opens a pass only when some of its own are readable.
    pub async fn run(self, mut shutdown: Shutdown) {
        let mut wakeup = Wakeup::new(self.pool.clone(), self.schema, Duration::from_millis(500))
            .paced(self.projection.pace());
        let mut retries = RETRY.start();
        while !shutdown.is_triggered() {
            if let Some(backlog) = self.look().await.filter(|b| !b.worth_a_pass()) {
                tokio::select! {
                    _ = wakeup.wait(backlog.waiting()) => {}
                    _ = shutdown.wait() => {}
                }
                continue;
            }
            if let Err(e) = self.catch_up().await {
                tracing::error!(projection = self.name(), error = %format!("{e:#}"), "projection failed; will retry");
                tokio::select! {
                    _ = retries.wait() => {}
                    _ = shutdown.wait() => {}
                }
                continue;
            }
            retries.reset();
            tokio::select! {
                _ = wakeup.breathe() => {}
                _ = shutdown.wait() => {}
            }
        }
    }

    /// What this read model has not applied yet (also what is not readable yet);
    /// updates `careloop_projection_lag_seconds`. `None` when the database does not
    /// answer.
    async fn look(&self) -> Option<outbox::Backlog> {
        let b = outbox::look(
            &self.pool,
            self.schema,
            &self.cursor_name(),
            self.types.as_deref(),
        )
        .await?;
        let lag = b
            .oldest
            .map(|t| (chrono::Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
            .unwrap_or(0.0);
        metrics::PROJECTION_LAG
            .with_label_values(&[self.name()])
            .set(lag);
        Some(b)
    }
}
