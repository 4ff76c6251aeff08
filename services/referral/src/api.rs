//! The referral service's HTTP API: reading a referral (status, peer, due dates,
//! timeline), the coordinator queue, and the coordinator's (and hospital's) actions.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use careloop_backbone::Metadata;
use careloop_backbone::store::{self, Cqrs, EventStore};
use careloop_web::{
    ApiJson, Authenticated, CorrelationId, Needs, Principal, Problem, Role, RouteRule,
};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use sqlx::PgPool;

use crate::domain::transitions::{self, Action};
use crate::domain::{Priority, Referral, ReferralCommand, ReferralError, RejectReason, Status};
use crate::read_model::{self, QueueFilter, ReferralRow};

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub cqrs: Arc<Cqrs<Referral>>,
    pub store: Arc<EventStore<Referral>>,
    pub reroute_after_reject: bool,
    /// Where intake answers for a referral it holds but this service has not taken
    /// in yet (careloop's public URL), for reading one's own writes.
    pub intake_url: Option<String>,
    pub http: reqwest::Client,
}

/// The access rule of each route here (enforced by the access layer).
pub const RULES: &[RouteRule] = &[
    RouteRule::token("GET", "/v1/referrals", &[Needs::read("Task")]),
    RouteRule::token("GET", "/v1/referrals/counts", &[Needs::read("Task")]),
    RouteRule::token("GET", "/v1/referrals/{id}", &[Needs::read("Task")]),
    RouteRule::token(
        "POST",
        "/v1/referrals/{id}/{action}",
        &[Needs::write("Task")],
    ),
];

pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/v1/referrals", get(list))
        .route("/v1/referrals/counts", get(counts))
        .route("/v1/referrals/{id}", get(show))
        .route("/v1/referrals/{id}/{action}", post(act))
        .with_state(state)
}

impl From<ReferralError> for Problem {
    fn from(e: ReferralError) -> Problem {
        match &e {
            ReferralError::NotFound => Problem::not_found(e.to_string()),
            ReferralError::NotAllowed { current, .. } => {
                Problem::conflict(e.to_string()).with_extension("current_status", current)
            }
            ReferralError::ReasonRequired => Problem::invalid("reason", e.to_string()),
            ReferralError::RerouteDisabled => Problem::conflict(e.to_string()),
        }
    }
}

async fn show(
    State(s): State<AppState>,
    principal: Authenticated,
    headers: axum::http::HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, Problem> {
    let row = read_model::get(&s.pool, &id).await.map_err(Problem::from)?;
    let Some(row) = row else {
        return submitted(&s, &headers, &id).await.map(Json);
    };
    authorize_read(&principal, &row)?;
    let timeline = read_model::timeline(&s.pool, &id)
        .await
        .map_err(Problem::from)?;
    let mut view = serde_json::to_value(&row).map_err(Problem::from)?;
    view["due"] = serde_json::json!({
        "acceptance_due_at": row.acceptance_due_at,
        "first_contact_due_at": row.first_contact_due_at,
        "overdue": row.overdue,
    });
    view["timeline"] = serde_json::to_value(timeline).map_err(Problem::from)?;
    Ok(Json(view))
}

/// Read-your-writes: a referral intake took (the client has its `201`) but this
/// service has not received yet (its events are on their way, typically 100-200 ms)
/// is shown as `requested`, as intake's Task for it says, to whoever intake lets read
/// that Task (the caller's own token is presented). Anything else is a 404.
async fn submitted(
    s: &AppState,
    headers: &axum::http::HeaderMap,
    id: &str,
) -> Result<serde_json::Value, Problem> {
    let missing = || Problem::not_found(format!("no referral {id}"));
    let (Some(base), Some(auth)) = (
        s.intake_url.as_deref(),
        headers.get(axum::http::header::AUTHORIZATION),
    ) else {
        return Err(missing());
    };
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(missing());
    }
    let res = s
        .http
        .get(format!("{base}/fhir/Task/{id}"))
        .header(axum::http::header::AUTHORIZATION, auth)
        .timeout(std::time::Duration::from_secs(3))
        .send()
        .await;
    let task: serde_json::Value = match res {
        Ok(r) if r.status().as_u16() == 403 => {
            return Err(Problem::forbidden(
                "this referral belongs to another facility or peer",
            ));
        }
        Ok(r) if r.status().is_success() => r.json().await.map_err(|_| missing())?,
        Ok(_) => return Err(missing()),
        Err(e) => {
            tracing::warn!(error = %e, "intake could not be asked about a referral");
            return Err(missing());
        }
    };
    let person_ref = task["for"]["reference"]
        .as_str()
        .and_then(|r| r.strip_prefix("Patient/"));
    Ok(serde_json::json!({
        "referral_id": id,
        "person_ref": person_ref,
        "facility": task["requester"]["display"],
        "status": "requested",
        "submitted_at": task["authoredOn"],
        "timeline": [],
        "detail": "intake holds this referral; the referral service takes it in within moments (status received), then priority, due times and the timeline appear",
    }))
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

/// `GET /v1/referrals`: the coordinator queue, and the hospital's polling endpoint.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
    facility: Option<String>,
    priority: Option<String>,
    overdue: Option<bool>,
    peer_id: Option<String>,
    updated_since: Option<DateTime<Utc>>,
    cursor: Option<String>,
    limit: Option<i64>,
}

