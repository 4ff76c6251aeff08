//! End-to-end tests across all four services, over HTTP, against the real Postgres
//! and JetStream. `spawn_app` starts exactly what `careloop dev` starts.

mod cluster;
mod console;
mod edges;
mod fhir;
mod followup;
mod identity;
mod lifecycle;
mod matching;
mod measures;
mod node;
mod outage;
mod practice;
mod privacy;
mod resilience;
mod slice;

use std::time::Duration;

use careloop_app::Application;
use careloop_test_support::TestEnv;
use serde_json::{Value, json};

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    secret: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    pub intake: careloop_intake::IntakeService,
    pub env: TestEnv,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(TestEnv::new()).await
}

pub async fn spawn_app_with(env: TestEnv) -> TestApp {
    spawn_app_configured(env, |_, _| {}).await
}

/// Like [`spawn_app`], with the settings changed by `configure` once the listener's
/// address (careloop's public URL) is known.
pub async fn spawn_app_configured(
    env: TestEnv,
    configure: impl FnOnce(&mut careloop_config::Settings, std::net::SocketAddr),
) -> TestApp {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    spawn_app_at(listener, env, configure).await
}

/// Like [`spawn_app_configured`], serving on a listener the test bound (when
/// something must know careloop's address before careloop starts).
pub async fn spawn_app_at(
    listener: tokio::net::TcpListener,
    mut env: TestEnv,
    configure: impl FnOnce(&mut careloop_config::Settings, std::net::SocketAddr),
) -> TestApp {
    let addr = listener.local_addr().unwrap();
    // Tokens careloop issues name this URL, and client assertions must be for it.
    env.settings.identity.public_url = format!("http://{addr}");
    env.settings.identity.jwks_url = format!("http://{addr}/.well-known/jwks.json");
    configure(&mut env.settings, addr);
    let app = Application::build(&env.settings).await.expect("app builds");
    // The demo facilities (st-marys, mercy) are registered, as in `careloop dev`.
    app.intake()
        .identity()
        .seed_demo(&[])
        .await
        .expect("demo facilities register");
    let intake = app.intake();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async move {
        let _ = stopped.await;
    }));
    // HL7 senders are looked up in the registry's read model: wait for it.
    demo_facilities_registered(&env.settings.database_url).await;
    TestApp {
        base: format!("http://{addr}"),
        http: reqwest::Client::new(),
        secret: env.settings.jwt_secret.clone(),
        stop: Some(stop),
        server: Some(server),
        intake,
        env,
    }
}

impl TestApp {
    pub fn token(&self, role: &str, facility: Option<&str>, peer_id: Option<&str>) -> String {
        let auth = careloop_web_auth(&self.secret);
        auth.issue(
            role.parse().unwrap(),
            facility.map(String::from),
            peer_id.map(String::from),
            chrono_hours(1),
        )
    }

    pub async fn post(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, token, body).await
    }

    pub async fn put(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        self.send(reqwest::Method::PUT, path, token, body).await
    }

    pub async fn patch(&self, path: &str, token: &str, body: &Value) -> (u16, Value) {
        self.send(reqwest::Method::PATCH, path, token, body).await
    }

    /// A JSON request with a bearer token; the status and the JSON answer (or null).
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: &Value,
    ) -> (u16, Value) {
        let res = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    /// `path` as CSV (`Accept: text/csv`), which must answer 200 with a CSV type.
    pub async fn get_csv(&self, path: &str, token: &str) -> String {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .header("accept", "text/csv")
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200, "{path}");
        let kind = res.headers()["content-type"].to_str().unwrap().to_string();
        assert!(kind.starts_with("text/csv"), "{path}: {kind}");
        res.text().await.unwrap()
    }

    /// The Prometheus text on `/metrics`.
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(format!("{}/metrics", self.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let res = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        (status, res.json().await.unwrap_or(Value::Null))
    }

    pub async fn shutdown(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.server.take().unwrap().await.unwrap().unwrap();
    }

    /// Kills careloop mid-flight (its tasks are dropped where they stand, nothing is
    /// drained), then starts a new one on the same database and namespace.
    pub async fn kill_and_restart(mut self) -> TestApp {
        let server = self.server.take().unwrap();
        server.abort();
        let _ = server.await;
        let placeholder = placeholder_env(&self.env);
        let env = std::mem::replace(&mut self.env, placeholder);
        std::mem::forget(self);
        spawn_app_with(env).await
    }
}

/// A stand-in that owns nothing (its drop removes no database), for moving a
/// TestApp's environment out of it.
fn placeholder_env(env: &TestEnv) -> TestEnv {
    TestEnv {
        database: String::new(),
        namespace: String::new(),
        settings: env.settings.clone(),
    }
}

