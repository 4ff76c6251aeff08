//! Caring contacts over HTTP: after a completed plan, the person may agree to brief,
//! non-demanding contacts for a while (`CARELOOP_CARING_CONTACTS`, default monthly
//! for a year). Each falls due on the peer's worklist (`GET /v1/followups?state=caring`)
//! and is met by the next contact logged on the plan.
//!
//! - `POST /v1/referrals/{id}/caring-contacts`: the series starts (the person agreed);
//! - `POST /v1/referrals/{id}/caring-contacts/stop` `{reason}`: at the person's request.
//!
//! A revoked consent or an erasure stops it too ([`crate::handlers`]).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use careloop_web::{ApiJson, Authenticated, CorrelationId, Needs, Problem, RouteRule};
use chrono::Utc;
use serde::Deserialize;

use crate::api::{AppState, acting_peer, execute};
use crate::domain::FollowUpCommand;
use crate::notes::seal_for_plan;

pub const RULES: &[RouteRule] = &[
    RouteRule::token(
        "POST",
        "/v1/referrals/{id}/caring-contacts",
        &[Needs::write("CarePlan")],
    ),
    RouteRule::token(
        "POST",
        "/v1/referrals/{id}/caring-contacts/stop",
        &[Needs::write("CarePlan")],
    ),
];

pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/v1/referrals/{id}/caring-contacts", post(start))
        .route("/v1/referrals/{id}/caring-contacts/stop", post(stop))
        .with_state(state)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartBody {}

async fn start(
    State(s): State<AppState>,
    principal: Authenticated,
    CorrelationId(correlation): CorrelationId,
    Path(id): Path<String>,
    ApiJson(StartBody {}): ApiJson<StartBody>,
) -> Result<(StatusCode, Json<serde_json::Value>), Problem> {
    let by_peer = acting_peer(&principal)?;
    let Some(series) = s.caring_contacts else {
        return Err(Problem::conflict(
            "caring contacts are off in this organisation (CARELOOP_CARING_CONTACTS)",
        ));
    };
    let every = chrono::Duration::from_std(series.every).map_err(Problem::internal)?;
    let command = FollowUpCommand::StartCaringContacts {
        every,
        count: series.count,
        by_peer,
        now: Utc::now(),
    };
    execute(&s, &principal, correlation, &id, command).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            serde_json::json!({"referral_id": id, "caring_state": "running",
            "count": series.count, "every_days": series.every.as_secs() / 86_400}),
        ),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StopBody {
    reason: String,
}

async fn stop(
    State(s): State<AppState>,
    principal: Authenticated,
    CorrelationId(correlation): CorrelationId,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<StopBody>,
) -> Result<Json<serde_json::Value>, Problem> {
    let by_peer = acting_peer(&principal)?;
    if body.reason.trim().is_empty() {
        return Err(Problem::invalid("reason", "a reason is needed"));
    }
    // The person's words may be in it: sealed like a note.
    let reason = seal_for_plan(&s.pool, &s.vault, &id, body.reason.trim()).await?;
    let command = FollowUpCommand::StopCaringContacts {
        reason,
        by_peer,
        now: Utc::now(),
    };
    execute(&s, &principal, correlation, &id, command).await?;
    Ok(Json(
        serde_json::json!({"referral_id": id, "caring_state": "stopped"}),
    ))
}
