//! The peer-assignment service's HTTP API: the roster, match explanations, and
//! moving a referral between peers.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, patch, post, put};
use axum::{Json, Router};
use careloop_backbone::Metadata;
use careloop_backbone::store::{self, Cqrs};
use careloop_web::idempotency::{self, Claim};
use careloop_web::{ApiJson, Authenticated, CorrelationId, Needs, Problem, Role, RouteRule};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::domain::{
    AssignmentError, Availability, Certification, Peer, PeerCommand, PeerError, PeerPatch,
    PeerProfile,
};
use crate::matching::Matcher;
use crate::read_model;

// Domain refusals as HTTP answers (the one place peer-assignment's errors meet HTTP).
impl From<PeerError> for Problem {
    fn from(e: PeerError) -> Problem {
        match e {
            PeerError::NotFound => Problem::not_found(e.to_string()),
            PeerError::BelowCaseload { .. } => Problem::invalid("max_caseload", e.to_string()),
            _ => Problem::conflict(e.to_string()),
        }
    }
}

impl From<AssignmentError> for Problem {
    fn from(e: AssignmentError) -> Problem {
        match e {
            AssignmentError::NotRequested => Problem::not_found(e.to_string()),
            _ => Problem::conflict(e.to_string()),
        }
    }
}

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub peers: Arc<Cqrs<Peer>>,
    pub matcher: Arc<Matcher>,
    /// The organisation's caseload norm: no peer's `max_caseload` above it.
    pub caseload_norm: Option<u32>,
}

/// The access rule of each route here (enforced by the access layer).
pub const RULES: &[RouteRule] = &[
    RouteRule::token("POST", "/v1/peers", &[Needs::write("Practitioner")]),
    RouteRule::token("GET", "/v1/peers", &[Needs::read("Practitioner")]),
    RouteRule::token(
        "GET",
        "/v1/peers/certifications",
        &[Needs::read("Practitioner")],
    ),
    RouteRule::token("PATCH", "/v1/peers/{id}", &[Needs::write("Practitioner")]),
    RouteRule::token("GET", "/v1/referrals/{id}/matches", &[Needs::read("Task")]),
    RouteRule::token("GET", "/v1/waitlist", &[Needs::read("Task")]),
    RouteRule::token(
        "PUT",
        "/v1/referrals/{id}/assignment",
        &[Needs::write("Task")],
    ),
    RouteRule::token(
        "POST",
        "/v1/referrals/{id}/assignment/decline",
        &[Needs::write("Task")],
    ),
];

pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/v1/peers", post(register).get(list))
        .route("/v1/peers/{id}", patch(update))
        .route("/v1/peers/certifications", get(certifications))
        .route("/v1/referrals/{id}/matches", get(matches))
        .route("/v1/waitlist", get(waitlist))
        .route("/v1/referrals/{id}/assignment", put(reassign))
        .route("/v1/referrals/{id}/assignment/decline", post(decline))
        .with_state(state)
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum ContactMode {
    InPerson,
    Phone,
    Video,
    Text,
}

fn modes(m: &[ContactMode]) -> Vec<String> {
    m.iter()
        .map(|m| {
            serde_json::to_value(m)
                .ok()
                .and_then(|v| v.as_str().map(String::from))
                .unwrap_or_default()
        })
        .collect()
}

fn tags(field: &str, values: Vec<String>) -> Result<Vec<String>, Problem> {
    let cleaned: Vec<String> = values.iter().map(|v| v.trim().to_lowercase()).collect();
    if cleaned.iter().any(|v| v.is_empty() || v.len() > 64) {
        return Err(Problem::invalid(field, "entries must be 1-64 characters"));
    }
    Ok(cleaned)
}

fn languages(values: Vec<String>) -> Result<Vec<String>, Problem> {
    let l = tags("languages", values)?;
    if l.is_empty() {
        return Err(Problem::invalid(
            "languages",
            "at least one language code is needed",
        ));
    }
    Ok(l)
}

fn max_caseload(n: u32, norm: Option<u32>) -> Result<u32, Problem> {
    if !(1..=200).contains(&n) {
        return Err(Problem::invalid(
            "max_caseload",
            "must be between 1 and 200",
        ));
    }
    match norm {
        Some(norm) if n > norm => Err(Problem::invalid(
            "max_caseload",
            format!(
                "the organisation's caseload norm is {norm} people per peer (CARELOOP_CASELOAD_NORM)"
            ),
        )),
        _ => Ok(n),
    }
}

