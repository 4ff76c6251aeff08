//! Follow-up: plans from the protocol, the contact log, durable deadlines,
//! readmissions and closing, through the public API.

use careloop_backbone::Backbone;
use careloop_follow_up::FollowUpService;
use careloop_test_support::eventually;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

use crate::*;

pub(crate) struct Accepted {
    pub id: String,
    pub peer_id: String,
    pub discharged: DateTime<Utc>,
}

/// A peer with room, and a referral (MRN `mrn`) accepted by them with a plan.
pub(crate) async fn accepted_referral(app: &TestApp, mrn: &str) -> Accepted {
    let coordinator = app.token("coordinator", None, None);
    let (s, peer) = app
        .post(
            "/v1/peers",
            &coordinator,
            &json!({"name": "Sam Okafor", "languages": ["en"], "gender": "female", "max_caseload": 3}),
        )
        .await;
    assert_eq!(s, 201, "{peer}");
    let peer_id = peer["peer_id"].as_str().unwrap().to_string();
    eventually("the peer on the roster", WAIT, || async {
        let (_, list) = app.get("/v1/peers", &coordinator).await;
        (list["items"].as_array()?.len() == 1).then_some(())
    })
    .await;
    let hospital = app.token("hospital", Some("st-marys"), None);
    let discharged = recent_discharge();
    let (s, created) = app
        .post(
            "/v1/referrals",
            &hospital,
            &referral_body(mrn, &at(discharged)),
        )
        .await;
    assert_eq!(s, 201, "{created}");
    let id = created["referral_id"].as_str().unwrap().to_string();
    eventually("the plan started", WAIT, || async {
        let (s, _) = app
            .get(&format!("/v1/referrals/{id}/followup"), &coordinator)
            .await;
        (s == 200).then_some(())
    })
    .await;
    Accepted {
        id,
        peer_id,
        discharged,
    }
}

pub(crate) async fn plan(app: &TestApp, id: &str) -> Value {
    let c = app.token("coordinator", None, None);
    app.get(&format!("/v1/referrals/{id}/followup"), &c).await.1
}

