//! The read side of the FHIR edge: Task read, vread, `_history` and search;
//! ServiceRequest read and search; Consent read. Tasks render from their history
//! ([`super::history`]), so every way of reading one gives the same resource.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use careloop_events::ReferralStatus;
use careloop_web::{Authenticated, Problem, Role};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::api::{FhirState, fhir};
use super::capability::{SERVICE_REQUEST_SEARCH, TASK_SEARCH};
use super::history::{self, TaskHistory};
use super::outcome::OperationOutcome;
use super::read;
use super::search::Search;
use super::task;
use crate::domain::{RiskLevel, SubmittedReferral};
use crate::tasks::read_model::{self, TaskRow, TaskSearch};
use careloop_identity::audit::{Audit, ClientAddress};

/// Who reads the FHIR edge: hospitals (their facility's own), coordinators, admins.
pub(crate) fn reader(
    principal: Result<Authenticated, Problem>,
) -> Result<Authenticated, OperationOutcome> {
    let p = principal?;
    p.require(&[Role::Hospital, Role::Coordinator, Role::Admin])?;
    Ok(p)
}

fn not_found(what: String) -> OperationOutcome {
    Problem::not_found(format!("no {what}")).into()
}

/// The history of Task `id`, for a principal who may see it.
async fn task_history(
    s: &FhirState,
    p: &careloop_web::Principal,
    id: &str,
) -> Result<TaskHistory, OperationOutcome> {
    let h = history::one(&s.pool, id)
        .await
        .map_err(Problem::from)?
        .ok_or_else(|| not_found(format!("Task/{id}")))?;
    if !p.may_see_facility(&h.facility) {
        return Err(Problem::forbidden("this Task belongs to another facility").into());
    }
    Ok(h)
}

/// A resource with its version's validators: weak `ETag` W/"{version}" and
/// `Last-Modified`; `304` when `If-None-Match` names the version.
fn versioned(headers: &HeaderMap, resource: Value, version: usize, at: DateTime<Utc>) -> Response {
    let etag = format!("W/\"{version}\"");
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut res = if unchanged {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        fhir(StatusCode::OK, resource)
    };
    let modified = at.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    for (name, value) in [(header::ETAG, etag), (header::LAST_MODIFIED, modified)] {
        if let Ok(v) = header::HeaderValue::from_str(&value) {
            res.headers_mut().insert(name, v);
        }
    }
    res
}

