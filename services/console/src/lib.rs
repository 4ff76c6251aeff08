//! The care console: the web application coordinators, peer specialists,
//! administrators and hospital liaisons use every day, served by careloop itself.
//!
//! A single-page application (`assets/`, compiled into the binary, no CDN) that signs
//! in through the session routes of `careloop-identity`, gets a short-lived access
//! token from its session, and then works against the same API and the same access
//! rules as every other client. This crate serves the page and its assets (with a
//! Content-Security-Policy that allows no inline script) and the live updates: a
//! server-sent event stream, for signed-in people only, of what the read models
//! changed (coordinators and administrators see which records; peers and liaisons
//! only which list to refresh, so nobody learns of another's records).

pub mod assets;
pub mod changes;

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use careloop_access::Role;
use careloop_identity::sessions::Sessions;
use careloop_web::{Problem, RouteRule};
use futures::Stream;

pub use changes::Changes;

/// How often an open change stream checks that its session is still alive.
const SESSION_RECHECK: Duration = Duration::from_secs(30);

/// The console's security policy: only careloop's own scripts, styles and fonts.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// The access rules: the page and assets are public; the stream checks the session.
pub const RULES: &[RouteRule] = &[
    RouteRule::open("GET", "/"),
    RouteRule::open("GET", "/assets/{*path}"),
    RouteRule::open("GET", "/session/stream"),
];

#[derive(Clone)]
pub struct Console {
    pub sessions: Sessions,
    pub changes: Changes,
}

pub fn routes(console: Console) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/assets/{*path}", get(asset))
        .route("/session/stream", get(stream))
        .with_state(console)
}

fn serve(asset: &'static assets::Asset, headers: &HeaderMap, cache: &'static str) -> Response {
    let gzip = headers
        .get(header::ACCEPT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("gzip"));
    let body = if gzip { asset.gzip } else { asset.body };
    let mut res = (StatusCode::OK, body).into_response();
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    if gzip {
        h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    secure(h);
    res
}

/// The headers every console response carries.
fn secure(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

async fn index(headers: HeaderMap) -> Response {
    match assets::find("index.html") {
        Some(a) => serve(a, &headers, "no-store"),
        None => Problem::not_found("the console is not built into this binary").into_response(),
    }
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    match assets::find(&path) {
        // Revalidated on each load: the files change with each build of careloop.
        Some(a) => serve(a, &headers, "no-cache"),
        None => Problem::not_found("no such asset").into_response(),
    }
}

/// `GET /session/stream`: server-sent `change` events for the signed-in person.
async fn stream(
    State(c): State<Console>,
    headers: HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, Problem> {
    let Some(session) = c.sessions.current(&headers).await? else {
        return Err(Problem::unauthorized("not signed in, or the session ended"));
    };
    let sees_ids = matches!(
        session.role.parse::<Role>(),
        Ok(Role::Coordinator | Role::Admin)
    );
    let rx = c.changes.subscribe();
    // The session is checked again now and then: the stream ends with it (idle,
    // signed out), and the page's reconnection is refused.
    let mut recheck = tokio::time::interval(SESSION_RECHECK);
    recheck.tick().await;
    let state = (rx, recheck, c.sessions.clone(), headers);
    let events = futures::stream::unfold(state, move |mut state| async move {
        let (rx, recheck, sessions, headers) = &mut state;
        let received = loop {
            tokio::select! {
                r = rx.recv() => break r,
                _ = recheck.tick() => {
                    if !matches!(sessions.current(headers).await, Ok(Some(_))) {
                        return None;
                    }
                }
            }
        };
        let payload = match received {
            Ok(p) => p,
            // Too many changes at once: the page refreshes everything.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                serde_json::json!({"read_model": null, "ids": null}).to_string()
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
        };
        let data = if sees_ids {
            payload
        } else {
            let v: serde_json::Value = serde_json::from_str(&payload).unwrap_or_default();
            serde_json::json!({"read_model": v.get("read_model"), "ids": null}).to_string()
        };
        Some((Ok(Event::default().event("change").data(data)), state))
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
