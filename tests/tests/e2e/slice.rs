//! The walking-skeleton slice and the API's edges: auth, bad input, idempotency,
//! replay.

use serde_json::{Value, json};

use crate::*;
use careloop_test_support::eventually;

/// The slice: referral → received → peer assigned → accepted → plan → reached contact
/// → in-progress, each step visible on GET /v1/referrals/{id} with its timeline.
#[tokio::test]
async fn a_referral_travels_from_hospital_to_a_reached_person() {
    let app = spawn_app().await;
    let coordinator = app.token("coordinator", None, None);
    let hospital = app.token("hospital", Some("st-marys"), None);
    // Recent, so no due time passes while the test runs.
    let discharged = recent_discharge();

    let (status, peer) = app
        .post(
            "/v1/peers",
            &coordinator,
            &json!({"name": "Sam Okafor", "languages": ["en"], "gender": "female",
                    "lived_experience": ["bipolar"], "regions": ["681"],
                    "modes": ["phone"], "max_caseload": 5}),
        )
        .await;
    assert_eq!(status, 201, "{peer}");
    let peer_id = peer["peer_id"].as_str().unwrap().to_string();
    // The roster read model must know the peer before matching can pick it.
    eventually("the peer on the roster", WAIT, || async {
        let (_, list) = app.get("/v1/peers", &coordinator).await;
        (list["items"].as_array()?.len() == 1).then_some(())
    })
    .await;

    let (status, created) = app
        .post(
            "/v1/referrals",
            &hospital,
            &referral_body("MRN12345", &at(discharged)),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], "requested");
    let id = created["referral_id"].as_str().unwrap().to_string();

    let accepted = eventually("the referral accepted by the peer", WAIT, || async {
        let (s, r) = app.get(&format!("/v1/referrals/{id}"), &hospital).await;
        (s == 200 && r["status"] == "accepted").then_some(r)
    })
    .await;
    assert_eq!(accepted["assigned_peer_id"], peer_id.as_str());
    assert_eq!(accepted["priority"], "asap");
    assert_eq!(
        accepted["due"]["first_contact_due_at"],
        at(discharged + chrono::Duration::hours(24))
    );
    let events: Vec<&str> = accepted["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["ReferralReceived", "ReferralAccepted"]);

    let peer_token = app.token("peer", None, Some(&peer_id));
    // The assigned peer reads who to call; another peer may not.
    let card = eventually("the contact card", WAIT, || async {
        let (s, c) = app
            .get(&format!("/v1/referrals/{id}/contact-card"), &peer_token)
            .await;
        (s == 200).then_some(c)
    })
    .await;
    assert_eq!(card["name"]["family"], "Rivera");
    assert_eq!(card["phone"], "+1-402-555-0134");
    assert_eq!(card["hospital_notes"], "Prefers afternoon calls.");
    let stranger = app.token("peer", None, Some("another-peer"));
    let (s, _) = app
        .get(&format!("/v1/referrals/{id}/contact-card"), &stranger)
        .await;
    assert_eq!(s, 403);
    // The follow-up plan exists once PeerAssigned reached follow-up.
    let reached_at = discharged + chrono::Duration::minutes(30);
    let contact = json!({"occurred_at": at(reached_at), "channel": "phone",
                         "outcome": "reached", "support_types": ["emotional"],
                         "duration_minutes": 25, "notes": "Talked about the first week."});
    let path = format!("/v1/referrals/{id}/contacts");
    // A contact before the discharge, or in the future, is refused and names the field.
    let before_discharge = at(discharged - chrono::Duration::seconds(1));
    for bad_time in [before_discharge.as_str(), "2999-01-01T00:00:00Z"] {
        let mut bad = contact.clone();
        bad["occurred_at"] = json!(bad_time);
        let problem = eventually("the contact refused", WAIT, || async {
            let (s, body) = app.post(&path, &peer_token, &bad).await;
            (s != 409).then_some((s, body))
        })
        .await;
        assert_eq!(problem.0, 422, "{bad_time}: {}", problem.1);
        assert_eq!(problem.1["field"], "occurred_at");
    }
    let other_peer = app.token("peer", None, Some("someone-else"));
    let (s, _) = app.post(&path, &other_peer, &contact).await;
    assert_eq!(s, 403, "only the assigned peer records");
    eventually("the contact accepted", WAIT, || async {
        let (s, body) = app.post(&path, &peer_token, &contact).await;
        match s {
            201 => Some(()),
            409 => None, // no plan yet
            other => panic!("unexpected {other}: {body}"),
        }
    })
    .await;

    let in_progress = eventually("the referral in progress", WAIT, || async {
        let (_, r) = app.get(&format!("/v1/referrals/{id}"), &hospital).await;
        (r["status"] == "in-progress").then_some(r)
    })
    .await;
    assert_eq!(in_progress["timeline"].as_array().unwrap().len(), 3);

    // The worklist is follow-up's own read model: it shows the reach once it applied
    // the contact (the referral's status came through another service).
    let worklist = eventually("the worklist shows the reach", WAIT, || async {
        let (_, w) = app.get("/v1/followups", &peer_token).await;
        (w["items"][0]["first_reached_at"] == at(reached_at).as_str()).then_some(w)
    })
    .await;
    assert_eq!(worklist["items"][0]["referral_id"], id.as_str());

    // Guarantee 5: `careloop replay` rebuilds rows identical to the live ones, for
    // every read model of every service (a new one is covered without a change here).
    let pool = sqlx_pool(&app).await;
    // Nothing more is on its way: the hospital's Task (intake's mirror of the
    // referral's status, the last hop) shows the reach.
    eventually("intake's Task shows the reach", WAIT, || async {
        let status: String =
            sqlx::query_scalar("SELECT status FROM intake.referral_tasks WHERE referral_id = $1")
                .bind(&id)
                .fetch_one(&pool)
                .await
                .ok()?;
        (status == "in-progress").then_some(())
    })
    .await;
    replay_rebuilds_live_rows(&app, &pool, None).await;
    app.shutdown().await;
}

