//! Peer matching: capacity under concurrency with two instances, the waitlist order,
//! match explanations, overrides, declines and leave.

use std::sync::Arc;

use careloop_backbone::{Backbone, Host};
use careloop_peer_assignment::PeerAssignmentService;
use careloop_test_support::eventually;
use serde_json::{Value, json};

use crate::*;

/// A second peer-assignment instance on the same database and namespace: its own
/// relay, consumer, projection and waitlist worker, as another process would run.
async fn second_peer_assignment(app: &TestApp) -> tokio::sync::oneshot::Sender<()> {
    let bb = Backbone::connect(&app.env.settings).await.unwrap();
    let services: Vec<Arc<dyn careloop_backbone::Service>> =
        vec![Arc::new(PeerAssignmentService::new(&bb))];
    let host = Host::new(bb, services);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(host.serve(listener, async move {
        let _ = stopped.await;
    }));
    stop
}

async fn add_peer(app: &TestApp, body: Value) -> String {
    let c = app.token("coordinator", None, None);
    let (s, r) = app.post("/v1/peers", &c, &body).await;
    assert_eq!(s, 201, "{r}");
    r["peer_id"].as_str().unwrap().to_string()
}

async fn roster_size(app: &TestApp, n: usize) {
    let c = app.token("coordinator", None, None);
    eventually("the roster", WAIT, || async {
        let (_, l) = app.get("/v1/peers", &c).await;
        (l["items"].as_array()?.len() == n).then_some(())
    })
    .await;
}

