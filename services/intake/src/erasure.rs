//! Erasure and legal holds, for administrators.
//!
//! - `POST /v1/persons/{person_ref}/erase` `{"reason": …}`: the person's data key is
//!   destroyed (crypto-shredding), their identifiers forgotten, PersonErased emitted;
//!   the other services cancel what is open for them. Recorded in the audit log
//!   first, with the reason (which must not itself carry PHI).
//! - `PUT` / `DELETE /v1/persons/{person_ref}/legal-hold`: a person on a hold is
//!   never erased by retention, and an erasure request is refused until it is lifted.
//! - `GET /v1/retention/report[?period=7y][&as_of=…]`: the dry run of retention.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use careloop_backbone::Metadata;
use careloop_config::RetentionSettings;
use careloop_identity::audit::{Audit, ClientAddress};
use careloop_web::{ApiJson, Authenticated, CorrelationId, Needs, Problem, Role, RouteRule};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::PgPool;

use crate::domain::ErasureCause;
use crate::reception::Reception;
use crate::retention;

#[derive(Clone)]
pub struct ErasureState {
    pub pool: PgPool,
    pub reception: Reception,
    pub retention: RetentionSettings,
}

/// The access rule of each route here (enforced by the access layer).
pub const RULES: &[RouteRule] = &[
    RouteRule::token(
        "POST",
        "/v1/persons/{person_ref}/erase",
        &[Needs::write("Patient")],
    ),
    RouteRule::token(
        "PUT",
        "/v1/persons/{person_ref}/legal-hold",
        &[Needs::write("Patient")],
    ),
    RouteRule::token(
        "DELETE",
        "/v1/persons/{person_ref}/legal-hold",
        &[Needs::write("Patient")],
    ),
    RouteRule::token("GET", "/v1/retention/report", &[Needs::read("Patient")]),
];

pub fn routes(state: ErasureState) -> Router {
    Router::new()
        .route("/v1/persons/{person_ref}/erase", post(erase))
        .route(
            "/v1/persons/{person_ref}/legal-hold",
            put(place_hold).delete(lift_hold),
        )
        .route("/v1/retention/report", get(report))
        .with_state(state)
}

/// The longest reason kept (an erasure's, a hold's).
const MAX_REASON: usize = 500;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Reason {
    reason: String,
}

impl Reason {
    fn checked(self) -> Result<String, Problem> {
        let reason = self.reason.trim().to_string();
        if reason.is_empty() {
            return Err(Problem::invalid("reason", "give the reason (no PHI)"));
        }
        if reason.chars().count() > MAX_REASON {
            return Err(Problem::invalid(
                "reason",
                format!("at most {MAX_REASON} characters"),
            ));
        }
        Ok(reason)
    }
}

fn person_uuid(person_ref: &str) -> Result<uuid::Uuid, Problem> {
    uuid::Uuid::parse_str(person_ref)
        .map_err(|_| Problem::not_found(format!("no person {person_ref}")))
}

async fn hold_of(pool: &PgPool, person: uuid::Uuid) -> Result<Option<String>, Problem> {
    Ok(
        sqlx::query_scalar("SELECT reason FROM intake.legal_holds WHERE person_ref = $1")
            .bind(person)
            .fetch_optional(pool)
            .await?,
    )
}

async fn erase(
    State(s): State<ErasureState>,
    principal: Authenticated,
    address: ClientAddress,
    CorrelationId(correlation): CorrelationId,
    Path(person_ref): Path<String>,
    ApiJson(body): ApiJson<Reason>,
) -> Result<Json<serde_json::Value>, Problem> {
    principal.require(&[Role::Admin])?;
    let reason = body.checked()?;
    let uuid = person_uuid(&person_ref)?;
    if !s.reception.is_known(&person_ref).await? {
        return Err(Problem::not_found(format!("no person {person_ref}")));
    }
    if let Some(hold) = hold_of(&s.pool, uuid).await? {
        return Err(Problem::conflict(format!(
            "this person is under a legal hold ({hold}); lift it first"
        )));
    }
    // Recorded before anything is destroyed: an erasure that cannot be audited is not made.
    let mut entry = Audit::by(&principal, &address, "erase", "person");
    entry.person_ref = Some(person_ref.clone());
    entry.detail = Some(reason);
    s.reception.audit.record(entry).await?;
    let meta = Metadata::new(correlation).actor(principal.actor());
    let Some(erased_at) = s
        .reception
        .erase(&person_ref, ErasureCause::Request, &meta)
        .await?
    else {
        return Err(Problem::not_found(format!("no person {person_ref}")));
    };
    Ok(Json(serde_json::json!({
        "person_ref": person_ref,
        "status": "erased",
        "erased_at": erased_at,
    })))
}

