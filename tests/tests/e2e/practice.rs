//! Peer support practice through the public API: the person's recovery goals, and
//! contacts documented for billing, signed by a supervisor, locked, amended by
//! addenda and exported for the billing system.

use chrono::Duration;
use serde_json::{Value, json};

use crate::followup::{accepted_referral, plan};
use crate::*;
use careloop_test_support::eventually;

/// The billing export as its CSV rows (header first).
async fn csv(app: &TestApp, path: &str, token: &str) -> Vec<Vec<String>> {
    let body = app.get_csv(path, token).await;
    body.lines()
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect()
}

fn contact_in(plan: &Value, id: &str) -> Value {
    plan["contacts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["contact_id"] == id)
        .cloned()
        .unwrap_or(Value::Null)
}

fn fields(missing: &Value) -> Vec<&str> {
    missing
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["field"].as_str().unwrap())
        .collect()
}

/// Guarantees: billed units follow the code's rounding rule; a billable contact is
/// signed only when complete and is locked once signed (a change is an addendum
/// beside the original); the export holds exactly the signed, complete contacts and
/// lists every other billed contact as an exception with its reason; goals are the
/// person's own words, sealed at rest, linked from contacts and reviewed; bad input
/// is refused by field and writes nothing; replay rebuilds it all.
#[tokio::test]
async fn contacts_are_documented_signed_locked_and_exported_and_goals_are_the_persons_own() {
    let app = spawn_app().await;
    let a = accepted_referral(&app, "MRN-PRACTICE").await;
    let id = &a.id;
    let peer = app.token("peer", None, Some(&a.peer_id));
    let coordinator = app.token("coordinator", None, None);
    let d = a.discharged;

    // The person's goal, in their words.
    let goals = format!("/v1/referrals/{id}/goals");
    let (s, p) = app.post(&goals, &peer, &json!({"words": "  "})).await;
    assert_eq!((s, p["field"].as_str()), (422, Some("words")), "{p}");
    let (s, g) = app
        .post(
            &goals,
            &peer,
            &json!({"words": "Keep my housing", "support_types": ["instrumental"]}),
        )
        .await;
    assert_eq!(s, 201, "{g}");
    let goal_id = g["goal_id"].as_str().unwrap().to_string();

    // A billed contact: in person at home, 37 minutes, H0038 with HQ, attested.
    let contacts = format!("/v1/referrals/{id}/contacts");
    let visit = json!({
        "occurred_at": at(d + Duration::minutes(2)), "ended_at": at(d + Duration::minutes(39)),
        "channel": "in_person", "place": "home", "outcome": "reached",
        "support_types": ["instrumental"], "goal_ids": [goal_id],
        "notes": "Went through the tenancy letter together.",
        "billing": {"service_code": "H0038", "modifiers": ["HQ"], "attested": true},
    });
    // Bad documentation is refused by field and writes nothing.
    let bad = [
        (
            "/billing/service_code",
            json!("H9999"),
            "billing.service_code",
        ),
        ("/billing/modifiers", json!(["ZZ"]), "billing.modifiers"),
        ("/ended_at", json!(at(d + Duration::minutes(1))), "ended_at"),
        ("/place", json!("moon"), "place"),
        ("/goal_ids", json!(["not-a-goal"]), "goal_ids"),
    ];
    for (pointer, value, field) in bad {
        let mut body = visit.clone();
        *body.pointer_mut(pointer).unwrap() = value;
        let (s, p) = app.post(&contacts, &peer, &body).await;
        assert_eq!(
            (s, p["field"].as_str()),
            (422, Some(field)),
            "{pointer}: {p}"
        );
    }
    let mut on_behalf = visit.clone();
    on_behalf["billing"]["attested"] = json!(true);
    let (s, p) = app.post(&contacts, &coordinator, &on_behalf).await;
    assert_eq!(
        (s, p["field"].as_str()),
        (422, Some("billing.attested")),
        "only the peer attests: {p}"
    );
    let (s, c1) = app.post(&contacts, &peer, &visit).await;
    assert_eq!(s, 201, "{c1}");
    let c1 = c1["contact_id"].as_str().unwrap().to_string();
    // A 7-minute call, billed but not attested: incomplete.
    let call = json!({
        "occurred_at": at(d + Duration::minutes(40)), "ended_at": at(d + Duration::minutes(47)),
        "channel": "phone", "outcome": "reached", "support_types": ["emotional"],
        "billing": {"service_code": "H0038"},
    });
    let (s, c2) = app.post(&contacts, &peer, &call).await;
    assert_eq!(s, 201, "{c2}");
    let c2 = c2["contact_id"].as_str().unwrap().to_string();

    let view = eventually(
        "the plan shows both contacts and the goal",
        WAIT,
        || async {
            let v = plan(&app, id).await;
            (v["contacts"].as_array()?.len() == 2 && v["goals"].as_array()?.len() == 1).then_some(v)
        },
    )
    .await;
    let visit_row = contact_in(&view, &c1);
    assert_eq!(visit_row["duration_minutes"], 37);
    assert_eq!(
        visit_row["billing"]["units"], 2,
        "37 minutes: 2 units by the 8-minute rule"
    );
    assert_eq!(visit_row["billing"]["attested_by"], a.peer_id.as_str());
    assert_eq!(
        visit_row["notes"],
        "Went through the tenancy letter together."
    );
    assert_eq!(fields(&visit_row["missing"]), Vec::<&str>::new());
    let call_row = contact_in(&view, &c2);
    assert_eq!(call_row["billing"]["units"], 0);
    assert_eq!(
        fields(&call_row["missing"]),
        ["ended_at", "billing.attested"]
    );
    let goal = &view["goals"][0];
    assert_eq!(goal["words"], "Keep my housing");
    assert_eq!(goal["status"], "progress");
    assert_eq!(goal["contacts"], 1, "the visit worked on the goal");

    // Before signing: both are exceptions, with their reasons; no line is billable.
    let today = chrono::Utc::now().date_naive();
    let period = format!("from={}&to={}", (d - Duration::days(1)).date_naive(), today);
    let (s, ex) = app
        .get(&format!("/v1/billing/exceptions?{period}"), &coordinator)
        .await;
    assert_eq!(s, 200, "{ex}");
    let reasons = |ex: &Value, contact: &str| -> Vec<String> {
        ex["exceptions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["contact_id"] == contact)
            .map(|e| {
                e["reasons"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["field"].as_str().unwrap().to_string())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(reasons(&ex, &c1), ["signature"]);
    assert_eq!(
        reasons(&ex, &c2),
        ["ended_at", "billing.attested", "signature"]
    );

    // Signing: the supervisor only, and only what is complete.
    let sign = |c: &str| format!("/v1/referrals/{id}/contacts/{c}/signature");
    let (s, _) = app.post(&sign(&c1), &peer, &json!({})).await;
    assert_eq!(s, 403, "a peer does not sign their own contact");
    let (s, p) = app.post(&sign(&c2), &coordinator, &json!({})).await;
    assert_eq!((s, p["field"].as_str()), (422, Some("ended_at")), "{p}");
    assert_eq!(p["missing"].as_array().unwrap().len(), 2, "{p}");
    let (s, signed) = app.post(&sign(&c1), &coordinator, &json!({})).await;
    assert_eq!(s, 200, "{signed}");
    let supervisor = signed["signed_by"].as_str().unwrap().to_string();
    let (s, _) = app.post(&sign(&c1), &coordinator, &json!({})).await;
    assert_eq!(s, 409, "signed once");

    // The peer completes the call (15 minutes: 1 unit) and attests; then it signs.
    let doc = |c: &str| format!("/v1/referrals/{id}/contacts/{c}/documentation");
    let (s, p) = app
        .put(
            &doc(&c2),
            &peer,
            &json!({"ended_at": at(d + Duration::minutes(55)),
                    "billing": {"service_code": "H0038", "modifiers": ["U1"], "attested": true}}),
        )
        .await;
    assert_eq!(s, 200, "{p}");
    let (s, p) = app.post(&sign(&c2), &coordinator, &json!({})).await;
    assert_eq!(s, 200, "{p}");

    // Locked: a correction is refused; an addendum is kept beside the original.
    let (s, p) = app
        .put(
            &doc(&c1),
            &peer,
            &json!({"ended_at": at(d + Duration::minutes(50))}),
        )
        .await;
    assert_eq!(s, 409, "{p}");
    let addenda = format!("/v1/referrals/{id}/contacts/{c2}/addenda");
    let (s, _) = app
        .post(
            &format!("/v1/referrals/{id}/contacts/{c1}/addenda"),
            &peer,
            &json!({"text": ""}),
        )
        .await;
    assert_eq!(s, 422);
    let (s, p) = app
        .post(
            &addenda,
            &peer,
            &json!({"text": "They called back later to confirm the appointment."}),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    let view = eventually(
        "the plan shows the signatures and the addendum",
        WAIT,
        || async {
            let v = plan(&app, id).await;
            let call = contact_in(&v, &c2);
            (call["signed_at"].is_string() && call["addenda"].as_array()?.len() == 1).then_some(v)
        },
    )
    .await;
    let call_row = contact_in(&view, &c2);
    assert_eq!(call_row["duration_minutes"], 15);
    assert_eq!(call_row["billing"]["units"], 1);
    assert_eq!(
        call_row["addenda"][0]["text"],
        "They called back later to confirm the appointment."
    );
    assert_eq!(
        contact_in(&view, &c1)["duration_minutes"],
        37,
        "the original is kept"
    );

    // The export: both lines, nothing left as an exception.
    let rows = csv(
        &app,
        &format!("/v1/billing/contacts?{period}"),
        &coordinator,
    )
    .await;
    assert_eq!(
        rows[0][..6],
        [
            "contact_id",
            "referral_id",
            "person_ref",
            "facility",
            "date_of_service",
            "service_code"
        ]
    );
    assert_eq!(rows.len(), 3, "{rows:?}");
    let line = |c: &str| rows.iter().find(|r| r[0] == c).unwrap().clone();
    let visit_line = line(&c1);
    assert_eq!(visit_line[3], "st-marys");
    assert_eq!(
        visit_line[4],
        (d + Duration::minutes(2)).date_naive().to_string()
    );
    assert_eq!(visit_line[5..11], ["H0038", "HQ", "", "", "", "2"]);
    assert_eq!(
        visit_line[11..14],
        ["37", "in_person_home", a.peer_id.as_str()]
    );
    assert!(supervisor.contains("coordinator"), "{supervisor}");
    let (s, json_lines) = app
        .get(&format!("/v1/billing/contacts?{period}"), &coordinator)
        .await;
    assert_eq!(s, 200);
    assert_eq!(json_lines["units"], 3);
    assert_eq!(json_lines["lines"][0]["supervisor"], supervisor.as_str());
    assert_eq!(json_lines["exceptions"], 0);
    let ex_rows = csv(
        &app,
        &format!("/v1/billing/exceptions?{period}"),
        &coordinator,
    )
    .await;
    assert_eq!(ex_rows.len(), 1, "only the header: {ex_rows:?}");
    // Other facilities and other periods hold none of it; bad periods are refused.
    let (_, other) = app
        .get(
            &format!("/v1/billing/contacts?{period}&facility=elsewhere"),
            &coordinator,
        )
        .await;
    assert_eq!(other["lines"].as_array().unwrap().len(), 0);
    let (s, p) = app
        .get(
            "/v1/billing/contacts?from=2026-02-01&to=2026-01-01",
            &coordinator,
        )
        .await;
    assert_eq!((s, p["field"].as_str()), (422, Some("to")));
    let (s, p) = app
        .get("/v1/billing/contacts?to=2026-01-01", &coordinator)
        .await;
    assert_eq!((s, p["field"].as_str()), (422, Some("from")));
    let (s, _) = app
        .get(&format!("/v1/billing/contacts?{period}"), &peer)
        .await;
    assert_eq!(s, 403, "billing is the organisation's, not a peer's");

    // Reviews: progress, changed in new words, met.
    let reviews = format!("/v1/referrals/{id}/goals/{goal_id}/reviews");
    let (s, p) = app.post(&reviews, &peer, &json!({"kind": "changed"})).await;
    assert_eq!((s, p["field"].as_str()), (422, Some("words")), "{p}");
    for review in [
        json!({"kind": "progress", "note": "Rent paid this week."}),
        json!({"kind": "changed", "words": "Keep my flat and pay rent on time"}),
        json!({"kind": "met"}),
    ] {
        let (s, p) = app.post(&reviews, &peer, &review).await;
        assert_eq!(s, 201, "{review}: {p}");
    }
    let view = eventually("the goal reviewed three times", WAIT, || async {
        let v = plan(&app, id).await;
        (v["goals"][0]["reviews"].as_array()?.len() == 3).then_some(v)
    })
    .await;
    let goal = &view["goals"][0];
    assert_eq!(goal["words"], "Keep my flat and pay rent on time");
    assert_eq!(goal["status"], "met");
    assert_eq!(goal["reviews"][0]["note"], "Rent paid this week.");

    // The person's words are sealed at rest: in no event and no row in the clear.
    let pool = sqlx_pool(&app).await;
    for phrase in [
        "Keep my housing",
        "pay rent on time",
        "Rent paid",
        "tenancy letter",
        "called back",
    ] {
        let clear: i64 = sqlx::query_scalar(
            "SELECT (SELECT count(*) FROM follow_up.events WHERE payload::text LIKE $1)
                  + (SELECT count(*) FROM follow_up.goals WHERE words LIKE $1)
                  + (SELECT count(*) FROM follow_up.goal_reviews WHERE words LIKE $1 OR note LIKE $1)
                  + (SELECT count(*) FROM follow_up.contact_addenda WHERE text LIKE $1)",
        )
        .bind(format!("%{phrase}%"))
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(clear, 0, "{phrase:?} is sealed");
    }
    replay_rebuilds_live_rows(&app, &pool, Some("followups")).await;
    app.shutdown().await;
}

/// Guarantees: caring contacts start only after a completed plan, fall due on the
/// peer's worklist one after another as contacts are logged, and stop for good when
/// the person's consent is revoked (FHIR Consent, inactive).
#[tokio::test]
async fn caring_contacts_follow_a_completed_plan_until_consent_is_revoked() {
    let app = spawn_app().await;
    let a = accepted_referral(&app, "MRN-CARING").await;
    let id = &a.id;
    let peer = app.token("peer", None, Some(&a.peer_id));
    let hospital = app.token("hospital", Some("st-marys"), None);
    let caring = format!("/v1/referrals/{id}/caring-contacts");
    let (s, p) = app.post(&caring, &peer, &json!({})).await;
    assert_eq!(s, 409, "not before the plan completes: {p}");
    let (s, p) = app
        .post(
            &format!("/v1/referrals/{id}/followup/close"),
            &peer,
            &json!({"outcome": "completed", "reason": "doing well"}),
        )
        .await;
    assert_eq!(s, 200, "{p}");
    let (s, p) = app.post(&caring, &peer, &json!({})).await;
    assert_eq!(s, 201, "{p}");
    assert_eq!(
        (p["count"].as_u64(), p["every_days"].as_u64()),
        (Some(12), Some(30))
    );

    // The first falls due a month on, on the peer's worklist of caring contacts.
    let due = |w: &Value| {
        w["items"][0]["next_checkpoint"]
            .as_str()
            .map(str::to_string)
    };
    let list = eventually("the caring contact on the worklist", WAIT, || async {
        let (_, w) = app.get("/v1/followups?state=caring", &peer).await;
        (due(&w).as_deref() == Some("caring_1")).then_some(w)
    })
    .await;
    let next =
        chrono::DateTime::parse_from_rfc3339(list["items"][0]["next_due_at"].as_str().unwrap())
            .unwrap();
    let month = next.with_timezone(&chrono::Utc) - chrono::Utc::now();
    assert!(
        month > Duration::days(29) && month <= Duration::days(30),
        "{month}"
    );
    // The plan's peer still reads who to reach, though the referral completed.
    let card = format!("/v1/referrals/{id}/contact-card");
    eventually("the contact card after completion", WAIT, || async {
        let (s, c) = app.get(&card, &peer).await;
        (s == 200 && c["phone"] == "+1-402-555-0134").then_some(())
    })
    .await;
    let stranger = app.token("peer", None, Some("another-peer"));
    let (s, _) = app.get(&card, &stranger).await;
    assert_eq!(s, 403, "no other peer");
    // Logged like any contact; the next one falls due.
    let (s, p) = app
        .post(
            &format!("/v1/referrals/{id}/contacts"),
            &peer,
            // Now, to the microsecond: after the series began.
            &json!({"occurred_at": chrono::Utc::now().to_rfc3339(),
                    "channel": "text", "outcome": "left_message",
                    "notes": "Thinking of you; here if you want to talk."}),
        )
        .await;
    assert_eq!(s, 201, "{p}");
    eventually("the second caring contact due", WAIT, || async {
        let (_, w) = app.get("/v1/followups?state=caring", &peer).await;
        (due(&w).as_deref() == Some("caring_2")).then_some(())
    })
    .await;

    // The hospital records that the person revoked consent: the series stops.
    let (_, sr) = app
        .get(&format!("/fhir/ServiceRequest/{id}"), &hospital)
        .await;
    let mut revoke =
        crate::edges::fixture("Consent-SDOHCC-ConsentInformationDisclosureExample.json");
    revoke["status"] = json!("inactive");
    revoke["patient"]["reference"] = sr["subject"]["reference"].clone();
    let (s, _, body) = crate::edges::post_fhir(&app, "/fhir/Consent", &hospital, &revoke).await;
    assert_eq!(s, 200, "{body}");
    eventually("the series stopped", WAIT, || async {
        let (_, w) = app.get("/v1/followups?state=caring", &peer).await;
        let (_, v) = app
            .get(&format!("/v1/referrals/{id}/followup"), &peer)
            .await;
        (w["items"].as_array()?.is_empty() && v["caring_state"] == "stopped").then_some(())
    })
    .await;
    // Nor is their card shared any more.
    let (s, _) = app.get(&card, &peer).await;
    assert_eq!(s, 403, "consent revoked");
    let view = plan(&app, id).await;
    let names: Vec<&str> = view["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .filter(|n| n.starts_with("caring_"))
        .collect();
    assert_eq!(
        names,
        ["caring_1"],
        "what was made stays; nothing more is due"
    );
    let (s, p) = app.post(&caring, &peer, &json!({})).await;
    assert_eq!(s, 409, "never again after consent went: {p}");
    app.shutdown().await;
}
