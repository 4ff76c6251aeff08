//! Guarantee 7: concurrent commands on one aggregate never lose an update, and a
//! peer's capacity is never exceeded (real Postgres event store); and the waitlist
//! keeps its order when a re-match is left unfinished or the roster read model lags.

use std::sync::Arc;

use careloop_backbone::ProjectionRunner;
use careloop_backbone::db;
use careloop_backbone::store::{self, Metadata};
use careloop_peer_assignment::domain::{
    Assignment, AssignmentCommand, AssignmentRequest, Peer, PeerCommand, PeerError, PeerProfile,
};
use careloop_peer_assignment::{matching::Matcher, read_model, waitlist::WaitlistWorker};
use careloop_test_support::{TestEnv, eventually};
use cqrs_es::AggregateError;

#[tokio::test]
async fn racing_reservations_never_exceed_a_peers_caseload() {
    let (_env, pool) = database().await;
    let peers = store::cqrs::<Peer>(pool.clone(), careloop_peer_assignment::SCHEMA, ());
    let meta = Metadata::new("test");
    let profile = jordan(3);
    store::execute(&peers, "peer-1", PeerCommand::Register(profile), &meta)
        .await
        .unwrap();

    let attempts = (0..12).map(|i| {
        let peers = peers.clone();
        let meta = meta.clone();
        tokio::spawn(async move {
            let cmd = PeerCommand::ReserveSlot {
                referral_id: format!("r{i}"),
                now: chrono::Utc::now(),
            };
            store::execute(&peers, "peer-1", cmd, &meta).await
        })
    });
    let results = futures_join(attempts).await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let full = results
        .iter()
        .filter(|r| {
            matches!(
                r,
                Err(AggregateError::UserError(PeerError::CaseloadFull(3)))
            )
        })
        .count();
    let conflicts = results.len() - ok - full;
    assert_eq!(ok, 3, "exactly the caseload was reserved");
    // Any conflict that outlasted the retries is an honest 409, never a lost update.
    assert_eq!(ok + full + conflicts, 12);
    let reserved: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM peer_assignment.events WHERE event_type = 'SlotReserved'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(
        reserved, 3,
        "the event store holds exactly three reservations"
    );
    pool.close().await;
}

/// A fresh database (dropped with the `TestEnv`) with peer-assignment's event store
/// and read models.
async fn database() -> (TestEnv, sqlx::PgPool) {
    let env = TestEnv::new();
    let pool = db::connect(&env.settings.database_url, &env.settings.database)
        .await
        .unwrap();
    db::migrate(
        &pool,
        careloop_peer_assignment::SCHEMA,
        careloop_peer_assignment::MIGRATIONS,
    )
    .await
    .unwrap();
    (env, pool)
}

async fn futures_join<T: Send + 'static>(
    handles: impl Iterator<Item = tokio::task::JoinHandle<T>>,
) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// Waitlist order: a re-match the waitlist worker began and could not finish (its
/// reservation lost the race too often, the database went away) is finished in its
/// turn by the next pass, never skipped in favour of a referral that waited less.
#[tokio::test]
async fn an_unfinished_rematch_keeps_its_place_in_the_waitlist() {
    let q = Queue::one_slot_two_waiting().await;
    // A pass re-opened "first" and failed before it settled; then the slot frees.
    let rematch = AssignmentCommand::Rematch;
    store::execute(&q.matcher.assignments, "first", rematch, &q.meta)
        .await
        .unwrap();
    q.matcher
        .release("held", "referral cancelled", &q.meta)
        .await
        .unwrap();
    q.caught_up(
        "the freed slot on the roster",
        "SELECT count(*) = 1 FROM peer_assignment.peers WHERE active_count = 0",
    )
    .await;

    assert_eq!(q.worker().run_once().await.unwrap(), 1);
    assert_eq!(
        q.status("first").await,
        (Some("peer-1".into()), false),
        "the unfinished re-match is finished in its turn"
    );
    assert_eq!(
        q.status("second").await,
        (None, true),
        "the later one waits"
    );
    q.pool.close().await;
}

/// The waitlist worker looks at its queue after every change to the roster or an
/// assignment: the look must read only the referrals waiting for a peer (the index
/// `assignments_queue`), not every assignment ever made, or it grows with the service's
/// history (it was the busiest statement of a five-minute sustained run).
#[tokio::test]
async fn the_waitlist_queue_reads_only_waiting_referrals() {
    let (_env, pool) = database().await;
    let mut conn = pool.acquire().await.unwrap();
    // Whether the index can serve the query at all, whatever the table's size now.
    sqlx::query("SET enable_seqscan = off")
        .execute(&mut *conn)
        .await
        .unwrap();
    let plan: Vec<String> = sqlx::query_scalar(&format!("EXPLAIN {}", read_model::QUEUE))
        .bind(careloop_events::Priority::order_names())
        .bind(100_i64)
        .fetch_all(&mut *conn)
        .await
        .unwrap();
    let plan = plan.join("\n");
    assert!(plan.contains("assignments_queue"), "{plan}");
    drop(conn);
    pool.close().await;
}