/// `GET /fhir/Task/{id}`: the latest version.
pub async fn read_task(
    State(s): State<FhirState>,
    principal: Result<Authenticated, Problem>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Response, OperationOutcome> {
    let p = reader(principal)?;
    let h = task_history(&s, &p, &id).await?;
    let version = h.versions();
    let resource = h.render(version).expect("the latest version");
    Ok(versioned(
        &headers,
        resource,
        version,
        h.latest().last_updated,
    ))
}

/// `GET /fhir/Task/{id}/_history/{vid}`: one version.
pub async fn vread_task(
    State(s): State<FhirState>,
    principal: Result<Authenticated, Problem>,
    headers: HeaderMap,
    Path((id, vid)): Path<(String, String)>,
) -> Result<Response, OperationOutcome> {
    let p = reader(principal)?;
    let h = task_history(&s, &p, &id).await?;
    let version: usize = vid.parse().unwrap_or(0);
    let (Some(row), Some(resource)) = (h.at(version), h.render(version)) else {
        return Err(not_found(format!("version {vid} of Task/{id}")));
    };
    Ok(versioned(&headers, resource, version, row.last_updated))
}

/// `GET /fhir/Task/{id}/_history`: every version, newest first.
pub async fn task_history_bundle(
    State(s): State<FhirState>,
    principal: Result<Authenticated, Problem>,
    Path(id): Path<String>,
) -> Result<Response, OperationOutcome> {
    let p = reader(principal)?;
    let h = task_history(&s, &p, &id).await?;
    let url = format!("{}/fhir/Task/{id}", s.public_url);
    let entry: Vec<Value> = (1..=h.versions())
        .rev()
        .map(|v| {
            let row = h.at(v).expect("a version in range");
            json!({
                "fullUrl": url,
                "resource": h.render(v),
                "request": if v == 1 {
                    json!({"method": "POST", "url": "Task"})
                } else {
                    json!({"method": "PUT", "url": format!("Task/{id}")})
                },
                "response": {
                    "status": if v == 1 { "201 Created" } else { "200 OK" },
                    "etag": format!("W/\"{v}\""),
                    "lastModified": row.last_updated,
                },
            })
        })
        .collect();
    Ok(fhir(
        StatusCode::OK,
        json!({"resourceType": "Bundle", "type": "history", "total": entry.len(),
               "link": [{"relation": "self", "url": format!("{url}/_history")}],
               "entry": entry}),
    ))
}

/// The facility a search is confined to: the requester asked for, and for a
/// hospital its own. `Err(())` when they differ (nothing can match).
fn facility_of(
    p: &careloop_web::Principal,
    requester: Option<String>,
) -> Result<Option<String>, ()> {
    let own = match p.role {
        Role::Hospital => p.facility.clone(),
        _ => None,
    };
    match (own, requester) {
        (Some(a), Some(b)) if a != b => Err(()),
        (a, b) => Ok(a.or(b)),
    }
}

/// Runs a search on the `tasks` read model; the rows of the page, the next cursor,
/// and the total when asked for. `None` when a parameter rules out every match.
async fn page(
    s: &FhirState,
    search: &Search,
    mut q: TaskSearch<'_>,
) -> Result<(Vec<TaskRow>, Option<String>, Option<i64>), OperationOutcome> {
    q.updated_from = search.updated_from;
    q.updated_to = search.updated_to;
    q.after = search.after.clone();
    q.limit = search.count + 1;
    let rows = read_model::search(&s.pool, &q)
        .await
        .map_err(Problem::from)?;
    let total = if search.total_accurate {
        Some(
            read_model::count(&s.pool, &q)
                .await
                .map_err(Problem::from)?,
        )
    } else {
        None
    };
    let (rows, next) = careloop_web::paging::page(rows, search.count, |r| {
        vec![
            r.last_updated.timestamp_micros().to_string(),
            r.referral_id.clone(),
        ]
    });
    Ok((rows, next, total))
}

/// `GET /fhir/Task?…`: see [`TASK_SEARCH`].
pub async fn search_tasks(
    State(s): State<FhirState>,
    principal: Result<Authenticated, Problem>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, OperationOutcome> {
    let p = reader(principal)?;
    let search = Search::parse(&s.public_url, "Task", TASK_SEARCH, &headers, query)?;
    let focus = search.reference("focus", "ServiceRequest")?;
    let patient = search.reference("patient", "Patient")?;
    let requester = search.reference("requester", "Organization")?;
    let owner = search.reference("owner", "Organization")?;
    let code_matches = search.value("code").is_none_or(|c| {
        c.split(',').any(|c| {
            let code = c.rsplit('|').next().unwrap_or_default();
            let system = c.rsplit_once('|').map(|(s, _)| s);
            code == "fulfill"
                && system
                    .is_none_or(|s| s.is_empty() || s == "http://hl7.org/fhir/CodeSystem/task-code")
        })
    });
    let owner_matches = owner.is_none_or(|o| format!("Organization/{o}") == task::OWNER);
    let statuses = search.value("status").map(|v| {
        v.split(',')
            .flat_map(|st| match st.trim() {
                "requested" => vec!["requested".to_string(), "received".to_string()],
                other => vec![other.to_string()],
            })
            .collect::<Vec<_>>()
    });
    let facility = facility_of(&p, requester);
    let (rows, next, total) = match facility {
        Ok(facility) if code_matches && owner_matches => {
            let q = TaskSearch {
                facility: facility.as_deref(),
                focus: focus.as_deref(),
                person_ref: patient.as_deref(),
                statuses,
                ..Default::default()
            };
            page(&s, &search, q).await?
        }
        _ => (vec![], None, Some(0)),
    };
    let ids: Vec<String> = rows.iter().map(|r| r.referral_id.clone()).collect();
    let histories = history::load(&s.pool, &ids).await.map_err(Problem::from)?;
    let resources = rows
        .iter()
        .filter_map(|r| histories.get(&r.referral_id).map(|h| (h, r)))
        .filter_map(|(h, r)| h.render(h.version_of(r)))
        .collect();
    Ok(fhir(StatusCode::OK, search.bundle(resources, next, total)))
}

/// ServiceRequest.status for a referral's status.
fn service_request_status(status: &str) -> &'static str {
    match status {
        "completed" => "completed",
        "cancelled" | "rejected" | "failed" => "revoked",
        "entered-in-error" => "entered-in-error",
        _ => "active",
    }
}

/// The ServiceRequest of a submitted referral, with the status and last change of
/// its referral when the referral service has it.
pub fn render_service_request(
    sr: &SubmittedReferral,
    submitted_at: DateTime<Utc>,
    task: Option<&TaskRow>,
) -> Value {
    let priority = match sr.risk_level {
        RiskLevel::High => "asap",
        RiskLevel::Moderate => "urgent",
        RiskLevel::Low => "routine",
    };
    let status = task.map_or("active", |t| service_request_status(&t.status));
    // The ServiceRequest changes when it stops being active; the Task carries the
    // rest of the referral's progress.
    let last_updated = match task {
        Some(t) if status != "active" => t.last_updated.max(submitted_at),
        _ => submitted_at,
    };
    let mut resource = json!({
        "resourceType": "ServiceRequest",
        "id": sr.referral_id,
        "meta": {"lastUpdated": last_updated},
        "status": status,
        "intent": "order",
        "priority": priority,
        "subject": {"reference": format!("Patient/{}", sr.person_ref)},
        "occurrenceDateTime": sr.discharged_at,
        "authoredOn": submitted_at,
        "requester": {"reference": format!("Organization/{}", sr.facility), "display": sr.facility},
        "category": sr.needs.iter().map(|n| json!({"text": n})).collect::<Vec<_>>(),
        "extension": [
            {"url": read::DISCHARGE_EXTENSION, "valueDateTime": sr.discharged_at},
            {"url": read::UNIT_EXTENSION, "valueString": sr.unit},
        ],
    });
    if let Some(n) = &sr.notes {
        resource["note"] = json!([{"text": n}]);
    }
    resource
}

/// The ServiceRequest `id` as it reads now.
pub async fn service_request(
    s: &FhirState,
    id: &str,
) -> Result<Option<(SubmittedReferral, Value)>, OperationOutcome> {
    let Some((sr, at)) = s.reception.submission(id).await? else {
        return Ok(None);
    };
    let row = read_model::get(&s.pool, id).await.map_err(Problem::from)?;
    let resource = render_service_request(&sr, at, row.as_ref());
    Ok(Some((sr, resource)))
}

/// `GET /fhir/ServiceRequest/{id}`: the referral as the hospital sent it (any
/// channel), to the facility that sent it, coordinators and admins.
pub async fn read_service_request(
    State(s): State<FhirState>,
    principal: Result<Authenticated, Problem>,
    Path(id): Path<String>,
) -> Result<Response, OperationOutcome> {
    let p = reader(principal)?;
    let Some((sr, resource)) = service_request(&s, &id).await? else {
        return Err(not_found(format!("ServiceRequest/{id}")));
    };
    if !p.may_see_facility(&sr.facility) {
        return Err(Problem::forbidden("this ServiceRequest belongs to another facility").into());
    }
    Ok(fhir(StatusCode::OK, resource))
}

/// The referral statuses a ServiceRequest status stands for.
fn statuses_of_service_request(status: &str) -> Vec<String> {
    ReferralStatus::ALL
        .iter()
        .map(|s| s.as_str())
        .filter(|s| service_request_status(s) == status.trim())
        .map(str::to_string)
        .collect()
}

/// `GET /fhir/ServiceRequest?…`: see [`SERVICE_REQUEST_SEARCH`]. Referrals appear
/// once the referral service has taken them in (within moments of submission).
pub async fn search_service_requests(
    State(s): State<FhirState>,
    principal: Result<Authenticated, Problem>,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Result<Response, OperationOutcome> {
    let p = reader(principal)?;
    let search = Search::parse(
        &s.public_url,
        "ServiceRequest",
        SERVICE_REQUEST_SEARCH,
        &headers,
        query,
    )?;
    let patient = search.reference("patient", "Patient")?;
    let statuses = search.value("status").map(|v| {
        v.split(',')
            .flat_map(statuses_of_service_request)
            .collect::<Vec<_>>()
    });
    let (rows, next, total) = match facility_of(&p, None) {
        Ok(facility) => {
            let q = TaskSearch {
                facility: facility.as_deref(),
                person_ref: patient.as_deref(),
                statuses,
                ..Default::default()
            };
            page(&s, &search, q).await?
        }
        Err(()) => (vec![], None, Some(0)),
    };
    let mut resources = Vec::with_capacity(rows.len());
    for row in &rows {
        if let Some((sr, at)) = s.reception.submission(&row.referral_id).await? {
            resources.push(render_service_request(&sr, at, Some(row)));
        }
    }
    Ok(fhir(StatusCode::OK, search.bundle(resources, next, total)))
}

/// `GET /fhir/Consent/{id}`: the person's consent to peer-support referral (the id
/// is the person's, as `POST /fhir/Consent` and the transaction answer it):
/// `active` while in force, `inactive` once revoked.
pub async fn read_consent(
    State(s): State<FhirState>,
    principal: Result<Authenticated, Problem>,
    address: ClientAddress,
    Path(id): Path<String>,
) -> Result<Response, OperationOutcome> {
    let p = reader(principal)?;
    let Some(person) = s.reception.readable_person(&p, &id).await? else {
        return Err(not_found(format!("Consent/{id}")));
    };
    let mut entry = Audit::by(&p, &address, "read", "Consent");
    entry.person_ref = Some(id.clone());
    s.reception.audit.record(entry).await?;
    let mut resource = json!({
        "resourceType": "Consent",
        "id": id,
        "status": if person.consent.is_some() { "active" } else { "inactive" },
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                              "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{id}")},
        "policyRule": {"text": "peer-support-referral"},
    });
    if let Some(c) = &person.consent {
        resource["dateTime"] = json!(c.granted_at);
        resource["performer"] = json!([{"display": c.recorded_by}]);
        resource["policyRule"] = json!({"text": c.scope});
    }
    Ok(fhir(StatusCode::OK, resource))
}