pub fn careloop_web_auth(secret: &str) -> std::sync::Arc<careloop_web::Authenticator> {
    careloop_web::Authenticator::dev(secret)
}

pub fn chrono_hours(h: i64) -> chrono::Duration {
    chrono::Duration::hours(h)
}

/// An RFC 3339 time as the API writes it.
pub fn at(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A discharge an hour ago, to the second.
pub fn recent_discharge() -> chrono::DateTime<chrono::Utc> {
    let now = chrono::Utc::now() - chrono::Duration::hours(1);
    chrono::DateTime::from_timestamp(now.timestamp(), 0).unwrap()
}

pub fn referral_body(mrn: &str, discharged_at: &str) -> Value {
    json!({
        "facility": "st-marys",
        "person": {
            "identifiers": [{"system": "urn:oid:2.16.840.1.113883.3.999.1", "value": mrn}],
            "name": {"given": "Alex", "family": "Rivera"},
            "birth_date": "1990-04-12",
            "phone": "+1-402-555-0134",
            "language": "en",
            "gender": "female",
            "postcode": "68102",
            "preferences": {"peer_gender": "female", "lived_experience": ["bipolar", "lgbtq"],
                            "contact_modes": ["phone", "in_person"]}
        },
        "discharge": {"discharged_at": discharged_at, "unit": "inpatient-psychiatry",
                      "risk_level": "high"},
        "consent": {"granted_at": "2026-11-20T14:00:00Z", "scope": "peer-support-referral",
                    "recorded_by": "discharge planner"},
        "needs": ["emotional", "informational", "housing"],
        "notes": "Prefers afternoon calls."
    })
}

pub const WAIT: Duration = Duration::from_secs(15);

/// How long a fresh careloop may take to be up (databases, migrations, demo data).
pub const STARTUP: Duration = Duration::from_secs(60);

/// Waits until the demo facilities (st-marys, mercy) are in the registry's read model.
pub async fn demo_facilities_registered(database_url: &str) {
    let pool = sqlx::PgPool::connect(database_url).await.unwrap();
    // Start-up applies every service's migrations: on a 2-core machine busy with the
    // CPU-bound fuzz tests that can take longer than an ordinary wait.
    careloop_test_support::eventually("the demo facilities", STARTUP, || async {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM intake.facilities")
            .fetch_one(&pool)
            .await
            .ok()?;
        (n >= 2).then_some(())
    })
    .await;
    pool.close().await;
}

pub async fn sqlx_pool(app: &TestApp) -> sqlx::PgPool {
    sqlx::PgPool::connect(&app.env.settings.database_url)
        .await
        .unwrap()
}

/// Guarantee 5: `careloop replay` rebuilds rows identical to the live ones, for every
/// read model (or the one named), once each has applied everything committed.
pub async fn replay_rebuilds_live_rows(app: &TestApp, pool: &sqlx::PgPool, only: Option<&str>) {
    let built = careloop_app::Application::build(&app.env.settings)
        .await
        .unwrap();
    for projection in built.projections() {
        if only.is_some_and(|name| name != projection.name()) {
            continue;
        }
        let rows = |table: &'static str| {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, String>(&format!(
                    "SELECT to_jsonb(t)::text AS row FROM {table} t ORDER BY row"
                ))
                .fetch_all(&pool)
                .await
                .unwrap()
            }
        };
        // The live rows once the read model applied everything committed.
        careloop_test_support::eventually("the read model caught up", WAIT, || async {
            let mut conn = pool.acquire().await.ok()?;
            let (pending, _) = projection.backlog(&mut conn).await.ok()?;
            (pending == 0).then_some(())
        })
        .await;
        // A rebuild drops the readers' indexes from its copy, never from the live
        // tables: those keep every index they had.
        let indexes = |table: &'static str| {
            let pool = pool.clone();
            async move {
                sqlx::query_scalar::<_, String>(
                    "SELECT indexdef FROM pg_indexes
                     WHERE schemaname || '.' || tablename = $1 ORDER BY indexdef",
                )
                .bind(table)
                .fetch_all(&pool)
                .await
                .unwrap()
            }
        };
        let mut live = Vec::new();
        let mut live_indexes = Vec::new();
        for table in projection.tables() {
            live.push(rows(table).await);
            live_indexes.push(indexes(table).await);
        }
        assert!(
            live.iter().any(|t| !t.is_empty()),
            "{} has rows to compare",
            projection.name()
        );
        careloop_app::cli::replay(&app.env.settings, projection.name())
            .await
            .unwrap();
        for (table, before) in projection.tables().iter().zip(live) {
            assert_eq!(rows(table).await, before, "replay of {table}");
        }
        for (table, before) in projection.tables().iter().zip(live_indexes) {
            assert_eq!(
                indexes(table).await,
                before,
                "indexes of {table} after its replay"
            );
        }
    }
}
