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

/// Moves `cursor` past `last` (in the same transaction as the work done for it).
pub async fn advance_cursor(
    conn: &mut PgConnection,
    schema: &str,
    cursor: &Cursor,
    last: &StoredEvent,
) -> sqlx::Result<()> {
    sqlx::query(&format!(
        "INSERT INTO {schema}.cursors (name, txid, position) VALUES ($1, $2::xid8, $3)
         ON CONFLICT (name) DO UPDATE SET txid = $2::xid8, position = $3, updated_at = now()"
    ))
    .bind(&cursor.name)
    .bind(&last.txid)
    .bind(last.position)
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

/// Up to `limit` committed events after `cursor`, of `event_types` only when given.
pub async fn read_after(
    conn: &mut PgConnection,
    schema: &str,
    cursor: &Cursor,
    event_types: Option<&[String]>,
    limit: i64,
) -> sqlx::Result<Vec<StoredEvent>> {
    sqlx::query_as(&format!(
        "SELECT e.event_id, e.aggregate_type, e.aggregate_id, e.sequence, e.event_type,
                e.event_version, e.payload, e.metadata, e.recorded_at, e.txid::text AS txid,
                e.position,
                COALESCE((SELECT max(p.sequence) FROM {schema}.events p
                          WHERE p.aggregate_type = e.aggregate_type
                            AND p.aggregate_id = e.aggregate_id
                            AND p.sequence < e.sequence
                            AND ($3::text[] IS NULL OR p.event_type = ANY($3))), 0)
                    AS previous_sequence
         FROM {schema}.events e
         WHERE (e.txid, e.position) > ($1::xid8, $2)
           AND e.txid < pg_snapshot_xmin(pg_current_snapshot())
           AND ($3::text[] IS NULL OR e.event_type = ANY($3))
         ORDER BY e.txid, e.position
         LIMIT $4"
    ))
    .bind(&cursor.txid)
    .bind(cursor.position)
    .bind(event_types)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await
}

/// How many events (of `event_types`) lie beyond cursor `name`, and when the oldest
/// of them was recorded.
pub async fn pending(
    conn: &mut PgConnection,
    schema: &str,
    name: &str,
    event_types: Option<&[String]>,
) -> sqlx::Result<(i64, Option<DateTime<Utc>>)> {
    sqlx::query_as(&format!(
        "SELECT count(*), min(e.recorded_at)
         FROM {schema}.events e
         LEFT JOIN {schema}.cursors c ON c.name = $1
         WHERE (e.txid, e.position) > (COALESCE(c.txid, '0'::xid8), COALESCE(c.position, 0))
           AND ($2::text[] IS NULL OR e.event_type = ANY($2))"
    ))
    .bind(name)
    .bind(event_types)
    .fetch_one(&mut *conn)
    .await
}

/// Waits until new events may have committed in `schema` (a NOTIFY from the events
/// trigger) or `poll` has passed, whichever is first.
pub struct Wakeup {
    listener: Option<sqlx::postgres::PgListener>,
    pool: sqlx::PgPool,
    channel: String,
    poll: std::time::Duration,
}

impl Wakeup {
    pub fn new(pool: sqlx::PgPool, schema: &str, poll: std::time::Duration) -> Self {
        Wakeup {
            listener: None,
            pool,
            channel: format!("{schema}_events"),
            poll,
        }
    }

    /// `soon`: events are committed but not readable yet, because an older
    /// transaction somewhere on the server is still open. Its commit sends no
    /// notification, so look again shortly instead of waiting for one.
    pub async fn wait(&mut self, soon: bool) {
        if soon {
            tokio::time::sleep(std::time::Duration::from_millis(15)).await;
            return;
        }
        if self.listener.is_none() {
            match sqlx::postgres::PgListener::connect_with(&self.pool).await {
                Ok(mut l) => {
                    if l.listen(&self.channel).await.is_ok() {
                        self.listener = Some(l);
                    }
                }
                Err(e) => tracing::debug!(error = %e, "LISTEN unavailable; polling"),
            }
        }
        match &mut self.listener {
            Some(l) => {
                match tokio::time::timeout(self.poll, l.try_recv()).await {
                    Ok(Ok(Some(_))) | Err(_) => {}
                    // The connection was lost: reconnect on the next wait.
                    Ok(Ok(None)) | Ok(Err(_)) => self.listener = None,
                }
            }
            None => tokio::time::sleep(self.poll).await,
        }
    }
}

impl StoredEvent {
    /// The service's own event, as cqrs-es serialised it.
    pub fn decode<T: serde::de::DeserializeOwned>(&self) -> anyhow::Result<T> {
        serde_json::from_value(self.payload.clone()).map_err(|e| {
            anyhow::anyhow!(
                "event {} ({}) does not decode: {e}",
                self.event_id,
                self.event_type
            )
        })
    }
}
