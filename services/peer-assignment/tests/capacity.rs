//! Guarantee 7: concurrent commands on one aggregate never lose an update, and a
//! peer's capacity is never exceeded (real Postgres event store).

use careloop_backbone::db;
use careloop_backbone::store::{self, Metadata};
use careloop_peer_assignment::domain::{Peer, PeerCommand, PeerError, PeerProfile};
use careloop_test_support::{TestEnv, eventually};
use cqrs_es::AggregateError;

#[tokio::test]
async fn racing_reservations_never_exceed_a_peers_caseload() {
    let env = TestEnv::new();
    let pool = db::connect(&env.settings.database_url, &env.settings.database)
        .await
        .unwrap();
    db::migrate(&pool, careloop_peer_assignment::SCHEMA, &[])
        .await
        .unwrap();
    let peers = store::cqrs::<Peer>(pool.clone(), careloop_peer_assignment::SCHEMA, ());
    let meta = Metadata::new("test");
    let profile = PeerProfile {
        name: "Jordan Lee".into(),
        languages: vec!["en".into()],
        gender: None,
        lived_experience: vec![],
        regions: vec![],
        modes: vec![],
        max_caseload: 3,
        certification: None,
    };
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
    use std::sync::Arc;

    use careloop_backbone::ProjectionRunner;
    use careloop_peer_assignment::domain::{Assignment, AssignmentCommand, AssignmentRequest};
    use careloop_peer_assignment::{matching::Matcher, read_model, waitlist::WaitlistWorker};

    let env = TestEnv::new();
    let pool = db::connect(&env.settings.database_url, &env.settings.database)
        .await
        .unwrap();
    let schema = careloop_peer_assignment::SCHEMA;
    db::migrate(&pool, schema, careloop_peer_assignment::MIGRATIONS)
        .await
        .unwrap();
    let matcher = Arc::new(Matcher {
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
    });
    let roster = ProjectionRunner::new(pool.clone(), schema, Arc::new(read_model::Roster));
    let meta = Metadata::new("test");
    let profile = PeerProfile {
        name: "Jordan Lee".into(),
        languages: vec!["en".into()],
        gender: None,
        lived_experience: vec![],
        regions: vec![],
        modes: vec![],
        max_caseload: 1,
        certification: None,
    };
    store::execute(
        &matcher.peers,
        "peer-1",
        PeerCommand::Register(profile),
        &meta,
    )
    .await
    .unwrap();
    // The roster read model applies an event once every older transaction on the
    // server has ended (other tests' too): wait for what each step needs.
    let caught_up = |what: &'static str, sql: &'static str| {
        let (roster, pool) = (roster.clone(), pool.clone());
        async move {
            eventually(what, std::time::Duration::from_secs(20), || async {
                roster.catch_up().await.unwrap();
                let ok: bool = sqlx::query_scalar(sql).fetch_one(&pool).await.unwrap();
                ok.then_some(())
            })
            .await
        }
    };
    caught_up(
        "the peer on the roster",
        "SELECT count(*) = 1 FROM peer_assignment.peers",
    )
    .await;

    // One slot: "held" takes it; "first" and then "second" wait, in that order.
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
            request,
            attempt: 1,
        };
        store::execute(&matcher.assignments, id, ask, &meta)
            .await
            .unwrap();
        // The Peer aggregate, not the read model, decides whether the slot is free.
        matcher.settle(id, &meta).await.unwrap();
    }
    caught_up(
        "one placed and two waiting on the roster",
        "SELECT count(*) FILTER (WHERE status = 'assigned') = 1
                AND count(*) FILTER (WHERE status = 'waitlisted') = 2
         FROM peer_assignment.assignments",
    )
    .await;
    let status = |id: &'static str| {
        let pool = pool.clone();
        async move {
            let a: Assignment = store::load(&matcher_store(&pool), id).await.unwrap();
            (a.assigned, a.waitlisted)
        }
    };
    assert_eq!(status("held").await, (Some("peer-1".into()), false));
    assert_eq!(status("first").await, (None, true));
    assert_eq!(status("second").await, (None, true));

    // A pass re-opened "first" and failed before it settled; then the slot frees.
    store::execute(
        &matcher.assignments,
        "first",
        AssignmentCommand::Rematch,
        &meta,
    )
    .await
    .unwrap();
    matcher
        .release("held", "referral cancelled", &meta)
        .await
        .unwrap();
    caught_up(
        "the freed slot on the roster",
        "SELECT count(*) = 1 FROM peer_assignment.peers WHERE active_count = 0",
    )
    .await;

    let worker = WaitlistWorker {
        pool: pool.clone(),
        matcher: matcher.clone(),
    };
    assert_eq!(worker.run_once().await.unwrap(), 1);
    assert_eq!(
        status("first").await,
        (Some("peer-1".into()), false),
        "the unfinished re-match is finished in its turn"
    );
    assert_eq!(status("second").await, (None, true), "the later one waits");
    pool.close().await;
}

fn matcher_store(
    pool: &sqlx::PgPool,
) -> store::EventStore<careloop_peer_assignment::domain::Assignment> {
    store::event_store(pool.clone(), careloop_peer_assignment::SCHEMA)
}
