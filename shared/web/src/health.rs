//! `/healthz` (the process is up), readiness per capability, and `/metrics`
//! (Prometheus text format). These need no token.
//!
//! Readiness is split by what a dependency serves, so a probe never cuts a capability
//! that still works: `/readyz` is "can take commands and answer reads" (Postgres),
//! the one a load balancer probes; `/readyz/publishing` is "can publish and consume
//! events" (NATS JetStream), for dashboards and alerts: intake keeps taking referrals
//! while NATS is away. Each is also the gauge `careloop_ready{capability}`.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{IntGaugeVec, Opts, register_int_gauge_vec};

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// A dependency hanging is as unready as one refusing: each check gets this long.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// One dependency a capability needs, e.g. Postgres or NATS.
#[derive(Clone)]
pub struct ReadinessCheck {
    pub name: &'static str,
    pub check: Arc<dyn Fn() -> CheckFuture + Send + Sync>,
}

impl ReadinessCheck {
    pub fn new<F, Fut>(name: &'static str, f: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        ReadinessCheck {
            name,
            check: Arc::new(move || Box::pin(f())),
        }
    }
}

/// Something the process can do when every one of its checks passes.
#[derive(Clone)]
pub struct Capability {
    /// `commands` or `publishing` (the metric's label).
    pub name: &'static str,
    /// The route answering for it.
    pub path: &'static str,
    pub checks: Vec<ReadinessCheck>,
}

/// 1 when the process can serve a capability now, 0 when not.
pub static READY: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        Opts::new(
            "careloop_ready",
            "Whether the process can serve a capability now (commands, publishing)"
        ),
        &["capability"]
    )
    .expect("metric registers once")
});

/// Health and metrics are open: probes and Prometheus carry no token.
pub const RULES: &[crate::RouteRule] = &[
    crate::RouteRule::open("GET", "/healthz"),
    crate::RouteRule::open("GET", "/readyz"),
    crate::RouteRule::open("GET", "/readyz/publishing"),
    crate::RouteRule::open("GET", "/metrics"),
];

pub fn router(capabilities: Vec<Capability>) -> Router {
    let mut router = Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route("/metrics", get(metrics));
    for capability in capabilities {
        let path = capability.path;
        let capability = Arc::new(capability);
        router = router.route(
            path,
            get(move || {
                let capability = capability.clone();
                async move { readiness(&capability).await }
            }),
        );
    }
    router
}

/// Runs every check of `capability` (each within [`CHECK_TIMEOUT`]), sets its gauge
/// and says what failed.
pub async fn evaluate(
    capability: &Capability,
) -> (bool, serde_json::Map<String, serde_json::Value>) {
    let mut body = serde_json::Map::new();
    body.insert("capability".into(), capability.name.into());
    let mut ready = true;
    for c in &capability.checks {
        let outcome = match tokio::time::timeout(CHECK_TIMEOUT, (c.check)()).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {}s", CHECK_TIMEOUT.as_secs())),
        };
        ready &= outcome.is_ok();
        body.insert(
            c.name.to_string(),
            match outcome {
                Ok(()) => "ok".into(),
                Err(e) => e.into(),
            },
        );
    }
    READY
        .with_label_values(&[capability.name])
        .set(i64::from(ready));
    (ready, body)
}

async fn readiness(capability: &Capability) -> axum::response::Response {
    let (ready, body) = evaluate(capability).await;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(serde_json::Value::Object(body))).into_response()
}

async fn metrics() -> impl IntoResponse {
    let mut out = String::new();
    let encoder = prometheus::TextEncoder::new();
    if let Err(e) = encoder.encode_utf8(&prometheus::gather(), &mut out) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], out).into_response()
}
