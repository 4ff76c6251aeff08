//! Reading committed events in a commit-safe order.
//!
//! `position` is a bigserial, and bigserial values are taken at insert time, not at
//! commit: a transaction that took position 7 can commit after one that took 8. A
//! reader that remembered "8" would skip 7 forever. So readers order by
//! (`txid`, `position`) and only read rows whose transaction id is below the oldest
//! transaction still running (`pg_snapshot_xmin(pg_current_snapshot())`): every such
//! transaction has finished, and any transaction that commits later has a larger id.
//!
//! The cursor is locked (an advisory transaction lock) while a batch is handled, so two instances of
//! a relay or projection take turns instead of handling the same batch twice.
//!
//! Readers are woken for every commit in their schema, most of them other readers'
//! events. So a reader first looks ([`backlog`]: one unlocked query) and opens a pass
//! only when events of its own types are readable, or when enough of other types lie
//! beyond its cursor to be worth moving past. A pass reads up to the [`horizon`] (the
//! newest readable event) and, having taken everything of its types up to there, moves
//! its cursor to it, so a reader of rare types never rescans everyone else's events.

use chrono::{DateTime, Utc};
use sqlx::{FromRow, PgConnection};
use uuid::Uuid;

/// One row of a service's events table.
#[derive(Debug, Clone, FromRow)]
pub struct StoredEvent {
    pub event_id: Uuid,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub event_type: String,
    pub event_version: String,
    pub payload: serde_json::Value,
    pub metadata: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
    /// The inserting transaction's id (xid8, as decimal text).
    pub txid: String,
    pub position: i64,
    /// The sequence of the previous event of this aggregate among the selected event
    /// types (0 when none): consumers use it to keep per-aggregate order.
    pub previous_sequence: i64,
}

impl StoredEvent {
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.get(key).and_then(|v| v.as_str())
    }

    /// `event` as a service's store holds it: the `sequence`th event of the aggregate,
    /// recorded at `recorded_at`, without metadata. For pure tests of what reads stored
    /// events (projections' folds, decoders) without a database.
    pub fn of<E: cqrs_es::DomainEvent>(
        aggregate_type: &str,
        aggregate_id: &str,
        sequence: i64,
        recorded_at: DateTime<Utc>,
        event: &E,
    ) -> StoredEvent {
        StoredEvent {
            event_id: Uuid::new_v4(),
            aggregate_type: aggregate_type.to_string(),
            aggregate_id: aggregate_id.to_string(),
            sequence,
            event_type: event.event_type(),
            event_version: event.event_version(),
            payload: serde_json::to_value(event).expect("a domain event serialises"),
            metadata: serde_json::json!({}),
            recorded_at,
            txid: "1".to_string(),
            position: sequence,
            previous_sequence: sequence - 1,
        }
    }
}

/// A locked cursor: where a reader stands. Dropping the transaction unlocks it.
#[derive(Debug, Clone)]
pub struct Cursor {
    pub name: String,
    pub txid: String,
    pub position: i64,
}

/// Locks the cursor `name` (creating it at the start) for the rest of the transaction.
///
/// The lock is an advisory transaction lock, not `FOR UPDATE`: a row lock would give
/// the transaction an id for its whole length (publishing to NATS, applying a batch),
/// and an open transaction id holds back every reader on the server (see above).
pub async fn lock_cursor(
    conn: &mut PgConnection,
    schema: &str,
    name: &str,
) -> sqlx::Result<Cursor> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("careloop.cursor:{schema}:{name}"))
        .execute(&mut *conn)
        .await?;
    let row: Option<(String, i64)> = sqlx::query_as(&format!(
        "SELECT txid::text, position FROM {schema}.cursors WHERE name = $1"
    ))
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?;
    let (txid, position) = row.unwrap_or_else(|| ("0".to_string(), 0));
    Ok(Cursor {
        name: name.to_string(),
        txid,
        position,
    })
}

