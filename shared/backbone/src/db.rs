//! Postgres: the pool (creating the database when missing), each service's schema and
//! its migrations, and the backbone tables every service has.
//!
//! The `events` table is postgres-es's, plus outbox columns with defaults: postgres-es
//! inserts with an explicit column list, so `event_id`, `position`, `txid` and
//! `recorded_at` are filled in by Postgres in the same transaction as the event. That
//! makes the events table its own transactional outbox.

use std::time::Duration;

use anyhow::Context;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Executor, PgPool};

/// Connects to `database_url`, creating the database first if it does not exist.
pub async fn connect(database_url: &str) -> anyhow::Result<PgPool> {
    let opts: PgConnectOptions = database_url
        .parse()
        .with_context(|| "DATABASE_URL is not a valid Postgres URL")?;
    let opts = opts.log_statements(tracing::log::LevelFilter::Trace);
    let pool = || {
        PgPoolOptions::new()
            .max_connections(24)
            .min_connections(0)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts.clone())
    };
    match pool().await {
        Ok(p) => Ok(p),
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
            if let Err(e) = created {
                // Another process may have created it at the same moment.
                let exists =
                    matches!(&e, sqlx::Error::Database(d) if d.code().as_deref() == Some("42P04"));
                if !exists {
                    return Err(e).context("creating the database");
                }
            } else {
                tracing::info!(database = %name, "created missing database");
            }
            Ok(pool().await?)
        }
        Err(e) => Err(e).with_context(|| {
            format!(
                "could not connect to Postgres at {} (DATABASE_URL)",
                opts.get_host()
            )
        }),
    }
}

/// One migration: a name (applied once, in order) and its SQL, in which `{schema}`
/// stands for the service's schema.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub name: &'static str,
    pub sql: &'static str,
}

/// The tables every service has, in its own schema.
const BACKBONE: Migration = Migration {
    name: "0000_backbone",
    sql: include_str!("backbone.sql"),
};

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

/// Creates `schema` and applies the backbone migration, then `migrations`, then the
/// append-only guard of the event store, each once. An advisory lock keeps two
/// processes from migrating at the same time.
pub async fn migrate(pool: &PgPool, schema: &str, migrations: &[Migration]) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
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
    for m in std::iter::once(&BACKBONE)
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
