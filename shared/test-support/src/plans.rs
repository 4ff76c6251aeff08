//! How many rows of a table a statement reads, by its plan's own count, for the tests
//! that a statement looks rows up by key whatever the table's statistics.
//!
//! careloop's tables grow from nothing under load, and autovacuum analyses them at
//! most once a minute: a plan made from the statistics of a small table (and kept, as
//! a pooled connection keeps a generic plan after a few runs) can scan the whole table
//! at every batch once it has grown. Timing that would make a slow, flaky test; the
//! plan's row counts are exact.

use sqlx::PgConnection;

/// Rows of `table` that `statement` (prepared with parameter `types`) reads when run
/// with `args`, on `conn` (set its `search_path` first for unqualified names): what
/// its scans of the table returned and what they read and threw away, under a generic
/// plan made from the statistics the table has. The statement runs (`EXPLAIN
/// ANALYZE`), so a write takes effect. Use a connection of the test's own pool: it is
/// left with the session settings the caller made.
pub async fn rows_read(
    conn: &mut PgConnection,
    table: &str,
    statement: &str,
    types: &str,
    args: &str,
) -> f64 {
    // A name of its own: the connection's other prepared statements are sqlx's.
    let name = format!("under_test_{}", uuid::Uuid::new_v4().simple());
    sqlx::raw_sql(&format!(
        "SET plan_cache_mode = force_generic_plan; PREPARE {name}({types}) AS {statement}"
    ))
    .execute(&mut *conn)
    .await
    .expect("the statement prepares");
    let plan: serde_json::Value = sqlx::query_scalar(&format!(
        "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE {name}({args})"
    ))
    .fetch_one(&mut *conn)
    .await
    .expect("the statement runs");
    sqlx::raw_sql(&format!("DEALLOCATE {name}; RESET plan_cache_mode"))
        .execute(&mut *conn)
        .await
        .expect("the statement is let go");
    read(&plan[0]["Plan"], table)
}

/// Rows `node` and the nodes below it read of `table` (a plan counts rows per loop).
fn read(node: &serde_json::Value, table: &str) -> f64 {
    let own = if node["Relation Name"] == table {
        let n = |k: &str| node[k].as_f64().unwrap_or(0.0);
        (n("Actual Rows") + n("Rows Removed by Filter") + n("Rows Removed by Index Recheck"))
            * n("Actual Loops")
    } else {
        0.0
    };
    let below = node["Plans"].as_array().into_iter().flatten();
    own + below.map(|n| read(n, table)).sum::<f64>()
}
