//! The FHIR routes.

use axum::extract::{Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use careloop_backbone::Metadata;
use careloop_web::{CorrelationId, Principal, Problem, Role};
use chrono::Utc;
use serde_json::{Value, json};
use sqlx::PgPool;
use std::collections::HashMap;

use super::outcome::{FHIR_JSON, Outcome};
use super::read::{self, At};
use super::task;
use crate::domain::ConsentRecord;
use crate::reception::{Reception, ValidReferral};

#[derive(Clone)]
pub struct FhirState {
    pub pool: PgPool,
    pub reception: Reception,
}

pub fn routes(state: FhirState) -> Router {
    Router::new()
        .route("/fhir", post(transaction))
        .route("/fhir/ServiceRequest", post(service_request))
        .route("/fhir/Consent", post(consent))
        .route("/fhir/Task", get(search_tasks))
        .route("/fhir/Task/{id}", get(read_task))
        .with_state(state)
}

fn fhir(status: StatusCode, body: Value) -> Response {
    let mut res = (status, Json(body)).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(FHIR_JSON),
    );
    res
}

/// A hospital with its facility (or an admin or coordinator, who see every facility
/// but cannot refer).
fn hospital(principal: Result<Principal, Problem>) -> Result<(Principal, String), Outcome> {
    let p = principal?;
    p.require(&[Role::Hospital])?;
    let facility = p.facility.clone().unwrap_or_default();
    Ok((p, facility))
}

fn parse(body: &[u8]) -> Result<Value, Outcome> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| Outcome::structure(format!("the body is not JSON: {e}")))?;
    if !v.is_object() || v.get("resourceType").and_then(Value::as_str).is_none() {
        return Err(Outcome::structure(
            "the body is not a FHIR resource (no resourceType)",
        ));
    }
    Ok(v)
}

fn expect_type(v: &Value, rt: &str) -> Result<(), Outcome> {
    match v.get("resourceType").and_then(Value::as_str) {
        Some(t) if t == rt => Ok(()),
        other => Err(Outcome::invalid(
            "resourceType",
            format!("expected a {rt}, got {}", other.unwrap_or("nothing")),
        )),
    }
}

/// `POST /fhir`: a transaction Bundle with a Patient, a ServiceRequest and a Consent.
async fn transaction(
    State(s): State<FhirState>,
    principal: Result<Principal, Problem>,
    CorrelationId(correlation): CorrelationId,
    body: axum::body::Bytes,
) -> Result<Response, Outcome> {
    let (principal, facility) = hospital(principal)?;
    let bundle = parse(&body)?;
    expect_type(&bundle, "Bundle")?;
    if bundle.get("type").and_then(Value::as_str) != Some("transaction") {
        return Err(Outcome::invalid(
            "Bundle.type",
            "Bundle.type must be transaction",
        ));
    }
    let entries = bundle
        .get("entry")
        .and_then(Value::as_array)
        .ok_or_else(|| Outcome::required("Bundle.entry"))?;
    let mut found: HashMap<&str, (usize, &Value, Option<&str>)> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        let resource = e
            .get("resource")
            .ok_or_else(|| Outcome::required(format!("Bundle.entry[{i}].resource")))?;
        let rt = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .ok_or_else(|| Outcome::required(format!("Bundle.entry[{i}].resource.resourceType")))?;
        if found
            .insert(rt, (i, resource, e.get("fullUrl").and_then(Value::as_str)))
            .is_some()
        {
            return Err(Outcome::invalid(
                format!("Bundle.entry[{i}]"),
                format!("more than one {rt}: send one referral per Bundle"),
            ));
        }
    }
    let take = |rt: &str| {
        found.get(rt).copied().ok_or_else(|| {
            Outcome::invalid(
                "Bundle.entry",
                format!(
                    "the Bundle needs a Patient, a ServiceRequest and a Consent; {rt} is missing"
                ),
            )
        })
    };
    let (pi, patient, patient_url) = take("Patient")?;
    let (si, sr, _) = take("ServiceRequest")?;
    let (ci, consent, _) = take("Consent")?;
    let mut patient_refs: Vec<String> = patient_url.map(str::to_string).into_iter().collect();
    if let Some(id) = patient.get("id").and_then(Value::as_str) {
        patient_refs.push(format!("Patient/{id}"));
    }
    let points_at_patient = |v: &Value, key: &str| {
        v.get(key)
            .and_then(read::reference)
            .is_some_and(|r| patient_refs.iter().any(|p| p == r))
    };
    let (pp, sp, cp) = (
        format!("Bundle.entry[{pi}].resource"),
        format!("Bundle.entry[{si}].resource"),
        format!("Bundle.entry[{ci}].resource"),
    );
    if !points_at_patient(sr, "subject") {
        return Err(Outcome::invalid(
            format!("{sp}.subject"),
            "subject must reference the Bundle's Patient",
        ));
    }
    if !points_at_patient(consent, "patient") {
        return Err(Outcome::invalid(
            format!("{cp}.patient"),
            "patient must reference the Bundle's Patient",
        ));
    }
    let now = Utc::now();
    let person = read::patient(
        At {
            value: patient,
            path: &pp,
        },
        now,
    )?;
    let (status, consent_facts) = read::consent(
        At {
            value: consent,
            path: &cp,
        },
        now,
    )?;
    if status != "active" {
        return Err(Outcome::invalid(
            format!("{cp}.status"),
            "a referral needs an active Consent",
        ));
    }
    let submitted = read::service_request(
        At {
            value: sr,
            path: &sp,
        },
        &facility,
        &person.language,
        consent_facts,
        now,
    )?;
    let meta = Metadata::new(correlation).actor(principal.role.as_str());
    let accepted = s
        .reception
        .submit(ValidReferral { person, submitted }, &meta)
        .await?;
    let created = if accepted.duplicate {
        "200 OK"
    } else {
        "201 Created"
    };
    let task = task::requested(&accepted.referral_id, &accepted.person_ref, &facility, now);
    let entry = |location: String| json!({"response": {"status": created, "location": location}});
    let mut out: Vec<Value> = Vec::new();
    for (i, _) in entries.iter().enumerate() {
        out.push(if i == pi {
            entry(format!("Patient/{}", accepted.person_ref))
        } else if i == si {
            entry(format!("ServiceRequest/{}", accepted.referral_id))
        } else {
            entry(format!("Consent/{}", accepted.person_ref))
        });
    }
    out.push(json!({
        "fullUrl": format!("Task/{}", accepted.referral_id),
        "resource": task,
        "response": {"status": created, "location": format!("Task/{}", accepted.referral_id)},
    }));
    Ok(fhir(
        StatusCode::OK,
        json!({"resourceType": "Bundle", "type": "transaction-response", "entry": out}),
    ))
}

