//! `/healthz` (the process is up), `/readyz` (its dependencies answer) and `/metrics`
//! (Prometheus text format). These three need no token.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// One dependency `/readyz` asks about, e.g. Postgres or NATS.
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

/// Health and metrics are open: probes and Prometheus carry no token.
pub const RULES: &[crate::RouteRule] = &[
    crate::RouteRule::open("GET", "/healthz"),
    crate::RouteRule::open("GET", "/readyz"),
    crate::RouteRule::open("GET", "/metrics"),
];

pub fn router(checks: Vec<ReadinessCheck>) -> Router {
    let checks = Arc::new(checks);
    Router::new()
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route(
            "/readyz",
            get(move || {
                let checks = checks.clone();
                async move { readiness(&checks).await }
            }),
        )
        .route("/metrics", get(metrics))
}

async fn readiness(checks: &[ReadinessCheck]) -> axum::response::Response {
    let mut body = serde_json::Map::new();
    let mut ready = true;
    for c in checks {
        let outcome = tokio_timeout((c.check)()).await;
        ready &= outcome.is_ok();
        body.insert(
            c.name.to_string(),
            match outcome {
                Ok(()) => "ok".into(),
                Err(e) => e.into(),
            },
        );
    }
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(serde_json::Value::Object(body))).into_response()
}

async fn tokio_timeout(f: CheckFuture) -> Result<(), String> {
    // A dependency that hangs is as unready as one that refuses.
    match tokio::time::timeout(std::time::Duration::from_secs(2), f).await {
        Ok(r) => r,
        Err(_) => Err("timed out after 2s".into()),
    }
}

async fn metrics() -> impl IntoResponse {
    let mut out = String::new();
    let encoder = prometheus::TextEncoder::new();
    if let Err(e) = encoder.encode_utf8(&prometheus::gather(), &mut out) {
        return (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response();
    }
    ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], out).into_response()
}
