//! The `roster` read model: peers with their live caseload and availability, where
//! each referral stands in assignment (the waitlist), and the assignment history;
//! rebuilt from peer-assignment's events (`careloop replay roster`), and every query
//! on it.

use std::collections::HashSet;

use careloop_backbone::{Projection, StoredEvent};
use careloop_events::Priority;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use crate::domain::{AssignmentEvent, Availability, PeerEvent};
use crate::ranking::RosterPeer;

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
                "INSERT INTO peers (peer_id, name, languages, gender,
                    lived_experience, regions, modes, max_caseload, availability,
                    registered_at, updated_at, cert_issuer, cert_number, cert_expires_on)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'active', $9, $9, $10, $11, $12)
                 ON CONFLICT (peer_id) DO UPDATE SET name = EXCLUDED.name,
                    languages = EXCLUDED.languages, gender = EXCLUDED.gender,
                    lived_experience = EXCLUDED.lived_experience, regions = EXCLUDED.regions,
                    modes = EXCLUDED.modes, max_caseload = EXCLUDED.max_caseload,
                    updated_at = EXCLUDED.updated_at, cert_issuer = EXCLUDED.cert_issuer,
                    cert_number = EXCLUDED.cert_number,
                    cert_expires_on = EXCLUDED.cert_expires_on",
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
            .bind(p.certification.as_ref().map(|c| c.issuer.clone()))
            .bind(p.certification.as_ref().map(|c| c.number.clone()))
            .bind(p.certification.as_ref().map(|c| c.expires_on))
            .execute(&mut *tx)
            .await?;
        }
        PeerEvent::AvailabilityChanged(a) => {
            let until = match &a {
                Availability::OnLeave { until } => Some(*until),
                _ => None,
            };
            sqlx::query(
                "UPDATE peers SET availability = $2, available_from = $3,
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
                "UPDATE peers SET active_count = active_count + $2,
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
                "INSERT INTO assignments (referral_id, person_ref, status,
                    priority, requested_at, updated_at)
                 VALUES ($1, $2, 'matching', $3, $4, $4)",
            )
            .bind(id)
            .bind(&r.person_ref)
            .bind(r.priority.as_str())
            .bind(at)
            .execute(&mut *tx)
            .await?;
            return Ok(());
        }
        AssignmentEvent::AssignmentWaitlisted { .. } => {
            // The first wait counts: a referral keeps its place in the queue when a
            // later attempt waits again.
            sqlx::query(
                "UPDATE assignments SET status = 'waitlisted', peer_id = NULL,
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
                "INSERT INTO assignment_history (referral_id, person_ref, peer_id, assigned_at)
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
            sqlx::query("UPDATE assignments SET waitlisted_at = NULL WHERE referral_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            set("matching", None)
        }
        AssignmentEvent::AssignmentReleased { .. } => set("released", None),
    };
    sqlx::query(
        "UPDATE assignments SET status = $2, peer_id = $3, updated_at = $4
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

/// Whether a peer takes referrals now: active, or back from leave. (The Peer
/// aggregate decides reservations; this is how the read model's rows are filtered.)
const AVAILABLE: &str =
    "(availability = 'active' OR (availability = 'on_leave' AND available_from <= now()))";

/// The whole roster as matching sees it.
pub async fn roster(pool: &PgPool) -> sqlx::Result<Vec<RosterPeer>> {
    sqlx::query_as(&format!(
        "SELECT peer_id, languages, gender, lived_experience, regions, max_caseload,
                active_count, {AVAILABLE} AS available,
                COALESCE(cert_expires_on < current_date, false) AS certification_expired
         FROM peer_assignment.peers"
    ))
    .fetch_all(pool)
    .await
}

/// The peers who supported `person_ref` on referrals other than `referral_id`.
pub async fn earlier_peers(
    pool: &PgPool,
    person_ref: &str,
    referral_id: &str,
) -> sqlx::Result<HashSet<String>> {
    let peers: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT peer_id FROM peer_assignment.assignment_history
         WHERE person_ref = $1 AND referral_id <> $2",
    )
    .bind(person_ref)
    .bind(referral_id)
    .fetch_all(pool)
    .await?;
    Ok(peers.into_iter().collect())
}

/// Referrals held by a peer who is no longer available (on leave, inactive).
pub async fn held_by_unavailable_peers(pool: &PgPool) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(&format!(
        "SELECT a.referral_id FROM peer_assignment.assignments a
         JOIN peer_assignment.peers p ON p.peer_id = a.peer_id
         WHERE a.status = 'assigned' AND NOT {AVAILABLE}
         ORDER BY a.referral_id"
    ))
    .fetch_all(pool)
    .await
}

