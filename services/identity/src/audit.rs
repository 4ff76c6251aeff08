//! The audit log: every read or change of a person's details, and every sign-in,
//! failed sign-in, token issued and token refused, with who (subject, role, facility,
//! client), what (the resource and the person's `person_ref`, never their details),
//! when, from where (the caller's address) and the outcome.
//!
//! Each entry is an event of its own AuditEntry in the event store, which is
//! append-only (no update or delete is allowed on it), written before the access
//! it records is answered; the `audit_log` read model (`careloop replay audit`)
//! answers `GET /v1/audit` and the FHIR `AuditEvent` export.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use careloop_access::{Needs, Principal, Role};
use careloop_backbone::{Projection, StoredEvent, rows};
use careloop_web::{ApiQuery, Authenticated, Problem, RouteRule};
use chrono::{DateTime, SubsecRound, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};

/// One audited access.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Entry {
    pub at: DateTime<Utc>,
    pub sub: Option<String>,
    pub role: Option<String>,
    pub facility: Option<String>,
    pub client_id: Option<String>,
    /// read | create | update | delete | sign-in | sign-out | token
    pub action: String,
    /// What was read or changed: contact-card, person, Patient, consent, session, token …
    pub resource: String,
    pub person_ref: Option<String>,
    pub referral_id: Option<String>,
    /// The caller's address.
    pub address: Option<String>,
    /// success | refused | failed
    pub outcome: String,
    /// Why, for a refusal (never PHI).
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AuditEntry {
    recorded: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AuditEvent {
    AccessRecorded(Entry),
}

impl DomainEvent for AuditEvent {
    fn event_type(&self) -> String {
        "AccessRecorded".to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AuditError {}

impl From<AuditError> for Problem {
    fn from(e: AuditError) -> Problem {
        match e {}
    }
}

impl Aggregate for AuditEntry {
    const TYPE: &'static str = "AuditEntry";
    type Command = Entry;
    type Event = AuditEvent;
    type Error = AuditError;
    type Services = ();

    async fn handle(
        &mut self,
        entry: Entry,
        _: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), AuditError> {
        if !self.recorded {
            sink.write(AuditEvent::AccessRecorded(entry), self).await;
        }
        Ok(())
    }

    fn apply(&mut self, _: AuditEvent) {
        self.recorded = true;
    }
}

/// Where a request came from: the first address of `X-Forwarded-For` (set by the
/// front door), else the connection's peer.
#[derive(Debug, Clone, Default)]
pub struct ClientAddress(pub Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddress {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let forwarded = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(',').next())
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty());
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0.ip().to_string());
        Ok(ClientAddress(forwarded.or(peer)))
    }
}

/// Writes audit entries; cloned into every handler that touches PHI or identity.
#[derive(Clone)]
pub struct Audit {
    pool: PgPool,
    schema: &'static str,
}

impl Audit {
    pub fn new(pool: PgPool, schema: &'static str) -> Self {
        Audit { pool, schema }
    }

    /// Records `entry`; an access that cannot be recorded is not answered (503).
    pub async fn record(&self, entry: Entry) -> Result<(), Problem> {
        self.record_all(vec![entry]).await
    }

