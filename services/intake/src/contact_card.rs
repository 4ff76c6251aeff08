//! The contact card: what the assigned peer needs to reach the person (name, phone,
//! language, how they like to be contacted, the hospital's notes). It comes out of
//! the PHI vault only for the peer who holds the referral, or a coordinator, and
//! each read is logged (by referral and role, never the details).

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use careloop_backbone::{EventHandler, Incoming};
use careloop_events::Payload;
use careloop_web::{Principal, Problem, Role};
use sqlx::{PgConnection, PgPool};

use crate::reception::Reception;

/// Keeps `referral_tasks.peer_id` current from peer-assignment's events.
pub struct PeerOfReferral;

#[async_trait::async_trait]
impl EventHandler for PeerOfReferral {
    async fn handle(&self, event: &Incoming, tx: &mut PgConnection) -> anyhow::Result<()> {
        let at = careloop_events::from_timestamp(event.envelope.occurred_at.as_ref());
        match &event.payload {
            Payload::PeerAssigned(a) => {
                sqlx::query(
                    "INSERT INTO intake.referral_tasks (referral_id, facility, status, last_updated, peer_id)
                     VALUES ($1, $2, 'requested', $3, $4)
                     ON CONFLICT (referral_id) DO UPDATE SET peer_id = $4",
                )
                .bind(&a.referral_id)
                .bind(&a.facility)
                .bind(at)
                .bind(&a.peer_id)
                .execute(&mut *tx)
                .await?;
            }
            Payload::PeerUnassigned(u) => {
                sqlx::query(
                    "UPDATE intake.referral_tasks SET peer_id = NULL WHERE referral_id = $1 AND peer_id = $2",
                )
                .bind(&u.referral_id)
                .bind(&u.peer_id)
                .execute(&mut *tx)
                .await?;
            }
            _ => {}
        }
        Ok(())
    }
}

#[derive(Clone)]
pub struct CardState {
    pub pool: PgPool,
    pub reception: Reception,
}

pub fn routes(state: CardState) -> Router {
    Router::new()
        .route("/v1/referrals/{id}/contact-card", get(card))
        .with_state(Arc::new(state))
}

async fn card(
    State(s): State<Arc<CardState>>,
    principal: Principal,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, Problem> {
    principal.require(&[Role::Peer, Role::Coordinator])?;
    if principal.role == Role::Peer {
        let holder: Option<Option<String>> =
            sqlx::query_scalar("SELECT peer_id FROM intake.referral_tasks WHERE referral_id = $1")
                .bind(&id)
                .fetch_optional(&s.pool)
                .await
                .map_err(Problem::internal)?;
        if holder.flatten() != principal.peer_id {
            return Err(Problem::forbidden(
                "only the peer who holds this referral reads its contact card",
            ));
        }
    }
    let Some((submitted, _)) = s.reception.submission(&id).await? else {
        return Err(Problem::not_found(format!("no referral {id}")));
    };
    let person = s.reception.person(&submitted.person_ref).await?;
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
    tracing::info!(referral_id = %id, role = principal.role.as_str(), "contact card read");
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
