//! The `roster` read model: peers with their live caseload and availability, where
//! each referral stands in assignment (the waitlist), and the assignment history;
//! rebuilt from peer-assignment's events (`careloop replay roster`), and every query
//! on it.

use std::collections::HashSet;

use careloop_backbone::{Projection, StoredEvent, rows};
use careloop_events::Priority;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
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

    /// Six statements per batch at most however long: the peers and the assignments
    /// it names, each read, folded (`fold_peer`, `fold_assignment`) and written back
    /// (`careloop_backbone::rows::fold`), and the history lines added.
    async fn apply(&self, events: &[StoredEvent], tx: &mut PgConnection) -> anyhow::Result<()> {
        let of = |kind: &'static str| events.iter().filter(move |e| e.aggregate_type == kind);
        rows::fold(tx, "peers", "peer_id", of("Peer"), |row, e| {
            fold_peer(row, e, e.decode()?);
            Ok(())
        })
        .await?;
        let mut history = Vec::new();
        rows::fold(
            tx,
            "assignments",
            "referral_id",
            of("Assignment"),
            |row, e| {
                history.extend(fold_assignment(row, e, e.decode()?)?);
                Ok(())
            },
        )
        .await?;
        rows::insert_new(tx, "assignment_history", &history).await
    }
}

/// Every column of `peers`, as the projection holds a row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StoredPeer {
    peer_id: String,
    name: String,
    languages: Vec<String>,
    gender: Option<String>,
    lived_experience: Vec<String>,
    regions: Vec<String>,
    modes: Vec<String>,
    max_caseload: i32,
    availability: String,
    #[serde(serialize_with = "rows::micros_opt")]
    available_from: Option<DateTime<Utc>>,
    active_count: i32,
    #[serde(serialize_with = "rows::micros")]
    registered_at: DateTime<Utc>,
    #[serde(serialize_with = "rows::micros")]
    updated_at: DateTime<Utc>,
    cert_issuer: Option<String>,
    cert_number: Option<String>,
    cert_expires_on: Option<NaiveDate>,
}

/// What one event does to a peer's row (`None` before the registration). A
/// registration makes the row; a profile update rewrites the profile and keeps the
/// availability, the caseload and the registration time. An event for a peer with no
/// row changes nothing.
fn fold_peer(row: &mut Option<StoredPeer>, e: &StoredEvent, event: PeerEvent) {
    let at = e.recorded_at;
    match event {
        PeerEvent::PeerRegistered(p) | PeerEvent::PeerProfileUpdated(p) => {
            let kept = row.take();
            let cert = p.certification;
            *row = Some(StoredPeer {
                peer_id: e.aggregate_id.clone(),
                name: p.name,
                languages: p.languages,
                gender: p.gender,
                lived_experience: p.lived_experience,
                regions: p.regions,
                modes: p.modes,
                max_caseload: p.max_caseload as i32,
                availability: kept.as_ref().map_or_else(
                    || Availability::Active.as_str().to_string(),
                    |k| k.availability.clone(),
                ),
                available_from: kept.as_ref().and_then(|k| k.available_from),
                active_count: kept.as_ref().map_or(0, |k| k.active_count),
                registered_at: kept.as_ref().map_or(at, |k| k.registered_at),
                updated_at: at,
                cert_issuer: cert.as_ref().map(|c| c.issuer.clone()),
                cert_number: cert.as_ref().map(|c| c.number.clone()),
                cert_expires_on: cert.as_ref().map(|c| c.expires_on),
            });
        }
        PeerEvent::AvailabilityChanged(a) => {
            if let Some(p) = row.as_mut() {
                p.available_from = match &a {
                    Availability::OnLeave { until } => Some(*until),
                    _ => None,
                };
                p.availability = a.as_str().to_string();
                p.updated_at = at;
            }
        }
        PeerEvent::SlotReserved { .. } | PeerEvent::SlotReleased { .. } => {
            if let Some(p) = row.as_mut() {
                p.active_count += if e.event_type == "SlotReserved" {
                    1
                } else {
                    -1
                };
                p.updated_at = at;
            }
        }
    }
}

