//! The referral lifecycle: coordinator actions through the status machine, the
//! queue, overdue marking, and the closed loop with the hospital (webhooks).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use careloop_backbone::Backbone;
use careloop_referral::ReferralService;
use careloop_test_support::{TestEnv, eventually};
use serde_json::{Value, json};

use crate::*;

/// A referral nobody can take yet (no peers): it stays `received`.
async fn received_referral(app: &TestApp, mrn: &str, risk: &str) -> String {
    let hospital = app.token("hospital", Some("st-marys"), None);
    let mut body = referral_body(mrn, &at(recent_discharge()));
    body["discharge"]["risk_level"] = json!(risk);
    let (s, created) = app.post("/v1/referrals", &hospital, &body).await;
    assert_eq!(s, 201, "{created}");
    let id = created["referral_id"].as_str().unwrap().to_string();
    eventually("the referral received and waitlisted", WAIT, || async {
        let (_, r) = app.get(&format!("/v1/referrals/{id}"), &hospital).await;
        (r["status"] == "received" && r["waitlisted"] == true).then_some(())
    })
    .await;
    id
}

async fn act(app: &TestApp, token: &str, id: &str, action: &str, body: Value) -> (u16, Value) {
    app.post(&format!("/v1/referrals/{id}/{action}"), token, &body)
        .await
}

/// Every coordinator action goes through the status machine; refused ones answer
/// 409 naming the current status, and every change lands on the timeline with the
/// actor's role and the reason.
#[tokio::test]
async fn coordinator_actions_follow_the_status_machine() {
    let app = spawn_app().await;
    let c = app.token("coordinator", None, None);
    let id = received_referral(&app, "MRN-L1", "moderate").await;

    let (s, r) = act(
        &app,
        &c,
        &id,
        "hold",
        json!({"reason": "person in crisis care"}),
    )
    .await;
    assert_eq!((s, r["status"].as_str()), (200, Some("on-hold")), "{r}");
    let (s, p) = act(&app, &c, &id, "hold", json!({"reason": "again"})).await;
    assert_eq!(s, 409);
    assert_eq!(p["current_status"], "on-hold");
    let (s, r) = act(&app, &c, &id, "resume", json!({"reason": "stable"})).await;
    assert_eq!((s, r["status"].as_str()), (200, Some("received")));

    let (s, p) = act(&app, &c, &id, "reject", json!({"reason": "x"})).await;
    assert_eq!((s, p["field"].as_str()), (422, Some("reason_code")));
    let (s, p) = act(&app, &c, &id, "hold", json!({})).await;
    assert_eq!((s, p["field"].as_str()), (422, Some("reason")));
    let (s, p) = act(&app, &c, &id, "hold", json!({"reason": "x", "extra": 1})).await;
    assert_eq!((s, p["field"].as_str()), (422, Some("extra")));

    let hospital = app.token("hospital", Some("st-marys"), None);
    let (s, _) = act(
        &app,
        &hospital,
        &id,
        "reject",
        json!({"reason_code": "out_of_area"}),
    )
    .await;
    assert_eq!(s, 403, "a hospital may not reject");

    let (s, r) = act(
        &app,
        &c,
        &id,
        "reject",
        json!({"reason_code": "out_of_area", "reason": "lives in another state"}),
    )
    .await;
    assert_eq!((s, r["status"].as_str()), (200, Some("rejected")));
    let (s, p) = act(&app, &c, &id, "reroute", json!({"reason": "try again"})).await;
    assert_eq!(s, 409, "rerouting is off by default: {p}");
    let (s, p) = act(&app, &c, &id, "cancel", json!({"reason": "x"})).await;
    assert_eq!((s, p["current_status"].as_str()), (409, Some("rejected")));
    let (s, r) = act(
        &app,
        &c,
        &id,
        "entered-in-error",
        json!({"reason": "duplicate"}),
    )
    .await;
    assert_eq!((s, r["status"].as_str()), (200, Some("entered-in-error")));
    let (s, _) = act(&app, &c, "nope", "hold", json!({"reason": "x"})).await;
    assert_eq!(s, 404);

    let view = eventually("the timeline complete", WAIT, || async {
        let (_, r) = app.get(&format!("/v1/referrals/{id}"), &c).await;
        (r["status"] == "entered-in-error").then_some(r)
    })
    .await;
    let timeline: Vec<(String, String, Option<String>, Option<String>)> = view["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap().to_string(),
                e["status"].as_str().unwrap().to_string(),
                e["actor"].as_str().map(String::from),
                e["reason"].as_str().map(String::from),
            )
        })
        .collect();
    // The actor is who acted: the coordinator's role and subject (a name when the
    // token carries one), never a service.
    let who: Vec<&str> = timeline[2..]
        .iter()
        .map(|e| e.2.as_deref().unwrap_or_default())
        .collect();
    assert!(
        who.iter()
            .all(|a| a.starts_with("coordinator dev-coordinator")),
        "{who:?}"
    );
    let timeline: Vec<_> = timeline
        .into_iter()
        .map(|(event, status, _, reason)| (event, status, None::<String>, reason))
        .collect();
    let coord: Option<String> = None;
    assert_eq!(
        timeline[2..],
        [
            (
                "ReferralHeld".into(),
                "on-hold".into(),
                coord.clone(),
                Some("person in crisis care".into())
            ),
            (
                "ReferralResumed".into(),
                "received".into(),
                coord.clone(),
                Some("stable".into())
            ),
            (
                "ReferralRejected".into(),
                "rejected".into(),
                coord.clone(),
                Some("out_of_area: lives in another state".into())
            ),
            (
                "ReferralEnteredInError".into(),
                "entered-in-error".into(),
                coord,
                Some("duplicate".into())
            ),
        ],
        "{view}"
    );
    assert_eq!(timeline[0].0, "ReferralReceived");
    assert_eq!(timeline[1].0, "ReferralWaitlisted");
    app.shutdown().await;
}

