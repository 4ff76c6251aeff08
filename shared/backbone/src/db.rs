//! Postgres: the pool (creating the database when missing), each service's schema and
//! its migrations, and the backbone tables every service has.
//!
//! The `events` table is postgres-es's, plus outbox columns with defaults: the store
//! ([`crate::store`]) inserts with an explicit column list, so `event_id`, `position`, `txid` and
//! `recorded_at` are filled in by Postgres in the same transaction as the event. That
//! makes the events table its own transactional outbox.

use anyhow::Context;
use careloop_config::DatabaseSettings;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, Executor, PgPool};

/// A pool for `database_url` that contacts nothing yet: connections open on first
/// use, so a service starts while Postgres is down and serves as soon as it is up.
///
/// Every connection carries a server-side `statement_timeout` (a stuck query is
/// cancelled and answered 503, not waited on) and an
/// `idle_in_transaction_session_timeout` (a transaction left open by a hung client is
/// ended instead of holding locks and the outbox readers' horizon). A request waits
/// at most `acquire_timeout` for a connection, then is answered 503 with Retry-After.
pub fn pool(database_url: &str, settings: &DatabaseSettings) -> anyhow::Result<PgPool> {
    let opts = connect_options(database_url)?.options([
        (
            "statement_timeout",
            settings.statement_timeout.as_millis().to_string(),
        ),
        ("idle_in_transaction_session_timeout", "60000".to_string()),
    ]);
    Ok(PgPoolOptions::new()
        .max_connections(settings.pool_max)
        .min_connections(0)
        .acquire_timeout(settings.acquire_timeout)
        .idle_timeout(Some(settings.idle_timeout))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for >= CHECK_AFTER_IDLE {
                    conn.ping().await?;
                }
                Ok(true)
            })
        })
        .connect_lazy_with(opts))
}

/// How long a pooled connection may have been idle and still be handed out unchecked.
pub const CHECK_AFTER_IDLE: std::time::Duration = std::time::Duration::from_secs(1);

fn connect_options(database_url: &str) -> anyhow::Result<PgConnectOptions> {
    let opts: PgConnectOptions = database_url
        .parse()
        .with_context(|| "DATABASE_URL is not a valid Postgres URL")?;
    Ok(opts
        .application_name("careloop")
        .log_statements(tracing::log::LevelFilter::Trace))
}

/// Connects once to `pool`'s database, creating it first if it does not exist.
///
/// Several processes started together may all find it missing: the one whose
/// `CREATE DATABASE` loses the race gets 42P04 (it exists) or 23505 (the catalog's
/// unique index, when the creates overlap), and both mean the database is there.
pub async fn ensure_database(pool: &PgPool) -> anyhow::Result<()> {
    let opts = pool.connect_options();
    let opts: &PgConnectOptions = &opts;
    match opts.connect().await {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some("3D000") => {
            let name = opts.get_database().unwrap_or("careloop").to_string();
            let mut admin = opts
                .clone()
                .database("postgres")
                .connect()
                .await
                .with_context(
                    || "could not connect to the `postgres` database to create the missing one",
                )?;
            let created = admin
                .execute(format!("CREATE DATABASE \"{}\"", name.replace('"', "")).as_str())
                .await;
            match created {
                Ok(_) => tracing::info!(database = %name, "created missing database"),
                Err(sqlx::Error::Database(d))
                    if matches!(d.code().as_deref(), Some("42P04") | Some("23505")) => {}
                Err(e) => return Err(e).context("creating the database"),
            }
            Ok(())
        }
        Err(e) => Err(e).with_context(|| {
            format!(
                "could not connect to Postgres at {} (DATABASE_URL)",
                opts.get_host()
            )
        }),
    }
}

/// A pool for `database_url` once Postgres answers (creating the database if
/// missing): for commands that need the database now, like `careloop migrate`.
pub async fn connect(database_url: &str, settings: &DatabaseSettings) -> anyhow::Result<PgPool> {
    let pool = pool(database_url, settings)?;
    ensure_database(&pool).await?;
    Ok(pool)
}

/// One migration: a name (applied once, in order) and its SQL, in which `{schema}`
/// stands for the service's schema.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub name: &'static str,
    pub sql: &'static str,
}

/// The tables every service has, in its own schema, applied before the service's
/// own migrations (only ever added to, like every migration).
const BACKBONE: &[Migration] = &[
    Migration {
        name: "0000_backbone",
        sql: include_str!("backbone.sql"),
    },
    Migration {
        name: "backbone_0001_stream_marks",
        sql: include_str!("backbone_0001_stream_marks.sql"),
    },
];

/// Applied after a service's own migrations: no event is ever changed or removed.
const APPEND_ONLY: Migration = Migration {
    name: "backbone_events_append_only",
    sql: "CREATE FUNCTION {schema}.events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
          BEGIN
              RAISE EXCEPTION 'the event store is append-only: % on {schema}.events refused', TG_OP;
          END $$;
          CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON {schema}.events
              FOR EACH ROW EXECUTE FUNCTION {schema}.events_append_only();",
};

/// Creates `schema` and applies the backbone migrations, then `migrations`, then the
/// append-only guard of the event store, each once. An advisory lock keeps two
/// processes from migrating at the same time.
pub async fn migrate(pool: &PgPool, schema: &str, migrations: &[Migration]) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    // A data migration may take longer than a request may, and another process may
    // hold the migration lock for as long as its migrations take.
    tx.execute("SET LOCAL statement_timeout = 0").await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('careloop.migrate'))")
        .execute(&mut *tx)
        .await?;
    tx.execute(
        format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {schema}.schema_migrations (
                 name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now());"
        )
        .as_str(),
    )
    .await?;
    for m in BACKBONE
        .iter()
        .chain(migrations)
        .chain(std::iter::once(&APPEND_ONLY))
    {
        let done: Option<String> = sqlx::query_scalar(&format!(
            "SELECT name FROM {schema}.schema_migrations WHERE name = $1"
        ))
        .bind(m.name)
        .fetch_optional(&mut *tx)
        .await?;
        if done.is_some() {
            continue;
        }
        tx.execute(m.sql.replace("{schema}", schema).as_str())
            .await
            .with_context(|| format!("migration {schema}/{}", m.name))?;
        sqlx::query(&format!(
            "INSERT INTO {schema}.schema_migrations (name) VALUES ($1)"
        ))
        .bind(m.name)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(())
}
