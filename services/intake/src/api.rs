//! `POST /v1/referrals`: a hospital refers a person at discharge.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use careloop_backbone::Metadata;
use careloop_web::idempotency::{self, Claim};
use careloop_web::{ApiJson, Authenticated, CorrelationId, Needs, Problem, Role, RouteRule};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use sqlx::PgPool;

use crate::domain::{
    AdmissionError, Consent, Field, Identifier, InvalidReferral, NewReferral, PersonDetails,
    PersonError, PersonName, Preferences, ReferralDraft, RiskLevel, SubmissionError, TaskError,
};
use crate::reception::Reception;
use careloop_identity::audit::{Audit, ClientAddress};

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub reception: Reception,
}

/// The access rule of each route here (enforced by the access layer).
pub const RULES: &[RouteRule] = &[
    RouteRule::token("POST", "/v1/referrals", &[Needs::write("ServiceRequest")]),
    RouteRule::token("POST", "/v1/admissions", &[Needs::write("Encounter")]),
    RouteRule::token("POST", "/v1/encounters", &[Needs::write("Encounter")]),
    RouteRule::token(
        "POST",
        "/v1/persons/{person_ref}/consent/revoke",
        &[Needs::write("Consent")],
    ),
];

pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/v1/referrals", post(submit))
        .route("/v1/admissions", post(admit))
        .route("/v1/encounters", post(encounter))
        .route(
            "/v1/persons/{person_ref}/consent/revoke",
            post(revoke_consent),
        )
        .with_state(state)
}