    /// Records several entries in one transaction (a page that shows several people).
    ///
    /// Each entry is the first and only event of a fresh AuditEntry, so nothing is
    /// loaded and nothing can conflict: the events are written as the store writes
    /// them (`store::Repository`), in one statement.
    pub async fn record_all(&self, entries: Vec<Entry>) -> Result<(), Problem> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut ids = Vec::with_capacity(entries.len());
        let mut payloads = Vec::with_capacity(entries.len());
        for e in entries {
            ids.push(uuid::Uuid::new_v4().to_string());
            payloads
                .push(serde_json::to_value(AuditEvent::AccessRecorded(e)).map_err(Problem::from)?);
        }
        let written = sqlx::query(&format!(
            "INSERT INTO {}.events (aggregate_type, aggregate_id, sequence, event_type,
                 event_version, payload, metadata)
             SELECT $1, id, 1, $2, $3, payload::json,
                    json_build_object('correlation_id', id, 'actor', 'audit')
             FROM unnest($4::text[], $5::jsonb[]) AS t(id, payload)",
            self.schema
        ))
        .bind(AuditEntry::TYPE)
        .bind("AccessRecorded")
        .bind("1")
        .bind(&ids)
        .bind(&payloads)
        .execute(&self.pool)
        .await;
        written.map(|_| ()).map_err(|e| {
            tracing::error!(error = %e, "audit entries could not be written");
            Problem::new(
                axum::http::StatusCode::SERVICE_UNAVAILABLE,
                "the audit log is unavailable; nothing was read",
            )
        })
    }

    /// An entry for `principal` doing `action` on `resource`, now.
    pub fn by(
        principal: &Principal,
        address: &ClientAddress,
        action: &str,
        resource: &str,
    ) -> Entry {
        Entry {
            at: Utc::now(),
            sub: Some(principal.sub.clone()),
            role: Some(principal.role.as_str().to_string()),
            facility: principal.facility.clone(),
            client_id: principal.client_id.clone(),
            action: action.to_string(),
            resource: resource.to_string(),
            address: address.0.clone(),
            outcome: "success".into(),
            ..Default::default()
        }
    }
}

/// The `audit` read model.
pub struct AuditLog;

#[async_trait::async_trait]
impl Projection for AuditLog {
    fn name(&self) -> &'static str {
        "audit"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["intake.audit_log"]
    }

    fn event_types(&self) -> Option<&'static [&'static str]> {
        Some(&["AccessRecorded"])
    }

    /// An append-only log: a batch is one insert (`careloop_backbone::rows`).
    async fn apply(&self, events: &[StoredEvent], tx: &mut PgConnection) -> anyhow::Result<()> {
        let mut lines = Vec::with_capacity(events.len());
        for e in events {
            let AuditEvent::AccessRecorded(mut entry) = e.decode()?;
            // Cut to the microsecond, as sqlx binds a time (see `rows`).
            entry.at = entry.at.trunc_subsecs(6);
            lines.push(LogLine {
                entry_id: &e.aggregate_id,
                entry,
            });
        }
        rows::insert(tx, "audit_log", &lines).await
    }
}

/// A row of `audit_log`: the entry under its id.
#[derive(Serialize)]
struct LogLine<'a> {
    entry_id: &'a str,
    #[serde(flatten)]
    entry: Entry,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AuditRow {
    pub entry_id: String,
    pub at: DateTime<Utc>,
    pub sub: Option<String>,
    pub role: Option<String>,
    pub facility: Option<String>,
    pub client_id: Option<String>,
    pub action: String,
    pub resource: String,
    pub person_ref: Option<String>,
    pub referral_id: Option<String>,
    pub address: Option<String>,
    pub outcome: String,
    pub detail: Option<String>,
}

/// The access rule of each route here (enforced by the access layer).
pub const RULES: &[RouteRule] = &[RouteRule::token(
    "GET",
    "/v1/audit",
    &[Needs::read("AuditEvent")],
)];

pub fn routes(pool: PgPool) -> Router {
    Router::new()
        .route("/v1/audit", get(query))
        .with_state(pool)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    person_ref: Option<String>,
    sub: Option<String>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    cursor: Option<String>,
    limit: Option<i64>,
}

/// The most entries one page holds.
pub const MAX_PAGE: i64 = 500;