/// A peer's certification as a request gives it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CertificationRequest {
    issuer: String,
    number: String,
    expires_on: chrono::NaiveDate,
}

impl TryFrom<CertificationRequest> for Certification {
    type Error = Problem;

    fn try_from(c: CertificationRequest) -> Result<Self, Problem> {
        for (field, value) in [
            ("certification.issuer", &c.issuer),
            ("certification.number", &c.number),
        ] {
            if value.trim().is_empty() || value.chars().count() > 200 {
                return Err(Problem::invalid(field, "1 to 200 characters"));
            }
        }
        Ok(Certification {
            issuer: c.issuer.trim().to_string(),
            number: c.number.trim().to_string(),
            expires_on: c.expires_on,
        })
    }
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
    certification: Option<CertificationRequest>,
}

impl PeerRequest {
    fn into_profile(self, norm: Option<u32>) -> Result<PeerProfile, Problem> {
        let r = self;
        if r.name.trim().is_empty() {
            return Err(Problem::invalid("name", "name must not be empty"));
        }
        Ok(PeerProfile {
            name: r.name.trim().to_string(),
            languages: languages(r.languages)?,
            gender: r.gender,
            lived_experience: tags("lived_experience", r.lived_experience)?,
            regions: tags("regions", r.regions)?,
            modes: modes(&r.modes),
            max_caseload: max_caseload(r.max_caseload, norm)?,
            certification: r.certification.map(Certification::try_from).transpose()?,
        })
    }
}

async fn register(
    State(s): State<AppState>,
    principal: Authenticated,
    CorrelationId(correlation): CorrelationId,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), Problem> {
    principal.require(&[Role::Coordinator, Role::Admin])?;
    let request: PeerRequest = careloop_web::json::parse(&body)?;
    let profile = request.into_profile(s.caseload_norm)?;
    let key = match idempotency::claim(&s.pool, crate::SCHEMA, &principal, &headers, &body).await? {
        Some(Claim::Replay(status, body)) => return Ok((status, Json(body))),
        Some(Claim::Fresh(key)) => Some(key),
        None => None,
    };
    let peer_id = key
        .as_ref()
        .map(|k| k.derived_id())
        .unwrap_or_else(uuid::Uuid::new_v4)
        .to_string();
    let meta = Metadata::new(correlation)
        .actor(principal.actor())
        .request(key.as_ref().map(|k| k.request_id()));
    let registered =
        store::execute(&s.peers, &peer_id, PeerCommand::Register(profile), &meta).await;
    match registered {
        Ok(()) => {}
        // A retry that took over an unfinished Idempotency-Key finds the peer there.
        Err(cqrs_es::AggregateError::UserError(crate::domain::PeerError::AlreadyRegistered))
            if key.is_some() => {}
        Err(e) => {
            if let Some(key) = key {
                key.release(&s.pool).await;
            }
            return Err(store::to_problem(e));
        }
    }
    let answer = serde_json::json!({ "peer_id": peer_id });
    if let Some(key) = key {
        key.complete(&s.pool, StatusCode::CREATED, &answer).await?;
    }
    Ok((StatusCode::CREATED, Json(answer)))
}

/// `PATCH /v1/peers/{id}`: any profile field, and availability.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PeerUpdate {
    name: Option<String>,
    languages: Option<Vec<String>>,
    #[serde(default, with = "double_option")]
    gender: Option<Option<String>>,
    lived_experience: Option<Vec<String>>,
    regions: Option<Vec<String>>,
    modes: Option<Vec<ContactMode>>,
    max_caseload: Option<u32>,
    #[serde(default, with = "double_option")]
    certification: Option<Option<CertificationRequest>>,
    availability: Option<AvailabilityRequest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AvailabilityRequest {
    status: String,
    until: Option<DateTime<Utc>>,
}

/// Tells "absent" (keep) from `null` (clear).
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
        d: D,
    ) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

