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

use crate::documentation::{BillingRequest, DocumentationRequest};
use crate::domain::{
    Channel, Contact, FollowUpCommand, FollowUpError, FollowUpPlan, Place, SupportType,
};
use crate::notes::{open_for_person, seal_for_plan};
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
            FollowUpError::UnknownContact(_) | FollowUpError::GoalNotFound(_) => {
                Problem::not_found(e.to_string())
            }
            FollowUpError::UnknownGoal(_) => Problem::invalid("goal_ids", e.to_string()),
            FollowUpError::Invalid(field, reason) => Problem::invalid(*field, reason.clone()),
            FollowUpError::ContactLocked
            | FollowUpError::ContactNotSigned
            | FollowUpError::Caring(_) => Problem::conflict(e.to_string()),
            FollowUpError::Incomplete(missing) => {
                let first = missing.first().map(|m| m.field).unwrap_or("billing");
                let reasons: Vec<String> = missing.iter().map(|m| m.reason.clone()).collect();
                Problem::invalid(first, format!("{e}: {}", reasons.join("; ")))
                    .with_extension("missing", missing)
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
    /// The organisation's service codes billable contacts are documented under.
    pub service_codes: Arc<Vec<careloop_config::ServiceCode>>,
    /// The caring-contacts series a completed plan may go on with (none: off).
    pub caring_contacts: Option<careloop_config::CaringContacts>,
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
        .with_state(state.clone())
        .merge(crate::documentation::routes(state.clone()))
        .merge(crate::goals::routes(state.clone()))
        .merge(crate::billing::routes(state.clone()))
        .merge(crate::caring::routes(state))
}

/// A peer acts on their own referrals only; coordinators on anyone's behalf.
pub(crate) fn acting_peer(principal: &Principal) -> Result<Option<String>, Problem> {
    principal.require(&[Role::Peer, Role::Coordinator])?;
    Ok(match principal.role {
        Role::Peer => principal.peer_id.clone(),
        _ => None,
    })
}

pub(crate) async fn execute(
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
    /// When the contact ended: its minutes, for billing.
    ended_at: Option<DateTime<Utc>>,
    /// Where an in-person contact took place.
    place: Option<Place>,
    billing: Option<BillingRequest>,
    /// The person's goals the contact worked on.
    #[serde(default)]
    goal_ids: Vec<String>,
}

/// The id of what a request creates: from its `Idempotency-Key` when it has one, so
/// that a retried request names the same thing (which the plan records once).
pub(crate) fn key_or_new(
    headers: &axum::http::HeaderMap,
    principal: &Principal,
    what: &str,
) -> String {
    match headers
        .get(careloop_web::idempotency::HEADER)
        .and_then(|v| v.to_str().ok())
    {
        Some(key) => uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_URL,
            format!("careloop:{what}:{}:{key}", principal.idempotency_scope()).as_bytes(),
        ),
        None => uuid::Uuid::new_v4(),
    }
    .to_string()
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
    let now = Utc::now();
    let documentation = DocumentationRequest {
        duration_minutes: body.duration_minutes,
        ended_at: body.ended_at,
        place: body.place,
        billing: body.billing,
    }
    .parse(&s.service_codes, &principal, now)?;
    let contact_id = key_or_new(&headers, &principal, &format!("contact:{referral_id}"));
    let notes = match body.notes {
        Some(notes) => Some(seal_for_plan(&s.pool, &s.vault, &referral_id, &notes).await?),
        None => None,
    };
    let command = FollowUpCommand::RecordContact {
        contact: Contact {
            contact_id: contact_id.clone(),
            occurred_at: body.occurred_at,
            channel: body.channel,
            outcome: body.outcome,
            support_types: body.support_types,
            documentation,
            notes,
            goal_ids: body.goal_ids,
        },
        by_peer,
        now,
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
    let person_ref = v.plan.person_ref.clone();
    // Sealed words open under the person's key; after erasure they read as null.
    let open = |sealed: Option<String>| open_for_person(&s.vault, &person_ref, sealed);
    let mut addenda = Vec::new();
    for mut a in v.addenda {
        a.text = open(a.text.take()).await?;
        addenda.push(a);
    }
    let mut contacts = Vec::new();
    for mut c in v.contacts {
        let missing = c.missing();
        c.notes = open(c.notes.take()).await?;
        let mut contact = serde_json::to_value(&c).map_err(Problem::from)?;
        contact["missing"] = serde_json::to_value(missing).map_err(Problem::from)?;
        contact["addenda"] = serde_json::to_value(
            addenda
                .iter()
                .filter(|a| a.contact_id == c.contact_id)
                .collect::<Vec<_>>(),
        )
        .map_err(Problem::from)?;
        contacts.push(contact);
    }
    let mut goals = Vec::new();
    for mut g in v.goals {
        g.words = open(g.words.take()).await?;
        let mut reviews = Vec::new();
        for mut r in v.reviews.iter().filter(|r| r.goal_id == g.goal_id).cloned() {
            r.words = open(r.words.take()).await?;
            r.note = open(r.note.take()).await?;
            reviews.push(r);
        }
        let worked_on = contacts
            .iter()
            .filter(|c| {
                c["goal_ids"]
                    .as_array()
                    .is_some_and(|ids| ids.iter().any(|id| id == g.goal_id.as_str()))
            })
            .count();
        let mut goal = serde_json::to_value(&g).map_err(Problem::from)?;
        goal["reviews"] = serde_json::to_value(reviews).map_err(Problem::from)?;
        goal["contacts"] = worked_on.into();
        goals.push(goal);
    }
    let mut view = serde_json::to_value(v.plan).map_err(Problem::from)?;
    view["checkpoints"] = serde_json::to_value(v.checkpoints).map_err(Problem::from)?;
    view["contacts"] = contacts.into();
    view["goals"] = goals.into();
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
    if !["active", "paused", "closed", "caring", "all"].contains(&state.as_str()) {
        return Err(Problem::invalid(
            "state",
            "state is active, paused, closed, caring (caring contacts running) or all",
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
