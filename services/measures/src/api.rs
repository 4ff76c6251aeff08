//! `GET /v1/reports/continuity?as_of=&facility=&from=&to=`: the measures as JSON, or
//! CSV with `Accept: text/csv`.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use careloop_web::{Authenticated, Needs, Problem, Role, RouteRule};
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::read_model;
use crate::report::{self, Scope};

/// The access rule of each route here (enforced by the access layer).
pub const RULES: &[RouteRule] = &[RouteRule::token(
    "GET",
    "/v1/reports/continuity",
    &[Needs::read("MeasureReport")],
)];

pub fn routes(pool: PgPool) -> Router {
    Router::new()
        .route("/v1/reports/continuity", get(continuity))
        .with_state(pool)
}

fn time(q: &HashMap<String, String>, field: &str) -> Result<Option<DateTime<Utc>>, Problem> {
    q.get(field)
        .map(|v| {
            DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|_| Problem::invalid(field, format!("{field} must be an RFC 3339 time")))
        })
        .transpose()
}

async fn continuity(
    State(pool): State<PgPool>,
    principal: Authenticated,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, Problem> {
    principal.require(&[Role::Admin, Role::Coordinator, Role::Hospital])?;
    if let Some(unknown) = q
        .keys()
        .find(|k| !["as_of", "facility", "from", "to"].contains(&k.as_str()))
    {
        return Err(Problem::invalid(unknown.clone(), "unknown parameter"));
    }
    let as_of = time(&q, "as_of")?.unwrap_or_else(Utc::now);
    // A hospital sees its own facility only.
    if let Some(f) = q.get("facility")
        && !principal.may_see_facility(f)
    {
        return Err(Problem::forbidden(
            "a hospital sees only its own facility's measures",
        ));
    }
    let facility = match principal.role {
        Role::Hospital => principal.facility.clone(),
        _ => q.get("facility").cloned(),
    };
    let scope = Scope {
        as_of,
        facility,
        from: time(&q, "from")?,
        to: time(&q, "to")?,
    };
    let rows = read_model::discharges(&pool, &scope)
        .await
        .map_err(Problem::from)?;
    let report = report::compute(&rows, as_of);
    let wants_csv = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/csv"));
    if wants_csv {
        return Ok((
            [(header::CONTENT_TYPE, "text/csv; charset=utf-8")],
            report::to_csv(&report),
        )
            .into_response());
    }
    Ok(Json(report).into_response())
}