/// Pages are ordered by (updated_at, referral_id), oldest change first: stable under
/// concurrent changes, and a poller that keeps the last `next_cursor` (or its own
/// `updated_since`) sees every change.
async fn list(
    State(s): State<AppState>,
    principal: Authenticated,
    careloop_web::ApiQuery(q): careloop_web::ApiQuery<ListQuery>,
) -> Result<Json<serde_json::Value>, Problem> {
    principal.require(&[Role::Admin, Role::Coordinator, Role::Hospital])?;
    if let Some(st) = &q.status
        && Status::parse(st).is_none()
    {
        return Err(Problem::invalid("status", format!("unknown status {st:?}")));
    }
    if let Some(p) = &q.priority
        && Priority::parse(p).is_none()
    {
        return Err(Problem::invalid(
            "priority",
            "priority is asap, urgent or routine",
        ));
    }
    let facility = facility_scope(&principal, q.facility.clone())?;
    let after = q.cursor.as_deref().map(decode_cursor).transpose()?;
    let limit = careloop_web::paging::limit(q.limit, 50)?;
    let filter = QueueFilter {
        status: q.status,
        facility,
        priority: q.priority,
        overdue: q.overdue,
        peer_id: q.peer_id,
        updated_since: q.updated_since,
        after,
        limit: limit + 1,
    };
    let mut rows = read_model::queue(&s.pool, &filter)
        .await
        .map_err(Problem::from)?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last()
            .map(|r| encode_cursor(r.updated_at, &r.referral_id))
    } else {
        None
    };
    Ok(Json(
        serde_json::json!({ "items": rows, "next_cursor": next_cursor }),
    ))
}

