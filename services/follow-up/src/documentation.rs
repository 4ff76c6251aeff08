//! Contact documentation over HTTP: the billing part of a contact as a peer gives
//! it (checked against the organisation's service codes), corrections before
//! signing, the supervisor's signature, and addenda to a signed contact.
//!
//! - `PUT /v1/referrals/{id}/contacts/{contact_id}/documentation`: the peer corrects
//!   end time, place and billing until the contact is signed (409 after).
//! - `POST /v1/referrals/{id}/contacts/{contact_id}/signature`: a coordinator, as
//!   supervisor, signs; 422 naming what is missing.
//! - `POST /v1/referrals/{id}/contacts/{contact_id}/addenda`: a later change to a
//!   signed contact, kept beside it (sealed like notes).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{post, put};
use axum::{Json, Router};
use careloop_config::ServiceCode;
use careloop_web::{
    ApiJson, Authenticated, CorrelationId, Needs, Principal, Problem, Role, RouteRule,
};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::api::{AppState, acting_peer, execute, key_or_new};
use crate::domain::{Billing, Documentation, FollowUpCommand, Place};
use crate::notes::seal_for_plan;

/// Most modifiers one claim line carries (the CMS-1500 has four places).
const MAX_MODIFIERS: usize = 4;

pub const RULES: &[RouteRule] = &[
    RouteRule::token(
        "PUT",
        "/v1/referrals/{id}/contacts/{contact_id}/documentation",
        &[Needs::write("Communication")],
    ),
    RouteRule::token(
        "POST",
        "/v1/referrals/{id}/contacts/{contact_id}/signature",
        &[Needs::write("Communication")],
    ),
    RouteRule::token(
        "POST",
        "/v1/referrals/{id}/contacts/{contact_id}/addenda",
        &[Needs::write("Communication")],
    ),
];

pub fn routes(state: AppState) -> Router {
    Router::new()
        .route(
            "/v1/referrals/{id}/contacts/{contact_id}/documentation",
            put(document),
        )
        .route(
            "/v1/referrals/{id}/contacts/{contact_id}/signature",
            post(sign),
        )
        .route(
            "/v1/referrals/{id}/contacts/{contact_id}/addenda",
            post(add_addendum),
        )
        .with_state(state)
}

/// A contact billed under a service code, as the peer gives it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BillingRequest {
    service_code: String,
    #[serde(default)]
    modifiers: Vec<String>,
    /// The peer attests that the service was provided as documented.
    #[serde(default)]
    attested: bool,
}

/// The documentation fields of a contact request.
pub struct DocumentationRequest {
    pub duration_minutes: Option<u32>,
    pub ended_at: Option<DateTime<Utc>>,
    pub place: Option<Place>,
    pub billing: Option<BillingRequest>,
}

impl DocumentationRequest {
    /// Checks the request against the organisation's service codes; the plan
    /// computes minutes and units.
    pub fn parse(
        self,
        codes: &[ServiceCode],
        principal: &Principal,
        now: DateTime<Utc>,
    ) -> Result<Documentation, Problem> {
        if self.duration_minutes.is_some_and(|d| d > 24 * 60) {
            return Err(Problem::invalid("duration_minutes", "must be at most 1440"));
        }
        let billing = self
            .billing
            .map(|b| b.parse(codes, principal, now))
            .transpose()?;
        Ok(Documentation {
            duration_minutes: self.duration_minutes,
            ended_at: self.ended_at,
            place: self.place,
            billing,
        })
    }
}

