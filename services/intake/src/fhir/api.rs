//! The FHIR routes.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use careloop_backbone::Metadata;
use careloop_web::{Authenticated, CorrelationId, Needs, Principal, Problem, Role, RouteRule};
use chrono::Utc;
use serde_json::{Value, json};
use sqlx::PgPool;
use std::collections::HashMap;

use super::outcome::{FHIR_JSON, OperationOutcome};
use super::read::{self, At, ServiceRequestFacts};
use super::task;
use crate::domain::{
    Consent, Field, InvalidReferral, NewReferral, PersonDetails, Preferences, ReferralDraft,
};
use crate::reception::Reception;
use careloop_identity::audit::{Audit, ClientAddress};

#[derive(Clone)]
pub struct FhirState {
    pub pool: PgPool,
    pub reception: Reception,
    /// careloop's public URL, for the CapabilityStatement.
    pub public_url: String,
}

/// The access rule of each route here (enforced by the access layer).
pub const RULES: &[RouteRule] = &[
    RouteRule::token(
        "POST",
        "/fhir",
        &[Needs::write("ServiceRequest"), Needs::write("Consent")],
    ),
    RouteRule::token(
        "POST",
        "/fhir/ServiceRequest",
        &[Needs::write("ServiceRequest")],
    ),
    RouteRule::token("POST", "/fhir/Consent", &[Needs::write("Consent")]),
    RouteRule::token("GET", "/fhir/Task", &[Needs::read("Task")]),
    RouteRule::token("GET", "/fhir/Task/{id}", &[Needs::read("Task")]),
    RouteRule::open("GET", "/fhir/metadata"),
    RouteRule::token(
        "GET",
        "/fhir/ServiceRequest/{id}",
        &[Needs::read("ServiceRequest")],
    ),
    RouteRule::token("GET", "/fhir/Patient/{id}", &[Needs::read("Patient")]),
];

/// careloop speaks FHIR JSON only: a request that accepts only XML (by `Accept` or
/// `_format`) is answered 406 with an OperationOutcome, never JSON with a 200.
async fn json_only(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let wants = |v: &str| {
        let v = v.to_ascii_lowercase();
        v.contains("xml") && !v.contains("json") && !v.contains("*/*")
    };
    let accept_xml = req
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(wants);
    let format_xml = req.uri().query().is_some_and(|q| {
        q.split('&')
            .filter_map(|kv| kv.strip_prefix("_format="))
            .any(|f| wants(&f.replace("%2B", "+").replace("%2F", "/")))
    });
    if accept_xml || format_xml {
        return OperationOutcome {
            status: StatusCode::NOT_ACCEPTABLE,
            code: "not-supported",
            expression: None,
            diagnostics: "careloop answers application/fhir+json only".into(),
            retry_after: None,
        }
        .into_response();
    }
    next.run(req).await
}

pub fn routes(state: FhirState) -> Router {
    Router::new()
        .route("/fhir", post(transaction))
        .route("/fhir/ServiceRequest", post(service_request))
        .route("/fhir/Consent", post(consent))
        .route("/fhir/Task", get(search_tasks))
        .route("/fhir/Task/{id}", get(read_task))
        .route("/fhir/metadata", get(metadata))
        .route("/fhir/ServiceRequest/{id}", get(read_service_request))
        .route("/fhir/Patient/{id}", get(read_patient))
        .route_layer(axum::middleware::from_fn(json_only))
        .with_state(state)
}

/// `GET /fhir/metadata` (no token needed, as FHIR clients expect).
async fn metadata(State(s): State<FhirState>) -> Response {
    fhir(StatusCode::OK, super::capability::statement(&s.public_url))
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
fn hospital(
    principal: Result<Authenticated, Problem>,
) -> Result<(Principal, String), OperationOutcome> {
    let p = principal?.0;
    p.require(&[Role::Hospital])?;
    let facility = p.facility.clone().unwrap_or_default();
    Ok((p, facility))
}

/// Where each part of a referral sits in the resources a client sent.
struct Expressions<'a> {
    patient: &'a str,
    consent: &'a str,
    discharge: &'a str,
    service_request: &'a str,
}