/// `POST /fhir/ServiceRequest`: a referral for a Patient sent earlier
/// (`subject: Patient/{id}` as answered by a transaction), with consent on record.
async fn service_request(
    State(s): State<FhirState>,
    principal: Result<Principal, Problem>,
    CorrelationId(correlation): CorrelationId,
    body: axum::body::Bytes,
) -> Result<Response, Outcome> {
    let (principal, facility) = hospital(principal)?;
    let sr = parse(&body)?;
    expect_type(&sr, "ServiceRequest")?;
    let at = At {
        value: &sr,
        path: "ServiceRequest",
    };
    let person_ref = patient_ref(&sr, "subject", "ServiceRequest.subject")?;
    s.reception.check_facility(&principal, &person_ref).await?;
    let known = s.reception.person(&person_ref).await?;
    let Some(person) = known.details else {
        return Err(Outcome::invalid(
            "ServiceRequest.subject",
            "no such Patient: send it in a transaction Bundle first",
        ));
    };
    let Some(consent) = known.consent else {
        return Err(Outcome::invalid(
            "ServiceRequest.subject",
            "the Patient has no consent to peer-support referral on record",
        ));
    };
    let consent = crate::domain::Consent {
        granted_at: consent.granted_at,
        scope: consent.scope,
        recorded_by: consent.recorded_by,
    };
    let mut submitted =
        read::service_request(at, &facility, &person.language, consent, Utc::now())?;
    submitted.person_ref = person_ref.clone();
    let meta = Metadata::new(correlation).actor(principal.role.as_str());
    let accepted = s.reception.submit_for(submitted, &meta).await?;
    let task = task::requested(&accepted.referral_id, &person_ref, &facility, Utc::now());
    let status = if accepted.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut res = fhir(status, task);
    if let Ok(v) =
        header::HeaderValue::from_str(&format!("ServiceRequest/{}", accepted.referral_id))
    {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

/// The person a resource's `Patient/{id}` reference at `key` names.
fn patient_ref(resource: &Value, key: &str, expression: &str) -> Result<String, Outcome> {
    resource
        .get(key)
        .and_then(read::reference)
        .and_then(|r| r.strip_prefix("Patient/"))
        .map(str::to_string)
        .ok_or_else(|| Outcome::required(expression))
}

/// `POST /fhir/Consent`: records a consent for a known Patient, or with status
/// `inactive` revokes it (open referrals are cancelled, follow-up stops).
async fn consent(
    State(s): State<FhirState>,
    principal: Result<Principal, Problem>,
    CorrelationId(correlation): CorrelationId,
    body: axum::body::Bytes,
) -> Result<Response, Outcome> {
    let (principal, _) = hospital(principal)?;
    let c = parse(&body)?;
    expect_type(&c, "Consent")?;
    let person_ref = patient_ref(&c, "patient", "Consent.patient")?;
    s.reception.check_facility(&principal, &person_ref).await?;
    let (status, facts) = read::consent(
        At {
            value: &c,
            path: "Consent",
        },
        Utc::now(),
    )?;
    let meta = Metadata::new(correlation).actor(principal.role.as_str());
    match status.as_str() {
        "active" => {
            let record = ConsentRecord {
                scope: facts.scope,
                granted_at: facts.granted_at,
                recorded_by: facts.recorded_by,
            };
            s.reception
                .record_consent(&person_ref, record, &meta)
                .await?;
        }
        "inactive" | "rejected" => {
            s.reception
                .revoke_consent(
                    &person_ref,
                    "consent revoked (FHIR Consent inactive)".into(),
                    &meta,
                )
                .await?;
        }
        other => {
            return Err(Outcome::invalid(
                "Consent.status",
                format!("cannot act on a Consent with status {other}"),
            ));
        }
    }
    let mut echoed = c.clone();
    echoed["id"] = json!(person_ref);
    Ok(fhir(StatusCode::OK, echoed))
}

/// `GET /fhir/Task/{id}`
async fn read_task(
    State(s): State<FhirState>,
    principal: Result<Principal, Problem>,
    Path(id): Path<String>,
) -> Result<Response, Outcome> {
    let p = principal?;
    p.require(&[Role::Hospital, Role::Coordinator, Role::Admin])?;
    let row = match task::get(&s.pool, &id).await.map_err(Problem::internal)? {
        Some(row) => row,
        None => submitted_task(&s.reception, &id)
            .await?
            .ok_or_else(|| Outcome::from(Problem::not_found(format!("no Task/{id}"))))?,
    };
    if !p.may_see_facility(&row.facility) {
        return Err(Problem::forbidden("this Task belongs to another facility").into());
    }
    Ok(fhir(StatusCode::OK, task::render(&row)))
}

/// A referral intake holds but the referral service has not taken in yet.
async fn submitted_task(reception: &Reception, id: &str) -> Result<Option<task::TaskRow>, Outcome> {
    let Some((s, at)) = reception.submission(id).await? else {
        return Ok(None);
    };
    Ok(Some(task::TaskRow {
        referral_id: id.to_string(),
        person_ref: Some(s.person_ref),
        facility: s.facility,
        status: "requested".into(),
        reason: None,
        authored_on: Some(at),
        last_updated: at,
    }))
}

/// `GET /fhir/Task?focus=ServiceRequest/{id}&_lastUpdated=gt{instant}`
async fn search_tasks(
    State(s): State<FhirState>,
    principal: Result<Principal, Problem>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, Outcome> {
    let p = principal?;
    p.require(&[Role::Hospital, Role::Coordinator, Role::Admin])?;
    let focus = match q.get("focus") {
        None => None,
        Some(f) => Some(
            f.strip_prefix("ServiceRequest/")
                .ok_or_else(|| Outcome::invalid("focus", "focus must be ServiceRequest/{id}"))?
                .to_string(),
        ),
    };
    let updated_after = match q.get("_lastUpdated") {
        None => None,
        Some(v) => {
            let raw = v.strip_prefix("gt").ok_or_else(|| {
                Outcome::invalid("_lastUpdated", "only the gt prefix is supported")
            })?;
            Some(read::date_time(raw, "_lastUpdated")?)
        }
    };
    let facility = match p.role {
        Role::Hospital => p.facility.clone(),
        _ => None,
    };
    let rows = task::search(
        &s.pool,
        facility.as_deref(),
        focus.as_deref(),
        updated_after,
    )
    .await
    .map_err(Problem::internal)?;
    let entry: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({"fullUrl": format!("Task/{}", r.referral_id), "resource": task::render(r),
                        "search": {"mode": "match"}})
        })
        .collect();
    Ok(fhir(
        StatusCode::OK,
        json!({"resourceType": "Bundle", "type": "searchset", "total": entry.len(), "entry": entry}),
    ))
}
