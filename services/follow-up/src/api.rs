//! The follow-up service's HTTP API: the contact log, the plan, closing and resuming
//! it, and the worklists.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use careloop_backbone::Metadata;
use careloop_backbone::store::{self, Cqrs};
use careloop_web::paging;
use careloop_web::{
    ApiJson, Authenticated, CorrelationId, Needs, Principal, Problem, Role, RouteRule,
};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::PgPool;

use careloop_events::{ContactOutcome, PlanOutcome};

use crate::domain::{Channel, Contact, FollowUpCommand, FollowUpError, FollowUpPlan, SupportType};
use crate::notes::{person_of_plan, vault_problem};
use crate::read_model::{self, WorklistFilter};

// Domain refusals as HTTP answers (the one place follow-up's errors meet HTTP).
impl From<FollowUpError> for Problem {
    fn from(e: FollowUpError) -> Problem {
        match &e {
            FollowUpError::NoPlan => Problem::conflict(e.to_string()),
            FollowUpError::ContactBeforeDischarge(_) | FollowUpError::ContactInFuture => {
                Problem::invalid("occurred_at", e.to_string())
            }
            FollowUpError::NotYourReferral => Problem::forbidden(e.to_string()),
            FollowUpError::NotAllowed(state, _) => {
                Problem::conflict(e.to_string()).with_extension("plan_state", state)
            }
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub cqrs: Arc<Cqrs<FollowUpPlan>>,
    /// Contact notes are sealed under the person's data key: erasing the person
    /// leaves them unreadable wherever they were copied.
    pub vault: careloop_vault::Vault,
}

/// The access rule of each route here (enforced by the access layer).
pub const RULES: &[RouteRule] = &[
    RouteRule::token(
        "POST",
        "/v1/referrals/{id}/contacts",
        &[Needs::write("Communication")],
    ),
    RouteRule::token(
        "GET",
        "/v1/referrals/{id}/followup",
        &[Needs::read("CarePlan")],
    ),
    RouteRule::token(
        "POST",
        "/v1/referrals/{id}/followup/close",
        &[Needs::write("CarePlan")],
    ),
    RouteRule::token(
        "POST",
        "/v1/referrals/{id}/followup/resume",
        &[Needs::write("CarePlan")],
    ),
    RouteRule::token("GET", "/v1/followups", &[Needs::read("CarePlan")]),
];

pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/v1/referrals/{id}/contacts", post(record_contact))
        .route("/v1/referrals/{id}/followup", get(plan))
        .route("/v1/referrals/{id}/followup/close", post(close))
        .route("/v1/referrals/{id}/followup/resume", post(resume))
        .route("/v1/followups", get(worklist))
        .with_state(state)
}

/// A peer acts on their own referrals only; coordinators on anyone's behalf.
fn acting_peer(principal: &Principal) -> Result<Option<String>, Problem> {
    principal.require(&[Role::Peer, Role::Coordinator])?;
    Ok(match principal.role {
        Role::Peer => principal.peer_id.clone(),
        _ => None,
    })
}

async fn execute(
    s: &AppState,
    principal: &Principal,
    correlation: String,
    id: &str,
    command: FollowUpCommand,
) -> Result<(), Problem> {
    let meta = Metadata::new(correlation).actor(principal.actor());
    store::execute(&s.cqrs, id, command, &meta)
        .await
        .map_err(store::to_problem)
}

/// `POST /v1/referrals/{id}/contacts`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContactRequest {
    occurred_at: DateTime<Utc>,
    channel: Channel,
    outcome: ContactOutcome,
    #[serde(default)]
    support_types: Vec<SupportType>,
    duration_minutes: Option<u32>,
    notes: Option<String>,
}

async fn record_contact(
    State(s): State<AppState>,
    principal: Authenticated,
    CorrelationId(correlation): CorrelationId,
    headers: axum::http::HeaderMap,
    Path(referral_id): Path<String>,
    ApiJson(body): ApiJson<ContactRequest>,
) -> Result<(StatusCode, Json<serde_json::Value>), Problem> {
    let by_peer = acting_peer(&principal)?;
    if body.duration_minutes.is_some_and(|d| d > 24 * 60) {
        return Err(Problem::invalid("duration_minutes", "must be at most 1440"));
    }
    // With an Idempotency-Key, a retried request names the same contact, which the
    // plan records once.
    let contact_id = match headers
        .get(careloop_web::idempotency::HEADER)
        .and_then(|v| v.to_str().ok())
    {
        Some(key) => uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_URL,
            format!(
                "careloop:contact:{referral_id}:{}:{key}",
                principal.idempotency_scope()
            )
            .as_bytes(),
        ),
        None => uuid::Uuid::new_v4(),
    }
    .to_string();
    let notes = match body.notes {
        Some(notes) => {
            let Some(person_ref) = person_of_plan(&s.pool, &referral_id)
                .await
                .map_err(Problem::from)?
            else {
                return Err(FollowUpError::NoPlan.into());
            };
            Some(
                s.vault
                    .seal(&person_ref, &notes)
                    .await
                    .map_err(vault_problem)?,
            )
        }
        None => None,
    };
    let command = FollowUpCommand::RecordContact {
        contact: Contact {
            contact_id: contact_id.clone(),
            occurred_at: body.occurred_at,
            channel: body.channel,
            outcome: body.outcome,
            support_types: body.support_types,
            duration_minutes: body.duration_minutes,
            notes,
        },
        by_peer,
        now: Utc::now(),
    };
    execute(&s, &principal, correlation, &referral_id, command).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"contact_id": contact_id, "referral_id": referral_id})),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CloseRequest {
    outcome: PlanOutcome,
    reason: String,
}

