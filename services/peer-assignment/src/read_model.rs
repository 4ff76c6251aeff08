//! The `roster` read model: peers with their live caseload and availability, where
//! each referral stands in assignment (the waitlist), and the assignment history.

use careloop_backbone::{Projection, StoredEvent};
use sqlx::PgConnection;

use crate::domain::{AssignmentEvent, Availability, PeerEvent};

pub struct Roster;

#[async_trait::async_trait]
impl Projection for Roster {
    fn name(&self) -> &'static str {
        "roster"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "peer_assignment.peers",
            "peer_assignment.assignments",
            "peer_assignment.assignment_history",
        ]
    }

    async fn apply(&self, e: &StoredEvent, tx: &mut PgConnection) -> anyhow::Result<()> {
        match e.aggregate_type.as_str() {
            "Peer" => apply_peer(e, e.decode()?, tx).await,
            "Assignment" => apply_assignment(e, e.decode()?, tx).await,
            _ => Ok(()),
        }
    }
}

async fn apply_peer(
    e: &StoredEvent,
    event: PeerEvent,
    tx: &mut PgConnection,
) -> anyhow::Result<()> {
    let (id, at) = (&e.aggregate_id, e.recorded_at);
    match event {
        // A registration inserts the peer; a profile update rewrites the profile and
        // keeps availability and the registration time.
        PeerEvent::PeerRegistered(p) | PeerEvent::PeerProfileUpdated(p) => {
            sqlx::query(
                "INSERT INTO peer_assignment.peers (peer_id, name, languages, gender,
                    lived_experience, regions, modes, max_caseload, availability,
                    registered_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'active', $9, $9)
                 ON CONFLICT (peer_id) DO UPDATE SET name = EXCLUDED.name,
                    languages = EXCLUDED.languages, gender = EXCLUDED.gender,
                    lived_experience = EXCLUDED.lived_experience, regions = EXCLUDED.regions,
                    modes = EXCLUDED.modes, max_caseload = EXCLUDED.max_caseload,
                    updated_at = EXCLUDED.updated_at",
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
        PeerEvent::AvailabilityChanged(a) => {
            let until = match &a {
                Availability::OnLeave { until } => Some(*until),
                _ => None,
            };
            sqlx::query(
                "UPDATE peer_assignment.peers SET availability = $2, available_from = $3,
                    updated_at = $4 WHERE peer_id = $1",
            )
            .bind(id)
            .bind(a.as_str())
            .bind(until)
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
    }
    Ok(())
}

async fn apply_assignment(
    e: &StoredEvent,
    event: AssignmentEvent,
    tx: &mut PgConnection,
) -> anyhow::Result<()> {
    let (id, at) = (&e.aggregate_id, e.recorded_at);
    let set = |status: &'static str, peer: Option<String>| (status, peer);
    let (status, peer) = match event {
        AssignmentEvent::AssignmentRequested(r) => {
            sqlx::query(
                "INSERT INTO peer_assignment.assignments (referral_id, person_ref, status,
                    priority, requested_at, updated_at)
                 VALUES ($1, $2, 'matching', $3, $4, $4)",
            )
            .bind(id)
            .bind(&r.person_ref)
            .bind(&r.priority)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            return Ok(());
        }
        AssignmentEvent::AssignmentWaitlisted { .. } => {
            // The first wait counts: a referral keeps its place in the queue when a
            // later attempt waits again.
            sqlx::query(
                "UPDATE peer_assignment.assignments SET status = 'waitlisted', peer_id = NULL,
                    waitlisted_at = COALESCE(waitlisted_at, $2), updated_at = $2
                 WHERE referral_id = $1",
            )
            .bind(id)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            return Ok(());
        }
        AssignmentEvent::PeerAssigned {
            peer_id, request, ..
        }
        | AssignmentEvent::PeerReassigned {
            to_peer: peer_id,
            request,
            ..
        } => {
            sqlx::query(
                "INSERT INTO peer_assignment.assignment_history (referral_id, person_ref, peer_id, assigned_at)
                 VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(&request.person_ref)
            .bind(&peer_id)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            set("assigned", Some(peer_id))
        }
        AssignmentEvent::PeerProposed { peer_id } => set("proposed", Some(peer_id)),
        AssignmentEvent::ProposalDeclined { .. }
        | AssignmentEvent::AssignmentRematching
        | AssignmentEvent::AssignmentHandedBack { .. } => set("matching", None),
        AssignmentEvent::AssignmentReopened { .. } => {
            sqlx::query(
                "UPDATE peer_assignment.assignments SET waitlisted_at = NULL WHERE referral_id = $1",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            set("matching", None)
        }
        AssignmentEvent::AssignmentReleased { .. } => set("released", None),
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
    Ok(())
}