async fn place_hold(
    State(s): State<ErasureState>,
    principal: Authenticated,
    address: ClientAddress,
    Path(person_ref): Path<String>,
    ApiJson(body): ApiJson<Reason>,
) -> Result<Json<serde_json::Value>, Problem> {
    principal.require(&[Role::Admin])?;
    let reason = body.checked()?;
    let uuid = person_uuid(&person_ref)?;
    if !s.reception.is_known(&person_ref).await? {
        return Err(Problem::not_found(format!("no person {person_ref}")));
    }
    let mut entry = Audit::by(&principal, &address, "update", "legal-hold");
    entry.person_ref = Some(person_ref.clone());
    entry.detail = Some(reason.clone());
    s.reception.audit.record(entry).await?;
    sqlx::query(
        "INSERT INTO intake.legal_holds (person_ref, reason, placed_by) VALUES ($1, $2, $3)
         ON CONFLICT (person_ref) DO UPDATE SET reason = $2, placed_by = $3, placed_at = now()",
    )
    .bind(uuid)
    .bind(&reason)
    .bind(&principal.sub)
    .execute(&s.pool)
    .await?;
    Ok(Json(serde_json::json!({
        "person_ref": person_ref, "legal_hold": reason,
    })))
}

async fn lift_hold(
    State(s): State<ErasureState>,
    principal: Authenticated,
    address: ClientAddress,
    Path(person_ref): Path<String>,
) -> Result<StatusCode, Problem> {
    principal.require(&[Role::Admin])?;
    let uuid = person_uuid(&person_ref)?;
    let mut entry = Audit::by(&principal, &address, "delete", "legal-hold");
    entry.person_ref = Some(person_ref.clone());
    s.reception.audit.record(entry).await?;
    sqlx::query("DELETE FROM intake.legal_holds WHERE person_ref = $1")
        .bind(uuid)
        .execute(&s.pool)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportQuery {
    /// Another period than the configured one (to see its effect before setting it).
    period: Option<String>,
    /// Another moment than now (to see who will be due then).
    as_of: Option<DateTime<Utc>>,
}

/// The most people one report lists in each group.
const REPORT_LIMIT: i64 = 1000;

async fn report(
    State(s): State<ErasureState>,
    principal: Authenticated,
    Query(q): Query<ReportQuery>,
) -> Result<Json<serde_json::Value>, Problem> {
    principal.require(&[Role::Admin])?;
    let period = match q.period.as_deref() {
        Some(p) => Some(
            careloop_config::parse_duration(p)
                .filter(|d| !d.is_zero())
                .ok_or_else(|| Problem::invalid("period", "a period such as 7y, 2555d or 12h"))?,
        ),
        None => s.retention.period,
    };
    let as_of = q.as_of.unwrap_or_else(Utc::now);
    let Some(period) = period else {
        return Ok(Json(serde_json::json!({
            "retention": "off",
            "as_of": as_of,
            "would_erase": [],
            "held": [],
            "detail": "retention is off (CARELOOP_RETENTION); give ?period= to see what a period would do",
        })));
    };
    let cutoff = retention::cutoff(as_of, period);
    let would_erase = retention::past(&s.pool, cutoff, false, REPORT_LIMIT).await?;
    let held = retention::past(&s.pool, cutoff, true, REPORT_LIMIT).await?;
    Ok(Json(serde_json::json!({
        "retention": q.period.unwrap_or_else(|| format!("{}s", period.as_secs())),
        "as_of": as_of,
        "last_activity_before": cutoff,
        "would_erase": would_erase,
        "held": held,
    })))
}
