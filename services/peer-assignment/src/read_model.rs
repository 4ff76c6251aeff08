//! The `roster` read model: peers with their live caseload, and assignments.

use careloop_backbone::{Projection, StoredEvent};
use sqlx::PgConnection;

use crate::domain::{AssignmentEvent, PeerEvent};

pub struct Roster;

#[async_trait::async_trait]
impl Projection for Roster {
    fn name(&self) -> &'static str {
        "roster"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["peer_assignment.peers", "peer_assignment.assignments"]
    }

    async fn apply(&self, e: &StoredEvent, tx: &mut PgConnection) -> anyhow::Result<()> {
        let id = &e.aggregate_id;
        let at = e.recorded_at;
        match e.aggregate_type.as_str() {
            "Peer" => match e.decode::<PeerEvent>()? {
                PeerEvent::PeerRegistered(p) => {
                    sqlx::query(
                        "INSERT INTO peer_assignment.peers (peer_id, name, languages, gender,
                            lived_experience, regions, modes, max_caseload, availability,
                            registered_at, updated_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'active', $9, $9)",
                    )
                    .bind(id)
                    .bind(&p.name)
                    .bind(&p.languages)
                    .bind(&p.gender)
                    .bind(&p.lived_experience)
                    .bind(&p.regions)
                    .bind(&p.modes)
                    .bind(p.max_caseload as i32)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
                PeerEvent::SlotReserved { .. } | PeerEvent::SlotReleased { .. } => {
                    let delta = if e.event_type == "SlotReserved" {
                        1
                    } else {
                        -1
                    };
                    sqlx::query(
                        "UPDATE peer_assignment.peers SET active_count = active_count + $2,
                            updated_at = $3 WHERE peer_id = $1",
                    )
                    .bind(id)
                    .bind(delta)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?;
                }
            },
            "Assignment" => {
                let (status, peer) = match e.decode::<AssignmentEvent>()? {
                    AssignmentEvent::AssignmentRequested(r) => {
                        sqlx::query(
                            "INSERT INTO peer_assignment.assignments (referral_id, status, priority,
                                requested_at, updated_at) VALUES ($1, 'matching', $2, $3, $3)",
                        )
                        .bind(id)
                        .bind(&r.priority)
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                        return Ok(());
                    }
                    AssignmentEvent::AssignmentReopened { .. } => ("matching", None),
                    AssignmentEvent::AssignmentReleased { .. } => ("released", None),
                    AssignmentEvent::PeerProposed { peer_id } => ("proposed", Some(peer_id)),
                    AssignmentEvent::ProposalDeclined { .. } => ("matching", None),
                    AssignmentEvent::PeerAssigned { peer_id, .. } => ("assigned", Some(peer_id)),
                    AssignmentEvent::AssignmentWaitlisted { .. } => ("waitlisted", None),
                };
                sqlx::query(
                    "UPDATE peer_assignment.assignments SET status = $2, peer_id = $3, updated_at = $4
                     WHERE referral_id = $1",
                )
                .bind(id)
                .bind(status)
                .bind(peer)
                .bind(at)
                .execute(&mut *tx)
                .await?;
            }
            _ => {}
        }
        Ok(())
    }
}
