//! The person's recovery goals over HTTP, in their own words (sealed under their
//! data key like contact notes).
//!
//! - `POST /v1/referrals/{id}/goals` `{words, support_types}`: a goal the person names.
//! - `POST /v1/referrals/{id}/goals/{goal_id}/reviews` `{kind, words?, note?}`:
//!   progress, met, changed (in new words) or set aside.
//!
//! The plan (`GET /v1/referrals/{id}/followup`) shows each goal with its reviews and
//! the contacts that worked on it.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use careloop_web::{ApiJson, Authenticated, CorrelationId, Needs, Problem, RouteRule};
use chrono::Utc;
use serde::Deserialize;

use crate::api::{AppState, acting_peer, execute, key_or_new};
use crate::domain::{FollowUpCommand, GoalReviewKind, SupportType};
use crate::notes::{PlanSeal, seal_for_plan};

/// The longest goal, in characters: a goal is a sentence in the person's words.
const MAX_WORDS: usize = 500;

pub const RULES: &[RouteRule] = &[
    RouteRule::token("POST", "/v1/referrals/{id}/goals", &[Needs::write("Goal")]),
    RouteRule::token(
        "POST",
        "/v1/referrals/{id}/goals/{goal_id}/reviews",
        &[Needs::write("Goal")],
    ),
];

pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/v1/referrals/{id}/goals", post(set_goal))
        .route("/v1/referrals/{id}/goals/{goal_id}/reviews", post(review))
        .with_state(state)
}

fn words_of(field: &'static str, words: &str) -> Result<(), Problem> {
    if words.trim().is_empty() {
        return Err(Problem::invalid(
            field,
            "the goal in the person's own words",
        ));
    }
    if words.chars().count() > MAX_WORDS {
        return Err(Problem::invalid(
            field,
            format!("at most {MAX_WORDS} characters"),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GoalBody {
    words: String,
    #[serde(default)]
    support_types: Vec<SupportType>,
}

async fn set_goal(
    State(s): State<AppState>,
    principal: Authenticated,
    CorrelationId(correlation): CorrelationId,
    headers: axum::http::HeaderMap,
    Path(referral_id): Path<String>,
    ApiJson(body): ApiJson<GoalBody>,
) -> Result<(StatusCode, Json<serde_json::Value>), Problem> {
    let by_peer = acting_peer(&principal)?;
    words_of("words", &body.words)?;
    let goal_id = key_or_new(&headers, &principal, &format!("goal:{referral_id}"));
    let words = seal_for_plan(&s.pool, &s.vault, &referral_id, body.words.trim()).await?;
    let command = FollowUpCommand::SetGoal {
        goal_id: goal_id.clone(),
        words,
        support_types: body.support_types,
        by_peer,
        now: Utc::now(),
    };
    execute(&s, &principal, correlation, &referral_id, command).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"referral_id": referral_id, "goal_id": goal_id})),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReviewBody {
    kind: GoalReviewKind,
    words: Option<String>,
    note: Option<String>,
}

async fn review(
    State(s): State<AppState>,
    principal: Authenticated,
    CorrelationId(correlation): CorrelationId,
    headers: axum::http::HeaderMap,
    Path((referral_id, goal_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<ReviewBody>,
) -> Result<(StatusCode, Json<serde_json::Value>), Problem> {
    let by_peer = acting_peer(&principal)?;
    if let Some(words) = &body.words {
        words_of("words", words)?;
    }
    let note = body.note.filter(|n| !n.trim().is_empty());
    // The person is looked up once for both values.
    let (mut words, mut sealed_note) = (None, None);
    if body.words.is_some() || note.is_some() {
        let seal = PlanSeal::of(&s.pool, &s.vault, &referral_id).await?;
        if let Some(w) = &body.words {
            words = Some(seal.seal(w.trim()).await?);
        }
        if let Some(n) = &note {
            sealed_note = Some(seal.seal(n).await?);
        }
    }
    let note = sealed_note;
    let review_id = key_or_new(&headers, &principal, &format!("review:{goal_id}"));
    let command = FollowUpCommand::ReviewGoal {
        goal_id: goal_id.clone(),
        review_id,
        kind: body.kind,
        words,
        note,
        by_peer,
        reviewed_by: principal.actor(),
        now: Utc::now(),
    };
    execute(&s, &principal, correlation, &referral_id, command).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"referral_id": referral_id, "goal_id": goal_id})),
    ))
}