/// Waitlist order: when the roster shows room a referral then does not get (taken
/// meanwhile, or the read model behind), the pass stops there instead of going on
/// down the queue, where a slot freed meanwhile would go to one that waited less.
#[tokio::test]
async fn a_pass_stops_at_the_first_referral_it_could_not_place() {
    let q = Queue::one_slot_two_waiting().await;
    // The read model shows the held slot free; the Peer aggregate knows better.
    sqlx::query("UPDATE peer_assignment.peers SET active_count = 0")
        .execute(&q.pool)
        .await
        .unwrap();

    assert_eq!(q.worker().run_once().await.unwrap(), 0);
    assert_eq!(q.status("first").await, (None, true), "tried, and waits");
    let rematched = |id: &'static str| {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM peer_assignment.events
             WHERE aggregate_id = $1 AND event_type = 'AssignmentRematching'",
        )
        .bind(id)
        .fetch_one(&q.pool)
    };
    assert_eq!(rematched("first").await.unwrap(), 1);
    assert_eq!(
        rematched("second").await.unwrap(),
        0,
        "the pass stopped at the first referral it could not place"
    );
    q.pool.close().await;
}

/// One peer with one slot: "held" has it; "first" and then "second" wait.
struct Queue {
    _env: TestEnv,
    pool: sqlx::PgPool,
    matcher: Arc<Matcher>,
    roster: ProjectionRunner,
    meta: Metadata,
}

impl Queue {
    async fn one_slot_two_waiting() -> Queue {
        let (env, pool) = database().await;
        let schema = careloop_peer_assignment::SCHEMA;
        let q = Queue {
            _env: env,
            matcher: Arc::new(Matcher {
                pool: pool.clone(),
                peers: store::cqrs::<Peer>(pool.clone(), schema, ()),
                assignments: store::cqrs::<Assignment>(pool.clone(), schema, ()),
                assignment_store: Arc::new(store::event_store(pool.clone(), schema)),
                weights: careloop_config::MatchWeights {
                    lived_experience: 1.0,
                    region: 1.0,
                    continuity: 1.0,
                    load: 1.0,
                },
            }),
            roster: ProjectionRunner::new(pool.clone(), schema, Arc::new(read_model::Roster)),
            meta: Metadata::new("test"),
            pool,
        };
        let profile = jordan(1);
        let register = PeerCommand::Register(profile);
        store::execute(&q.matcher.peers, "peer-1", register, &q.meta)
            .await
            .unwrap();
        q.caught_up(
            "the peer on the roster",
            "SELECT count(*) = 1 FROM peer_assignment.peers",
        )
        .await;
        for id in ["held", "first", "second"] {
            let request = AssignmentRequest {
                person_ref: format!("person-{id}"),
                facility: "st-marys".into(),
                priority: careloop_events::Priority::Routine,
                discharged_at: chrono::Utc::now(),
                first_contact_due_at: chrono::Utc::now() + chrono::Duration::days(2),
                matching: careloop_events::MatchingInputs {
                    language: "en".into(),
                    ..Default::default()
                },
            };
            let ask = AssignmentCommand::Request {
                request: Box::new(request),
                attempt: 1,
                propose: None,
            };
            store::execute(&q.matcher.assignments, id, ask, &q.meta)
                .await
                .unwrap();
            // The Peer aggregate, not the read model, decides whether the slot is free.
            q.matcher.settle(id, &q.meta).await.unwrap();
        }
        q.caught_up(
            "one placed and two waiting on the roster",
            "SELECT count(*) FILTER (WHERE status = 'assigned') = 1
                    AND count(*) FILTER (WHERE status = 'waitlisted') = 2
             FROM peer_assignment.assignments",
        )
        .await;
        assert_eq!(q.status("held").await, (Some("peer-1".into()), false));
        assert_eq!(q.status("first").await, (None, true));
        assert_eq!(q.status("second").await, (None, true));
        q
    }

    /// Waits until `sql` holds of the roster read model, which applies an event once
    /// every older transaction on the server has ended (other tests' too).
    async fn caught_up(&self, what: &str, sql: &'static str) {
        eventually(what, std::time::Duration::from_secs(20), || async {
            self.roster.catch_up().await.unwrap();
            let ok: bool = sqlx::query_scalar(sql).fetch_one(&self.pool).await.unwrap();
            ok.then_some(())
        })
        .await
    }

    /// The assignment's peer and whether it waits, from its event store.
    async fn status(&self, id: &str) -> (Option<String>, bool) {
        let a: Assignment = store::load(self.matcher.assignment_store.as_ref(), id)
            .await
            .unwrap();
        (a.assigned, a.waitlisted)
    }

    fn worker(&self) -> WaitlistWorker {
        WaitlistWorker {
            pool: self.pool.clone(),
            matcher: self.matcher.clone(),
        }
    }
}

/// A peer who speaks English and takes `max_caseload` people.
fn jordan(max_caseload: u32) -> PeerProfile {
    PeerProfile {
        name: "Jordan Lee".into(),
        languages: vec!["en".into()],
        gender: None,
        lived_experience: vec![],
        regions: vec![],
        modes: vec![],
        max_caseload,
        certification: None,
    }
}