/// The plan follows the protocol; a reach meets the check-ins whose windows hold
/// it; the peer's close completes the referral; a contact entered after closing is
/// still kept and counted at its time.
#[tokio::test]
async fn a_plan_tracks_check_ins_and_closes_the_referral() {
    let app = spawn_app().await;
    let r = accepted_referral(&app, "MRN-F1").await;
    let p = plan(&app, &r.id).await;
    let names: Vec<&str> = p["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["first_contact", "day_7", "day_14", "day_30"]);
    assert_eq!(
        p["checkpoints"][0]["due_at"],
        at(r.discharged + Duration::hours(24))
    );
    assert_eq!(
        p["checkpoints"][1]["due_at"],
        at(r.discharged + Duration::days(7))
    );
    assert_eq!(p["state"], "active");

    let peer = app.token("peer", None, Some(&r.peer_id));
    let contact = json!({"occurred_at": at(r.discharged + Duration::minutes(30)),
                         "channel": "phone", "outcome": "reached", "support_types": ["emotional"]});
    let (s, body) = app
        .post(&format!("/v1/referrals/{}/contacts", r.id), &peer, &contact)
        .await;
    assert_eq!(s, 201, "{body}");
    let p = eventually("the check-ins met", WAIT, || async {
        let p = plan(&app, &r.id).await;
        (p["checkpoints"][1]["met_at"].is_string()).then_some(p)
    })
    .await;
    assert_eq!(
        p["checkpoints"][0]["met_at"],
        at(r.discharged + Duration::minutes(30))
    );
    assert!(p["checkpoints"][2]["met_at"].is_null());
    assert_eq!(p["next_checkpoint"], "day_14");

    let (s, body) = app
        .post(
            &format!("/v1/referrals/{}/followup/close", r.id),
            &peer,
            &json!({"outcome": "completed", "reason": "connected to a community group"}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let hospital = app.token("hospital", Some("st-marys"), None);
    eventually("the referral completed", WAIT, || async {
        let (_, v) = app.get(&format!("/v1/referrals/{}", r.id), &hospital).await;
        (v["status"] == "completed").then_some(())
    })
    .await;

    // A retried request with the same Idempotency-Key records one contact.
    for _ in 0..2 {
        let res = app
            .http
            .post(format!("{}/v1/referrals/{}/contacts", app.base, r.id))
            .bearer_auth(&peer)
            .header("Idempotency-Key", "call-2")
            .json(
                &json!({"occurred_at": at(r.discharged + Duration::minutes(40)),
                          "channel": "phone", "outcome": "no_answer"}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 201);
    }
    let late = json!({"occurred_at": at(r.discharged + Duration::minutes(45)),
                      "channel": "text", "outcome": "left_message"});
    let (s, _) = app
        .post(&format!("/v1/referrals/{}/contacts", r.id), &peer, &late)
        .await;
    assert_eq!(s, 201, "back-entry after closing is kept");
    let p = eventually("the late contact in the log", WAIT, || async {
        let p = plan(&app, &r.id).await;
        (p["contacts"].as_array()?.len() == 3).then_some(p)
    })
    .await;
    assert_eq!(p["state"], "closed");
    assert_eq!(p["outcome"], "completed");
    assert_eq!(p["contacts"][1]["outcome"], "no_answer");
    assert_eq!(p["contacts"][2]["outcome"], "left_message");
    app.shutdown().await;
}

/// A check-in missed while the process was down is marked after the restart, once,
/// even with two instances checking at the same moment.
#[tokio::test]
async fn follow_up_deadlines_survive_restarts_and_races() {
    let app = spawn_app().await;
    let r = accepted_referral(&app, "MRN-F2").await;
    let due = r.discharged + Duration::hours(24);

    let backbone = Backbone::connect(&app.env.settings).await.unwrap();
    let before = FollowUpService::new(&backbone).deadline_check();
    assert_eq!(
        before.run_once(due).await.unwrap(),
        0,
        "due, not yet overdue"
    );
    drop(before);
    let (one, two) = (
        FollowUpService::new(&backbone).deadline_check(),
        FollowUpService::new(&backbone).deadline_check(),
    );
    let just_after = due + Duration::seconds(1);
    let (a, b) = tokio::join!(one.run_once(just_after), two.run_once(just_after));
    a.unwrap();
    b.unwrap();
    one.run_once(just_after + Duration::minutes(5))
        .await
        .unwrap();

    let pool = sqlx_pool(&app).await;
    let overdue: Vec<String> = sqlx::query_scalar(
        "SELECT payload::text FROM follow_up.events WHERE aggregate_id = $1 AND event_type = 'FollowUpOverdue'",
    )
    .bind(&r.id)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(overdue.len(), 1, "{overdue:?}");
    assert!(overdue[0].contains("first_contact"));

    let c = app.token("coordinator", None, None);
    let list = eventually("the plan on the overdue list", WAIT, || async {
        let (_, l) = app.get("/v1/followups?overdue=true", &c).await;
        (l["items"].as_array()?.len() == 1).then_some(l)
    })
    .await;
    assert_eq!(list["items"][0]["referral_id"], r.id.as_str());
    let peer = app.token("peer", None, Some(&r.peer_id));
    let (_, mine) = app
        .get(
            &format!(
                "/v1/followups?due_before={}",
                at(due + Duration::days(1)).replace('+', "%2B")
            ),
            &peer,
        )
        .await;
    assert_eq!(
        mine["items"][0]["referral_id"],
        r.id.as_str(),
        "the peer's worklist"
    );
    app.shutdown().await;
}

/// An admission within 30 days of discharge links to the referral, pauses its plan
/// and shows on its timeline; a coordinator resumes it after the next discharge.
#[tokio::test]
async fn a_readmission_pauses_the_plan_and_shows_on_the_timeline() {
    let app = spawn_app().await;
    let r = accepted_referral(&app, "MRN-F3").await;
    let hospital = app.token("hospital", Some("st-marys"), None);
    let admission = |mrn: &str| {
        json!({"facility": "st-marys", "admitted_at": at(r.discharged + Duration::minutes(50)),
               "unit": "inpatient-psychiatry",
               "person": {"identifiers": [{"system": "urn:oid:2.16.840.1.113883.3.999.1", "value": mrn}]}})
    };
    let (s, unknown) = app
        .post("/v1/admissions", &hospital, &admission("MRN-NOBODY"))
        .await;
    assert_eq!((s, unknown["recorded"].as_bool()), (202, Some(false)));
    let (s, first) = app
        .post("/v1/admissions", &hospital, &admission("MRN-F3"))
        .await;
    assert_eq!(s, 201, "{first}");
    let (_, again) = app
        .post("/v1/admissions", &hospital, &admission("MRN-F3"))
        .await;
    assert_eq!(
        first["admission_id"], again["admission_id"],
        "one admission"
    );

    eventually("the plan paused", WAIT, || async {
        (plan(&app, &r.id).await["state"] == "paused").then_some(())
    })
    .await;
    let view = eventually("the readmission on the timeline", WAIT, || async {
        let (_, v) = app.get(&format!("/v1/referrals/{}", r.id), &hospital).await;
        let events: Vec<&str> = v["timeline"]
            .as_array()?
            .iter()
            .filter_map(|e| e["event"].as_str())
            .collect();
        events.contains(&"ReadmissionNoted").then_some(v.clone())
    })
    .await;
    assert_eq!(
        view["status"], "accepted",
        "a readmission is not a status change"
    );

    let c = app.token("coordinator", None, None);
    let (s, _) = app
        .post(
            &format!("/v1/referrals/{}/followup/resume", r.id),
            &c,
            &json!({"reason": "discharged again"}),
        )
        .await;
    assert_eq!(s, 200);
    eventually("the plan active again", WAIT, || async {
        (plan(&app, &r.id).await["state"] == "active").then_some(())
    })
    .await;
    app.shutdown().await;
}

/// Cancelling the referral closes its plan and gives the peer's slot back.
#[tokio::test]
async fn cancelling_a_referral_closes_its_plan_and_frees_the_peer() {
    let app = spawn_app().await;
    let r = accepted_referral(&app, "MRN-F4").await;
    let c = app.token("coordinator", None, None);
    // The roster is a background read model: it shows the place taken shortly after.
    eventually("the peer's place taken", WAIT, || async {
        let (_, peers) = app.get("/v1/peers", &c).await;
        (peers["items"][0]["active_count"] == 1).then_some(())
    })
    .await;
    let (s, _) = app
        .post(
            &format!("/v1/referrals/{}/cancel", r.id),
            &c,
            &json!({"reason": "moved away"}),
        )
        .await;
    assert_eq!(s, 200);
    eventually("the plan cancelled", WAIT, || async {
        let p = plan(&app, &r.id).await;
        (p["state"] == "closed" && p["outcome"] == "cancelled").then_some(())
    })
    .await;
    eventually("the peer's slot free again", WAIT, || async {
        let (_, peers) = app.get("/v1/peers", &c).await;
        (peers["items"][0]["active_count"] == 0).then_some(())
    })
    .await;
    app.shutdown().await;
}
