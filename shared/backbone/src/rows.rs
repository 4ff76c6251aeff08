//! Whole rows of a read model in and out, a batch at a time, for projections that fold
//! a batch of events in memory (see `Projection::apply_batch`).
//!
//! A projection that writes each event with its own statements pays a round trip and a
//! statement per write; at thousands of events a second, during a replay, that is
//! nearly all of its time. These read every row a batch touches in one statement, and
//! write them back in one, whatever the batch's length.
//!
//! Rows travel as JSON: a row type serialises with its table's column names, read as
//! `to_jsonb(row)` and written with `jsonb_populate_recordset(NULL::table, ...)`, which
//! casts each field to its column's type. So one helper serves every table, and a
//! column the row type does not name keeps its default on insert and its value on
//! update. Tables are named unqualified, as projections name them (the search path
//! says whether the live tables or a rebuild's copy are written).

use std::collections::HashMap;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::PgConnection;

use crate::outbox::StoredEvent;

/// The aggregates `events` name, once each: the keys of the rows a batch reads.
pub fn aggregate_ids<'a>(events: impl IntoIterator<Item = &'a StoredEvent>) -> Vec<&'a str> {
    let mut ids: Vec<&str> = events
        .into_iter()
        .map(|e| e.aggregate_id.as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// For each of `keys`, its row of `table` by the text column `key` (`None`: no row
/// yet), for a batch to fold its events into.
pub async fn load<T: DeserializeOwned>(
    conn: &mut PgConnection,
    table: &'static str,
    key: &'static str,
    keys: &[&str],
) -> anyhow::Result<HashMap<String, Option<T>>> {
    let found: Vec<(String, serde_json::Value)> = sqlx::query_as(&format!(
        "SELECT {key}, to_jsonb(t) FROM {table} t WHERE {key} = ANY($1)"
    ))
    .bind(keys)
    .fetch_all(&mut *conn)
    .await?;
    let mut rows: HashMap<String, Option<T>> = keys.iter().map(|k| (k.to_string(), None)).collect();
    for (k, row) in found {
        let row = T::deserialize(&row)
            .map_err(|e| anyhow::anyhow!("a row of {table} does not read: {e}"))?;
        rows.insert(k, Some(row));
    }
    Ok(rows)
}

/// Writes `rows` into `table`: each inserted, or replacing the columns it names of the
/// row with the same `key`.
pub async fn upsert<T: Serialize>(
    conn: &mut PgConnection,
    table: &'static str,
    key: &'static str,
    rows: &[T],
) -> anyhow::Result<()> {
    let Some((rows, columns)) = as_json(rows)? else {
        return Ok(());
    };
    let assignments: Vec<String> = columns
        .iter()
        .filter(|c| c.as_str() != key)
        .map(|c| format!("{c} = EXCLUDED.{c}"))
        .collect();
    let on_conflict = if assignments.is_empty() {
        "DO NOTHING".to_string()
    } else {
        format!("DO UPDATE SET {}", assignments.join(", "))
    };
    let columns = columns.join(", ");
    sqlx::query(&format!(
        "INSERT INTO {table} ({columns})
         SELECT {columns} FROM jsonb_populate_recordset(NULL::{table}, $1)
         ON CONFLICT ({key}) {on_conflict}"
    ))
    .bind(rows)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Inserts `rows` into `table`; one whose key is taken is an error.
pub async fn insert<T: Serialize>(
    conn: &mut PgConnection,
    table: &'static str,
    rows: &[T],
) -> anyhow::Result<()> {
    insert_with(conn, table, rows, "").await
}

/// Inserts those of `rows` whose key `table` does not hold yet.
pub async fn insert_new<T: Serialize>(
    conn: &mut PgConnection,
    table: &'static str,
    rows: &[T],
) -> anyhow::Result<()> {
    insert_with(conn, table, rows, "ON CONFLICT DO NOTHING").await
}

async fn insert_with<T: Serialize>(
    conn: &mut PgConnection,
    table: &'static str,
    rows: &[T],
    on_conflict: &'static str,
) -> anyhow::Result<()> {
    let Some((rows, columns)) = as_json(rows)? else {
        return Ok(());
    };
    let columns = columns.join(", ");
    sqlx::query(&format!(
        "INSERT INTO {table} ({columns})
         SELECT {columns} FROM jsonb_populate_recordset(NULL::{table}, $1) {on_conflict}"
    ))
    .bind(rows)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The rows as one JSON array and the column names they carry (those of the first;
/// a row type serialises every row with the same names). `None` when there are none.
fn as_json<T: Serialize>(rows: &[T]) -> anyhow::Result<Option<(serde_json::Value, Vec<String>)>> {
    let rows = serde_json::to_value(rows)?;
    let columns = match rows.get(0) {
        None => return Ok(None),
        Some(serde_json::Value::Object(first)) => first.keys().cloned().collect(),
        Some(_) => anyhow::bail!("a row must serialise as a JSON object"),
    };
    Ok(Some((rows, columns)))
}
