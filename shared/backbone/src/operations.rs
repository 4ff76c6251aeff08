//! `GET /v1/operations/backbone/{service}`: an administrator's view of one service's
//! backbone health, the same numbers `/metrics` exports, read from the service's own
//! tables (so it is right whichever instance answers): committed events not yet
//! published, each read model's lag, and the dead letters (counted, and the latest,
//! without their message bytes, which may hold PHI; `?cursor=&limit=` pages them).

use std::sync::Arc;

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use careloop_access::{Needs, Role};
use careloop_web::{Authenticated, Problem, RouteRule};
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;

use crate::outbox;
use crate::projection::ProjectionRunner;

#[derive(Clone)]
pub struct Operations {
    pub service: &'static str,
    pub schema: &'static str,
    pub pool: PgPool,
    pub projections: Arc<Vec<ProjectionRunner>>,
    /// The event types the relay publishes (None: the service publishes nothing).
    pub published: Option<Vec<String>>,
}

pub const PATH: &str = "/v1/operations/backbone/{service}";

/// The access rule of the route (one per process, for the services it hosts).
pub const RULE: RouteRule = RouteRule::token("GET", PATH, &[Needs::read("Operations")]);

/// The route, answering for each service the process hosts.
pub fn routes(services: Vec<Operations>) -> Router {
    let by_name: HashMap<&'static str, Operations> =
        services.into_iter().map(|o| (o.service, o)).collect();
    Router::new()
        .route(PATH, get(health))
        .with_state(Arc::new(by_name))
}

#[derive(Serialize)]
struct ProjectionHealth {
    name: &'static str,
    pending: i64,
    lag_seconds: f64,
}

#[derive(Serialize, sqlx::FromRow)]
struct DeadLetter {
    id: i64,
    consumer: String,
    event_type: Option<String>,
    aggregate_type: Option<String>,
    aggregate_id: Option<String>,
    error: String,
    deliveries: i64,
    dead_at: DateTime<Utc>,
}

/// `?cursor=&limit=` page the dead letters (newest first, 20 by default).
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DeadLetterPage {
    cursor: Option<String>,
    limit: Option<i64>,
}

async fn health(
    State(services): State<Arc<HashMap<&'static str, Operations>>>,
    principal: Authenticated,
    Path(service): Path<String>,
    careloop_web::ApiQuery(page): careloop_web::ApiQuery<DeadLetterPage>,
) -> Result<Json<serde_json::Value>, Problem> {
    principal.require(&[Role::Admin])?;
    let limit = careloop_web::paging::limit(page.limit, 20)?;
    let before: Option<i64> = match page.cursor.as_deref() {
        None => None,
        Some(c) => Some(
            careloop_web::paging::parse_cursor(c, 1)?[0]
                .parse()
                .map_err(|_| Problem::invalid("cursor", "not a cursor this API returned"))?,
        ),
    };
    let ops = services
        .get(service.as_str())
        .ok_or_else(|| Problem::not_found(format!("no service {service} here")))?;
    let unavailable = |e: sqlx::Error| {
        tracing::warn!(error = %e, "backbone health unavailable");
        Problem::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "the database cannot be read now; retry",
        )
    };
    let mut conn = ops.pool.acquire().await.map_err(unavailable)?;
    let outbox = match &ops.published {
        Some(types) => {
            let (n, oldest) = outbox::pending(&mut conn, ops.schema, "relay", Some(types))
                .await
                .map_err(unavailable)?;
            serde_json::json!({"pending": n, "oldest_pending_at": oldest})
        }
        None => serde_json::json!({"pending": 0, "oldest_pending_at": null}),
    };
    let mut projections = Vec::new();
    for p in ops.projections.iter() {
        let (pending, oldest) = p.backlog(&mut conn).await.map_err(unavailable)?;
        projections.push(ProjectionHealth {
            name: p.name(),
            pending,
            lag_seconds: oldest
                .map(|t| (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
                .unwrap_or(0.0),
        });
    }
    let dead: i64 =
        sqlx::query_scalar(&format!("SELECT count(*) FROM {}.dead_letters", ops.schema))
            .fetch_one(&mut *conn)
            .await
            .map_err(unavailable)?;
    let latest: Vec<DeadLetter> = sqlx::query_as(&format!(
        "SELECT id, consumer, event_type, aggregate_type, aggregate_id, error, deliveries, dead_at
         FROM {}.dead_letters WHERE $1::bigint IS NULL OR id < $1 ORDER BY id DESC LIMIT $2",
        ops.schema
    ))
    .bind(before)
    .bind(limit + 1)
    .fetch_all(&mut *conn)
    .await
    .map_err(unavailable)?;
    let (latest, next_cursor) =
        careloop_web::paging::page(latest, limit, |d| vec![d.id.to_string()]);
    Ok(Json(serde_json::json!({
        "service": ops.service,
        "outbox": outbox,
        "projections": projections,
        "dead_letters": {"count": dead, "latest": latest, "next_cursor": next_cursor},
    })))
}