impl Expressions<'_> {
    fn outcome(&self, e: InvalidReferral) -> OperationOutcome {
        let at = |base: &str, element: &str| format!("{base}.{element}");
        let expression = match e.field {
            Field::Facility => "Bundle".to_string(),
            Field::Identifiers => at(self.patient, "identifier"),
            Field::Identifier(i) => at(self.patient, &format!("identifier[{i}]")),
            Field::Language => at(self.patient, "communication"),
            Field::BirthDate => at(self.patient, "birthDate"),
            Field::DischargedAt => self.discharge.to_string(),
            Field::Unit => at(self.service_request, "extension"),
            Field::ConsentGrantedAt => at(self.consent, "dateTime"),
            Field::ConsentTerms => at(self.consent, "scope"),
            Field::Name => at(self.patient, "name"),
            Field::Phone => at(self.patient, "telecom"),
            Field::Gender => at(self.patient, "gender"),
            Field::Postcode => at(self.patient, "address"),
            Field::Needs => at(self.service_request, "category"),
            Field::Need(i) => at(self.service_request, &format!("category[{i}]")),
            Field::Notes => at(self.service_request, "note"),
            // Not read from FHIR (no element carries them).
            Field::PeerGender | Field::LivedExperience | Field::ContactModes => {
                self.service_request.to_string()
            }
        };
        OperationOutcome::invalid(expression, e.reason)
    }
}

/// A referral from what a ServiceRequest says, for `person` with `consent`.
fn new_referral(
    facility: &str,
    person: PersonDetails,
    consent: Consent,
    sr: ServiceRequestFacts,
    where_: &Expressions<'_>,
) -> Result<NewReferral, OperationOutcome> {
    let draft = ReferralDraft {
        facility: facility.to_string(),
        channel: careloop_events::Channel::Fhir,
        person,
        discharged_at: sr.discharged_at,
        unit: sr.unit,
        risk_level: sr.risk_level,
        consent,
        needs: sr.needs,
        preferences: Preferences::default(),
        notes: sr.notes,
    };
    NewReferral::new(draft, Utc::now()).map_err(|e| where_.outcome(e))
}

/// The body as JSON: declared as JSON (`application/fhir+json` or `application/json`),
/// its text storable and within [`careloop_web::limits`] (422 naming the element under
/// `root`, the resource the route takes), else 400 / 415.
fn parse(headers: &HeaderMap, body: &[u8], root: &str) -> Result<Value, OperationOutcome> {
    careloop_web::json::require_json(headers)?;
    let v = careloop_web::json::parse_document(body).map_err(|(path, why, field)| {
        if field {
            let expression = if path.is_empty() || path == "." {
                root.to_string()
            } else {
                format!("{root}.{path}")
            };
            OperationOutcome::invalid(expression.clone(), format!("{expression} {why}"))
        } else {
            OperationOutcome::structure(format!("the body is not JSON: {why}"))
        }
    })?;
    if !v.is_object() || v.get("resourceType").and_then(Value::as_str).is_none() {
        return Err(OperationOutcome::structure(
            "the body is not a FHIR resource (no resourceType)",
        ));
    }
    Ok(v)
}

fn expect_type(v: &Value, rt: &str) -> Result<(), OperationOutcome> {
    match v.get("resourceType").and_then(Value::as_str) {
        Some(t) if t == rt => Ok(()),
        other => Err(OperationOutcome::invalid(
            "resourceType",
            format!("expected a {rt}, got {}", other.unwrap_or("nothing")),
        )),
    }
}

/// A transaction Bundle read into a referral, with where its resources were.
pub struct BundleReferral {
    pub referral: NewReferral,
    pub entries: usize,
    pub patient: usize,
    pub service_request: usize,
}

