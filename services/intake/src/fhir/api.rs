//! The FHIR routes.

use axum::extract::{Path, State};
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
use super::queries;
use super::read::{self, At, ServiceRequestFacts};
use crate::domain::{
    Consent, Field, InvalidReferral, NewReferral, PersonDetails, Preferences, ReferralDraft,
};
use crate::reception::Reception;
use crate::subscriptions::api as subscriptions;
use careloop_identity::audit::{Audit, ClientAddress};

#[derive(Clone)]
pub struct FhirState {
    pub pool: PgPool,
    pub reception: Reception,
    /// careloop's public URL, for the CapabilityStatement.
    pub public_url: String,
    /// Hosts a subscription's endpoint may name although not public (as webhooks).
    pub webhook_allowed_hosts: Vec<String>,
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
    RouteRule::token(
        "GET",
        "/fhir/Task/{id}/_history/{vid}",
        &[Needs::read("Task")],
    ),
    RouteRule::token("GET", "/fhir/Task/{id}/_history", &[Needs::read("Task")]),
    RouteRule::token(
        "GET",
        "/fhir/ServiceRequest",
        &[Needs::read("ServiceRequest")],
    ),
    RouteRule::token("GET", "/fhir/Consent/{id}", &[Needs::read("Consent")]),
    RouteRule::token(
        "POST",
        "/fhir/Subscription",
        &[Needs::write("Subscription")],
    ),
    RouteRule::token(
        "GET",
        "/fhir/Subscription/{id}",
        &[Needs::read("Subscription")],
    ),
    RouteRule::token(
        "DELETE",
        "/fhir/Subscription/{id}",
        &[Needs::write("Subscription")],
    ),
    RouteRule::token(
        "GET",
        "/fhir/Subscription/{id}/$status",
        &[Needs::read("Subscription")],
    ),
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
        .route("/fhir/Task", get(queries::search_tasks))
        .route("/fhir/Task/{id}", get(queries::read_task))
        .route(
            "/fhir/Task/{id}/_history",
            get(queries::task_history_bundle),
        )
        .route("/fhir/Task/{id}/_history/{vid}", get(queries::vread_task))
        .route("/fhir/metadata", get(metadata))
        .route(
            "/fhir/ServiceRequest",
            get(queries::search_service_requests),
        )
        .route(
            "/fhir/ServiceRequest/{id}",
            get(queries::read_service_request),
        )
        .route("/fhir/Consent/{id}", get(queries::read_consent))
        .route("/fhir/Patient/{id}", get(read_patient))
        .route("/fhir/Subscription", post(subscriptions::create))
        .route(
            "/fhir/Subscription/{id}",
            get(subscriptions::read).delete(subscriptions::delete),
        )
        .route(
            "/fhir/Subscription/{id}/$status",
            get(subscriptions::status),
        )
        .route_layer(axum::middleware::from_fn(json_only))
        .with_state(state)
}

/// `GET /fhir/metadata` (no token needed, as FHIR clients expect).
async fn metadata(State(s): State<FhirState>) -> Response {
    fhir(StatusCode::OK, super::capability::statement(&s.public_url))
}

pub(crate) fn fhir(status: StatusCode, body: Value) -> Response {
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
pub(crate) fn parse(
    headers: &HeaderMap,
    body: &[u8],
    root: &str,
) -> Result<Value, OperationOutcome> {
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
    // One entry per request, in order, each with its absolute fullUrl; the
    // ServiceRequest as a read returns it. Its Task has the same id
    // (`Task/{ServiceRequest id}`).
    let (_, service_request) = queries::service_request(&s, &accepted.referral_id)
        .await?
        .ok_or_else(|| Problem::internal("a referral just submitted cannot be read"))?;
    let base = format!("{}/fhir", s.public_url);
    let out: Vec<Value> = (0..entries)
        .map(|i| {
            let location = if i == pi {
                format!("Patient/{}", accepted.person_ref)
            } else if i == si {
                format!("ServiceRequest/{}", accepted.referral_id)
            } else {
                format!("Consent/{}", accepted.person_ref)
            };
            let mut entry = json!({"fullUrl": format!("{base}/{location}"),
                                   "response": {"status": created, "location": location}});
            if i == si {
                entry["response"]["lastModified"] = service_request["meta"]["lastUpdated"].clone();
                entry["resource"] = service_request.clone();
            }
            entry
        })
        .collect();
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
    let (_, resource) = queries::service_request(&s, &accepted.referral_id)
        .await?
        .ok_or_else(|| Problem::internal("a referral just submitted cannot be read"))?;
    let status = if accepted.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let mut res = fhir(status, resource);
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

/// `GET /fhir/Patient/{id}`: a person's details from the PHI vault, to a facility
/// that referred them, coordinators and admins; every read is audited first.
async fn read_patient(
    State(s): State<FhirState>,
    principal: Result<Authenticated, Problem>,
    address: ClientAddress,
    Path(id): Path<String>,
) -> Result<Response, OperationOutcome> {
    let p = queries::reader(principal)?;
    let Some(d) = s
        .reception
        .readable_person(&p, &id)
        .await?
        .and_then(|person| person.details)
    else {
        return Err(Problem::not_found(format!("no Patient/{id}")).into());
    };
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
