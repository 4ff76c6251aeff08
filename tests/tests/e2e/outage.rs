//! Guarantee 8: JetStream is never the only copy.

use std::time::Duration;

use serde_json::json;

use crate::*;
use careloop_test_support::{PrivateNats, TestEnv, eventually};

/// Guarantee 8: with NATS stopped, referrals are still accepted (Postgres is the
/// source of truth), and their events flow on once NATS is back.
#[tokio::test]
async fn referrals_accepted_while_nats_is_down_arrive_when_it_returns() {
    let mut nats = PrivateNats::start().await;
    let mut env = TestEnv::new();
    env.settings.nats_url = format!("nats://127.0.0.1:{}", nats.port);
    let app = spawn_app_with(env).await;
    let coordinator = app.token("coordinator", None, None);
    let hospital = app.token("hospital", Some("st-marys"), None);
    let (s, _) = app
        .post(
            "/v1/peers",
            &coordinator,
            &json!({"name": "Sam Okafor", "languages": ["en"], "gender": "female",
                    "max_caseload": 5}),
        )
        .await;
    assert_eq!(s, 201);
    eventually("the peer on the roster", WAIT, || async {
        let (_, list) = app.get("/v1/peers", &coordinator).await;
        (list["items"].as_array()?.len() == 1).then_some(())
    })
    .await;

    nats.stop().await;
    let (s, created) = app
        .post(
            "/v1/referrals",
            &hospital,
            &referral_body("MRN-OUTAGE", "2026-11-20T15:30:00Z"),
        )
        .await;
    assert_eq!(s, 201, "accepted while NATS is down: {created}");
    let id = created["referral_id"].as_str().unwrap().to_string();
    let (s, v) = app.get(&format!("/v1/referrals/{id}"), &hospital).await;
    assert_eq!(
        (s, v["status"].as_str()),
        (200, Some("requested")),
        "nothing can have flowed yet, and the hospital reads its write: {v}"
    );

    nats.restart().await;
    eventually(
        "the referral accepted once NATS is back",
        Duration::from_secs(60),
        || async {
            let (_, r) = app.get(&format!("/v1/referrals/{id}"), &hospital).await;
            (r["status"] == "accepted").then_some(())
        },
    )
    .await;
    app.shutdown().await;
}