/// Lets the reader's transaction commit without waiting for the write-ahead log to
/// reach the disk (`synchronous_commit = off` for this transaction only).
///
/// Only for a pass whose whole transaction is derived from committed events and is
/// redone if lost: a relay's cursor move (its events are already on JetStream; a lost
/// move sends them again, which JetStream and the consumers drop, guarantee 2) and a
/// read model's batch with its cursor (a lost batch is applied again from the older
/// cursor, with its rows; a projection whose rows are sent outside careloop keeps
/// durable batches, `Projection::durable_batches`). A crash of Postgres can lose such
/// a commit, never make it half; the next durable commit on the server (an API
/// command's, a consumer's position) flushes it with everything before it. Waiting
/// for the disk was about a third of the pipeline's time with every commit durable.
/// The API's commands and the consumers' positions keep durable commits: theirs are
/// what the 2xx and the ack promise (a consumer's handler's commands are flushed by
/// its position's commit, `store::flushed_by_caller`).
pub async fn commit_without_waiting_for_disk(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Returns once every event this reader has read is on disk: a durable write of its
/// own (it touches the reader's cursor row, `updated_at` only) whose commit flushes
/// the write-ahead log up to itself, and so every commit before it. A reader calls it
/// before it sends events outside careloop, since the consumers' commands commit
/// without waiting for the disk (`store::flushed_by_caller`). It runs on a
/// connection of its own: in the reader's transaction the write would give that
/// transaction an id, which holds back every reader on the server (see above).
pub async fn wait_for_disk(pool: &sqlx::PgPool, schema: &str, name: &str) -> sqlx::Result<()> {
    sqlx::query(&format!(
        "INSERT INTO {schema}.cursors (name) VALUES ($1)
         ON CONFLICT (name) DO UPDATE SET updated_at = now()"
    ))
    .bind(name)
    .execute(pool)
    .await?;
    Ok(())
}

/// Moves `cursor` past a batch read with [`read_after`] (in the same transaction as
/// the work done for it): to `until` when the batch held every event of the reader's
/// types up to there (`complete`: fewer than the limit), else past its last event.
pub async fn advance_past(
    conn: &mut PgConnection,
    schema: &str,
    cursor: &Cursor,
    events: &[StoredEvent],
    until: Option<&Place>,
    complete: bool,
) -> sqlx::Result<()> {
    match (until, events.last()) {
        (Some(h), _) if complete && h.is_after(cursor) => {
            set_cursor(conn, schema, &cursor.name, &h.txid, h.position).await
        }
        (_, Some(last)) => advance_cursor(conn, schema, cursor, last).await,
        _ => Ok(()),
    }
}

/// Moves `cursor` past `last` (in the same transaction as the work done for it).
pub async fn advance_cursor(
    conn: &mut PgConnection,
    schema: &str,
    cursor: &Cursor,
    last: &StoredEvent,
) -> sqlx::Result<()> {
    set_cursor(conn, schema, &cursor.name, &last.txid, last.position).await
}

/// Puts cursor `name` at (`txid`, `position`), creating it if missing.
pub async fn set_cursor(
    conn: &mut PgConnection,
    schema: &str,
    name: &str,
    txid: &str,
    position: i64,
) -> sqlx::Result<()> {
    sqlx::query(&format!(
        "INSERT INTO {schema}.cursors (name, txid, position) VALUES ($1, $2::xid8, $3)
         ON CONFLICT (name) DO UPDATE SET txid = $2::xid8, position = $3, updated_at = now()"
    ))
    .bind(name)
    .bind(txid)
    .bind(position)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Resets `name` to the start, so the next reads return every event again.
pub async fn reset_cursor(conn: &mut PgConnection, schema: &str, name: &str) -> sqlx::Result<()> {
    sqlx::query(&format!(
        "UPDATE {schema}.cursors SET txid = '0', position = 0, updated_at = now() WHERE name = $1"
    ))
    .bind(name)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Moves cursor `name` back so that every event recorded since `since` (every event,
/// when `None`) is read again. Never moves it forward: that would skip events.
pub async fn rewind_cursor(
    conn: &mut PgConnection,
    schema: &str,
    name: &str,
    since: Option<DateTime<Utc>>,
) -> sqlx::Result<()> {
    let Some(since) = since else {
        return reset_cursor(conn, schema, name).await;
    };
    // Every event recorded since `since` has a transaction id at least this one, so a
    // cursor at (that id, 0) reads them all (and perhaps a few older ones: harmless,
    // readers drop what they have).
    let first: Option<String> = sqlx::query_scalar(&format!(
        "SELECT min(txid)::text FROM {schema}.events WHERE recorded_at >= $1"
    ))
    .bind(since)
    .fetch_one(&mut *conn)
    .await?;
    let Some(first) = first else {
        return Ok(());
    };
    sqlx::query(&format!(
        "UPDATE {schema}.cursors SET txid = $2::xid8, position = 0, updated_at = now()
         WHERE name = $1 AND (txid, position) > ($2::xid8, 0)"
    ))
    .bind(name)
    .bind(first)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Whether [`read_after`] finds each event's `previous_sequence` (the relay puts it
/// in the envelope; read models apply in order from one cursor and need not pay for
/// the lookup, one index probe per event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Previous {
    Find,
    Skip,
}

/// The place of the newest readable event (the newest whose transaction is older
/// than every one still running), or `None` while there is none.
///
/// Every event at or before it is committed, and any event committed later comes
/// after it. So a reader that took every event of its own types up to here
/// ([`read_after`] with this as `until`, fewer than its limit) may move its cursor
/// here even when the last of them was of another type: the events of other types in
/// between are never scanned again, and a reader of rare types does not read through
/// everyone else's events on every pass.
pub async fn horizon(conn: &mut PgConnection, schema: &str) -> sqlx::Result<Option<Place>> {
    let row: Option<(String, i64)> = sqlx::query_as(&format!(
        // `e.txid`, not `txid`: a bare name in ORDER BY would sort by the output
        // column (the text) and read the whole table instead of the index's end.
        "SELECT e.txid::text, e.position FROM {schema}.events e
         WHERE e.txid < pg_snapshot_xmin(pg_current_snapshot())
         ORDER BY e.txid DESC, e.position DESC
         LIMIT 1"
    ))
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.map(|(txid, position)| Place { txid, position }))
}

/// A place in the commit order of a service's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// The inserting transaction's id (xid8, as decimal text).
    pub txid: String,
    pub position: i64,
}

impl Place {
    /// Whether this place lies after `cursor` (xid8 compared as numbers).
    pub fn is_after(&self, cursor: &Cursor) -> bool {
        let id = |t: &str| t.parse::<u64>().unwrap_or(0);
        (id(&self.txid), self.position) > (id(&cursor.txid), cursor.position)
    }
}

/// Up to `limit` committed events after `cursor` (and at or before `until`, when
/// given), of `event_types` only when given.
pub async fn read_after(
    conn: &mut PgConnection,
    schema: &str,
    cursor: &Cursor,
    until: Option<&Place>,
    event_types: Option<&[String]>,
    limit: i64,
    previous: Previous,
) -> sqlx::Result<Vec<StoredEvent>> {
    let previous_sequence = match previous {
        Previous::Find => format!(
            "COALESCE((SELECT max(p.sequence) FROM {schema}.events p
                       WHERE p.aggregate_type = e.aggregate_type
                         AND p.aggregate_id = e.aggregate_id
                         AND p.sequence < e.sequence
                         AND ($3::text[] IS NULL OR p.event_type = ANY($3))), 0)"
        ),
        Previous::Skip => "0::bigint".to_string(),
    };
    sqlx::query_as(&format!(
        "SELECT e.event_id, e.aggregate_type, e.aggregate_id, e.sequence, e.event_type,
                e.event_version, e.payload, e.metadata, e.recorded_at, e.txid::text AS txid,
                e.position, {previous_sequence} AS previous_sequence
         FROM {schema}.events e
         WHERE (e.txid, e.position) > ($1::xid8, $2)
           AND e.txid < pg_snapshot_xmin(pg_current_snapshot())
           AND ($3::text[] IS NULL OR e.event_type = ANY($3))
           AND ($5::text IS NULL OR (e.txid, e.position) <= ($5::xid8, $6))
         ORDER BY e.txid, e.position
         LIMIT $4"
    ))
    .bind(&cursor.txid)
    .bind(cursor.position)
    .bind(event_types)
    .bind(limit)
    .bind(until.map(|p| p.txid.as_str()))
    .bind(until.map_or(0, |p| p.position))
    .fetch_all(&mut *conn)
    .await
}

