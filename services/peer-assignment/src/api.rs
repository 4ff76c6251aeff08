//! The peer-assignment service's HTTP API: the roster.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use careloop_backbone::Metadata;
use careloop_backbone::store::{self, Cqrs};
use careloop_web::idempotency::{self, Claim};
use careloop_web::{CorrelationId, Principal, Problem, Role};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::domain::{Peer, PeerCommand, PeerProfile};

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub peers: Arc<Cqrs<Peer>>,
}

pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/v1/peers", post(register).get(list))
        .with_state(state)
}

/// `POST /v1/peers`
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerRequest {
    name: String,
    languages: Vec<String>,
    gender: Option<String>,
    #[serde(default)]
    lived_experience: Vec<String>,
    #[serde(default)]
    regions: Vec<String>,
    #[serde(default)]
    modes: Vec<ContactMode>,
    max_caseload: u32,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ContactMode {
    InPerson,
    Phone,
    Video,
    Text,
}

impl TryFrom<PeerRequest> for PeerProfile {
    type Error = Problem;

    fn try_from(r: PeerRequest) -> Result<Self, Problem> {
        if r.name.trim().is_empty() {
            return Err(Problem::invalid("name", "name must not be empty"));
        }
        if r.languages.is_empty() || r.languages.iter().any(|l| l.trim().is_empty()) {
            return Err(Problem::invalid(
                "languages",
                "at least one language code is needed",
            ));
        }
        if !(1..=200).contains(&r.max_caseload) {
            return Err(Problem::invalid(
                "max_caseload",
                "must be between 1 and 200",
            ));
        }
        Ok(PeerProfile {
            name: r.name.trim().to_string(),
            languages: r
                .languages
                .iter()
                .map(|l| l.trim().to_lowercase())
                .collect(),
            gender: r.gender,
            lived_experience: r.lived_experience,
            regions: r.regions,
            modes: r
                .modes
                .iter()
                .map(|m| {
                    serde_json::to_value(m)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default()
                })
                .collect(),
            max_caseload: r.max_caseload,
        })
    }
}

async fn register(
    State(s): State<AppState>,
    principal: Principal,
    CorrelationId(correlation): CorrelationId,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), Problem> {
    principal.require(&[Role::Coordinator, Role::Admin])?;
    let request: PeerRequest = careloop_web::json::parse(&body)?;
    let profile = PeerProfile::try_from(request)?;
    let key =
        match idempotency::claim(&s.pool, crate::SCHEMA, &principal.sub, &headers, &body).await? {
            Some(Claim::Replay(status, body)) => return Ok((status, Json(body))),
            Some(Claim::Fresh(key)) => Some(key),
            None => None,
        };
    let peer_id = uuid::Uuid::new_v4().to_string();
    let meta = Metadata::new(correlation).actor(principal.role.as_str());
    if let Err(e) = store::execute(&s.peers, &peer_id, PeerCommand::Register(profile), &meta).await
    {
        if let Some(key) = key {
            key.release(&s.pool).await;
        }
        return Err(store::to_problem(e));
    }
    let answer = serde_json::json!({ "peer_id": peer_id });
    if let Some(key) = key {
        key.complete(&s.pool, StatusCode::CREATED, &answer).await?;
    }
    Ok((StatusCode::CREATED, Json(answer)))
}

#[derive(Serialize, sqlx::FromRow)]
struct PeerRow {
    peer_id: String,
    name: String,
    languages: Vec<String>,
    gender: Option<String>,
    lived_experience: Vec<String>,
    regions: Vec<String>,
    modes: Vec<String>,
    max_caseload: i32,
    availability: String,
    active_count: i32,
    updated_at: DateTime<Utc>,
}

async fn list(
    State(s): State<AppState>,
    principal: Principal,
) -> Result<Json<serde_json::Value>, Problem> {
    principal.require(&[Role::Coordinator, Role::Admin])?;
    let rows: Vec<PeerRow> = sqlx::query_as(
        "SELECT peer_id, name, languages, gender, lived_experience, regions, modes,
                max_caseload, availability, active_count, updated_at
         FROM peer_assignment.peers ORDER BY name, peer_id",
    )
    .fetch_all(&s.pool)
    .await
    .map_err(Problem::internal)?;
    Ok(Json(serde_json::json!({ "items": rows })))
}