/// Two coordinators acting on one referral at once: one wins, the other is told
/// the referral's new status (409); nothing is lost or applied twice.
#[tokio::test]
async fn two_coordinators_acting_at_once() {
    let app = spawn_app().await;
    let id = received_referral(&app, "MRN-L2", "low").await;
    let (a, b) = (
        app.token("coordinator", None, None),
        app.token("coordinator", None, None),
    );
    let ((sa, ra), (sb, rb)) = tokio::join!(
        act(&app, &a, &id, "hold", json!({"reason": "first"})),
        act(&app, &b, &id, "hold", json!({"reason": "second"})),
    );
    let mut statuses = [sa, sb];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{ra} {rb}");
    let loser = if sa == 409 { ra } else { rb };
    assert_eq!(loser["current_status"], "on-hold");
    let pool = sqlx_pool(&app).await;
    let held: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM referral.events WHERE aggregate_id = $1 AND event_type = 'ReferralHeld'",
    )
    .bind(&id)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(held, 1);
    app.shutdown().await;
}

/// The queue pages in a stable order with filters, and a hospital polls its own.
#[tokio::test]
async fn the_coordinator_queue_pages_and_filters() {
    let app = spawn_app().await;
    let c = app.token("coordinator", None, None);
    let mut ids = Vec::new();
    for (i, risk) in ["high", "low", "low"].iter().enumerate() {
        ids.push(received_referral(&app, &format!("MRN-Q{i}"), risk).await);
    }
    let (_, page1) = app.get("/v1/referrals?limit=2", &c).await;
    assert_eq!(page1["items"].as_array().unwrap().len(), 2);
    let cursor = page1["next_cursor"].as_str().unwrap();
    let (_, page2) = app
        .get(&format!("/v1/referrals?limit=2&cursor={cursor}"), &c)
        .await;
    assert_eq!(page2["items"].as_array().unwrap().len(), 1);
    assert!(page2["next_cursor"].is_null());
    let mut seen: Vec<String> = page1["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(page2["items"].as_array().unwrap())
        .map(|r| r["referral_id"].as_str().unwrap().to_string())
        .collect();
    seen.sort();
    ids.sort();
    assert_eq!(seen, ids, "every referral exactly once across pages");

    let (_, routine) = app.get("/v1/referrals?priority=routine", &c).await;
    assert_eq!(routine["items"].as_array().unwrap().len(), 2);
    let (s, p) = app.get("/v1/referrals?priority=soon", &c).await;
    assert_eq!((s, p["field"].as_str()), (422, Some("priority")));
    let (s, p) = app.get("/v1/referrals?cursor=garbage", &c).await;
    assert_eq!((s, p["field"].as_str()), (422, Some("cursor")));

    let other = app.token("hospital", Some("mercy"), None);
    let (s, _) = app.get("/v1/referrals?facility=st-marys", &other).await;
    assert_eq!(s, 403, "a hospital sees only its own facility");
    let (_, theirs) = app.get("/v1/referrals", &other).await;
    assert_eq!(theirs["items"].as_array().unwrap().len(), 0);
    let mine = app.token("hospital", Some("st-marys"), None);
    let since = page1["items"][0]["updated_at"].as_str().unwrap();
    let (_, polled) = app
        .get(
            &format!("/v1/referrals?updated_since={}", since.replace('+', "%2B")),
            &mine,
        )
        .await;
    assert_eq!(polled["items"].as_array().unwrap().len(), 2);
    app.shutdown().await;
}

/// Overdue marking is durable: a check that runs only after a restart (a fresh
/// service, nothing in memory) marks the referral, two instances checking at once
/// mark it once, and the coordinator queue shows it.
#[tokio::test]
async fn overdue_marking_survives_restarts_and_races() {
    let app = spawn_app().await;
    let c = app.token("coordinator", None, None);
    let id = received_referral(&app, "MRN-O1", "low").await;
    let (_, view) = app.get(&format!("/v1/referrals/{id}"), &c).await;
    let due: chrono::DateTime<chrono::Utc> = view["due"]["acceptance_due_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    let backbone = Backbone::connect(&app.env.settings).await.unwrap();
    let before = ReferralService::new(&backbone).overdue_check();
    assert_eq!(
        before
            .run_once(due - chrono::Duration::seconds(1))
            .await
            .unwrap(),
        0
    );
    drop(before); // the process stops before the due time ...

    // ... and two instances start after it.
    let (one, two) = (
        ReferralService::new(&backbone).overdue_check(),
        ReferralService::new(&backbone).overdue_check(),
    );
    let (a, b) = tokio::join!(one.run_once(due), two.run_once(due));
    a.unwrap();
    b.unwrap();
    one.run_once(due + chrono::Duration::hours(1))
        .await
        .unwrap();

    let pool = sqlx_pool(&app).await;
    let marks: Vec<String> = sqlx::query_scalar(
        "SELECT payload::text FROM referral.events WHERE aggregate_id = $1 AND event_type = 'ReferralOverdue'",
    )
    .bind(&id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(marks.len(), 1, "{marks:?}");
    assert!(marks[0].contains("acceptance"));
    let queue = eventually("the referral in the overdue queue", WAIT, || async {
        let (_, q) = app.get("/v1/referrals?overdue=true", &c).await;
        (q["items"].as_array()?.len() == 1).then_some(q)
    })
    .await;
    assert_eq!(queue["items"][0]["referral_id"], id.as_str());
    app.shutdown().await;
}

/// A hospital endpoint that fails twice and then accepts, checking every signature.
#[derive(Default)]
struct Receiver {
    calls: usize,
    bad_signatures: usize,
    accepted: Vec<Value>,
}

async fn start_receiver(secret: &'static str) -> (String, Arc<Mutex<Receiver>>) {
    use axum::http::{HeaderMap, StatusCode};
    let state = Arc::new(Mutex::new(Receiver::default()));
    let s = state.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let s = s.clone();
            async move {
                let mut r = s.lock().unwrap();
                r.calls += 1;
                let sig = headers
                    .get("careloop-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                if !careloop_intake::closed_loop::signature::verify(secret, sig, &body) {
                    r.bad_signatures += 1;
                    return StatusCode::UNAUTHORIZED;
                }
                if r.calls <= 2 {
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                r.accepted.push(serde_json::from_str(&body).unwrap());
                StatusCode::NO_CONTENT
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, state)
}

/// The closed loop: status changes reach the facility's webhook, signed; failures
/// are retried with backoff until exactly one success per change is recorded.
#[tokio::test]
async fn status_changes_reach_the_hospital_webhook_despite_failures() {
    let secret = "st-marys-webhook-secret";
    let (url, receiver) = start_receiver(secret).await;
    let mut env = TestEnv::new();
    env.settings.webhook_retry_base = Duration::from_millis(50);
    // The test's receiver listens on loopback: an administrator's allow-list.
    env.settings.webhook_allowed_hosts = vec!["127.0.0.1".into()];
    let app = spawn_app_with(env).await;
    let hospital = app.token("hospital", Some("st-marys"), None);
    let (s, r) = app
        .http
        .put(format!("{}/v1/facilities/st-marys/webhook", app.base))
        .bearer_auth(&hospital)
        .json(&json!({"url": url, "secret": secret}))
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))
        .unwrap();
    assert_eq!(s, 200, "{:?}", r.text().await);
    let other = app.token("hospital", Some("mercy"), None);
    let res = app
        .http
        .put(format!("{}/v1/facilities/st-marys/webhook", app.base))
        .bearer_auth(&other)
        .json(&json!({"url": url, "secret": secret}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 403);

    let id = received_referral(&app, "MRN-W1", "high").await;
    let c = app.token("coordinator", None, None);
    let (s, _) = act(&app, &c, &id, "hold", json!({"reason": "paused"})).await;
    assert_eq!(s, 200);

    let log = eventually(
        "both status changes delivered",
        Duration::from_secs(30),
        || async {
            let (_, d) = app
                .get("/v1/facilities/st-marys/webhook/deliveries", &hospital)
                .await;
            let items = d["items"].as_array()?.clone();
            (items.len() == 2 && items.iter().all(|i| i["state"] == "delivered")).then_some(items)
        },
    )
    .await;
    let r = std::mem::take(&mut *receiver.lock().unwrap());
    assert_eq!(r.bad_signatures, 0);
    let mut statuses: Vec<&str> = r
        .accepted
        .iter()
        .map(|b| b["status"].as_str().unwrap())
        .collect();
    statuses.sort();
    assert_eq!(statuses, ["on-hold", "received"], "one success per change");
    assert!(r.accepted.iter().all(|b| b["referral_id"] == id.as_str()));
    let failures: usize = log
        .iter()
        .flat_map(|d| d["attempt_log"].as_array().unwrap())
        .filter(|a| a["status_code"] == 503)
        .count();
    let successes: usize = log
        .iter()
        .flat_map(|d| d["attempt_log"].as_array().unwrap())
        .filter(|a| a["status_code"] == 204)
        .count();
    assert_eq!((failures, successes), (2, 2), "{log:?}");
    app.shutdown().await;
}