impl BillingRequest {
    fn parse(
        self,
        codes: &[ServiceCode],
        principal: &Principal,
        now: DateTime<Utc>,
    ) -> Result<Billing, Problem> {
        let Some(code) = codes.iter().find(|c| c.code == self.service_code) else {
            let known: Vec<&str> = codes.iter().map(|c| c.code.as_str()).collect();
            return Err(Problem::invalid(
                "billing.service_code",
                format!(
                    "{:?} is not one of the organisation's service codes ({})",
                    self.service_code,
                    known.join(", ")
                ),
            ));
        };
        if self.modifiers.len() > MAX_MODIFIERS {
            return Err(Problem::invalid(
                "billing.modifiers",
                format!("at most {MAX_MODIFIERS} modifiers"),
            ));
        }
        if let Some((_, m)) = self
            .modifiers
            .iter()
            .enumerate()
            .find(|(i, m)| self.modifiers[..*i].contains(m))
        {
            return Err(Problem::invalid(
                "billing.modifiers",
                format!("{m:?} is given twice"),
            ));
        }
        if let Some(m) = self.modifiers.iter().find(|m| !code.modifiers.contains(m)) {
            return Err(Problem::invalid(
                "billing.modifiers",
                format!(
                    "{m:?} is not a modifier of {} ({})",
                    code.code,
                    code.modifiers.join(", ")
                ),
            ));
        }
        // Only the peer who provided the service can attest to it.
        let attested_by = match (self.attested, principal.role) {
            (false, _) => None,
            (true, Role::Peer) => principal.peer_id.clone(),
            (true, _) => {
                return Err(Problem::invalid(
                    "billing.attested",
                    "only the peer who provided the service attests to it",
                ));
            }
        };
        Ok(Billing {
            service_code: code.code.clone(),
            modifiers: self.modifiers,
            unit_minutes: code.unit_minutes,
            rounding: code.rounding,
            units: 0,
            attested_at: attested_by.as_ref().map(|_| now),
            attested_by,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DocumentBody {
    duration_minutes: Option<u32>,
    ended_at: Option<DateTime<Utc>>,
    place: Option<Place>,
    billing: Option<BillingRequest>,
}

/// `PUT …/documentation`: replaces the contact's documentation until it is signed.
async fn document(
    State(s): State<AppState>,
    principal: Authenticated,
    CorrelationId(correlation): CorrelationId,
    Path((referral_id, contact_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<DocumentBody>,
) -> Result<Json<serde_json::Value>, Problem> {
    let by_peer = acting_peer(&principal)?;
    let now = Utc::now();
    let documentation = DocumentationRequest {
        duration_minutes: body.duration_minutes,
        ended_at: body.ended_at,
        place: body.place,
        billing: body.billing,
    }
    .parse(&s.service_codes, &principal, now)?;
    let command = FollowUpCommand::DocumentContact {
        contact_id: contact_id.clone(),
        documentation,
        by_peer,
        now,
    };
    execute(&s, &principal, correlation, &referral_id, command).await?;
    Ok(Json(
        serde_json::json!({"referral_id": referral_id, "contact_id": contact_id}),
    ))
}

/// `POST …/signature`: the supervisor signs; the contact is locked from then on.
async fn sign(
    State(s): State<AppState>,
    principal: Authenticated,
    CorrelationId(correlation): CorrelationId,
    Path((referral_id, contact_id)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, Problem> {
    principal.require(&[Role::Coordinator])?;
    let now = Utc::now();
    // The supervisor as the billing system shows them: their name (else who signed).
    let signed_by = principal
        .name
        .clone()
        .filter(|n| !n.trim().is_empty())
        .unwrap_or_else(|| principal.actor());
    let command = FollowUpCommand::SignContact {
        contact_id: contact_id.clone(),
        signed_by: signed_by.clone(),
        now,
    };
    execute(&s, &principal, correlation, &referral_id, command).await?;
    Ok(Json(serde_json::json!({
        "referral_id": referral_id, "contact_id": contact_id,
        "signed_by": signed_by, "signed_at": now,
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddendumBody {
    text: String,
}

/// `POST …/addenda`: a change to a signed contact, kept beside the original.
async fn add_addendum(
    State(s): State<AppState>,
    principal: Authenticated,
    CorrelationId(correlation): CorrelationId,
    headers: axum::http::HeaderMap,
    Path((referral_id, contact_id)): Path<(String, String)>,
    ApiJson(body): ApiJson<AddendumBody>,
) -> Result<(StatusCode, Json<serde_json::Value>), Problem> {
    let by_peer = acting_peer(&principal)?;
    if body.text.trim().is_empty() {
        return Err(Problem::invalid("text", "an addendum needs its text"));
    }
    let addendum_id = key_or_new(&headers, &principal, &format!("addendum:{contact_id}"));
    let text = seal_for_plan(&s.pool, &s.vault, &referral_id, &body.text).await?;
    let command = FollowUpCommand::AddAddendum {
        contact_id: contact_id.clone(),
        addendum_id: addendum_id.clone(),
        text,
        by_peer,
        added_by: principal.actor(),
        now: Utc::now(),
    };
    execute(&s, &principal, correlation, &referral_id, command).await?;
    Ok((
        StatusCode::CREATED,
        Json(
            serde_json::json!({"referral_id": referral_id, "contact_id": contact_id, "addendum_id": addendum_id}),
        ),
    ))
}
