//! The billing export: signed, billable contacts as lines for the organisation's
//! billing system, and the billed contacts that cannot be billed yet (unsigned or
//! incomplete) as exceptions with their reasons.
//!
//! - `GET /v1/billing/contacts?from=&to=&facility=`: the lines of contacts whose date
//!   of service (UTC) is in `[from, to]` (dates, both days included);
//! - `GET /v1/billing/exceptions?from=&to=&facility=`: the exceptions of the same
//!   period;
//! - `GET /v1/billing/codes`: the organisation's service codes (`CARELOOP_SERVICE_CODES`).
//!
//! Both lists answer JSON, or CSV with `Accept: text/csv`. Neither carries notes or
//! any other PHI: a person appears by their `person_ref`.

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use careloop_web::{ApiQuery, Authenticated, Needs, Problem, Role, RouteRule, csv};
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::api::AppState;
use crate::read_model::{self, BilledContact};

/// The longest period one export covers.
const MAX_DAYS: i64 = 366;

pub const RULES: &[RouteRule] = &[
    RouteRule::token(
        "GET",
        "/v1/billing/contacts",
        &[Needs::read("Communication")],
    ),
    RouteRule::token(
        "GET",
        "/v1/billing/exceptions",
        &[Needs::read("Communication")],
    ),
    RouteRule::token("GET", "/v1/billing/codes", &[Needs::read("Communication")]),
];