/// The facility a list or count covers: a hospital only ever its own (asking for
/// another is refused); other roles the one asked for, or all.
fn facility_scope(
    principal: &careloop_web::Principal,
    asked: Option<String>,
) -> Result<Option<String>, Problem> {
    if let Some(f) = &asked
        && !principal.may_see_facility(f)
    {
        return Err(Problem::forbidden(
            "a hospital sees only its own facility's referrals",
        ));
    }
    Ok(match principal.role {
        Role::Hospital => principal.facility.clone(),
        _ => asked,
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CountsQuery {
    facility: Option<String>,
}

/// `GET /v1/referrals/counts`: how many referrals stand in each status, how many are
/// not yet accepted and how many are overdue (the console's queue header). A hospital
/// counts its own facility's only.
async fn counts(
    State(s): State<AppState>,
    principal: Authenticated,
    careloop_web::ApiQuery(q): careloop_web::ApiQuery<CountsQuery>,
) -> Result<Json<serde_json::Value>, Problem> {
    principal.require(&[Role::Admin, Role::Coordinator, Role::Hospital])?;
    let facility = facility_scope(&principal, q.facility)?;
    let rows = read_model::counts(&s.pool, facility.as_deref())
        .await
        .map_err(Problem::from)?;
    let mut by_status = serde_json::Map::new();
    let (mut total, mut overdue, mut not_accepted) = (0i64, 0i64, 0i64);
    for (status, n, late) in rows {
        total += n;
        overdue += late;
        if status == "requested" || status == "received" {
            not_accepted += n;
        }
        by_status.insert(status, n.into());
    }
    Ok(Json(serde_json::json!({
        "total": total,
        "by_status": by_status,
        "not_yet_accepted": not_accepted,
        "overdue": overdue,
    })))
}

fn encode_cursor(at: DateTime<Utc>, id: &str) -> String {
    B64.encode(format!("{}|{id}", at.timestamp_micros()))
}

fn decode_cursor(c: &str) -> Result<(DateTime<Utc>, String), Problem> {
    let bad = || Problem::invalid("cursor", "not a cursor this API returned");
    let raw = String::from_utf8(B64.decode(c).map_err(|_| bad())?).map_err(|_| bad())?;
    let (micros, id) = raw.split_once('|').ok_or_else(bad)?;
    let at = DateTime::from_timestamp_micros(micros.parse().map_err(|_| bad())?).ok_or_else(bad)?;
    Ok((at, id.to_string()))
}

/// The body of every action: a reason (and for reject, a coded reason).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionRequest {
    reason: Option<String>,
    reason_code: Option<RejectReason>,
}

/// `POST /v1/referrals/{id}/{reject|hold|resume|cancel|entered-in-error|reroute}`
async fn act(
    State(s): State<AppState>,
    principal: Authenticated,
    CorrelationId(correlation): CorrelationId,
    Path((id, action)): Path<(String, String)>,
    ApiJson(body): ApiJson<ActionRequest>,
) -> Result<Json<serde_json::Value>, Problem> {
    let action = match action.as_str() {
        "reject" => Action::Reject,
        "hold" => Action::Hold,
        "resume" => Action::Resume,
        "cancel" => Action::Cancel,
        "entered-in-error" => Action::EnterInError,
        "reroute" => Action::Reroute,
        other => return Err(Problem::not_found(format!("no action {other:?}"))),
    };
    principal.require(transitions::transition(action).roles)?;
    let reason = body
        .reason
        .map(|r| r.trim().to_string())
        .filter(|r| !r.is_empty());
    let command = match action {
        Action::Reject => ReferralCommand::Reject {
            code: body.reason_code.ok_or_else(|| {
                Problem::invalid(
                    "reason_code",
                    "reason_code is needed: no_capacity, out_of_area, declined_by_person, unable_to_reach or other",
                )
            })?,
            reason,
        },
        _ => {
            let reason =
                reason.ok_or_else(|| Problem::invalid("reason", "a reason is needed"))?;
            match action {
                Action::Hold => ReferralCommand::Hold { reason },
                Action::Resume => ReferralCommand::Resume { reason },
                Action::Cancel => ReferralCommand::Cancel { reason },
                Action::EnterInError => ReferralCommand::EnterInError { reason },
                _ => ReferralCommand::Reroute {
                    reason,
                    allowed: s.reroute_after_reject,
                },
            }
        }
    };
    let current = store::load(&s.store, &id)
        .await
        .map_err(store::to_problem)?;
    let Some(received) = &current.received else {
        return Err(Problem::not_found(format!("no referral {id}")));
    };
    if !principal.may_see_facility(&received.facility) {
        return Err(Problem::forbidden(
            "this referral belongs to another facility",
        ));
    }
    let meta = Metadata::new(correlation).actor(principal.actor());
    store::execute(&s.cqrs, &id, command, &meta)
        .await
        .map_err(store::to_problem)?;
    let after = store::load(&s.store, &id)
        .await
        .map_err(store::to_problem)?;
    Ok(Json(
        serde_json::json!({"referral_id": id, "status": after.status.as_str()}),
    ))
}