/// How many events (of `event_types`) lie beyond cursor `name`, and when the oldest
/// of them was recorded: a count of every one of them, so for operators and gauges
/// (at most once a second), never for a reader deciding whether to open a pass (that
/// is [`backlog`], which stops early).
pub async fn pending(
    conn: &mut PgConnection,
    schema: &str,
    name: &str,
    event_types: Option<&[String]>,
) -> sqlx::Result<(i64, Option<DateTime<Utc>>)> {
    let beyond = beyond(schema);
    sqlx::query_as(&format!(
        "SELECT count(*), min(e.recorded_at) FROM {schema}.events e
         WHERE {beyond} AND ($2::text[] IS NULL OR e.event_type = ANY($2))"
    ))
    .bind(name)
    .bind(event_types)
    .fetch_one(&mut *conn)
    .await
}

/// [`backlog`] on a connection of its own, for a reader deciding whether to open a
/// pass: `None` when the database does not answer (the caller then runs its pass,
/// which fails and backs off).
pub async fn look(
    pool: &sqlx::PgPool,
    schema: &str,
    name: &str,
    event_types: Option<&[String]>,
) -> Option<Backlog> {
    let mut conn = pool.acquire().await.ok()?;
    backlog(&mut conn, schema, name, event_types).await.ok()
}

