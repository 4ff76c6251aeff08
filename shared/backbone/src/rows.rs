//! Whole rows of a read model in and out, a batch at a time, for projections that fold
//! a batch of events in memory ([`fold`]; see `Projection::apply`).
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
//! says whether the live tables or a rebuild's copy are written). A row type marks its
//! time columns `#[serde(serialize_with = "rows::micros")]` (or `micros_opt`): a time
//! is then written as sqlx binds one, cut to the microsecond, where Postgres would
//! round the text's nanoseconds (and a replay would move a time written before by a
//! microsecond).

use std::collections::HashMap;

use anyhow::Context;
use chrono::{DateTime, SubsecRound, Utc};
use serde::de::DeserializeOwned;
use serde::{Serialize, Serializer};
use sqlx::PgConnection;
use sqlx::types::Json;

use crate::outbox::StoredEvent;

/// A batch of a read model with one row of `table` per aggregate (by aggregate id, in
/// the text column `key`): the rows `events` name are read, `fold` takes each event in
/// order with its aggregate's row (`None`: no row yet), and the rows are written back.
/// Three statements at most, whatever the batch's length.
pub async fn fold<'e, T, F>(
    conn: &mut PgConnection,
    table: &'static str,
    key: &'static str,
    events: impl IntoIterator<Item = &'e StoredEvent>,
    mut fold: F,
) -> anyhow::Result<()>
where
    T: Serialize + DeserializeOwned + Send + Unpin + 'static,
    F: FnMut(&mut Option<T>, &'e StoredEvent) -> anyhow::Result<()>,
{
    let events: Vec<&StoredEvent> = events.into_iter().collect();
    if events.is_empty() {
        return Ok(());
    }
    let mut rows: HashMap<String, Option<T>> =
        load(conn, table, key, &aggregate_ids(events.iter().copied())).await?;
    for e in events {
        let row = rows.entry(e.aggregate_id.clone()).or_default();
        fold(row, e).with_context(|| format!("applying {} {}", e.event_type, e.event_id))?;
    }
    let rows: Vec<T> = rows.into_values().flatten().collect();
    upsert(conn, table, key, &rows).await
}

/// The aggregates `events` name, once each: the keys of the rows a batch reads.
fn aggregate_ids<'a>(events: impl IntoIterator<Item = &'a StoredEvent>) -> Vec<&'a str> {
    let mut ids: Vec<&str> = events
        .into_iter()
        .map(|e| e.aggregate_id.as_str())
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The read of a batch's rows of `table` by the text column `key`, `$1` the keys
/// (once each: a key named twice is read twice).
/// One lookup by key per row, whatever the table's statistics: with `{key} = ANY($1)`
/// a plan made while the table was small scanned all of it (0.5-0.9 ms a batch under
/// load, growing with the table, until autovacuum's next analyse); the LIMIT keeps
/// each lookup a subquery the planner cannot turn back into that scan. Public for its
/// test (`key_lookups_read_only_the_rows_they_name`).
pub fn load_statement(table: &str, key: &str) -> String {
    format!(
        "SELECT k.key, to_jsonb(t) FROM unnest($1::text[]) AS k(key)
         CROSS JOIN LATERAL (SELECT * FROM {table} t WHERE t.{key} = k.key LIMIT 1) t"
    )
}

/// For each of `keys`, its row of `table` by the text column `key` (`None`: no row
/// yet), for a batch to fold its events into.
async fn load<T: DeserializeOwned + Send + Unpin + 'static>(
    conn: &mut PgConnection,
    table: &'static str,
    key: &'static str,
    keys: &[&str],
) -> anyhow::Result<HashMap<String, Option<T>>> {
    // Each row decoded straight from the wire, no JSON tree in between.
    let found: Vec<(String, Json<T>)> = sqlx::query_as(&load_statement(table, key))
        .bind(keys)
        .fetch_all(&mut *conn)
        .await
        .with_context(|| format!("reading rows of {table}"))?;
    let mut rows: HashMap<String, Option<T>> = keys.iter().map(|k| (k.to_string(), None)).collect();
    for (k, Json(row)) in found {
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
    let Some(columns) = columns(rows)? else {
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
    // Serialised straight into the statement's buffer, no JSON tree in between.
    .bind(Json(rows))
    .execute(&mut *conn)
    .await
    .with_context(|| format!("writing rows of {table}"))?;
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
    let Some(columns) = columns(rows)? else {
        return Ok(());
    };
    let columns = columns.join(", ");
    sqlx::query(&format!(
        "INSERT INTO {table} ({columns})
         SELECT {columns} FROM jsonb_populate_recordset(NULL::{table}, $1) {on_conflict}"
    ))
    .bind(Json(rows))
    .execute(&mut *conn)
    .await
    .with_context(|| format!("writing rows of {table}"))?;
    Ok(())
}

/// The column names the rows carry: those of the first (a row type serialises every
/// row with the same names). `None` when there are no rows.
fn columns<T: Serialize>(rows: &[T]) -> anyhow::Result<Option<Vec<String>>> {
    let Some(first) = rows.first() else {
        return Ok(None);
    };
    match serde_json::to_value(first)? {
        serde_json::Value::Object(first) => Ok(Some(first.keys().cloned().collect())),
        _ => anyhow::bail!("a row must serialise as a JSON object"),
    }
}

/// A time column, cut to the microsecond as sqlx binds a time (see the module note).
pub fn micros<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    t.trunc_subsecs(6).serialize(s)
}

/// A time column that may be empty, cut to the microsecond.
pub fn micros_opt<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
    t.map(|t| t.trunc_subsecs(6)).serialize(s)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[derive(Serialize)]
    struct Row {
        #[serde(serialize_with = "micros")]
        at: DateTime<Utc>,
        #[serde(serialize_with = "micros_opt")]
        until: Option<DateTime<Utc>>,
    }

    #[test]
    fn times_are_cut_to_the_microsecond_not_rounded() {
        let t = Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap()
            + chrono::Duration::nanoseconds(1_999_700);
        let row = serde_json::to_value(Row {
            at: t,
            until: Some(t),
        })
        .unwrap();
        assert_eq!(row["at"], "2026-12-01T09:00:00.001999Z");
        assert_eq!(row["until"], "2026-12-01T09:00:00.001999Z");
        assert_eq!(
            columns(&[Row { at: t, until: None }]).unwrap().unwrap(),
            ["at", "until"]
        );
    }
}