/// `GET /v1/audit?person_ref=&sub=&from=&to=&cursor=&limit=` (administrators): the
/// entries oldest first, paged; as FHIR AuditEvent resources in a searchset Bundle
/// with `Accept: application/fhir+json`.
async fn query(
    State(pool): State<PgPool>,
    principal: Authenticated,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<Response, Problem> {
    principal.require(&[Role::Admin])?;
    let limit = match q.limit {
        None => 100,
        Some(n) if (1..=MAX_PAGE).contains(&n) => n,
        Some(_) => {
            return Err(Problem::invalid(
                "limit",
                format!("limit must be between 1 and {MAX_PAGE}"),
            ));
        }
    };
    let after = q
        .cursor
        .as_deref()
        .map(|c| {
            let bad = || Problem::invalid("cursor", "not a cursor this API returned");
            let raw = String::from_utf8(B64.decode(c).map_err(|_| bad())?).map_err(|_| bad())?;
            let (micros, id) = raw.split_once('|').ok_or_else(bad)?;
            let at = DateTime::from_timestamp_micros(micros.parse().map_err(|_| bad())?)
                .ok_or_else(bad)?;
            Ok::<_, Problem>((at, id.to_string()))
        })
        .transpose()?;
    let mut rows: Vec<AuditRow> = sqlx::query_as(
        "SELECT entry_id, at, sub, role, facility, client_id, action, resource, person_ref,
                referral_id, address, outcome, detail
         FROM intake.audit_log
         WHERE ($1::text IS NULL OR person_ref = $1)
           AND ($2::text IS NULL OR sub = $2)
           AND ($3::timestamptz IS NULL OR at >= $3)
           AND ($4::timestamptz IS NULL OR at < $4)
           AND ($5::timestamptz IS NULL OR (at, entry_id) > ($5, $6))
         ORDER BY at, entry_id LIMIT $7",
    )
    .bind(&q.person_ref)
    .bind(&q.sub)
    .bind(q.from)
    .bind(q.to)
    .bind(after.as_ref().map(|a| a.0))
    .bind(after.as_ref().map(|a| a.1.clone()))
    .bind(limit + 1)
    .fetch_all(&pool)
    .await
    .map_err(Problem::from)?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last()
            .map(|r| B64.encode(format!("{}|{}", r.at.timestamp_micros(), r.entry_id)))
    } else {
        None
    };
    let fhir = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("application/fhir+json"));
    if fhir {
        let entry: Vec<serde_json::Value> = rows
            .iter()
            .map(|r| {
                serde_json::json!({"fullUrl": format!("urn:uuid:{}", r.entry_id),
                                   "resource": audit_event(r), "search": {"mode": "match"}})
            })
            .collect();
        let body = serde_json::json!({
            "resourceType": "Bundle", "type": "searchset", "total": entry.len(),
            "entry": entry,
        });
        let mut res = Json(body).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/fhir+json"),
        );
        return Ok(res);
    }
    Ok(Json(serde_json::json!({ "items": rows, "next_cursor": next_cursor })).into_response())
}

/// One entry as a FHIR R4 AuditEvent (DICOM/HL7 audit codes for the event type and
/// action; the person as an entity reference, never their details).
pub fn audit_event(r: &AuditRow) -> serde_json::Value {
    let action = match r.action.as_str() {
        "create" => "C",
        "update" => "U",
        "delete" => "D",
        "read" => "R",
        _ => "E",
    };
    let (type_code, type_display) = match r.action.as_str() {
        "sign-in" | "sign-out" | "token" => ("110114", "User Authentication"),
        _ => ("rest", "RESTful Operation"),
    };
    let type_system = if type_code == "rest" {
        "http://terminology.hl7.org/CodeSystem/audit-event-type"
    } else {
        "http://dicom.nema.org/resources/ontology/DCM"
    };
    let outcome = if r.outcome == "success" { "0" } else { "4" };
    let mut agent = serde_json::json!({
        "requestor": true,
        "who": {"identifier": {"value": r.sub.clone().unwrap_or_else(|| "unknown".into())}},
    });
    if let Some(role) = &r.role {
        agent["role"] = serde_json::json!([{"text": role}]);
    }
    if let Some(address) = &r.address {
        agent["network"] = serde_json::json!({"address": address, "type": "2"});
    }
    if let Some(client) = &r.client_id {
        agent["altId"] = serde_json::json!(client);
    }
    let mut entity = vec![serde_json::json!({
        "what": {"display": r.resource},
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                 "code": "2", "display": "System Object"},
    })];
    if let Some(p) = &r.person_ref {
        entity.push(serde_json::json!({
            "what": {"reference": format!("Patient/{p}")},
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type",
                     "code": "1", "display": "Person"},
        }));
    }
    let mut event = serde_json::json!({
        "resourceType": "AuditEvent",
        "id": r.entry_id,
        "type": {"system": type_system, "code": type_code, "display": type_display},
        "action": action,
        "recorded": r.at,
        "outcome": outcome,
        "agent": [agent],
        "source": {"observer": {"display": "careloop"}},
        "entity": entity,
    });
    if let Some(d) = &r.detail {
        event["outcomeDesc"] = serde_json::json!(d);
    }
    event
}
