//! The follow-up service's HTTP API: recording contacts and the peer worklist.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use careloop_backbone::Metadata;
use careloop_backbone::store::{self, Cqrs};
use careloop_web::{ApiJson, CorrelationId, Principal, Problem, Role};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::domain::{Channel, Contact, FollowUpCommand, FollowUpPlan, Outcome, SupportType};

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub cqrs: Arc<Cqrs<FollowUpPlan>>,
}

pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/v1/referrals/{id}/contacts", post(record_contact))
        .route("/v1/followups", get(worklist))
        .with_state(state)
}

/// `POST /v1/referrals/{id}/contacts`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContactRequest {
    occurred_at: DateTime<Utc>,
    channel: Channel,
    outcome: Outcome,
    #[serde(default)]
    support_types: Vec<SupportType>,
    duration_minutes: Option<u32>,
    notes: Option<String>,
}

async fn record_contact(
    State(s): State<AppState>,
    principal: Principal,
    CorrelationId(correlation): CorrelationId,
    Path(referral_id): Path<String>,
    ApiJson(body): ApiJson<ContactRequest>,
) -> Result<(StatusCode, Json<serde_json::Value>), Problem> {
    principal.require(&[Role::Peer, Role::Coordinator])?;
    if body.duration_minutes.is_some_and(|d| d > 24 * 60) {
        return Err(Problem::invalid("duration_minutes", "must be at most 1440"));
    }
    let by_peer = match principal.role {
        Role::Peer => Some(
            principal
                .peer_id
                .clone()
                .ok_or_else(|| Problem::forbidden("a peer token needs a peer_id claim"))?,
        ),
        _ => None,
    };
    let contact_id = uuid::Uuid::new_v4().to_string();
    let command = FollowUpCommand::RecordContact {
        contact: Contact {
            contact_id: contact_id.clone(),
            occurred_at: body.occurred_at,
            channel: body.channel,
            outcome: body.outcome,
            support_types: body.support_types,
            duration_minutes: body.duration_minutes,
            notes: body.notes,
        },
        by_peer,
        now: Utc::now(),
    };
    let meta = Metadata::new(correlation).actor(principal.role.as_str());
    store::execute(&s.cqrs, &referral_id, command, &meta)
        .await
        .map_err(store::to_problem)?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"contact_id": contact_id, "referral_id": referral_id})),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WorklistQuery {
    peer_id: Option<String>,
    due_before: Option<DateTime<Utc>>,
    limit: Option<i64>,
}

#[derive(Serialize, sqlx::FromRow)]
struct FollowUpRow {
    referral_id: String,
    peer_id: String,
    facility: String,
    priority: String,
    discharged_at: DateTime<Utc>,
    first_contact_due_at: DateTime<Utc>,
    first_reached_at: Option<DateTime<Utc>>,
    attempts: i32,
    updated_at: DateTime<Utc>,
}

/// `GET /v1/followups?peer_id=&due_before=`: plans ordered by due time. A peer sees
/// only their own.
async fn worklist(
    State(s): State<AppState>,
    principal: Principal,
    Query(q): Query<WorklistQuery>,
) -> Result<Json<serde_json::Value>, Problem> {
    principal.require(&[Role::Peer, Role::Coordinator, Role::Admin])?;
    let peer_id = match principal.role {
        Role::Peer => principal.peer_id.clone(),
        _ => q.peer_id,
    };
    let rows: Vec<FollowUpRow> = sqlx::query_as(
        "SELECT referral_id, peer_id, facility, priority, discharged_at, first_contact_due_at,
                first_reached_at, attempts, updated_at
         FROM follow_up.followups
         WHERE ($1::text IS NULL OR peer_id = $1)
           AND ($2::timestamptz IS NULL OR first_contact_due_at < $2)
         ORDER BY first_contact_due_at, referral_id LIMIT $3",
    )
    .bind(peer_id)
    .bind(q.due_before)
    .bind(q.limit.unwrap_or(100).clamp(1, 500))
    .fetch_all(&s.pool)
    .await
    .map_err(Problem::internal)?;
    Ok(Json(serde_json::json!({ "items": rows })))
}