/// The body of `POST /v1/referrals`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferralRequest {
    pub facility: String,
    pub person: PersonRequest,
    pub discharge: DischargeRequest,
    pub consent: Consent,
    #[serde(default)]
    pub needs: Vec<String>,
    pub notes: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonRequest {
    pub identifiers: Vec<Identifier>,
    pub name: Option<PersonName>,
    pub birth_date: Option<NaiveDate>,
    pub phone: Option<String>,
    pub language: String,
    pub gender: Option<String>,
    pub postcode: Option<String>,
    #[serde(default)]
    pub preferences: Preferences,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DischargeRequest {
    pub discharged_at: DateTime<Utc>,
    pub unit: String,
    pub risk_level: RiskLevel,
}

impl From<ReferralRequest> for ReferralDraft {
    fn from(r: ReferralRequest) -> Self {
        ReferralDraft {
            facility: r.facility,
            channel: careloop_events::Channel::Api,
            person: PersonDetails {
                identifiers: r.person.identifiers,
                name: r.person.name,
                birth_date: r.person.birth_date,
                phone: r.person.phone,
                gender: r.person.gender,
                postcode: r.person.postcode,
                language: r.person.language,
            },
            discharged_at: r.discharge.discharged_at,
            unit: r.discharge.unit,
            risk_level: r.discharge.risk_level,
            consent: r.consent,
            needs: r.needs,
            preferences: r.person.preferences,
            notes: r.notes,
        }
    }
}

impl TryFrom<ReferralRequest> for NewReferral {
    type Error = Problem;

    fn try_from(r: ReferralRequest) -> Result<Self, Problem> {
        NewReferral::new(r.into(), Utc::now()).map_err(invalid_body)
    }
}

/// A refused referral, the field named as the JSON body names it.
fn invalid_body(e: InvalidReferral) -> Problem {
    let field = match e.field {
        Field::Facility => "facility".to_string(),
        Field::Identifiers => "person.identifiers".into(),
        Field::Identifier(i) => format!("person.identifiers[{i}]"),
        Field::Language => "person.language".into(),
        Field::BirthDate => "person.birth_date".into(),
        Field::DischargedAt => "discharge.discharged_at".into(),
        Field::Unit => "discharge.unit".into(),
        Field::ConsentGrantedAt => "consent.granted_at".into(),
        Field::ConsentTerms => "consent".into(),
        Field::Name => "person.name".into(),
        Field::Phone => "person.phone".into(),
        Field::Gender => "person.gender".into(),
        Field::Postcode => "person.postcode".into(),
        Field::Needs => "needs".into(),
        Field::Need(i) => format!("needs[{i}]"),
        Field::PeerGender => "person.preferences.peer_gender".into(),
        Field::LivedExperience => "person.preferences.lived_experience".into(),
        Field::ContactModes => "person.preferences.contact_modes".into(),
        Field::Notes => "notes".into(),
    };
    Problem::invalid(field, e.reason)
}

// Domain refusals as HTTP answers (the one place intake's domain errors meet HTTP).
impl From<PersonError> for Problem {
    fn from(e: PersonError) -> Self {
        match e {
            PersonError::NotFound => Problem::not_found(e.to_string()),
            PersonError::Erased => Problem::new(StatusCode::GONE, e.to_string()),
        }
    }
}

impl From<SubmissionError> for Problem {
    fn from(e: SubmissionError) -> Self {
        Problem::conflict(e.to_string())
    }
}

impl From<AdmissionError> for Problem {
    fn from(e: AdmissionError) -> Self {
        match e {}
    }
}

impl From<crate::domain::EncounterError> for Problem {
    fn from(e: crate::domain::EncounterError) -> Self {
        match e {}
    }
}

impl From<TaskError> for Problem {
    fn from(e: TaskError) -> Self {
        match e {}
    }
}

async fn submit(
    State(s): State<AppState>,
    principal: Authenticated,
    address: ClientAddress,
    CorrelationId(correlation): CorrelationId,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<
    (
        StatusCode,
        [(axum::http::HeaderName, String); 1],
        Json<serde_json::Value>,
    ),
    Problem,
> {
    principal.require(&[Role::Hospital])?;
    careloop_web::json::require_json(&headers)?;
    let request: ReferralRequest = careloop_web::json::parse(&body)?;
    if principal.facility.as_deref() != Some(request.facility.as_str()) {
        return Err(Problem::forbidden(
            "a hospital may only refer for its own facility (the token's facility claim)",
        ));
    }
    s.reception
        .check_registered(&request.facility, "facility")
        .await?;
    let referral = NewReferral::try_from(request)?;
    let key = match idempotency::claim(&s.pool, crate::SCHEMA, &principal, &headers, &body).await? {
        Some(Claim::Replay(status, body)) => {
            let id = body["referral_id"].as_str().unwrap_or_default().to_string();
            return Ok((status, referral_location(&id), Json(body)));
        }
        Some(Claim::Fresh(key)) => Some(key),
        None => None,
    };
    let meta = Metadata::new(correlation)
        .actor(principal.actor())
        .request(key.as_ref().map(|k| k.request_id()));
    let accepted = match s.reception.submit(referral, &meta).await {
        Ok(a) => a,
        Err(p) => {
            if let Some(key) = key {
                key.release(&s.pool).await;
            }
            return Err(p);
        }
    };
    let mut entry = Audit::by(&principal, &address, "create", "person");
    entry.person_ref = Some(accepted.person_ref.clone());
    entry.referral_id = Some(accepted.referral_id.clone());
    s.reception.audit.record(entry).await?;
    // A retry that took over this key after its first attempt was cut off finds the
    // referral that attempt submitted: it is answered as the first attempt would have.
    let first_attempt_did_it = match &key {
        Some(k) if k.taken_over && accepted.duplicate => {
            k.wrote(
                &s.pool,
                <crate::domain::ReferralSubmission as cqrs_es::Aggregate>::TYPE,
                &accepted.referral_id,
            )
            .await?
        }
        _ => false,
    };
    // The same discharge sent again (any channel): the answer names the first.
    let (status, answer) = if accepted.duplicate && !first_attempt_did_it {
        (
            StatusCode::OK,
            serde_json::json!({"referral_id": accepted.referral_id, "status": "requested",
                               "duplicate": true,
                               "detail": "this discharge was referred before; that referral stands (the person's details were updated)"}),
        )
    } else {
        (
            StatusCode::CREATED,
            serde_json::json!({"referral_id": accepted.referral_id, "status": "requested"}),
        )
    };
    if let Some(key) = key {
        key.complete(&s.pool, status, &answer).await?;
    }
    Ok((
        status,
        referral_location(&accepted.referral_id),
        Json(answer),
    ))
}

/// `Location: /v1/referrals/{id}`, where the referral is read (at once: see the
/// referral service's read-your-writes).
fn referral_location(id: &str) -> [(axum::http::HeaderName, String); 1] {
    [(axum::http::header::LOCATION, format!("/v1/referrals/{id}"))]
}

/// What a hospital's report of an admission or an encounter must be: its own
/// facility, registered, and identifiers of the person.
async fn check_report(
    s: &AppState,
    principal: &Authenticated,
    facility: &str,
    identifiers: &[Identifier],
) -> Result<(), Problem> {
    principal.require(&[Role::Hospital])?;
    if principal.facility.as_deref() != Some(facility) {
        return Err(Problem::forbidden(
            "a hospital may only report admissions and encounters of its own facility",
        ));
    }
    s.reception.check_registered(facility, "facility").await?;
    if let Some(why) = careloop_web::limits::count_problem(
        identifiers.len(),
        careloop_web::limits::MAX_IDENTIFIERS,
        "identifiers",
    ) {
        return Err(Problem::invalid(
            "person.identifiers",
            format!("the list {why}"),
        ));
    }
    if identifiers.is_empty()
        || identifiers
            .iter()
            .any(|i| i.system.trim().is_empty() || i.value.trim().is_empty())
    {
        return Err(Problem::invalid(
            "person.identifiers",
            "at least one identifier with a system and a value is needed",
        ));
    }
    Ok(())
}

/// The body of `POST /v1/encounters`: an inpatient stay or an outpatient visit of a
/// person, for the measures of program impact (history is welcome).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EncounterRequest {
    facility: String,
    class: crate::domain::EncounterClass,
    started_at: DateTime<Utc>,
    /// The end of an inpatient stay (none while it goes on); not for a visit.
    ended_at: Option<DateTime<Utc>>,
    #[serde(default)]
    unit: Option<String>,
    person: AdmittedPerson,
}

/// `POST /v1/encounters`: a hospital reports a stay or a visit. Recorded for a
/// person careloop knows (`201`), like an admission; nothing otherwise (`202`).
async fn encounter(
    State(s): State<AppState>,
    principal: Authenticated,
    CorrelationId(correlation): CorrelationId,
    ApiJson(body): ApiJson<EncounterRequest>,
) -> Result<(StatusCode, Json<serde_json::Value>), Problem> {
    check_report(&s, &principal, &body.facility, &body.person.identifiers).await?;
    let now = Utc::now();
    if body.started_at > now {
        return Err(Problem::invalid(
            "started_at",
            "started_at is in the future",
        ));
    }
    match (body.class, body.ended_at) {
        (crate::domain::EncounterClass::Outpatient, Some(_)) => {
            return Err(Problem::invalid(
                "ended_at",
                "a visit has no end; ended_at is for an inpatient stay",
            ));
        }
        (_, Some(end)) if end <= body.started_at => {
            return Err(Problem::invalid(
                "ended_at",
                "the stay ends before it began",
            ));
        }
        (_, Some(end)) if end > now => {
            return Err(Problem::invalid("ended_at", "ended_at is in the future"));
        }
        _ => {}
    }
    let unit = body.unit.unwrap_or_else(|| "unspecified".into());
    let meta = Metadata::new(correlation).actor(principal.actor());
    let recorded = s
        .reception
        .record_encounter(
            &body.person.identifiers,
            &body.facility,
            crate::reception::ReportedEncounter {
                class: body.class,
                started_at: body.started_at,
                ended_at: body.ended_at,
                unit,
            },
            &meta,
        )
        .await?;
    Ok(match recorded {
        Some(id) => (
            StatusCode::CREATED,
            Json(serde_json::json!({"recorded": true, "encounter_id": id})),
        ),
        None => (
            StatusCode::ACCEPTED,
            Json(serde_json::json!({
                "recorded": false,
                "detail": "no referred person has these identifiers; nothing was stored"
            })),
        ),
    })
}

/// The body of `POST /v1/admissions` (the JSON twin of an ADT A01).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdmissionRequest {
    facility: String,
    admitted_at: DateTime<Utc>,
    unit: String,
    person: AdmittedPerson,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdmittedPerson {
    identifiers: Vec<Identifier>,
}

/// `POST /v1/admissions`: a hospital reports an inpatient admission. Admissions of a
/// person careloop knows (any shared identifier) are recorded and reach follow-up
/// and the measures; careloop keeps nothing about people it was never asked to help.
async fn admit(
    State(s): State<AppState>,
    principal: Authenticated,
    CorrelationId(correlation): CorrelationId,
    ApiJson(body): ApiJson<AdmissionRequest>,
) -> Result<(StatusCode, Json<serde_json::Value>), Problem> {
    check_report(&s, &principal, &body.facility, &body.person.identifiers).await?;
    if body.admitted_at > Utc::now() {
        return Err(Problem::invalid(
            "admitted_at",
            "admitted_at is in the future",
        ));
    }
    if body.unit.trim().is_empty() {
        return Err(Problem::invalid("unit", "unit must not be empty"));
    }
    let meta = Metadata::new(correlation).actor(principal.actor());
    let recorded = s
        .reception
        .admit(
            &body.person.identifiers,
            &body.facility,
            body.admitted_at,
            &body.unit,
            &meta,
        )
        .await?;
    let Some(admission_id) = recorded else {
        return Ok((
            StatusCode::ACCEPTED,
            Json(serde_json::json!({
                "recorded": false,
                "detail": "no referred person has these identifiers; nothing was stored"
            })),
        ));
    };
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"recorded": true, "admission_id": admission_id})),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeRequest {
    reason: String,
}