pub fn routes(state: AppState) -> Router {
    Router::new()
        .route("/v1/billing/contacts", get(contacts))
        .route("/v1/billing/exceptions", get(exceptions))
        .route("/v1/billing/codes", get(codes))
        .with_state(state)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Period {
    from: Option<String>,
    to: Option<String>,
    facility: Option<String>,
}

/// One claim line: a signed, complete, billable contact.
#[derive(Debug, Serialize)]
pub struct Line {
    pub contact_id: String,
    pub referral_id: String,
    pub person_ref: String,
    pub facility: String,
    pub date_of_service: NaiveDate,
    pub service_code: String,
    pub modifiers: Vec<String>,
    pub units: u32,
    pub minutes: u32,
    /// phone, video, text, or in_person_home / _community / _clinic.
    pub setting: String,
    pub peer_id: String,
    pub attested_at: Option<DateTime<Utc>>,
    pub supervisor: String,
    pub signed_at: DateTime<Utc>,
}

/// A billed contact that cannot be billed yet, and why.
#[derive(Debug, Serialize)]
pub struct Exception {
    pub contact_id: String,
    pub referral_id: String,
    pub person_ref: String,
    pub facility: String,
    pub date_of_service: NaiveDate,
    pub service_code: String,
    pub peer_id: String,
    /// Each reason, by the field that would mend it (`signature` when only the
    /// supervisor's signature is missing).
    pub reasons: Vec<Reason>,
}

#[derive(Debug, Serialize)]
pub struct Reason {
    pub field: &'static str,
    pub reason: String,
}

/// The lines and exceptions of the billed contacts given.
pub fn sort(rows: Vec<BilledContact>) -> (Vec<Line>, Vec<Exception>) {
    let (mut lines, mut exceptions) = (Vec::new(), Vec::new());
    for row in rows {
        let c = &row.contact;
        let Some(billing) = c.billing.as_ref().map(|b| b.0.clone()) else {
            continue;
        };
        let mut reasons: Vec<Reason> = c
            .missing()
            .into_iter()
            .map(|m| Reason {
                field: m.field,
                reason: m.reason,
            })
            .collect();
        if c.signed_at.is_none() {
            reasons.push(Reason {
                field: "signature",
                reason: "not signed by a supervisor".into(),
            });
        }
        let date_of_service = c.occurred_at.date_naive();
        match (reasons.is_empty(), &c.signed_by, c.signed_at) {
            (true, Some(supervisor), Some(signed_at)) => lines.push(Line {
                contact_id: c.contact_id.clone(),
                referral_id: row.referral_id.clone(),
                person_ref: row.person_ref.clone(),
                facility: row.facility.clone(),
                date_of_service,
                service_code: billing.service_code,
                modifiers: billing.modifiers,
                units: billing.units,
                minutes: c.duration_minutes.unwrap_or_default() as u32,
                setting: match &c.place {
                    Some(place) => format!("{}_{place}", c.channel),
                    None => c.channel.clone(),
                },
                peer_id: c.peer_id.clone(),
                attested_at: billing.attested_at,
                supervisor: supervisor.clone(),
                signed_at,
            }),
            _ => exceptions.push(Exception {
                contact_id: c.contact_id.clone(),
                referral_id: row.referral_id.clone(),
                person_ref: row.person_ref.clone(),
                facility: row.facility.clone(),
                date_of_service,
                service_code: billing.service_code,
                peer_id: c.peer_id.clone(),
                reasons,
            }),
        }
    }
    (lines, exceptions)
}

/// The lines as the billing system imports them: one row each, up to four
/// modifier columns (the places of a CMS-1500 line).
pub fn lines_csv(lines: &[Line]) -> String {
    let mut out = csv::line(&[
        "contact_id",
        "referral_id",
        "person_ref",
        "facility",
        "date_of_service",
        "service_code",
        "modifier_1",
        "modifier_2",
        "modifier_3",
        "modifier_4",
        "units",
        "minutes",
        "setting",
        "peer_id",
        "attested_at",
        "supervisor",
        "signed_at",
    ]);
    for l in lines {
        let m = |i: usize| l.modifiers.get(i).cloned().unwrap_or_default();
        out.push_str(&csv::line(&[
            l.contact_id.clone(),
            l.referral_id.clone(),
            l.person_ref.clone(),
            l.facility.clone(),
            l.date_of_service.to_string(),
            l.service_code.clone(),
            m(0),
            m(1),
            m(2),
            m(3),
            l.units.to_string(),
            l.minutes.to_string(),
            l.setting.clone(),
            l.peer_id.clone(),
            l.attested_at.map(|t| t.to_rfc3339()).unwrap_or_default(),
            l.supervisor.clone(),
            l.signed_at.to_rfc3339(),
        ]));
    }
    out
}

pub fn exceptions_csv(exceptions: &[Exception]) -> String {
    let mut out = csv::line(&[
        "contact_id",
        "referral_id",
        "person_ref",
        "facility",
        "date_of_service",
        "service_code",
        "peer_id",
        "reasons",
    ]);
    for e in exceptions {
        let reasons: Vec<String> = e
            .reasons
            .iter()
            .map(|r| format!("{}: {}", r.field, r.reason))
            .collect();
        out.push_str(&csv::line(&[
            e.contact_id.clone(),
            e.referral_id.clone(),
            e.person_ref.clone(),
            e.facility.clone(),
            e.date_of_service.to_string(),
            e.service_code.clone(),
            e.peer_id.clone(),
            reasons.join("; "),
        ]));
    }
    out
}

fn date(field: &'static str, raw: Option<&str>) -> Result<NaiveDate, Problem> {
    let raw =
        raw.ok_or_else(|| Problem::invalid(field, format!("{field} is needed (YYYY-MM-DD)")))?;
    NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map_err(|_| Problem::invalid(field, format!("{field} must be a date, YYYY-MM-DD")))
}

/// The billed contacts of the period asked for, sorted into lines and exceptions.
async fn period(
    s: &AppState,
    principal: &Authenticated,
    q: Period,
) -> Result<(Vec<Line>, Vec<Exception>), Problem> {
    principal.require(&[Role::Coordinator, Role::Admin])?;
    let from = date("from", q.from.as_deref())?;
    let to = date("to", q.to.as_deref())?;
    if to < from {
        return Err(Problem::invalid("to", "to is before from"));
    }
    if (to - from).num_days() >= MAX_DAYS {
        return Err(Problem::invalid(
            "to",
            format!("one export covers at most {MAX_DAYS} days"),
        ));
    }
    let start = from.and_time(chrono::NaiveTime::MIN).and_utc();
    let end = to
        .checked_add_days(chrono::Days::new(1))
        .ok_or_else(|| Problem::invalid("to", "to is too far in the future"))?
        .and_time(chrono::NaiveTime::MIN)
        .and_utc();
    let rows = read_model::billed_contacts(&s.pool, start, end, q.facility.as_deref())
        .await
        .map_err(Problem::from)?;
    Ok(sort(rows))
}

async fn contacts(
    State(s): State<AppState>,
    principal: Authenticated,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<Period>,
) -> Result<Response, Problem> {
    let (lines, exceptions) = period(&s, &principal, q).await?;
    if csv::wanted(&headers) {
        return Ok(csv::response(lines_csv(&lines)));
    }
    let units: u32 = lines.iter().map(|l| l.units).sum();
    Ok(Json(serde_json::json!({
        "lines": lines, "units": units, "exceptions": exceptions.len(),
    }))
    .into_response())
}

async fn exceptions(
    State(s): State<AppState>,
    principal: Authenticated,
    headers: HeaderMap,
    ApiQuery(q): ApiQuery<Period>,
) -> Result<Response, Problem> {
    let (_, exceptions) = period(&s, &principal, q).await?;
    if csv::wanted(&headers) {
        return Ok(csv::response(exceptions_csv(&exceptions)));
    }
    Ok(Json(serde_json::json!({ "exceptions": exceptions })).into_response())
}

async fn codes(
    State(s): State<AppState>,
    principal: Authenticated,
) -> Result<Json<serde_json::Value>, Problem> {
    principal.require(&[Role::Peer, Role::Coordinator, Role::Admin])?;
    Ok(Json(serde_json::json!({ "codes": *s.service_codes })))
}