/// Every column of `assignments`, as the projection holds a row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StoredAssignment {
    referral_id: String,
    person_ref: String,
    status: String,
    peer_id: Option<String>,
    priority: String,
    #[serde(serialize_with = "rows::micros")]
    requested_at: DateTime<Utc>,
    #[serde(serialize_with = "rows::micros_opt")]
    waitlisted_at: Option<DateTime<Utc>>,
    #[serde(serialize_with = "rows::micros")]
    updated_at: DateTime<Utc>,
}

/// A line of `assignment_history`: who supported whom, from when.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct HistoryRow {
    referral_id: String,
    person_ref: String,
    peer_id: String,
    #[serde(serialize_with = "rows::micros")]
    assigned_at: DateTime<Utc>,
}

/// What one event does to a referral's place in assignment (`None` before it was
/// requested), and the history line an assignment adds. An event for a referral with
/// no row changes nothing.
fn fold_assignment(
    row: &mut Option<StoredAssignment>,
    e: &StoredEvent,
    event: AssignmentEvent,
) -> anyhow::Result<Option<HistoryRow>> {
    let at = e.recorded_at;
    if let AssignmentEvent::AssignmentRequested(r) = &event {
        anyhow::ensure!(
            row.is_none(),
            "assignment {} was already requested",
            e.aggregate_id
        );
        *row = Some(StoredAssignment {
            referral_id: e.aggregate_id.clone(),
            person_ref: r.person_ref.clone(),
            status: "matching".to_string(),
            peer_id: None,
            priority: r.priority.as_str().to_string(),
            requested_at: at,
            waitlisted_at: None,
            updated_at: at,
        });
        return Ok(None);
    }
    // The history line comes from the event alone (also for a referral with no row,
    // as the insert always did); the row changes only when there is one.
    let mut history = None;
    let (status, peer) = match &event {
        AssignmentEvent::AssignmentRequested(_) => unreachable!("handled above"),
        AssignmentEvent::AssignmentWaitlisted { .. } => ("waitlisted", None),
        AssignmentEvent::PeerAssigned {
            peer_id, request, ..
        }
        | AssignmentEvent::PeerReassigned {
            to_peer: peer_id,
            request,
            ..
        } => {
            history = Some(HistoryRow {
                referral_id: e.aggregate_id.clone(),
                person_ref: request.person_ref.clone(),
                peer_id: peer_id.clone(),
                assigned_at: at,
            });
            ("assigned", Some(peer_id.clone()))
        }
        AssignmentEvent::PeerProposed { peer_id } => ("proposed", Some(peer_id.clone())),
        AssignmentEvent::ProposalDeclined { .. }
        | AssignmentEvent::AssignmentRematching
        | AssignmentEvent::AssignmentHandedBack { .. }
        | AssignmentEvent::AssignmentReopened { .. } => ("matching", None),
        AssignmentEvent::AssignmentReleased { .. } => ("released", None),
    };
    let Some(a) = row.as_mut() else {
        return Ok(history);
    };
    match event {
        // The first wait counts: a referral keeps its place in the queue when a later
        // attempt waits again.
        AssignmentEvent::AssignmentWaitlisted { .. } => {
            a.waitlisted_at = a.waitlisted_at.or(Some(at))
        }
        AssignmentEvent::AssignmentReopened { .. } => a.waitlisted_at = None,
        _ => {}
    }
    a.status = status.to_string();
    a.peer_id = peer;
    a.updated_at = at;
    Ok(history)
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
    sqlx::query_scalar(QUEUE)
        .bind(Priority::order_names())
        .bind(limit)
        .fetch_all(pool)
        .await
}