/// `POST /v1/persons/{person_ref}/consent/revoke`: the person withdrew consent. Their
/// open referrals are cancelled and follow-up stops, with the reason on the timeline.
async fn revoke_consent(
    State(s): State<AppState>,
    principal: Authenticated,
    address: ClientAddress,
    CorrelationId(correlation): CorrelationId,
    axum::extract::Path(person_ref): axum::extract::Path<String>,
    ApiJson(body): ApiJson<RevokeRequest>,
) -> Result<Json<serde_json::Value>, Problem> {
    principal.require(&[Role::Coordinator, Role::Admin, Role::Hospital])?;
    if body.reason.trim().is_empty() {
        return Err(Problem::invalid("reason", "a reason is needed"));
    }
    s.reception.check_facility(&principal, &person_ref).await?;
    let meta = Metadata::new(correlation).actor(principal.actor());
    s.reception
        .revoke_consent(
            &person_ref,
            format!("consent revoked: {}", body.reason.trim()),
            &meta,
        )
        .await?;
    let mut entry = Audit::by(&principal, &address, "update", "consent");
    entry.person_ref = Some(person_ref.clone());
    s.reception.audit.record(entry).await?;
    Ok(Json(
        serde_json::json!({"person_ref": person_ref, "consent": "revoked"}),
    ))
}