/// Guarantee 7 at scale: 200 referrals at once against a roster of 50 slots, with two
/// peer-assignment instances: exactly 50 assigned, 150 waitlisted, nobody over their
/// caseload; then 10 freed slots go to the first 10 of the waitlist, in order.
#[tokio::test]
async fn two_hundred_referrals_never_exceed_fifty_slots() {
    let app = spawn_app().await;
    let _second = second_peer_assignment(&app).await;
    for i in 0..10 {
        add_peer(
            &app,
            json!({"name": format!("Peer {i}"), "languages": ["en"], "gender": "female", "max_caseload": 5}),
        )
        .await;
    }
    roster_size(&app, 10).await;

    let hospital = app.token("hospital", Some("st-marys"), None);
    let discharged = at(recent_discharge());
    let sends = (0..200).map(|i| {
        let mut body = referral_body(&format!("MRN-C{i}"), &discharged);
        body["discharge"]["risk_level"] = json!(["high", "moderate", "low"][i % 3]);
        let req = app
            .http
            .post(format!("{}/v1/referrals", app.base))
            .bearer_auth(&hospital)
            .json(&body);
        tokio::spawn(async move { req.send().await.unwrap().status().as_u16() })
    });
    for s in futures_join(sends).await {
        assert_eq!(s, 201);
    }

    let pool = sqlx_pool(&app).await;
    let counts = || async {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, count(*) FROM peer_assignment.assignments GROUP BY status ORDER BY status",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        rows
    };
    let settled = eventually(
        "every referral assigned or waitlisted",
        std::time::Duration::from_secs(90),
        || async {
            let c = counts().await;
            let total: i64 = c
                .iter()
                .filter(|(s, _)| s == "assigned" || s == "waitlisted")
                .map(|r| r.1)
                .sum();
            (total == 200).then_some(c)
        },
    )
    .await;
    assert_eq!(
        settled,
        [
            ("assigned".to_string(), 50),
            ("waitlisted".to_string(), 150)
        ]
    );
    // From the event store itself, not the read model: nobody holds more than 5.
    let held: Vec<(String, i64)> = sqlx::query_as(
        "SELECT aggregate_id, sum(CASE event_type WHEN 'SlotReserved' THEN 1 ELSE -1 END)
         FROM peer_assignment.events WHERE aggregate_type = 'Peer'
           AND event_type IN ('SlotReserved', 'SlotReleased')
         GROUP BY aggregate_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(held.len(), 10);
    assert!(held.iter().all(|(_, n)| *n == 5), "{held:?}");

    // The waitlist's order (priority, then how long each has waited): the first ten
    // get the freed slots. Read by that order's own keys, which never change while a
    // referral waits: a waiting referral the worker is trying again at this instant
    // (its status briefly `matching` while the roster read model catches up) keeps
    // its place in the queue.
    let expected: Vec<String> = careloop_peer_assignment::read_model::queue(&pool, 10)
        .await
        .unwrap();
    let to_free: Vec<String> = sqlx::query_scalar(
        "SELECT referral_id FROM peer_assignment.assignments WHERE status = 'assigned'
         ORDER BY referral_id LIMIT 10",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let c = app.token("coordinator", None, None);
    for id in &to_free {
        let (s, r) = app
            .post(
                &format!("/v1/referrals/{id}/cancel"),
                &c,
                &json!({"reason": "moved away"}),
            )
            .await;
        assert_eq!(s, 200, "{r}");
    }
    let mut newly: Vec<String> = eventually(
        "ten referrals assigned from the waitlist",
        std::time::Duration::from_secs(60),
        || async {
            let ids: Vec<String> = sqlx::query_scalar(
                "SELECT referral_id FROM peer_assignment.assignments
             WHERE status = 'assigned' AND waitlisted_at IS NOT NULL",
            )
            .fetch_all(&pool)
            .await
            .unwrap();
            (ids.len() >= 10).then_some(ids)
        },
    )
    .await;
    newly.sort();
    let mut expected_sorted = expected.clone();
    expected_sorted.sort();
    if newly != expected_sorted {
        // Each referral that differs, with its assignment's history, so that a
        // failure says how the order was broken.
        let mut story = String::new();
        for id in newly.iter().chain(&expected_sorted) {
            if newly.contains(id) && expected_sorted.contains(id) {
                continue;
            }
            let events: Vec<(String, String, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
                "SELECT event_type, payload::text, recorded_at FROM peer_assignment.events
                 WHERE aggregate_type = 'Assignment' AND aggregate_id = $1 ORDER BY sequence",
            )
            .bind(id)
            .fetch_all(&pool)
            .await
            .unwrap();
            story.push_str(&format!("\n{id} (newly assigned: {}):", newly.contains(id)));
            for (t, p, at) in events {
                story.push_str(&format!("\n  {at} {t} {p}"));
            }
        }
        panic!("the first ten of the waitlist, no others: expected {expected:?}{story}");
    }
    // A waitlisted referral may be re-tried while the roster read model catches up;
    // once settled, exactly 50 hold a slot and 140 wait.
    eventually("the waitlist settled", WAIT, || async {
        let after = counts().await;
        (after.contains(&("assigned".to_string(), 50))
            && after.contains(&("waitlisted".to_string(), 140)))
        .then_some(())
    })
    .await;
    app.shutdown().await;
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

/// Matches explain themselves; a coordinator override, a peer's decline and a
/// peer's leave move the referral, each freeing the previous peer's slot.
#[tokio::test]
async fn matches_explain_and_referrals_move_between_peers() {
    let app = spawn_app().await;
    let a = add_peer(
        &app,
        json!({"name": "Ana", "languages": ["en"], "gender": "female",
               "lived_experience": ["bipolar"], "regions": ["681"], "max_caseload": 3}),
    )
    .await;
    let b = add_peer(
        &app,
        json!({"name": "Bea", "languages": ["en"], "gender": "female", "max_caseload": 3}),
    )
    .await;
    add_peer(
        &app,
        json!({"name": "Carl", "languages": ["en"], "gender": "male", "max_caseload": 3}),
    )
    .await;
    add_peer(
        &app,
        json!({"name": "Dora", "languages": ["es"], "gender": "female", "max_caseload": 3}),
    )
    .await;
    roster_size(&app, 4).await;

    let hospital = app.token("hospital", Some("st-marys"), None);
    let (_, created) = app
        .post(
            "/v1/referrals",
            &hospital,
            &referral_body("MRN-M1", &at(recent_discharge())),
        )
        .await;
    let id = created["referral_id"].as_str().unwrap().to_string();
    let peer_of = |want: String| {
        let app = &app;
        let hospital = hospital.clone();
        let id = id.clone();
        async move {
            eventually(&format!("the referral with peer {want}"), WAIT, || async {
                let (_, r) = app.get(&format!("/v1/referrals/{id}"), &hospital).await;
                (r["assigned_peer_id"] == want.as_str()).then_some(r)
            })
            .await
        }
    };
    peer_of(a.clone()).await;

    let c = app.token("coordinator", None, None);
    let (_, m) = app.get(&format!("/v1/referrals/{id}/matches"), &c).await;
    assert_eq!(m["candidates"][0]["peer_id"], a.as_str(), "{m}");
    assert_eq!(m["candidates"][0]["terms"]["region"], 1.0);
    assert_eq!(
        m["candidates"][0]["shared_lived_experience"],
        json!(["bipolar"])
    );
    assert_eq!(m["excluded"], json!({"gender": 1, "language": 1}));
    assert_eq!(m["roster_size"], 4);

    // Override to Bea.
    let (s, r) = app
        .http
        .put(format!("{}/v1/referrals/{id}/assignment", app.base))
        .bearer_auth(&c)
        .json(&json!({"peer_id": b, "reason": "Bea knows the family"}))
        .send()
        .await
        .map(|r| (r.status().as_u16(), r))
        .unwrap();
    assert_eq!(s, 200, "{:?}", r.text().await);
    peer_of(b.clone()).await;
    let load = |peer: String| {
        let app = &app;
        let c = c.clone();
        async move {
            let (_, l) = app.get("/v1/peers", &c).await;
            l["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["peer_id"] == peer.as_str())
                .unwrap()["active_count"]
                .as_i64()
                .unwrap()
        }
    };
    eventually("Ana's slot freed", WAIT, || async {
        (load(a.clone()).await == 0).then_some(())
    })
    .await;

    // Bea declines: back to matching without her, so Ana again.
    let bea = app.token("peer", None, Some(&b));
    let (s, r) = app
        .post(
            &format!("/v1/referrals/{id}/assignment/decline"),
            &bea,
            &json!({"reason": "conflict of interest"}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    peer_of(a.clone()).await;

    // Ana goes on leave: her referral goes back to matching; Bea declined it, so it
    // waits; when Ana returns it is matched again.
    let until = at(chrono::Utc::now() + chrono::Duration::days(14));
    let res = app
        .http
        .patch(format!("{}/v1/peers/{a}", app.base))
        .bearer_auth(&c)
        .json(&json!({"availability": {"status": "on_leave", "until": until}}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    eventually("the referral waiting", WAIT, || async {
        let (_, r) = app.get(&format!("/v1/referrals/{id}"), &hospital).await;
        (r["assigned_peer_id"].is_null() && r["waitlisted"] == true).then_some(())
    })
    .await;
    // A profile edit while on leave changes the profile, not the leave.
    let res = app
        .http
        .patch(format!("{}/v1/peers/{a}", app.base))
        .bearer_auth(&c)
        .json(&json!({"regions": ["681", "682"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let ana = eventually("the roster showing Ana's new regions", WAIT, || async {
        let (_, r) = app.get("/v1/peers", &c).await;
        let ana = r["items"]
            .as_array()?
            .iter()
            .find(|p| p["peer_id"] == a.as_str())?;
        (ana["regions"] == json!(["681", "682"])).then(|| ana.clone())
    })
    .await;
    assert_eq!(ana["availability"], "on_leave", "{ana}");

    let res = app
        .http
        .patch(format!("{}/v1/peers/{a}", app.base))
        .bearer_auth(&c)
        .json(&json!({"availability": {"status": "active"}, "max_caseload": 4}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let back = eventually("matched again", WAIT, || async {
        let (_, r) = app.get(&format!("/v1/referrals/{id}"), &hospital).await;
        (!r["assigned_peer_id"].is_null()).then_some(r)
    })
    .await;
    assert_eq!(back["status"], "accepted");

    let bad = app
        .http
        .patch(format!("{}/v1/peers/{a}", app.base))
        .bearer_auth(&c)
        .json(&json!({"max_caseload": 0}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 422);
    app.shutdown().await;
}

/// Guarantee (credentials): a peer whose certification has expired is not matched,
/// and the match explanation says so; coordinators see expiries due within 30 days;
/// no peer's caseload may exceed the organisation's norm.
#[tokio::test]
async fn an_expired_certification_keeps_a_peer_out_of_matching() {
    let mut env = careloop_test_support::TestEnv::new();
    env.settings.caseload_norm = Some(15);
    let app = spawn_app_with(env).await;
    let c = app.token("coordinator", None, None);
    let today = chrono::Utc::now().date_naive();
    let cert = |days: i64| {
        json!({"issuer": "Nebraska CPSS board", "number": format!("CPSS-{days}"),
               "expires_on": (today + chrono::Duration::days(days)).to_string()})
    };
    let (s, p) = app
        .post(
            "/v1/peers",
            &c,
            &json!({"name": "Over", "languages": ["en"], "max_caseload": 20}),
        )
        .await;
    assert_eq!((s, p["field"].as_str()), (422, Some("max_caseload")), "{p}");
    let lapsed = add_peer(
        &app,
        json!({"name": "Ana", "languages": ["en"], "gender": "female", "max_caseload": 5,
               "lived_experience": ["bipolar", "lgbtq"], "certification": cert(-1)}),
    )
    .await;
    let current = add_peer(
        &app,
        json!({"name": "Bea", "languages": ["en"], "gender": "female", "max_caseload": 5,
               "certification": cert(10)}),
    )
    .await;
    roster_size(&app, 2).await;

    // The coordinators' list: soonest first; a narrower window, only the lapsed one.
    let (s, due) = app.get("/v1/peers/certifications", &c).await;
    assert_eq!(s, 200, "{due}");
    let listed: Vec<(&str, i64)> = due["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["peer_id"].as_str().unwrap(),
                i["days_left"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(listed, vec![(lapsed.as_str(), -1), (current.as_str(), 10)]);
    let (_, due) = app.get("/v1/peers/certifications?within_days=5", &c).await;
    assert_eq!(due["items"].as_array().unwrap().len(), 1);
    let (s, _) = app
        .get(
            "/v1/peers/certifications",
            &app.token("peer", None, Some(&current)),
        )
        .await;
    assert_eq!(s, 403);

    // Ana shares more with the person, but her certification lapsed: Bea is matched.
    let hospital = app.token("hospital", Some("st-marys"), None);
    let (_, created) = app
        .post(
            "/v1/referrals",
            &hospital,
            &referral_body("MRN-CERT-1", &at(recent_discharge())),
        )
        .await;
    let id = created["referral_id"].as_str().unwrap().to_string();
    eventually("the referral with the certified peer", WAIT, || async {
        let (_, r) = app.get(&format!("/v1/referrals/{id}"), &c).await;
        (r["assigned_peer_id"] == current.as_str()).then_some(())
    })
    .await;
    let (_, m) = app.get(&format!("/v1/referrals/{id}/matches"), &c).await;
    assert_eq!(m["excluded"]["certification"], 1, "{m}");

    // Renewed (and a bad renewal refused, naming the field).
    let (s, p) = app
        .patch(
            &format!("/v1/peers/{lapsed}"),
            &c,
            &json!({"certification": {"issuer": " ", "number": "x", "expires_on": "2030-01-01"}}),
        )
        .await;
    assert_eq!(
        (s, p["field"].as_str()),
        (422, Some("certification.issuer")),
        "{p}"
    );
    let (s, _) = app
        .patch(
            &format!("/v1/peers/{lapsed}"),
            &c,
            &json!({"certification": cert(365)}),
        )
        .await;
    assert_eq!(s, 200);
    eventually("the renewal off the list", WAIT, || async {
        let (_, due) = app.get("/v1/peers/certifications", &c).await;
        (due["items"].as_array()?.len() == 1).then_some(())
    })
    .await;
    app.shutdown().await;
}
