//! Guarantee 7: concurrent commands on one aggregate never lose an update, and a
//! peer's capacity is never exceeded (real Postgres event store).

use careloop_backbone::db;
use careloop_backbone::store::{self, Metadata};
use careloop_peer_assignment::domain::{Peer, PeerCommand, PeerError, PeerProfile};
use careloop_test_support::TestEnv;
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