/// Reads a transaction Bundle (a Patient, a ServiceRequest and a Consent) into the
/// referral of `facility`, each failure an OperationOutcome naming the element.
pub fn read_bundle(bundle: &Value, facility: &str) -> Result<BundleReferral, OperationOutcome> {
    expect_type(bundle, "Bundle")?;
    if bundle.get("type").and_then(Value::as_str) != Some("transaction") {
        return Err(OperationOutcome::invalid(
            "Bundle.type",
            "Bundle.type must be transaction",
        ));
    }
    let entries = bundle
        .get("entry")
        .and_then(Value::as_array)
        .ok_or_else(|| OperationOutcome::required("Bundle.entry"))?;
    if let Some(why) = careloop_web::limits::count_problem(
        entries.len(),
        careloop_web::limits::MAX_BUNDLE_ENTRIES,
        "entries",
    ) {
        return Err(OperationOutcome::invalid(
            "Bundle.entry",
            format!(
                "Bundle.entry {why}: send one referral (a Patient, a ServiceRequest and a Consent) per Bundle"
            ),
        ));
    }
    let mut found: HashMap<&str, (usize, &Value, Option<&str>)> = HashMap::new();
    for (i, e) in entries.iter().enumerate() {
        let resource = e
            .get("resource")
            .ok_or_else(|| OperationOutcome::required(format!("Bundle.entry[{i}].resource")))?;
        let rt = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                OperationOutcome::required(format!("Bundle.entry[{i}].resource.resourceType"))
            })?;
        if found
            .insert(rt, (i, resource, e.get("fullUrl").and_then(Value::as_str)))
            .is_some()
        {
            return Err(OperationOutcome::invalid(
                format!("Bundle.entry[{i}]"),
                format!("more than one {rt}: send one referral per Bundle"),
            ));
        }
    }
    let take = |rt: &str| {
        found.get(rt).copied().ok_or_else(|| {
            OperationOutcome::invalid(
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
        return Err(OperationOutcome::invalid(
            format!("{sp}.subject"),
            "subject must reference the Bundle's Patient",
        ));
    }
    if !points_at_patient(consent, "patient") {
        return Err(OperationOutcome::invalid(
            format!("{cp}.patient"),
            "patient must reference the Bundle's Patient",
        ));
    }
    let person = read::patient(At {
        value: patient,
        path: &pp,
    })?;
    let (status, consent_facts) = read::consent(At {
        value: consent,
        path: &cp,
    })?;
    if status != "active" {
        return Err(OperationOutcome::invalid(
            format!("{cp}.status"),
            "a referral needs an active Consent",
        ));
    }
    let facts = read::service_request(At {
        value: sr,
        path: &sp,
    })?;
    let discharge = facts.discharge_expression.clone();
    let where_ = Expressions {
        patient: &pp,
        consent: &cp,
        discharge: &discharge,
        service_request: &sp,
    };
    let referral = new_referral(facility, person, consent_facts, facts, &where_)?;
    Ok(BundleReferral {
        referral,
        entries: entries.len(),
        patient: pi,
        service_request: si,
    })
}

/// `POST /fhir`: a transaction Bundle with a Patient, a ServiceRequest and a Consent.
async fn transaction(
    State(s): State<FhirState>,
    principal: Result<Authenticated, Problem>,
    address: ClientAddress,
    CorrelationId(correlation): CorrelationId,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, OperationOutcome> {
    let (principal, facility) = hospital(principal)?;
    s.reception.check_registered(&facility, "Bundle").await?;
    let bundle = parse(&headers, &body, "Bundle")?;
    let BundleReferral {
        referral,
        entries,
        patient: pi,
        service_request: si,
    } = read_bundle(&bundle, &facility)?;
    let now = Utc::now();
    let meta = Metadata::new(correlation).actor(principal.actor());
    let accepted = s.reception.submit(referral, &meta).await.map_err(|p| {
        if p.field.as_deref() == Some(crate::reception::IDENTIFIERS) {
            OperationOutcome::invalid(format!("Bundle.entry[{pi}].resource.identifier"), p.detail)
        } else {
            p.into()
        }
    })?;
    let mut entry = Audit::by(&principal, &address, "create", "Patient");
    entry.person_ref = Some(accepted.person_ref.clone());
    entry.referral_id = Some(accepted.referral_id.clone());
    s.reception.audit.record(entry).await?;
    let created = if accepted.duplicate {
        "200 OK"
    } else {
        "201 Created"
    };
    let task = task::requested(&accepted.referral_id, &accepted.person_ref, &facility, now);
    let entry = |location: String| json!({"response": {"status": created, "location": location}});
    let mut out: Vec<Value> = Vec::new();
    for i in 0..entries {
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
    principal: Result<Authenticated, Problem>,
    CorrelationId(correlation): CorrelationId,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, OperationOutcome> {
    let (principal, facility) = hospital(principal)?;
    s.reception
        .check_registered(&facility, "ServiceRequest")
        .await?;
    let sr = parse(&headers, &body, "ServiceRequest")?;
    expect_type(&sr, "ServiceRequest")?;
    let at = At {
        value: &sr,
        path: "ServiceRequest",
    };
    let person_ref = patient_ref(&sr, "subject", "ServiceRequest.subject")?;
    s.reception.check_facility(&principal, &person_ref).await?;
    let known = s.reception.person(&person_ref).await?;
    let Some(person) = known.details else {
        return Err(OperationOutcome::invalid(
            "ServiceRequest.subject",
            "no such Patient: send it in a transaction Bundle first",
        ));
    };
    let Some(consent) = known.consent else {
        return Err(OperationOutcome::invalid(
            "ServiceRequest.subject",
            "the Patient has no consent to peer-support referral on record",
        ));
    };
    let facts = read::service_request(at)?;
    let discharge = facts.discharge_expression.clone();
    let where_ = Expressions {
        patient: "ServiceRequest.subject",
        consent: "ServiceRequest.subject",
        discharge: &discharge,
        service_request: "ServiceRequest",
    };
    let referral = new_referral(&facility, person, consent, facts, &where_)?;
    let meta = Metadata::new(correlation).actor(principal.actor());
    let accepted = s
        .reception
        .submit_for(&referral, &person_ref, &meta)
        .await?;
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
fn patient_ref(resource: &Value, key: &str, expression: &str) -> Result<String, OperationOutcome> {
    resource
        .get(key)
        .and_then(read::reference)
        .and_then(|r| r.strip_prefix("Patient/"))
        .map(str::to_string)
        .ok_or_else(|| OperationOutcome::required(expression))
}

/// `POST /fhir/Consent`: records a consent for a known Patient, or with status
/// `inactive` revokes it (open referrals are cancelled, follow-up stops).
async fn consent(
    State(s): State<FhirState>,
    principal: Result<Authenticated, Problem>,
    address: ClientAddress,
    CorrelationId(correlation): CorrelationId,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, OperationOutcome> {
    let (principal, _) = hospital(principal)?;
    let c = parse(&headers, &body, "Consent")?;
    expect_type(&c, "Consent")?;
    let person_ref = patient_ref(&c, "patient", "Consent.patient")?;
    s.reception.check_facility(&principal, &person_ref).await?;
    let (status, facts) = read::consent(At {
        value: &c,
        path: "Consent",
    })?;
    facts.check(Utc::now()).map_err(|e| {
        Expressions {
            patient: "Consent.patient",
            consent: "Consent",
            discharge: "Consent",
            service_request: "Consent",
        }
        .outcome(e)
    })?;
    let meta = Metadata::new(correlation).actor(principal.actor());
    match status.as_str() {
        "active" => {
            s.reception
                .record_consent(&person_ref, facts, &meta)
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
            return Err(OperationOutcome::invalid(
                "Consent.status",
                format!("cannot act on a Consent with status {other}"),
            ));
        }
    }
    let mut entry = Audit::by(&principal, &address, "update", "Consent");
    entry.person_ref = Some(person_ref.clone());
    s.reception.audit.record(entry).await?;
    let mut echoed = c.clone();
    echoed["id"] = json!(person_ref);
    Ok(fhir(StatusCode::OK, echoed))
}

/// `GET /fhir/ServiceRequest/{id}`: the referral as the hospital sent it (any
/// channel), to the facility that sent it, coordinators and admins.
async fn read_service_request(
    State(s): State<FhirState>,
    principal: Result<Authenticated, Problem>,
    Path(id): Path<String>,
) -> Result<Response, OperationOutcome> {
    let p = principal?;
    p.require(&[Role::Hospital, Role::Coordinator, Role::Admin])?;
    let Some((sr, at)) = s.reception.submission(&id).await? else {
        return Err(Problem::not_found(format!("no ServiceRequest/{id}")).into());
    };
    if !p.may_see_facility(&sr.facility) {
        return Err(Problem::forbidden("this ServiceRequest belongs to another facility").into());
    }
    let priority = match sr.risk_level {
        crate::domain::RiskLevel::High => "asap",
        crate::domain::RiskLevel::Moderate => "urgent",
        crate::domain::RiskLevel::Low => "routine",
    };
    let mut resource = json!({
        "resourceType": "ServiceRequest",
        "id": sr.referral_id,
        "meta": {"lastUpdated": at},
        "status": "active",
        "intent": "order",
        "priority": priority,
        "subject": {"reference": format!("Patient/{}", sr.person_ref)},
        "occurrenceDateTime": sr.discharged_at,
        "authoredOn": at,
        "requester": {"display": sr.facility},
        "category": sr.needs.iter().map(|n| json!({"text": n})).collect::<Vec<_>>(),
        "extension": [
            {"url": read::DISCHARGE_EXTENSION, "valueDateTime": sr.discharged_at},
            {"url": read::UNIT_EXTENSION, "valueString": sr.unit},
        ],
    });
    if let Some(n) = &sr.notes {
        resource["note"] = json!([{"text": n}]);
    }
    Ok(fhir(StatusCode::OK, resource))
}

/// `GET /fhir/Patient/{id}`: a person's details from the PHI vault, to a facility
/// that referred them, coordinators and admins; every read is audited first.
async fn read_patient(
    State(s): State<FhirState>,
    principal: Result<Authenticated, Problem>,
    address: ClientAddress,
    Path(id): Path<String>,
) -> Result<Response, OperationOutcome> {
    let p = principal?;
    p.require(&[Role::Hospital, Role::Coordinator, Role::Admin])?;
    let person = if uuid::Uuid::parse_str(&id).is_ok() {
        s.reception.person(&id).await?
    } else {
        Default::default()
    };
    crate::reception::Reception::require_not_erased(&person)?;
    let Some(d) = person.details else {
        return Err(Problem::not_found(format!("no Patient/{id}")).into());
    };
    s.reception.check_facility(&p, &id).await?;
    let mut entry = Audit::by(&p, &address, "read", "Patient");
    entry.person_ref = Some(id.clone());
    s.reception.audit.record(entry).await?;
    let mut patient = json!({
        "resourceType": "Patient",
        "id": id,
        "identifier": d.identifiers.iter().map(|i| json!({"system": i.system, "value": i.value})).collect::<Vec<_>>(),
        "communication": [{"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": d.language}]}}],
    });
    if let Some(n) = &d.name {
        let mut names = vec![json!({"use": "official", "family": n.family, "given": [n.given]})];
        if let Some(pref) = &n.preferred {
            names.push(json!({"use": "usual", "given": [pref]}));
        }
        patient["name"] = json!(names);
    }
    if let Some(b) = d.birth_date {
        patient["birthDate"] = json!(b.to_string());
    }
    if let Some(g) = &d.gender {
        patient["gender"] = json!(g);
    }
    if let Some(ph) = &d.phone {
        patient["telecom"] = json!([{"system": "phone", "value": ph}]);
    }
    if let Some(pc) = &d.postcode {
        patient["address"] = json!([{"postalCode": pc}]);
    }
    Ok(fhir(StatusCode::OK, patient))
}

/// `GET /fhir/Task/{id}`
async fn read_task(
    State(s): State<FhirState>,
    principal: Result<Authenticated, Problem>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, OperationOutcome> {
    let p = principal?;
    p.require(&[Role::Hospital, Role::Coordinator, Role::Admin])?;
    let row = match task::get(&s.pool, &id).await.map_err(Problem::from)? {
        Some(row) => row,
        None => submitted_task(&s.reception, &id)
            .await?
            .ok_or_else(|| OperationOutcome::from(Problem::not_found(format!("no Task/{id}"))))?,
    };
    if !p.may_see_facility(&row.facility) {
        return Err(Problem::forbidden("this Task belongs to another facility").into());
    }
    // A weak validator from the Task's last change: a client polling with
    // If-None-Match gets 304 until the referral changes.
    let etag = format!("W/\"{}\"", row.last_updated.timestamp_micros());
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut res = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        fhir(StatusCode::OK, task::render(&row))
    };
    let modified = row
        .last_updated
        .format("%a, %d %b %Y %H:%M:%S GMT")
        .to_string();
    for (name, value) in [(header::ETAG, etag), (header::LAST_MODIFIED, modified)] {
        if let Ok(v) = header::HeaderValue::from_str(&value) {
            res.headers_mut().insert(name, v);
        }
    }
    Ok(res)
}

/// A referral intake holds but the referral service has not taken in yet.
async fn submitted_task(
    reception: &Reception,
    id: &str,
) -> Result<Option<task::TaskRow>, OperationOutcome> {
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
    principal: Result<Authenticated, Problem>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, OperationOutcome> {
    let p = principal?;
    p.require(&[Role::Hospital, Role::Coordinator, Role::Admin])?;
    // A parameter careloop does not apply is refused (a client would otherwise take
    // every Task for the ones it asked for), unless the client asked for lenient
    // handling; the `self` link says what was applied.
    let lenient = headers
        .get("prefer")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("handling=lenient"));
    let known = |k: &str| super::capability::TASK_SEARCH.iter().any(|(n, ..)| *n == k);
    if let Some(unknown) = q.keys().filter(|k| !known(k)).min()
        && !lenient
    {
        {
            return Err(OperationOutcome {
                status: StatusCode::BAD_REQUEST,
                code: "not-supported",
                expression: Some(unknown.clone()),
                diagnostics: format!(
                    "search parameter {unknown} is not supported on Task (supported: {}); send Prefer: handling=lenient to have it ignored",
                    super::capability::TASK_SEARCH
                        .iter()
                        .map(|(n, ..)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                retry_after: None,
            });
        }
    }
    let mut applied: Vec<(&String, &String)> = q.iter().filter(|(k, _)| known(k)).collect();
    applied.sort();
    let self_link = format!(
        "{}/fhir/Task{}{}",
        s.public_url,
        if applied.is_empty() { "" } else { "?" },
        applied
            .iter()
            .map(|(k, v)| format!(
                "{k}={}",
                v.replace('%', "%25")
                    .replace('&', "%26")
                    .replace('+', "%2B")
            ))
            .collect::<Vec<_>>()
            .join("&")
    );
    let focus = match q.get("focus") {
        None => None,
        Some(f) => Some(
            f.strip_prefix("ServiceRequest/")
                .ok_or_else(|| {
                    OperationOutcome::invalid("focus", "focus must be ServiceRequest/{id}")
                })?
                .to_string(),
        ),
    };
    let updated_after = match q.get("_lastUpdated") {
        None => None,
        Some(v) => {
            let raw = v.strip_prefix("gt").ok_or_else(|| {
                OperationOutcome::invalid("_lastUpdated", "only the gt prefix is supported")
            })?;
            Some(read::date_time(raw, "_lastUpdated")?)
        }
    };
    let facility = match p.role {
        Role::Hospital => p.facility.clone(),
        _ => None,
    };
    let count = match q.get("_count") {
        None => 100,
        Some(c) => c
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=careloop_web::paging::MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                OperationOutcome::invalid("_count", "_count must be a number from 1 to 500")
            })?,
    };
    let statuses = q.get("status").map(|v| {
        v.split(',')
            .flat_map(|st| match st.trim() {
                "requested" => vec!["requested".to_string(), "received".to_string()],
                other => vec![other.to_string()],
            })
            .collect::<Vec<_>>()
    });
    let after_given = q.get("_cursor");
    let after = match after_given {
        None => None,
        Some(c) => {
            let parts = careloop_web::paging::parse_cursor(c, 2)
                .map_err(|_| OperationOutcome::invalid("_cursor", "not a cursor careloop gave"))?;
            let at = parts[0]
                .parse::<i64>()
                .ok()
                .and_then(chrono::DateTime::from_timestamp_micros)
                .ok_or_else(|| {
                    OperationOutcome::invalid("_cursor", "not a cursor careloop gave")
                })?;
            Some((at, parts[1].clone()))
        }
    };
    let rows = task::search(
        &s.pool,
        &crate::tasks::read_model::TaskSearch {
            facility: facility.as_deref(),
            focus: focus.as_deref(),
            updated_after,
            statuses,
            after,
            limit: count + 1,
        },
    )
    .await
    .map_err(Problem::from)?;
    let (rows, next) = careloop_web::paging::page(rows, count, |r| {
        vec![
            r.last_updated.timestamp_micros().to_string(),
            r.referral_id.clone(),
        ]
    });
    let mut links = vec![json!({"relation": "self", "url": self_link})];
    let complete = next.is_none();
    if let Some(c) = next {
        let without: Vec<String> = self_link
            .split(['?', '&'])
            .skip(1)
            .filter(|kv| !kv.starts_with("_cursor="))
            .map(str::to_string)
            .chain(std::iter::once(format!("_cursor={c}")))
            .collect();
        links.push(json!({"relation": "next",
            "url": format!("{}/fhir/Task?{}", s.public_url, without.join("&"))}));
    }
    let entry: Vec<Value> = rows
        .iter()
        .map(|r| {
            json!({"fullUrl": format!("Task/{}", r.referral_id), "resource": task::render(r),
                        "search": {"mode": "match"}})
        })
        .collect();
    let entry_count = entry.len();
    let mut bundle = json!({"resourceType": "Bundle", "type": "searchset",
                            "link": links, "entry": entry});
    // The total is known without counting when this page is the last.
    if complete && after_given.is_none() {
        bundle["total"] = json!(entry_count);
    }
    Ok(fhir(StatusCode::OK, bundle))
}