async fn update(
    State(s): State<AppState>,
    principal: Authenticated,
    CorrelationId(correlation): CorrelationId,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PeerUpdate>,
) -> Result<Json<serde_json::Value>, Problem> {
    principal.require(&[Role::Coordinator, Role::Admin])?;
    if body.name.as_ref().is_some_and(|n| n.trim().is_empty()) {
        return Err(Problem::invalid("name", "name must not be empty"));
    }
    let availability = match body.availability {
        None => None,
        Some(a) => Some(match (a.status.as_str(), a.until) {
            ("active", _) => Availability::Active,
            ("inactive", _) => Availability::Inactive,
            ("on_leave", Some(until)) => Availability::OnLeave { until },
            ("on_leave", None) => {
                return Err(Problem::invalid(
                    "availability.until",
                    "on_leave needs until",
                ));
            }
            _ => {
                return Err(Problem::invalid(
                    "availability.status",
                    "status is active, on_leave or inactive",
                ));
            }
        }),
    };
    let patch = PeerPatch {
        name: body.name.map(|n| n.trim().to_string()),
        languages: body.languages.map(languages).transpose()?,
        gender: body.gender,
        lived_experience: body
            .lived_experience
            .map(|v| tags("lived_experience", v))
            .transpose()?,
        regions: body.regions.map(|v| tags("regions", v)).transpose()?,
        modes: body.modes.as_deref().map(modes),
        max_caseload: body
            .max_caseload
            .map(|n| max_caseload(n, s.caseload_norm))
            .transpose()?,
        certification: match body.certification {
            None => None,
            Some(None) => Some(None),
            Some(Some(c)) => Some(Some(Certification::try_from(c)?)),
        },
    };
    let meta = Metadata::new(correlation).actor(principal.actor());
    store::execute(&s.peers, &id, PeerCommand::Update(patch), &meta)
        .await
        .map_err(store::to_problem)?;
    if let Some(a) = availability {
        // Referrals of a peer who stops taking them go back to matching (the
        // waitlist worker does it, from state, so a crash here loses nothing).
        store::execute(&s.peers, &id, PeerCommand::SetAvailability(a), &meta)
            .await
            .map_err(store::to_problem)?;
    }
    Ok(Json(serde_json::json!({ "peer_id": id })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PeersQuery {
    cursor: Option<String>,
    limit: Option<i64>,
}

/// `GET /v1/peers?cursor=&limit=`: the roster by name, paged.
async fn list(
    State(s): State<AppState>,
    principal: Authenticated,
    careloop_web::ApiQuery(q): careloop_web::ApiQuery<PeersQuery>,
) -> Result<Json<serde_json::Value>, Problem> {
    principal.require(&[Role::Coordinator, Role::Admin])?;
    let limit = careloop_web::paging::limit(q.limit, 100)?;
    let after = match q.cursor.as_deref() {
        None => None,
        Some(c) => {
            let mut parts = careloop_web::paging::parse_cursor(c, 2)?;
            let id = parts.pop().unwrap_or_default();
            Some((parts.pop().unwrap_or_default(), id))
        }
    };
    let rows = read_model::peers(&s.pool, after, limit + 1)
        .await
        .map_err(Problem::from)?;
    let (rows, next) =
        careloop_web::paging::page(rows, limit, |r| vec![r.name.clone(), r.peer_id.clone()]);
    Ok(Json(careloop_web::paging::json(&rows, next)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CertificationsQuery {
    within_days: Option<i32>,
}

/// `GET /v1/peers/certifications?within_days=30`: the peers whose certification
/// expires within that many days (30 by default) or has expired, soonest first, then
/// those with none on record. An expired certification keeps the peer out of matching.
async fn certifications(
    State(s): State<AppState>,
    principal: Authenticated,
    careloop_web::ApiQuery(q): careloop_web::ApiQuery<CertificationsQuery>,
) -> Result<Json<serde_json::Value>, Problem> {
    principal.require(&[Role::Coordinator, Role::Admin])?;
    let days = q.within_days.unwrap_or(30);
    if !(0..=366).contains(&days) {
        return Err(Problem::invalid("within_days", "0 to 366 days"));
    }
    let rows = read_model::certifications_due(&s.pool, days)
        .await
        .map_err(Problem::from)?;
    Ok(Json(
        serde_json::json!({ "within_days": days, "items": rows }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WaitlistQuery {
    limit: Option<i64>,
}

/// `GET /v1/waitlist`: the referrals waiting for a peer, in the order they will be
/// served (priority, then how long each has waited).
async fn waitlist(
    State(s): State<AppState>,
    principal: Authenticated,
    careloop_web::ApiQuery(q): careloop_web::ApiQuery<WaitlistQuery>,
) -> Result<Json<serde_json::Value>, Problem> {
    principal.require(&[Role::Coordinator, Role::Admin])?;
    let limit = match q.limit {
        None => 200,
        Some(n) if (1..=1000).contains(&n) => n,
        Some(_) => {
            return Err(Problem::invalid(
                "limit",
                "limit must be between 1 and 1000",
            ));
        }
    };
    let rows = read_model::waitlist(&s.pool, limit)
        .await
        .map_err(Problem::from)?;
    Ok(Json(serde_json::json!({ "items": rows })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MatchesQuery {
    limit: Option<usize>,
}

/// `GET /v1/referrals/{id}/matches`: ranked candidates with every score term, and
/// how many peers each hard constraint excluded (counts only, no PHI).
async fn matches(
    State(s): State<AppState>,
    principal: Authenticated,
    Path(id): Path<String>,
    careloop_web::ApiQuery(q): careloop_web::ApiQuery<MatchesQuery>,
) -> Result<Json<serde_json::Value>, Problem> {
    principal.require(&[Role::Coordinator, Role::Admin])?;
    let a = s.matcher.load(&id).await.map_err(Problem::from)?;
    let request = a
        .request
        .ok_or_else(|| Problem::not_found(format!("no assignment for referral {id} yet")))?;
    let roster = s.matcher.roster().await.map_err(Problem::from)?;
    let mut ranking = s
        .matcher
        .rank(&id, &request, &roster, &[])
        .await
        .map_err(Problem::from)?;
    let total = ranking.candidates.len();
    ranking
        .candidates
        .truncate(q.limit.unwrap_or(10).clamp(1, 100));
    Ok(Json(serde_json::json!({
        "referral_id": id,
        "assigned_peer_id": a.assigned,
        "roster_size": roster.len(),
        "eligible": total,
        "candidates": ranking.candidates,
        "excluded": ranking.excluded,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ReassignRequest {
    peer_id: String,
    reason: String,
}

/// `PUT /v1/referrals/{id}/assignment`: a coordinator's override.
async fn reassign(
    State(s): State<AppState>,
    principal: Authenticated,
    CorrelationId(correlation): CorrelationId,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<ReassignRequest>,
) -> Result<Json<serde_json::Value>, Problem> {
    principal.require(&[Role::Coordinator])?;
    if body.reason.trim().is_empty() {
        return Err(Problem::invalid("reason", "a reason is needed"));
    }
    let meta = Metadata::new(correlation).actor(principal.actor());
    s.matcher
        .override_peer(&id, &body.peer_id, &body.reason, &meta)
        .await?;
    Ok(Json(
        serde_json::json!({"referral_id": id, "peer_id": body.peer_id}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeclineRequest {
    reason: String,
}

/// `POST /v1/referrals/{id}/assignment/decline`: the assigned peer (or a coordinator
/// for them) hands the referral back to matching.
async fn decline(
    State(s): State<AppState>,
    principal: Authenticated,
    CorrelationId(correlation): CorrelationId,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<DeclineRequest>,
) -> Result<Json<serde_json::Value>, Problem> {
    principal.require(&[Role::Peer, Role::Coordinator])?;
    if body.reason.trim().is_empty() {
        return Err(Problem::invalid("reason", "a reason is needed"));
    }
    let a = s.matcher.load(&id).await.map_err(Problem::from)?;
    if principal.role == Role::Peer && a.assigned.as_deref() != principal.peer_id.as_deref() {
        return Err(Problem::forbidden("this referral is not assigned to you"));
    }
    let meta = Metadata::new(correlation).actor(principal.actor());
    s.matcher
        .hand_back(&id, &body.reason, true, &meta)
        .await
        .map_err(store::to_problem)?;
    Ok(Json(
        serde_json::json!({"referral_id": id, "handed_back": true}),
    ))
}