/// Bad input gets problem+json naming the field, and writes nothing.
#[tokio::test]
async fn bad_referrals_are_refused_with_the_field_named() {
    let app = spawn_app().await;
    let hospital = app.token("hospital", Some("st-marys"), None);
    let cases = [
        (
            "/discharge/discharged_at",
            json!("2999-01-01T00:00:00Z"),
            422,
            "discharge.discharged_at",
        ),
        (
            "/discharge/risk_level",
            json!("extreme"),
            422,
            "discharge.risk_level",
        ),
        ("/person/identifiers", json!([]), 422, "person.identifiers"),
        (
            "/person/unknown_field",
            json!(1),
            422,
            "person.unknown_field",
        ),
    ];
    for (pointer, value, status, field) in cases {
        let mut body = referral_body("MRN1", "2026-11-20T15:30:00Z");
        let (parent, key) = pointer.rsplit_once('/').unwrap();
        body.pointer_mut(if parent.is_empty() { "" } else { parent })
            .unwrap()
            .as_object_mut()
            .unwrap()
            .insert(key.to_string(), value);
        let res = app
            .http
            .post(format!("{}/v1/referrals", app.base))
            .bearer_auth(&hospital)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), status, "{pointer}");
        assert_eq!(
            res.headers()["content-type"],
            "application/problem+json",
            "{pointer}"
        );
        let problem: Value = res.json().await.unwrap();
        assert_eq!(problem["field"], field, "{pointer}: {problem}");
    }
    let missing = app
        .post("/v1/referrals", &hospital, &json!({"facility": "st-marys"}))
        .await;
    assert_eq!(missing.0, 422);
    assert_eq!(missing.1["field"], "person");

    let malformed = app
        .http
        .post(format!("{}/v1/referrals", app.base))
        .bearer_auth(&hospital)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(malformed.status().as_u16(), 400);

    // Nothing was written: the intake event store holds only the registry's demo
    // facilities.
    let pool = sqlx_pool(&app).await;
    let n: i64 =
        sqlx::query_scalar("SELECT count(*) FROM intake.events WHERE aggregate_type <> 'Facility'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(n, 0);
    app.shutdown().await;
}

