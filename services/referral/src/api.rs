//! The referral service's HTTP API: reading referrals (status, peer, due dates,
//! timeline), the coordinator queue, and cancelling.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use careloop_backbone::Metadata;
use careloop_backbone::store::{self, Cqrs};
use careloop_web::{ApiJson, CorrelationId, Principal, Problem, Role};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::domain::{Referral, ReferralCommand, Status};

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub cqrs: Arc<Cqrs<Referral>>,
}

pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/v1/referrals", get(list))
        .route("/v1/referrals/{id}", get(show))
        .route("/v1/referrals/{id}/cancel", post(cancel))
        .with_state(state)
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct ReferralRow {
    pub referral_id: String,
    pub person_ref: String,
    pub facility: String,
    pub status: String,
    pub priority: String,
    pub peer_id: Option<String>,
    pub waitlisted: bool,
    pub discharged_at: DateTime<Utc>,
    pub first_contact_due_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct TimelineEntry {
    pub at: DateTime<Utc>,
    pub event: String,
    pub status: String,
    pub actor: Option<String>,
    pub detail: serde_json::Value,
}

#[derive(Serialize)]
struct ReferralView {
    referral_id: String,
    person_ref: String,
    facility: String,
    status: String,
    priority: String,
    assigned_peer_id: Option<String>,
    waitlisted: bool,
    discharged_at: DateTime<Utc>,
    due: Due,
    received_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    timeline: Vec<TimelineEntry>,
}

#[derive(Serialize)]
struct Due {
    first_contact_due_at: DateTime<Utc>,
    overdue: bool,
}

const SELECT: &str = "SELECT referral_id, person_ref, facility, status, priority, peer_id,
    waitlisted, discharged_at, first_contact_due_at, received_at, updated_at
    FROM referral.referrals";

async fn show(
    State(s): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, Problem> {
    let row: Option<ReferralRow> = sqlx::query_as(&format!("{SELECT} WHERE referral_id = $1"))
        .bind(&id)
        .fetch_optional(&s.pool)
        .await
        .map_err(Problem::internal)?;
    let row = row.ok_or_else(|| Problem::not_found(format!("no referral {id}")))?;
    authorize_read(&principal, &row)?;
    let timeline: Vec<TimelineEntry> = sqlx::query_as(
        "SELECT at, event, status, actor, detail FROM referral.referral_timeline
         WHERE referral_id = $1 ORDER BY sequence",
    )
    .bind(&id)
    .fetch_all(&s.pool)
    .await
    .map_err(Problem::internal)?;
    let overdue =
        row.status == Status::Received.as_str() || row.status == Status::Accepted.as_str();
    let view = ReferralView {
        due: Due {
            first_contact_due_at: row.first_contact_due_at,
            overdue: overdue && row.first_contact_due_at < Utc::now(),
        },
        referral_id: row.referral_id,
        person_ref: row.person_ref,
        facility: row.facility,
        status: row.status,
        priority: row.priority,
        assigned_peer_id: row.peer_id,
        waitlisted: row.waitlisted,
        discharged_at: row.discharged_at,
        received_at: row.received_at,
        updated_at: row.updated_at,
        timeline,
    };
    Ok(Json(serde_json::to_value(view).map_err(Problem::internal)?))
}

fn authorize_read(principal: &Principal, row: &ReferralRow) -> Result<(), Problem> {
    let allowed = match principal.role {
        Role::Admin | Role::Coordinator => true,
        Role::Hospital => principal.may_see_facility(&row.facility),
        Role::Peer => principal.peer_id.is_some() && principal.peer_id == row.peer_id,
    };
    if allowed {
        Ok(())
    } else {
        Err(Problem::forbidden(
            "this referral belongs to another facility or peer",
        ))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    facility: Option<String>,
    limit: Option<i64>,
}

async fn list(
    State(s): State<AppState>,
    principal: Principal,
    Query(q): Query<ListQuery>,
) -> Result<Json<serde_json::Value>, Problem> {
    principal.require(&[Role::Admin, Role::Coordinator, Role::Hospital])?;
    if let Some(st) = &q.status
        && Status::parse(st).is_none()
    {
        return Err(Problem::invalid("status", format!("unknown status {st:?}")));
    }
    // A hospital only ever sees its own facility, whatever it asks for.
    let facility = match principal.role {
        Role::Hospital => principal.facility.clone(),
        _ => q.facility.clone(),
    };
    let limit = q.limit.unwrap_or(100).clamp(1, 500);
    let rows: Vec<ReferralRow> = sqlx::query_as(&format!(
        "{SELECT} WHERE ($1::text IS NULL OR status = $1) AND ($2::text IS NULL OR facility = $2)
         ORDER BY updated_at DESC, referral_id LIMIT $3"
    ))
    .bind(&q.status)
    .bind(&facility)
    .bind(limit)
    .fetch_all(&s.pool)
    .await
    .map_err(Problem::internal)?;
    Ok(Json(serde_json::json!({ "items": rows })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReasonBody {
    reason: String,
}

async fn cancel(
    State(s): State<AppState>,
    principal: Principal,
    CorrelationId(correlation): CorrelationId,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ReasonBody>,
) -> Result<Json<serde_json::Value>, Problem> {
    principal.require(&[Role::Coordinator, Role::Hospital, Role::Admin])?;
    if body.reason.trim().is_empty() {
        return Err(Problem::invalid("reason", "reason must not be empty"));
    }
    if principal.role == Role::Hospital {
        let facility: Option<String> =
            sqlx::query_scalar("SELECT facility FROM referral.referrals WHERE referral_id = $1")
                .bind(&id)
                .fetch_optional(&s.pool)
                .await
                .map_err(Problem::internal)?;
        if let Some(f) = facility
            && !principal.may_see_facility(&f)
        {
            return Err(Problem::forbidden(
                "this referral belongs to another facility",
            ));
        }
    }
    let meta = Metadata::new(correlation).actor(principal.role.as_str());
    store::execute(
        &s.cqrs,
        &id,
        ReferralCommand::Cancel {
            reason: body.reason,
        },
        &meta,
    )
    .await
    .map_err(store::to_problem)?;
    Ok(Json(
        serde_json::json!({"referral_id": id, "status": "cancelled"}),
    ))
}
