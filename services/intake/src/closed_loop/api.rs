//! Configuring a facility's webhook and reading its delivery log.

use axum::extract::{Path, State};
use axum::routing::{get, put};
use axum::{Json, Router};
use careloop_web::{ApiJson, Authenticated, Needs, Principal, Problem, Role, RouteRule};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

/// The access rule of each route here (enforced by the access layer).
pub const RULES: &[RouteRule] = &[
    RouteRule::token(
        "PUT",
        "/v1/facilities/{facility}/webhook",
        &[Needs::write("Subscription")],
    ),
    RouteRule::token(
        "GET",
        "/v1/facilities/{facility}/webhook/deliveries",
        &[Needs::read("Subscription")],
    ),
];

#[derive(Clone)]
pub struct WebhookState {
    pub pool: PgPool,
    /// Hosts allowed although not public (see [`super::destination`]).
    pub allowed_hosts: Vec<String>,
}

pub fn routes(state: WebhookState) -> Router {
    Router::new()
        .route("/v1/facilities/{facility}/webhook", put(configure))
        .route(
            "/v1/facilities/{facility}/webhook/deliveries",
            get(deliveries),
        )
        .with_state(state)
}

/// Admins for any facility; a hospital for its own.
fn authorize(principal: &Principal, facility: &str) -> Result<(), Problem> {
    principal.require(&[Role::Admin, Role::Hospital])?;
    if principal.may_see_facility(facility) {
        Ok(())
    } else {
        Err(Problem::forbidden("another facility's webhook"))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WebhookRequest {
    url: String,
    secret: String,
}

async fn configure(
    State(WebhookState {
        pool,
        allowed_hosts,
    }): State<WebhookState>,
    principal: Authenticated,
    Path(facility): Path<String>,
    ApiJson(body): ApiJson<WebhookRequest>,
) -> Result<Json<serde_json::Value>, Problem> {
    authorize(&principal, &facility)?;
    let url = body.url.trim();
    if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() > 2000 {
        return Err(Problem::invalid("url", "url must be an http(s) URL"));
    }
    super::destination::resolve(url, &allowed_hosts)
        .await
        .map_err(|why| Problem::invalid("url", why))?;
    if body.secret.len() < 16 {
        return Err(Problem::invalid(
            "secret",
            "secret must be at least 16 characters",
        ));
    }
    sqlx::query(
        "INSERT INTO intake.facility_webhooks (facility, url, secret) VALUES ($1, $2, $3)
         ON CONFLICT (facility) DO UPDATE SET url = $2, secret = $3, updated_at = now()",
    )
    .bind(&facility)
    .bind(url)
    .bind(&body.secret)
    .execute(&pool)
    .await
    .map_err(Problem::from)?;
    Ok(Json(serde_json::json!({"facility": facility, "url": url})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveriesQuery {
    state: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

#[derive(Serialize, sqlx::FromRow)]
struct DeliveryRow {
    id: i64,
    event_id: String,
    referral_id: String,
    status: String,
    state: String,
    attempts: i32,
    next_attempt_at: DateTime<Utc>,
    delivered_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    attempt_log: serde_json::Value,
}

async fn deliveries(
    State(WebhookState { pool, .. }): State<WebhookState>,
    principal: Authenticated,
    Path(facility): Path<String>,
    careloop_web::ApiQuery(q): careloop_web::ApiQuery<DeliveriesQuery>,
) -> Result<Json<serde_json::Value>, Problem> {
    authorize(&principal, &facility)?;
    let limit = careloop_web::paging::limit(q.limit, 100)?;
    let before: Option<i64> = match q.cursor.as_deref() {
        None => None,
        Some(c) => Some(
            careloop_web::paging::parse_cursor(c, 1)?[0]
                .parse()
                .map_err(|_| Problem::invalid("cursor", "not a cursor this API returned"))?,
        ),
    };
    let rows: Vec<DeliveryRow> = sqlx::query_as(
        "SELECT d.id, d.event_id, d.referral_id, d.status, d.state, d.attempts,
                d.next_attempt_at, d.delivered_at, d.created_at,
                COALESCE((SELECT jsonb_agg(jsonb_build_object('attempt', a.attempt, 'at', a.at,
                            'status_code', a.status_code, 'error', a.error,
                            'duration_ms', a.duration_ms) ORDER BY a.attempt)
                          FROM intake.webhook_attempts a WHERE a.delivery_id = d.id), '[]')
                    AS attempt_log
         FROM intake.webhook_deliveries d
         WHERE d.facility = $1 AND ($2::text IS NULL OR d.state = $2)
           AND ($4::bigint IS NULL OR d.id < $4)
         ORDER BY d.id DESC LIMIT $3",
    )
    .bind(&facility)
    .bind(&q.state)
    .bind(limit + 1)
    .bind(before)
    .fetch_all(&pool)
    .await
    .map_err(Problem::from)?;
    // Newest first, each page older than the one before.
    let (rows, next) = careloop_web::paging::page(rows, limit, |r| vec![r.id.to_string()]);
    Ok(Json(careloop_web::paging::json(&rows, next)))
}