/// Readable events of other types beyond a cursor that make a pass worth running
/// just to move the cursor past them.
pub const SKIP_AFTER: i64 = 100;

/// What lies beyond a reader's cursor, as far as a reader needs to know to decide
/// whether to open a pass.
#[derive(Debug, Clone, Copy, Default)]
pub struct Backlog {
    /// When the first event of the reader's types beyond its cursor (in commit order)
    /// was recorded, readable or not; `None` when there is none.
    pub oldest: Option<DateTime<Utc>>,
    /// Whether some of them are readable now (older than every transaction still
    /// running).
    pub readable: bool,
    /// Readable events of other types beyond the cursor, counted up to [`SKIP_AFTER`]:
    /// that many make a pass worth running for them alone, to move the cursor past
    /// them (see [`horizon`]) so that looking stays cheap.
    pub skippable: i64,
}

impl Backlog {
    /// Whether a pass has work: events of the reader's types to take, or enough of
    /// other types to move past.
    pub fn worth_a_pass(&self) -> bool {
        self.readable || self.skippable >= SKIP_AFTER
    }

    /// Whether events of the reader's types wait beyond its cursor, readable or not.
    pub fn waiting(&self) -> bool {
        self.oldest.is_some()
    }
}

/// Events beyond the cursor `$1`, for a query on `{schema}.events e`. The cursor is
/// read in sub-selects, not joined: with a join the planner cannot range-scan
/// `events_commit_order` and reads the whole events table (80 ms at 200,000 events);
/// with the sub-selects it reads only the events beyond the cursor.
fn beyond(schema: &str) -> String {
    format!(
        "(e.txid, e.position) >
         (COALESCE((SELECT txid FROM {schema}.cursors WHERE name = $1), '0'::xid8),
          COALESCE((SELECT position FROM {schema}.cursors WHERE name = $1), 0))"
    )
}

