//! `GET /v1/reports/continuity?as_of=&facility=&from=&to=` and
//! `GET /v1/reports/impact?…`: the measures as JSON, or CSV with `Accept: text/csv`.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use careloop_web::{Authenticated, Needs, Problem, Role, RouteRule};
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::read_model;
use crate::report::{self, Scope};

/// The access rule of each route here (enforced by the access layer).
pub const RULES: &[RouteRule] = &[
    RouteRule::token(
        "GET",
        "/v1/reports/continuity",
        &[Needs::read("MeasureReport")],
    ),
    RouteRule::token("GET", "/v1/reports/impact", &[Needs::read("MeasureReport")]),
];

pub fn routes(pool: PgPool) -> Router {
    Router::new()
        .route("/v1/reports/continuity", get(continuity))
        .route("/v1/reports/impact", get(impact))
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

/// The scope a report asks for: `as_of`, `facility` (a hospital sees its own only),
/// `from` and `to`.
fn scope(principal: &Authenticated, q: &HashMap<String, String>) -> Result<Scope, Problem> {
    principal.require(&[Role::Admin, Role::Coordinator, Role::Hospital])?;
    if let Some(unknown) = q
        .keys()
        .find(|k| !["as_of", "facility", "from", "to"].contains(&k.as_str()))
    {
        return Err(Problem::invalid(unknown.clone(), "unknown parameter"));
    }
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
    Ok(Scope {
        as_of: time(q, "as_of")?.unwrap_or_else(Utc::now),
        facility,
        from: time(q, "from")?,
        to: time(q, "to")?,
    })
}

async fn continuity(
    State(pool): State<PgPool>,
    principal: Authenticated,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, Problem> {
    let scope = scope(&principal, &q)?;
    let rows = read_model::discharges(&pool, &scope)
        .await
        .map_err(Problem::from)?;
    let report = report::compute(&rows, scope.as_of);
    if careloop_web::csv::wanted(&headers) {
        return Ok(careloop_web::csv::response(report::to_csv(&report)));
    }
    Ok(Json(report).into_response())
}

/// `GET /v1/reports/impact?as_of=&facility=&from=&to=`: program impact (JSON, or CSV
/// with `Accept: text/csv`); `from`/`to` bound the index discharges.
async fn impact(
    State(pool): State<PgPool>,
    principal: Authenticated,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, Problem> {
    let scope = scope(&principal, &q)?;
    let report = impact_of(&pool, &scope).await.map_err(Problem::from)?;
    if careloop_web::csv::wanted(&headers) {
        return Ok(careloop_web::csv::response(crate::impact::to_csv(&report)));
    }
    Ok(Json(report).into_response())
}

/// The impact over a scope, from the read model.
pub async fn impact_of(pool: &PgPool, scope: &Scope) -> sqlx::Result<crate::impact::Impact> {
    let index = read_model::index_discharges(pool, scope).await?;
    let people: Vec<String> = index.iter().map(|d| d.person_ref.clone()).collect();
    let stays = read_model::stays(pool, &people, scope.as_of).await?;
    let visits = read_model::visits(pool, &people, scope.as_of).await?;
    Ok(crate::impact::compute(&index, &stays, &visits, scope.as_of))
}
