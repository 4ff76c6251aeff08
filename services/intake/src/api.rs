//! `POST /v1/referrals`: a hospital refers a person at discharge.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::{Json, Router};
use careloop_backbone::Metadata;
use careloop_web::idempotency::{self, Claim};
use careloop_web::{ApiJson, CorrelationId, Principal, Problem, Role};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use sqlx::PgPool;

use crate::domain::{
    Consent, Identifier, PersonDetails, PersonName, Preferences, RiskLevel, Submitted,
};
use crate::reception::{Reception, ValidReferral};

#[derive(Clone)]
pub struct AppState {
    pub pool: PgPool,
    pub reception: Reception,
}

pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/v1/referrals", post(submit))
        .route("/v1/admissions", post(admit))
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

impl ReferralRequest {
    /// Checks the rules a well-formed request must also meet.
    pub fn validate(self, now: DateTime<Utc>) -> Result<ValidReferral, Problem> {
        let blank = |s: &str| s.trim().is_empty();
        if blank(&self.facility) {
            return Err(Problem::invalid("facility", "facility must not be empty"));
        }
        if self.person.identifiers.is_empty() {
            return Err(Problem::invalid(
                "person.identifiers",
                "at least one identifier (system and value) is needed",
            ));
        }
        for (i, id) in self.person.identifiers.iter().enumerate() {
            if blank(&id.system) || blank(&id.value) {
                return Err(Problem::invalid(
                    format!("person.identifiers[{i}]"),
                    "an identifier needs a system and a value",
                ));
            }
        }
        if blank(&self.person.language) {
            return Err(Problem::invalid(
                "person.language",
                "language must not be empty",
            ));
        }
        if self.person.birth_date.is_some_and(|b| b > now.date_naive()) {
            return Err(Problem::invalid(
                "person.birth_date",
                "birth_date is in the future",
            ));
        }
        if self.discharge.discharged_at > now {
            return Err(Problem::invalid(
                "discharge.discharged_at",
                "discharged_at is in the future; refer at or after discharge",
            ));
        }
        if blank(&self.discharge.unit) {
            return Err(Problem::invalid("discharge.unit", "unit must not be empty"));
        }
        if self.consent.granted_at > now {
            return Err(Problem::invalid(
                "consent.granted_at",
                "granted_at is in the future",
            ));
        }
        if blank(&self.consent.scope) || blank(&self.consent.recorded_by) {
            return Err(Problem::invalid(
                "consent",
                "consent needs a scope and who recorded it",
            ));
        }
        let region = self
            .person
            .postcode
            .as_deref()
            .map(|p| p.trim().chars().take(3).collect::<String>())
            .filter(|r| !r.is_empty());
        let language = self.person.language.trim().to_lowercase();
        Ok(ValidReferral {
            person: PersonDetails {
                identifiers: self.person.identifiers,
                name: self.person.name,
                birth_date: self.person.birth_date,
                phone: self.person.phone,
                gender: self.person.gender,
                postcode: self.person.postcode,
                language: language.clone(),
            },
            submitted: Submitted {
                referral_id: uuid::Uuid::new_v4().to_string(),
                person_ref: String::new(),
                facility: self.facility.trim().to_string(),
                channel: "api".into(),
                discharged_at: self.discharge.discharged_at,
                unit: self.discharge.unit,
                risk_level: self.discharge.risk_level,
                consent: self.consent,
                needs: self.needs,
                language,
                preferences: self.person.preferences,
                region,
                notes: self.notes,
            },
        })
    }
}

async fn submit(
    State(s): State<AppState>,
    principal: Principal,
    CorrelationId(correlation): CorrelationId,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<serde_json::Value>), Problem> {
    principal.require(&[Role::Hospital])?;
    let request: ReferralRequest = careloop_web::json::parse(&body)?;
    if principal.facility.as_deref() != Some(request.facility.as_str()) {
        return Err(Problem::forbidden(
            "a hospital may only refer for its own facility (the token's facility claim)",
        ));
    }
    let valid = request.validate(Utc::now())?;
    let key =
        match idempotency::claim(&s.pool, crate::SCHEMA, &principal.sub, &headers, &body).await? {
            Some(Claim::Replay(status, body)) => return Ok((status, Json(body))),
            Some(Claim::Fresh(key)) => Some(key),
            None => None,
        };
    let meta = Metadata::new(correlation).actor(principal.role.as_str());
    let accepted = match s.reception.submit(valid, &meta).await {
        Ok(a) => a,
        Err(p) => {
            if let Some(key) = key {
                key.release(&s.pool).await;
            }
            return Err(p);
        }
    };
    // The same discharge sent again (any channel): the answer names the first.
    let (status, answer) = if accepted.duplicate {
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
    Ok((status, Json(answer)))
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
    principal: Principal,
    CorrelationId(correlation): CorrelationId,
    ApiJson(body): ApiJson<AdmissionRequest>,
) -> Result<(StatusCode, Json<serde_json::Value>), Problem> {
    principal.require(&[Role::Hospital])?;
    if principal.facility.as_deref() != Some(body.facility.as_str()) {
        return Err(Problem::forbidden(
            "a hospital may only report admissions to its own facility",
        ));
    }
    if body.person.identifiers.is_empty()
        || body
            .person
            .identifiers
            .iter()
            .any(|i| i.system.trim().is_empty() || i.value.trim().is_empty())
    {
        return Err(Problem::invalid(
            "person.identifiers",
            "at least one identifier with a system and a value is needed",
        ));
    }
    if body.admitted_at > Utc::now() {
        return Err(Problem::invalid(
            "admitted_at",
            "admitted_at is in the future",
        ));
    }
    if body.unit.trim().is_empty() {
        return Err(Problem::invalid("unit", "unit must not be empty"));
    }
    let meta = Metadata::new(correlation).actor(principal.role.as_str());
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
    principal: Principal,
    CorrelationId(correlation): CorrelationId,
    axum::extract::Path(person_ref): axum::extract::Path<String>,
    ApiJson(body): ApiJson<RevokeRequest>,
) -> Result<Json<serde_json::Value>, Problem> {
    principal.require(&[Role::Coordinator, Role::Admin, Role::Hospital])?;
    if body.reason.trim().is_empty() {
        return Err(Problem::invalid("reason", "a reason is needed"));
    }
    s.reception.check_facility(&principal, &person_ref).await?;
    let meta = Metadata::new(correlation).actor(principal.role.as_str());
    s.reception
        .revoke_consent(
            &person_ref,
            format!("consent revoked: {}", body.reason.trim()),
            &meta,
        )
        .await?;
    Ok(Json(
        serde_json::json!({"person_ref": person_ref, "consent": "revoked"}),
    ))
}
