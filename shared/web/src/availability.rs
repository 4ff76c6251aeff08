//! Answers 503 with `Retry-After` instead of hanging or failing when careloop cannot
//! do the work now: while a process is still starting (its database not reachable or
//! not migrated yet), and when a request runs past its deadline (a dependency that
//! stalls, say a Postgres that stopped answering, would otherwise hold the request as
//! long as the stall lasts).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;

use crate::Problem;
use crate::operation_outcome::refuse;

/// Paths served while starting: probes and metrics say how the start is going.
fn always_served(path: &str) -> bool {
    matches!(path, "/healthz" | "/metrics") || path.starts_with("/readyz")
}

/// Answers 503 until `started` is set (the process's migrations are applied).
pub async fn starting(
    State(started): State<Arc<AtomicBool>>,
    req: Request,
    next: Next,
) -> Response {
    if started.load(Ordering::Acquire) || always_served(req.uri().path()) {
        return next.run(req).await;
    }
    refuse(
        req.uri().path(),
        Problem::unavailable(
            "careloop is starting: its database is not reachable or not migrated yet",
        )
        .retry_after(5),
    )
}

/// Answers 503 when the request is not done within `limit`. Event streams (the
/// console's live updates, `Accept: text/event-stream`) are long by design and exempt.
///
/// The handler is dropped at the deadline: its open transaction rolls back, but an
/// earlier step may have committed, so the answer says the request may or may not
/// have taken effect, and a retry with the same `Idempotency-Key` settles it.
pub async fn deadline(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    let streaming = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("text/event-stream"));
    if streaming {
        return next.run(req).await;
    }
    let path = req.uri().path().to_string();
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => {
            tracing::warn!(
                limit_secs = limit.as_secs_f64(),
                "request past its deadline; answered 503"
            );
            refuse(
                &path,
                Problem::unavailable(format!(
                    "no answer within {} s: a dependency (the database or NATS) is slow; the request may not have taken effect, retry it (with the same Idempotency-Key)",
                    limit.as_secs()
                )),
            )
        }
    }
}