/// The waitlist in the order it is served: by priority, then by how long each
/// referral has waited.
pub async fn waitlist(pool: &PgPool, limit: i64) -> sqlx::Result<Vec<WaitingRow>> {
    sqlx::query_as(
        "SELECT referral_id, priority, waitlisted_at FROM peer_assignment.assignments
         WHERE status = 'waitlisted'
         ORDER BY array_position($1::text[], priority), waitlisted_at, referral_id
         LIMIT $2",
    )
    .bind(Priority::order_names())
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// The waitlist in the order it is served, by the order's own keys: a referral keeps
/// its place from its first wait until it is assigned or released, also while the
/// worker tries it again (its row briefly `matching` or `proposed`, and still so when
/// the next pass starts if this read model has not caught up). The worker checks each
/// against the event store before acting.
pub async fn queue(pool: &PgPool, limit: i64) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT referral_id FROM peer_assignment.assignments
         WHERE waitlisted_at IS NOT NULL AND status IN ('waitlisted', 'matching', 'proposed')
         ORDER BY array_position($1::text[], priority), waitlisted_at, referral_id
         LIMIT $2",
    )
    .bind(Priority::order_names())
    .bind(limit)
    .fetch_all(pool)
    .await
}

#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct WaitingRow {
    pub referral_id: String,
    pub priority: String,
    pub waitlisted_at: Option<DateTime<Utc>>,
}

/// How many referrals wait, how many slots are taken, and the capacity of the peers
/// who take referrals now.
pub async fn capacity(pool: &PgPool) -> sqlx::Result<(i64, i64, i64)> {
    sqlx::query_as(&format!(
        "SELECT (SELECT count(*) FROM peer_assignment.assignments WHERE status = 'waitlisted'),
                COALESCE((SELECT sum(active_count) FROM peer_assignment.peers), 0)::bigint,
                COALESCE((SELECT sum(max_caseload) FROM peer_assignment.peers
                          WHERE {AVAILABLE}), 0)::bigint"
    ))
    .fetch_one(pool)
    .await
}

#[derive(Serialize, sqlx::FromRow)]
pub struct PeerRow {
    pub peer_id: String,
    pub name: String,
    pub languages: Vec<String>,
    pub gender: Option<String>,
    pub lived_experience: Vec<String>,
    pub regions: Vec<String>,
    pub modes: Vec<String>,
    pub max_caseload: i32,
    pub availability: String,
    pub available_from: Option<DateTime<Utc>>,
    pub active_count: i32,
    pub updated_at: DateTime<Utc>,
    pub cert_issuer: Option<String>,
    pub cert_number: Option<String>,
    pub cert_expires_on: Option<chrono::NaiveDate>,
}

/// The roster as coordinators read it, by name.
/// The roster by name (then id), `limit` peers after `after` (a name and an id).
pub async fn peers(
    pool: &PgPool,
    after: Option<(String, String)>,
    limit: i64,
) -> sqlx::Result<Vec<PeerRow>> {
    let (name, id) = after.unzip();
    sqlx::query_as(
        "SELECT peer_id, name, languages, gender, lived_experience, regions, modes,
                max_caseload, availability, available_from, active_count, updated_at,
                cert_issuer, cert_number, cert_expires_on
         FROM peer_assignment.peers
         WHERE $1::text IS NULL OR (name, peer_id) > ($1, $2)
         ORDER BY name, peer_id LIMIT $3",
    )
    .bind(name)
    .bind(id)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// One peer's certification as the coordinators' list of expiries shows it.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct CertificationRow {
    pub peer_id: String,
    pub name: String,
    pub availability: String,
    pub issuer: Option<String>,
    pub number: Option<String>,
    pub expires_on: Option<chrono::NaiveDate>,
    /// Days from today to the last valid day (negative: expired); none on record: null.
    pub days_left: Option<i32>,
}

/// Peers (not inactive) whose certification expires within `days` (or has expired),
/// soonest first, then those with none on record.
pub async fn certifications_due(pool: &PgPool, days: i32) -> sqlx::Result<Vec<CertificationRow>> {
    sqlx::query_as(
        "SELECT peer_id, name, availability, cert_issuer AS issuer, cert_number AS number,
                cert_expires_on AS expires_on, (cert_expires_on - current_date) AS days_left
         FROM peer_assignment.peers
         WHERE availability <> 'inactive'
           AND (cert_expires_on IS NULL OR cert_expires_on <= current_date + $1)
         ORDER BY cert_expires_on NULLS LAST, name, peer_id",
    )
    .bind(days)
    .fetch_all(pool)
    .await
}

/// Whether any peer was ever registered.
pub async fn any_peer_registered(pool: &PgPool) -> sqlx::Result<bool> {
    let any: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM peer_assignment.events WHERE aggregate_type = 'Peer' LIMIT 1",
    )
    .fetch_optional(pool)
    .await?;
    Ok(any.is_some())
}
