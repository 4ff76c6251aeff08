//! Test support: each test gets its own fresh Postgres database and NATS namespace
//! on the shared servers, and both are dropped when the test ends, so tests run in
//! parallel without seeing each other.

use std::future::Future;
use std::time::Duration;

use careloop_config::Settings;

pub mod plans;
mod private_nats;
mod proxy;

pub use private_nats::PrivateNats;
pub use proxy::StallProxy;
use sqlx::Connection;

/// The servers every test run shares (override with `CARELOOP_TEST_PG` / `_NATS`).
fn admin_url() -> String {
    std::env::var("CARELOOP_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_string())
}

fn nats_url() -> String {
    std::env::var("CARELOOP_TEST_NATS").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_string())
}

/// A fresh database and namespace; dropped with the value.
pub struct TestEnv {
    pub database: String,
    pub namespace: String,
    pub settings: Settings,
}

impl TestEnv {
    pub fn new() -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let database = format!("careloop_test_{}", &id[..16]);
        let namespace = format!("t{}", &id[..12]);
        let db_url = format!("{}/{database}", admin_url());
        let nats = nats_url();
        let ns = namespace.clone();
        let settings = Settings::from_lookup(|name| match name {
            "DATABASE_URL" => Some(db_url.clone()),
            "NATS_URL" => Some(nats.clone()),
            "CARELOOP_NAMESPACE" => Some(ns.clone()),
            "CARELOOP_HTTP_ADDR" => Some("127.0.0.1:0".into()),
            "CARELOOP_MLLP_ADDR" => Some("127.0.0.1:0".into()),
            "CARELOOP_JWT_SECRET" => Some("test-secret-0123456789abcdef".into()),
            "CARELOOP_AUTH" => Some("dev".into()),
            // All four services in one process, like `careloop dev`; on a loaded
            // 2-core machine a connection may take a moment to free up.
            "CARELOOP_DB_POOL_MAX" => Some("16".into()),
            "CARELOOP_DB_ACQUIRE_TIMEOUT_MS" => Some("10000".into()),
            _ => None,
        })
        .expect("test settings are valid");
        TestEnv {
            database,
            namespace,
            settings,
        }
    }
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        // CARELOOP_TEST_KEEP=1 keeps the database and stream to look at after a run.
        if std::env::var("CARELOOP_TEST_KEEP").is_ok_and(|v| v == "1") {
            eprintln!(
                "kept database {} and namespace {}",
                self.database, self.namespace
            );
            return;
        }
        // Drop runs outside any async context we can rely on: clean up on a thread
        // with its own runtime.
        let database = self.database.clone();
        let stream = self.settings.namespace.stream_name();
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                if let Ok(mut conn) =
                    sqlx::PgConnection::connect(&format!("{}/postgres", admin_url())).await
                {
                    let _ = sqlx::query(&format!(
                        "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
                    ))
                    .execute(&mut conn)
                    .await;
                }
                if let Ok(client) = async_nats::connect(nats_url()).await {
                    let js = async_nats::jetstream::new(client);
                    let _ = js.delete_stream(&stream).await;
                }
            })
        })
        .join();
    }
}

/// Waits until `check` returns `Some`, polling every 25 ms, failing the test with
/// `what` after `timeout`. The way tests wait for asynchronous effects: on a
/// condition with a deadline, never a fixed sleep.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for: {what}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Collects log output in memory: pass `move || capture.clone()` to
/// `careloop_telemetry::init_with_writer`.
#[derive(Clone, Default)]
pub struct LogCapture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl LogCapture {
    pub fn contents(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for LogCapture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One integration event as a relay would publish it: `payload` from aggregate
/// `aggregate_type`/`aggregate_id` at `sequence`, after `previous_sequence`, recorded
/// at `occurred_at`. Tests hand it to `Consumer::process`, the consumer's public
/// entry point, to deliver events in any order.
pub fn envelope(
    payload: careloop_events::Payload,
    aggregate: (&str, &str),
    sequence: u64,
    previous_sequence: u64,
    occurred_at: chrono::DateTime<chrono::Utc>,
) -> Vec<u8> {
    use prost::Message;
    careloop_events::v1::Envelope {
        event_id: uuid::Uuid::new_v4().to_string(),
        event_type: payload.event_type().to_string(),
        occurred_at: Some(careloop_events::timestamp(occurred_at)),
        correlation_id: uuid::Uuid::new_v4().to_string(),
        causation_id: String::new(),
        source_service: "test".into(),
        aggregate_type: aggregate.0.to_string(),
        aggregate_id: aggregate.1.to_string(),
        aggregate_sequence: sequence,
        previous_sequence,
        actor: String::new(),
        payload: Some(payload),
    }
    .encode_to_vec()
}