/// The statement of [`queue`] (`$1` the priorities in the order served, `$2` the
/// limit). Its condition is the predicate of the index `assignments_queue`, so it
/// reads only referrals waiting for a peer, however many assignments there have been.
pub const QUEUE: &str = "SELECT referral_id FROM peer_assignment.assignments
     WHERE waitlisted_at IS NOT NULL AND status IN ('waitlisted', 'matching', 'proposed')
     ORDER BY array_position($1::text[], priority), waitlisted_at, referral_id
     LIMIT $2";

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

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use cqrs_es::DomainEvent;

    use super::*;
    use crate::domain::{AssignmentRequest, PeerProfile};

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 2, 9, minute, 0).unwrap()
    }

    fn stored<E: DomainEvent>(kind: &str, id: &str, minute: u32, event: &E) -> StoredEvent {
        StoredEvent::of(kind, id, minute as i64, at(minute), event)
    }

    fn profile(max_caseload: u32) -> PeerProfile {
        PeerProfile {
            name: "Jordan".into(),
            languages: vec!["en".into()],
            gender: None,
            lived_experience: vec![],
            regions: vec!["M5V".into()],
            modes: vec!["phone".into()],
            max_caseload,
            certification: None,
        }
    }

    fn request() -> AssignmentRequest {
        AssignmentRequest {
            person_ref: "person-1".into(),
            facility: "north".into(),
            priority: Priority::Routine,
            discharged_at: at(0),
            first_contact_due_at: at(50),
            matching: Default::default(),
        }
    }

    fn peer_after(events: &[(u32, PeerEvent)]) -> StoredPeer {
        let mut row = None;
        for (minute, e) in events {
            fold_peer(&mut row, &stored("Peer", "peer-7", *minute, e), e.clone());
        }
        row.unwrap()
    }

    #[test]
    fn a_profile_update_keeps_the_caseload_availability_and_registration() {
        let reserved = || PeerEvent::SlotReserved {
            referral_id: "ref-1".into(),
        };
        let peer = peer_after(&[
            (1, PeerEvent::PeerRegistered(profile(5))),
            (2, reserved()),
            (3, reserved()),
            (
                4,
                PeerEvent::SlotReleased {
                    referral_id: "ref-1".into(),
                },
            ),
            (
                5,
                PeerEvent::AvailabilityChanged(Availability::OnLeave { until: at(59) }),
            ),
            (6, PeerEvent::PeerProfileUpdated(profile(8))),
        ]);
        assert_eq!((peer.active_count, peer.max_caseload), (1, 8));
        assert_eq!(
            (peer.availability.as_str(), peer.available_from),
            ("on_leave", Some(at(59)))
        );
        assert_eq!((peer.registered_at, peer.updated_at), (at(1), at(6)));
    }

    #[test]
    fn a_referral_keeps_its_first_wait_and_each_assignment_is_history() {
        let mut row = None;
        let mut history = Vec::new();
        let events = [
            AssignmentEvent::AssignmentRequested(request()),
            AssignmentEvent::AssignmentWaitlisted {
                reason: "no room".into(),
            },
            AssignmentEvent::AssignmentRematching,
            AssignmentEvent::AssignmentWaitlisted {
                reason: "still no room".into(),
            },
            AssignmentEvent::PeerAssigned {
                peer_id: "peer-7".into(),
                request: request(),
                attempt: 1,
            },
        ];
        for (i, e) in events.iter().enumerate() {
            let stored = stored("Assignment", "ref-1", i as u32 + 1, e);
            history.extend(fold_assignment(&mut row, &stored, e.clone()).unwrap());
        }
        let row = row.unwrap();
        assert_eq!(
            (row.status.as_str(), row.peer_id.as_deref()),
            ("assigned", Some("peer-7"))
        );
        assert_eq!(row.waitlisted_at, Some(at(2)), "the first wait counts");
        assert_eq!(history.len(), 1);
        assert_eq!(
            (history[0].person_ref.as_str(), history[0].assigned_at),
            ("person-1", at(5))
        );
        let again = AssignmentEvent::AssignmentRequested(request());
        let mut row = Some(row);
        assert!(
            fold_assignment(&mut row, &stored("Assignment", "ref-1", 6, &again), again).is_err()
        );
    }

    #[test]
    fn an_assignment_without_a_request_row_still_adds_its_history_line() {
        let mut row = None;
        let assigned = AssignmentEvent::PeerAssigned {
            peer_id: "peer-7".into(),
            request: request(),
            attempt: 1,
        };
        let stored = stored("Assignment", "ref-1", 1, &assigned);
        let history = fold_assignment(&mut row, &stored, assigned).unwrap();
        assert_eq!(history.map(|h| h.peer_id).as_deref(), Some("peer-7"));
        assert!(row.is_none(), "no row is made without the request");
    }
}