/// Every /v1 route needs a valid token (401), the right role and facility (403).
#[tokio::test]
async fn tokens_roles_and_facilities_are_enforced() {
    let app = spawn_app().await;
    let body = referral_body("MRN9", "2026-11-20T15:30:00Z");
    let res = app
        .http
        .post(format!("{}/v1/referrals", app.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 401);
    assert_eq!(res.headers()["content-type"], "application/problem+json");

    let (s, _) = app.post("/v1/referrals", "not-a-token", &body).await;
    assert_eq!(s, 401);
    let forged = careloop_web_auth("some-other-secret-123456").issue(
        "hospital".parse().unwrap(),
        Some("st-marys".into()),
        None,
        chrono_hours(1),
    );
    let (s, _) = app.post("/v1/referrals", &forged, &body).await;
    assert_eq!(s, 401);

    let peer = app.token("peer", None, Some("p1"));
    let (s, _) = app.post("/v1/referrals", &peer, &body).await;
    assert_eq!(s, 403);
    let other_hospital = app.token("hospital", Some("mercy"), None);
    let (s, _) = app.post("/v1/referrals", &other_hospital, &body).await;
    assert_eq!(s, 403);

    let hospital = app.token("hospital", Some("st-marys"), None);
    let (s, created) = app.post("/v1/referrals", &hospital, &body).await;
    assert_eq!(s, 201);
    let id = created["referral_id"].as_str().unwrap();
    eventually("the referral readable", WAIT, || async {
        let (s, _) = app.get(&format!("/v1/referrals/{id}"), &hospital).await;
        (s == 200).then_some(())
    })
    .await;
    let (s, _) = app
        .get(&format!("/v1/referrals/{id}"), &other_hospital)
        .await;
    assert_eq!(s, 403);

    // Query strings, methods and facilities get problem+json too.
    let (s, p) = app.get("/v1/referrals?limit=abc", &hospital).await;
    assert_eq!((s, p["field"].as_str()), (422, Some("limit")), "{p}");
    let (s, p) = app.get("/v1/referrals?stauts=accepted", &hospital).await;
    assert_eq!((s, p["field"].as_str()), (422, Some("stauts")), "{p}");
    let (s, _) = app.get("/v1/referrals?facility=mercy", &hospital).await;
    assert_eq!(s, 403, "a hospital asking for another facility is told no");
    let res = app
        .http
        .delete(format!("{}/v1/referrals", app.base))
        .bearer_auth(&hospital)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 405);
    assert_eq!(res.headers()["content-type"], "application/problem+json");
    let res = app
        .http
        .get(format!("{}/v1/referrals", app.base))
        .send()
        .await
        .unwrap();
    assert!(
        res.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );

    for open in ["/healthz", "/readyz", "/metrics"] {
        let res = app
            .http
            .get(format!("{}{open}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 200, "{open}");
    }
    let metrics = app.metrics_text().await;
    assert!(metrics.contains("careloop_outbox_pending"), "{metrics}");
    app.shutdown().await;
}

/// Idempotency-Key: the same key and body gives the same answer and one referral.
#[tokio::test]
async fn an_idempotency_key_makes_a_retry_safe() {
    let app = spawn_app().await;
    let hospital = app.token("hospital", Some("st-marys"), None);
    let body = referral_body("MRN77", "2026-11-20T15:30:00Z");
    let send = |b: Value| {
        let req = app
            .http
            .post(format!("{}/v1/referrals", app.base))
            .bearer_auth(&hospital)
            .header("Idempotency-Key", "discharge-77")
            .json(&b);
        async move {
            let r = req.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let first = send(body.clone()).await;
    let second = send(body.clone()).await;
    assert_eq!(first.0, 201);
    assert_eq!(first, second);
    let mut other = body.clone();
    other["notes"] = json!("changed");
    let third = send(other).await;
    assert_eq!(third.0, 422);
    assert_eq!(third.1["field"], "Idempotency-Key");
    let pool = sqlx_pool(&app).await;
    let n: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM intake.events WHERE event_type = 'ReferralSubmitted'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(n, 1);
    app.shutdown().await;
}