/// What lies beyond cursor `name` for a reader of `event_types`, in one statement and
/// without the cursor's lock: readers look before they open a pass, so a wakeup for
/// another reader's events costs one query instead of a transaction.
///
/// Each part stops early (at the first event of the reader's types, or at
/// [`SKIP_AFTER`] of the others), so a look costs the same with a backlog of ten or of
/// ten thousand. Counting them all here made looking the busiest statement of the
/// whole server under load: readers look every [`PACE`] or so while events of theirs are
/// still in flight, and each look read every event beyond its cursor. The snapshot's
/// horizon is a sub-select, taken once rather than for every row.
pub async fn backlog(
    conn: &mut PgConnection,
    schema: &str,
    name: &str,
    event_types: Option<&[String]>,
) -> sqlx::Result<Backlog> {
    let beyond = beyond(schema);
    let horizon = "(SELECT pg_snapshot_xmin(pg_current_snapshot()))";
    // The first event of the reader's types, in commit order: readable exactly when
    // it is older than the horizon (any later one has a later txid). Only when it is
    // not are the readable events of other types counted, in commit order and no
    // further than SKIP_AFTER (an index range scan that stops early).
    let (oldest, readable, skippable) = sqlx::query_as(&format!(
        "SELECT first.recorded_at,
                COALESCE(first.readable, false),
                CASE WHEN first.readable OR $2::text[] IS NULL THEN 0 ELSE
                  (SELECT count(*) FROM (SELECT 1 FROM {schema}.events e
                    WHERE {beyond} AND e.txid < {horizon} AND NOT e.event_type = ANY($2)
                    ORDER BY e.txid, e.position LIMIT {SKIP_AFTER}) others)
                END
         FROM (SELECT 1) one
         LEFT JOIN LATERAL (
             SELECT e.recorded_at, e.txid < {horizon} AS readable FROM {schema}.events e
             WHERE {beyond} AND ($2::text[] IS NULL OR e.event_type = ANY($2))
             ORDER BY e.txid, e.position LIMIT 1) first ON true"
    ))
    .bind(name)
    .bind(event_types)
    .fetch_one(&mut *conn)
    .await?;
    Ok(Backlog {
        oldest,
        readable,
        skippable,
    })
}

/// Waits until new events may have committed in `schema` (a NOTIFY from the events
/// trigger) or `poll` has passed, whichever is first.
///
/// One LISTEN connection per database serves every relay, projection and worker of
/// the process (the trigger names the schema in its payload), so the number of
/// connections does not grow with the number of readers.
///
/// Under load a schema commits hundreds of times a second, and a reader woken for
/// each commit would look (and open a pass) for each. So a reader is paced: a wait
/// returns no sooner than its pace after the previous return, and one return answers
/// every notification queued by then, so the look that follows sees all of those
/// commits at once and the pass takes them in one batch. After a pass the reader
/// [`Wakeup::breathe`]s for the rest of its pace before it looks again, so a reader
/// with a steady stream of events passes at most once per pace instead of back to
/// back. At idle the first commit wakes a reader at once, whatever its pace.
pub struct Wakeup {
    rx: tokio::sync::watch::Receiver<u64>,
    poll: std::time::Duration,
    pace: std::time::Duration,
    /// The previous return of a wait or a breath; none yet: the first look is at once.
    last: Option<tokio::time::Instant>,
}

/// The pace of the readers on a referral's way from one service to the next, and of
/// the read models someone reads right after their own write: relays, the referral
/// queue, intake's Tasks. At most 50 looks and passes a second each.
pub const PACE: std::time::Duration = std::time::Duration::from_millis(20);

/// The pace of every other reader (the roster, follow-up plans, measures, the audit
/// log, webhooks, the waitlist): at most 10 passes a second each. Under load each pass
/// costs a look, a lock, a cursor read and write and a commit however many events it
/// takes, so fewer and larger passes leave the two cores to the referrals; what
/// such a reader shows is at most this much later.
pub const BACKGROUND_PACE: std::time::Duration = std::time::Duration::from_millis(100);

/// The channel every events trigger notifies, with the schema as payload.
pub const CHANNEL: &str = "careloop_events";