/// `POST /v1/referrals/{id}/followup/close`: the peer closes the plan with an outcome.
async fn close(
    State(s): State<AppState>,
    principal: Authenticated,
    CorrelationId(correlation): CorrelationId,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<CloseRequest>,
) -> Result<Json<serde_json::Value>, Problem> {
    let by_peer = acting_peer(&principal)?;
    if body.reason.trim().is_empty() {
        return Err(Problem::invalid("reason", "a reason is needed"));
    }
    if body.outcome == PlanOutcome::Cancelled {
        return Err(Problem::invalid(
            "outcome",
            "a plan is cancelled by cancelling its referral; close with completed or failed",
        ));
    }
    let command = FollowUpCommand::Close {
        outcome: body.outcome,
        reason: body.reason,
        by_peer,
    };
    execute(&s, &principal, correlation, &id, command).await?;
    Ok(Json(
        serde_json::json!({"referral_id": id, "state": "closed"}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResumeRequest {
    reason: String,
}

/// `POST /v1/referrals/{id}/followup/resume`: after the next discharge.
async fn resume(
    State(s): State<AppState>,
    principal: Authenticated,
    CorrelationId(correlation): CorrelationId,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ResumeRequest>,
) -> Result<Json<serde_json::Value>, Problem> {
    principal.require(&[Role::Coordinator])?;
    if body.reason.trim().is_empty() {
        return Err(Problem::invalid("reason", "a reason is needed"));
    }
    let command = FollowUpCommand::Resume {
        reason: body.reason,
    };
    execute(&s, &principal, correlation, &id, command).await?;
    Ok(Json(
        serde_json::json!({"referral_id": id, "state": "active"}),
    ))
}

/// `GET /v1/referrals/{id}/followup`: the plan with its check-ins and contacts.
async fn plan(
    State(s): State<AppState>,
    principal: Authenticated,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, Problem> {
    principal.require(&[Role::Peer, Role::Coordinator, Role::Admin])?;
    let v = read_model::plan_view(&s.pool, &id)
        .await
        .map_err(Problem::from)?
        .ok_or_else(|| Problem::not_found(format!("no follow-up plan for referral {id}")))?;
    if principal.role == Role::Peer && principal.peer_id.as_deref() != Some(v.plan.peer_id.as_str())
    {
        return Err(Problem::forbidden("this plan belongs to another peer"));
    }
    let mut contacts = v.contacts;
    if contacts.iter().any(|c| c.notes.is_some()) {
        let person_ref = &v.plan.person_ref;
        for c in &mut contacts {
            if let Some(sealed) = c.notes.take() {
                // Erased: the notes are gone with the person's key.
                c.notes = s
                    .vault
                    .open(person_ref, &sealed)
                    .await
                    .map_err(vault_problem)?;
            }
        }
    }
    let mut view = serde_json::to_value(v.plan).map_err(Problem::from)?;
    view["checkpoints"] = serde_json::to_value(v.checkpoints).map_err(Problem::from)?;
    view["contacts"] = serde_json::to_value(contacts).map_err(Problem::from)?;
    Ok(Json(view))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WorklistQuery {
    peer_id: Option<String>,
    due_before: Option<DateTime<Utc>>,
    overdue: Option<bool>,
    state: Option<String>,
    cursor: Option<String>,
    limit: Option<i64>,
}

/// `GET /v1/followups?peer_id=&due_before=&overdue=&cursor=&limit=`: plans by their
/// next due check-in (then referral id), paged. A peer sees only their own; by
/// default only active plans.
async fn worklist(
    State(s): State<AppState>,
    principal: Authenticated,
    careloop_web::ApiQuery(q): careloop_web::ApiQuery<WorklistQuery>,
) -> Result<Json<serde_json::Value>, Problem> {
    principal.require(&[Role::Peer, Role::Coordinator, Role::Admin])?;
    let peer_id = match principal.role {
        Role::Peer => principal.peer_id.clone(),
        _ => q.peer_id,
    };
    let state = q.state.unwrap_or_else(|| "active".into());
    if !["active", "paused", "closed", "all"].contains(&state.as_str()) {
        return Err(Problem::invalid(
            "state",
            "state is active, paused, closed or all",
        ));
    }
    let limit = paging::limit(q.limit, 100)?;
    let filter = WorklistFilter {
        peer_id,
        due_before: q.due_before,
        overdue: q.overdue,
        state,
        after: q
            .cursor
            .as_deref()
            .map(read_model::WorklistKey::parse)
            .transpose()?,
        limit: limit + 1,
    };
    let rows = read_model::worklist(&s.pool, &filter)
        .await
        .map_err(Problem::from)?;
    let (rows, next) = paging::page(rows, limit, |r| read_model::WorklistKey::of(r).parts());
    Ok(Json(paging::json(&rows, next)))
}
