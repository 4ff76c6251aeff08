//! The contact card: what the assigned peer needs to reach the person (name, phone,
//! language, how they like to be contacted, the hospital's notes). It comes out of
//! the PHI vault only for the peer who holds the referral (or held it when it
//! completed: they make the caring contacts the person may agree to), or a
//! coordinator, and
//! each read goes to the audit log first (who, which person, never the details).

use std::sync::Arc;

use crate::tasks::read_model::PeerAccess;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use careloop_web::{Authenticated, Needs, Problem, Role, RouteRule};
use futures::{StreamExt, TryStreamExt};
use sqlx::PgPool;

use crate::reception::Reception;
use careloop_identity::audit::{Audit, ClientAddress};

#[derive(Clone)]
pub struct CardState {
    pub pool: PgPool,
    pub reception: Reception,
}

/// The access rule of each route here (enforced by the access layer).
pub const RULES: &[RouteRule] = &[
    RouteRule::token(
        "GET",
        "/v1/referrals/{id}/contact-card",
        &[Needs::read("Patient")],
    ),
    RouteRule::token("POST", "/v1/referrals/people", &[Needs::read("Patient")]),
];

pub fn routes(state: CardState) -> Router {
    Router::new()
        .route("/v1/referrals/{id}/contact-card", get(card))
        .route("/v1/referrals/people", axum::routing::post(people))
        .with_state(Arc::new(state))
}

async fn card(
    State(s): State<Arc<CardState>>,
    principal: Authenticated,
    address: ClientAddress,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, Problem> {
    principal.require(&[Role::Peer, Role::Coordinator])?;
    let access = match principal.role {
        Role::Peer => {
            let peer = principal.peer_id.as_deref().unwrap_or_default();
            crate::tasks::read_model::peer_access(&s.pool, &id, peer)
                .await
                .map_err(Problem::from)?
        }
        _ => PeerAccess::Full,
    };
    if access == PeerAccess::None {
        return Err(Problem::forbidden(
            "only the peer who holds this referral reads its contact card",
        ));
    }
    let Some((submitted, _)) = s.reception.submission(&id).await? else {
        return Err(Problem::not_found(format!("no referral {id}")));
    };
    let person = s.reception.person(&submitted.person_ref).await?;
    Reception::require_not_erased(&person)?;
    if access == PeerAccess::LastHolder && person.consent.is_none() {
        return Err(Problem::forbidden(
            "the person's consent was revoked: their details are no longer shared",
        ));
    }
    let details = person
        .details
        .unwrap_or_else(|| crate::domain::PersonDetails {
            identifiers: vec![],
            name: None,
            birth_date: None,
            phone: None,
            gender: None,
            postcode: None,
            language: submitted.language.clone(),
        });
    // Recorded before the details leave: a read that cannot be audited is not made.
    let mut entry = Audit::by(&principal, &address, "read", "contact-card");
    entry.person_ref = Some(submitted.person_ref.clone());
    entry.referral_id = Some(id.clone());
    s.reception.audit.record(entry).await?;
    Ok(Json(serde_json::json!({
        "referral_id": id,
        "person_ref": submitted.person_ref,
        "name": details.name,
        "phone": details.phone,
        "language": details.language,
        "gender": details.gender,
        "contact_modes": submitted.preferences.contact_modes,
        "preferred_peer_gender": submitted.preferences.peer_gender,
        "hospital_notes": submitted.notes,
    })))
}

/// The most referrals one `POST /v1/referrals/people` names.
pub const MAX_PEOPLE: usize = 100;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct PeopleRequest {
    referral_ids: Vec<String>,
}

/// `POST /v1/referrals/people`: how to address the people of several referrals at
/// once (name, the name they go by, language, contact preferences), for the lists
/// staff work from. Each is given only to whom may read that referral: a peer their
/// own, a hospital its facility's; every person shown is recorded in the audit log.
/// (A POST, so the referral ids stay out of URLs and logs.)
async fn people(
    State(s): State<Arc<CardState>>,
    principal: Authenticated,
    address: ClientAddress,
    careloop_web::ApiJson(body): careloop_web::ApiJson<PeopleRequest>,
) -> Result<Json<serde_json::Value>, Problem> {
    principal.require(&[Role::Peer, Role::Coordinator, Role::Admin, Role::Hospital])?;
    if body.referral_ids.len() > MAX_PEOPLE {
        return Err(Problem::invalid(
            "referral_ids",
            format!("at most {MAX_PEOPLE} referrals at once"),
        ));
    }
    let mut items = Vec::new();
    let mut entries = Vec::new();
    // Looked up a few at a time (a peer's Today names 40 people at once), in order.
    let looked: Vec<_> = futures::stream::iter(body.referral_ids.clone())
        .map(|id| {
            let (s, who) = (s.clone(), principal.0.clone());
            async move {
                let Some((submitted, _)) = s.reception.submission(&id).await? else {
                    return Ok::<_, Problem>(None);
                };
                let access = match who.role {
                    Role::Coordinator | Role::Admin => PeerAccess::Full,
                    Role::Hospital if who.may_see_facility(&submitted.facility) => PeerAccess::Full,
                    Role::Hospital => PeerAccess::None,
                    Role::Peer => match who.peer_id.as_deref() {
                        Some(peer) => crate::tasks::read_model::peer_access(&s.pool, &id, peer)
                            .await
                            .map_err(Problem::from)?,
                        None => PeerAccess::None,
                    },
                };
                if access == PeerAccess::None {
                    return Ok(None);
                }
                let person = s.reception.person(&submitted.person_ref).await?;
                if access == PeerAccess::LastHolder && person.consent.is_none() {
                    return Ok(None);
                }
                Ok(Some((id, submitted, person)))
            }
        })
        .buffered(8)
        .try_collect()
        .await?;
    for (id, submitted, person) in looked.into_iter().flatten() {
        let name = person.details.as_ref().and_then(|d| d.name.clone());
        let language = person
            .details
            .as_ref()
            .map(|d| d.language.clone())
            .unwrap_or_else(|| submitted.language.clone());
        let mut entry = Audit::by(&principal, &address, "read", "person-summary");
        entry.person_ref = Some(submitted.person_ref.clone());
        entry.referral_id = Some(id.clone());
        entries.push(entry);
        items.push(serde_json::json!({
            "referral_id": id,
            "person_ref": submitted.person_ref,
            "name": name,
            "language": language,
            "contact_modes": submitted.preferences.contact_modes,
        }));
    }
    // Recorded before the details leave.
    s.reception.audit.record_all(entries).await?;
    Ok(Json(serde_json::json!({ "items": items })))
}