/// The listener of one database: a watch per schema that has readers, bumped at
/// each notification naming it. A watch wakes only the readers of that schema, and
/// coalesces: a reader that was busy sees one change however many commits it missed.
struct Shared {
    schemas: Schemas,
    alive: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

type Schemas = std::sync::Arc<
    std::sync::Mutex<std::collections::HashMap<String, tokio::sync::watch::Sender<u64>>>,
>;

static LISTENERS: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, Shared>>> =
    std::sync::LazyLock::new(Default::default);

/// Marks the shared listener dead when its task ends (or its runtime shuts down).
struct AliveGuard(std::sync::Arc<std::sync::atomic::AtomicBool>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

fn subscribe(pool: &sqlx::PgPool, schema: &str) -> tokio::sync::watch::Receiver<u64> {
    let opts = pool.connect_options();
    let key = format!(
        "{}:{}/{}",
        opts.get_host(),
        opts.get_port(),
        opts.get_database().unwrap_or("")
    );
    let mut map = LISTENERS.lock().unwrap_or_else(|e| e.into_inner());
    let alive = map
        .get(&key)
        .is_some_and(|s| s.alive.load(std::sync::atomic::Ordering::SeqCst));
    if !alive {
        let schemas = Schemas::default();
        let alive = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
        tokio::spawn(listen(
            pool.clone(),
            schemas.clone(),
            AliveGuard(alive.clone()),
        ));
        map.insert(key.clone(), Shared { schemas, alive });
    }
    let mut schemas = map[&key].schemas.lock().unwrap_or_else(|e| e.into_inner());
    schemas
        .entry(schema.to_string())
        .or_insert_with(|| tokio::sync::watch::channel(0).0)
        .subscribe()
}

async fn listen(pool: sqlx::PgPool, schemas: Schemas, _alive: AliveGuard) {
    loop {
        match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(mut l) => {
                if l.listen(CHANNEL).await.is_ok() {
                    while let Ok(n) = l.recv().await {
                        let schemas = schemas.lock().unwrap_or_else(|e| e.into_inner());
                        if let Some(watch) = schemas.get(n.payload()) {
                            watch.send_modify(|commits| *commits = commits.wrapping_add(1));
                        }
                    }
                }
            }
            Err(e) => tracing::debug!(error = %e, "LISTEN unavailable; readers poll"),
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

impl Wakeup {
    /// A reader's wakeup at [`PACE`].
    pub fn new(pool: sqlx::PgPool, schema: &str, poll: std::time::Duration) -> Self {
        Wakeup {
            rx: subscribe(&pool, schema),
            poll,
            pace: PACE,
            last: None,
        }
    }

    /// The same wakeup at another pace ([`BACKGROUND_PACE`] for background readers).
    pub fn paced(mut self, pace: std::time::Duration) -> Self {
        self.pace = pace;
        self
    }

    /// `soon`: events are committed but not readable yet, because an older
    /// transaction somewhere on the server is still open. Its commit sends no
    /// notification, so look again after the pace instead of waiting for one.
    pub async fn wait(&mut self, soon: bool) {
        if !soon {
            self.notified().await;
        }
        self.breathe().await;
    }

    /// After a pass: returns no sooner than the pace after the previous return, so
    /// that the next look takes everything committed meanwhile in one pass.
    pub async fn breathe(&mut self) {
        if let Some(last) = self.last {
            tokio::time::sleep_until(last + self.pace).await;
        }
        // Whatever was notified until now, the caller's next look sees.
        self.rx.borrow_and_update();
        self.last = Some(tokio::time::Instant::now());
    }

    /// A notification for this schema, or `poll` passed. While the listener is gone
    /// (its connection is being made again), the poll.
    async fn notified(&mut self) {
        let rx = &mut self.rx;
        let woken = async move {
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await
            }
        };
        let _ = tokio::time::timeout(self.poll, woken).await;
    }
}

impl StoredEvent {
    /// The service's own event, as cqrs-es serialised it.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> anyhow::Result<T> {
        // From a reference: a replay decodes every event, and cloning each payload
        // first cost as much as the decoding.
        T::deserialize(&self.payload).map_err(|e| {
            anyhow::anyhow!(
                "event {} ({}) does not decode: {e}",
                self.event_id,
                self.event_type
            )
        })
    }
}
