//! PHI at rest, erasure and retention (docs/security.md, "PHI at rest").
//!
//! One person with a distinctive name, phone, MRN and notes is referred over REST,
//! FHIR and HL7 v2; the raw database (`pg_dump`, every table of every schema), the
//! JetStream stream, the logs and `/metrics` are searched for those strings before
//! and after the person is erased.

use chrono::Utc;
use serde_json::{Value, json};

use careloop_test_support::{LogCapture, eventually};

use crate::edges::{adt, bundle, hl7_time, mllp_addr, msa, post_fhir, send_mllp};
use crate::*;

const MRN: &str = "MRN-ZQ-88231";
const SYSTEM: &str = "urn:oid:2.16.840.1.113883.3.999.1";
const FAMILY: &str = "Quixotic-Marchbanks";
const GIVEN: &str = "Zebulon";
/// The distinctive part of the phone number, in every channel's spelling.
const PHONE: &str = "555-0177";
const HOSPITAL_NOTE: &str = "mentions the lighthouse keeper";
const PEER_NOTE: &str = "talked about the blue notebook";

/// Every string that must never be readable at rest.
const NEEDLES: &[&str] = &[MRN, FAMILY, GIVEN, PHONE, HOSPITAL_NOTE, PEER_NOTE];

fn rest_body(discharged: &str) -> Value {
    let mut body = referral_body(MRN, discharged);
    body["person"]["name"] = json!({"given": GIVEN, "family": FAMILY});
    body["person"]["phone"] = json!(format!("+1-402-{PHONE}"));
    body["notes"] = json!(HOSPITAL_NOTE);
    // Who recorded the consent can be the person's family, by name.
    body["consent"]["recorded_by"] = json!(format!("Winifred {FAMILY} (mother)"));
    body
}

fn fhir_bundle(discharged: &str) -> Value {
    let mut b = bundle(discharged);
    let patient = &mut b["entry"][0]["resource"];
    patient["identifier"] = json!([{"system": SYSTEM, "value": MRN}]);
    patient["name"] = json!([{"family": FAMILY, "given": [GIVEN]}]);
    patient["telecom"] =
        json!([{"system": "phone", "value": format!("402-{PHONE}"), "use": "home"}]);
    b
}

fn hl7_a03(control_id: &str, discharged: chrono::DateTime<Utc>) -> String {
    adt(
        "A03",
        control_id,
        MRN,
        &hl7_time(discharged - chrono::Duration::days(9)),
        &hl7_time(discharged),
        true,
    )
    .replace("O\\T\\RIVERA^ALEX", &format!("{FAMILY}^{GIVEN}"))
    .replace("(402)555-0134", &format!("(402){PHONE}"))
}

/// Which needles `text` holds.
fn found(text: &str) -> Vec<&'static str> {
    NEEDLES
        .iter()
        .copied()
        .filter(|n| text.contains(n))
        .collect()
}

async fn pg_dump(app: &TestApp) -> String {
    let out = tokio::process::Command::new("pg_dump")
        .arg("--no-owner")
        .arg(&app.env.settings.database_url)
        .output()
        .await
        .expect("pg_dump runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Every message of the test's JetStream stream, headers and payload, as text.
async fn stream_contents(app: &TestApp) -> String {
    let client = async_nats::connect(&app.env.settings.nats_url)
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    let mut stream = js
        .get_stream(app.env.settings.namespace.stream_name())
        .await
        .unwrap();
    let state = stream.info().await.unwrap().state.clone();
    assert!(state.messages > 0, "the stream holds the referrals' events");
    let mut all = String::new();
    for seq in state.first_sequence..=state.last_sequence {
        if let Ok(m) = stream.get_raw_message(seq).await {
            all.push_str(&format!("{:?}", m.headers));
            all.push_str(&String::from_utf8_lossy(&m.payload));
        }
    }
    all
}

/// Checks every place at rest; returns the database dump.
async fn nothing_readable(app: &TestApp, logs: &LogCapture, when: &str) -> String {
    let dump = pg_dump(app).await;
    // The searches look at the real thing: the dump holds the referrals, the logs
    // what careloop logged.
    assert!(dump.contains("st-marys") && dump.contains("inpatient-psychiatry"));
    assert!(
        logs.contents().contains("INFO"),
        "{when}: logs were captured"
    );
    assert_eq!(
        found(&dump),
        Vec::<&str>::new(),
        "{when}: the database dump"
    );
    assert_eq!(
        found(&stream_contents(app).await),
        Vec::<&str>::new(),
        "{when}: JetStream"
    );
    assert_eq!(
        found(&logs.contents()),
        Vec::<&str>::new(),
        "{when}: the logs"
    );
    assert_eq!(
        found(&app.metrics_text().await),
        Vec::<&str>::new(),
        "{when}: /metrics"
    );
    dump
}

async fn person_of(app: &TestApp, referral_id: &str) -> String {
    let coordinator = app.token("coordinator", None, None);
    eventually("the contact card", WAIT, || async {
        let (s, card) = app
            .get(
                &format!("/v1/referrals/{referral_id}/contact-card"),
                &coordinator,
            )
            .await;
        (s == 200).then(|| card["person_ref"].as_str().unwrap().to_string())
    })
    .await
}

/// Guarantee: PHI is sealed at rest under the person's key and found by keyed digest;
/// erasing the person leaves nothing readable anywhere, keeps the discharges counted,
/// and the same MRN then names a new person. Rotating the key-encryption key touches
/// no event.
#[tokio::test]
async fn a_persons_details_are_sealed_at_rest_and_unreadable_everywhere_after_erasure() {
    let logs = LogCapture::default();
    let sink = logs.clone();
    careloop_telemetry::init_with_writer(move || sink.clone());

    let app = spawn_app().await;
    let hospital = app.token("hospital", Some("st-marys"), None);
    let coordinator = app.token("coordinator", None, None);
    let admin = app.token("admin", None, None);
    let pool = sqlx_pool(&app).await;
    let (s, _) = app
        .post(
            "/v1/peers",
            &coordinator,
            &json!({"name": "Ana", "languages": ["en"], "gender": "female", "max_caseload": 10}),
        )
        .await;
    assert_eq!(s, 201);

    // The same person over the three channels (three discharges).
    let now = Utc::now();
    let (s, rest) = app
        .post(
            "/v1/referrals",
            &hospital,
            &rest_body(&at(now - chrono::Duration::hours(30))),
        )
        .await;
    assert_eq!(s, 201, "{rest}");
    let rest_id = rest["referral_id"].as_str().unwrap().to_string();
    let (s, _, fhir) = post_fhir(
        &app,
        "/fhir",
        &hospital,
        &fhir_bundle(&at(now - chrono::Duration::hours(20))),
    )
    .await;
    assert_eq!(s, 200, "{fhir}");
    let fhir_id = fhir["entry"][1]["resource"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let ack = send_mllp(
        mllp_addr(&app).await,
        &hl7_a03("PRIV-0001", now - chrono::Duration::hours(10)),
    )
    .await;
    let fields = msa(&ack);
    assert_eq!(fields[1], "AA", "{ack}");
    let hl7_id = fields[3].split(' ').nth(1).unwrap().to_string();

    // Matching by MRN works on digests: one person across the channels.
    let person = person_of(&app, &rest_id).await;
    assert_eq!(person_of(&app, &fhir_id).await, person);
    assert_eq!(person_of(&app, &hl7_id).await, person);
    let (_, card) = app
        .get(
            &format!("/v1/referrals/{rest_id}/contact-card"),
            &coordinator,
        )
        .await;
    assert_eq!(
        card["name"]["family"], FAMILY,
        "readable through the API: {card}"
    );
    assert_eq!(card["hospital_notes"], HOSPITAL_NOTE);

    // A peer's note on the plan.
    eventually("the plan", WAIT, || async {
        let (s, _) = app
            .get(&format!("/v1/referrals/{rest_id}/followup"), &coordinator)
            .await;
        (s == 200).then_some(())
    })
    .await;
    let contact = json!({"occurred_at": at(Utc::now() - chrono::Duration::minutes(5)),
                         "channel": "phone", "outcome": "reached", "notes": PEER_NOTE});
    let (s, r) = app
        .post(
            &format!("/v1/referrals/{rest_id}/contacts"),
            &coordinator,
            &contact,
        )
        .await;
    assert_eq!(s, 201, "{r}");
    let note = eventually("the contact on the plan", WAIT, || async {
        let (_, plan) = app
            .get(&format!("/v1/referrals/{rest_id}/followup"), &coordinator)
            .await;
        plan["contacts"][0].get("notes").cloned()
    })
    .await;
    assert_eq!(note, PEER_NOTE);

    // At rest: sealed, never clear.
    let dump = nothing_readable(&app, &logs, "before erasure").await;
    assert!(dump.contains("sealed:v1:"), "the details are there, sealed");
    let clear_identifiers: i64 =
        sqlx::query_scalar("SELECT count(*) FROM intake.person_identifiers")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(clear_identifiers, 0);

    // Rotating the key-encryption key re-wraps keys and leaves every event as it was.
    // The events stored so far (the pipeline goes on adding others meanwhile).
    let (last,): (i64,) = sqlx::query_as("SELECT max(position) FROM intake.events")
        .fetch_one(&pool)
        .await
        .unwrap();
    let events_digest = || async {
        sqlx::query_scalar::<_, String>(
            "SELECT md5(string_agg(payload::text, '|' ORDER BY position)) FROM intake.events
             WHERE position <= $1",
        )
        .bind(last)
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let before = events_digest().await;
    let new_kek = [42u8; 32];
    let rotating = careloop_vault::Vault::new(
        pool.clone(),
        careloop_vault::Keyring::local(&new_kek, &[careloop_config::DEV_KEY_ENCRYPTION_KEY]),
    );
    let report = rotating.rewrap().await.unwrap();
    assert!(report.person_keys >= 1 && report.secrets == 1, "{report:?}");
    assert_eq!(events_digest().await, before, "no event touched");
    let only_new =
        careloop_vault::Vault::new(pool.clone(), careloop_vault::Keyring::local(&new_kek, &[]));
    let sealed: String = sqlx::query_scalar(
        "SELECT payload->>'sealed' FROM intake.events
         WHERE aggregate_type = 'Person' AND aggregate_id = $1 AND event_type = 'PersonRegistered'",
    )
    .bind(&person)
    .fetch_one(&pool)
    .await
    .unwrap();
    let opened = only_new.open(&person, &sealed).await.unwrap().unwrap();
    assert!(opened.contains(FAMILY), "the new KEK alone opens it");
    // And back (the running careloop holds the dev KEK only).
    let back = careloop_vault::Vault::new(
        pool.clone(),
        careloop_vault::Keyring::local(&careloop_config::DEV_KEY_ENCRYPTION_KEY, &[new_kek]),
    );
    assert_eq!(back.rewrap().await.unwrap(), report);
    assert_eq!(events_digest().await, before, "no event touched");

    // A second referral by the same MRN finds the same person.
    let (s, again) = app
        .post(
            "/v1/referrals",
            &hospital,
            &rest_body(&at(now - chrono::Duration::hours(5))),
        )
        .await;
    assert_eq!(s, 201, "{again}");
    let again_id = again["referral_id"].as_str().unwrap().to_string();
    assert_eq!(person_of(&app, &again_id).await, person);

    // Erasure: administrators only, never under a legal hold, audited with its reason.
    let erase = format!("/v1/persons/{person}/erase");
    let reason = json!({"reason": "the person asked to be forgotten (ticket 4411)"});
    let (s, _) = app.post(&erase, &coordinator, &reason).await;
    assert_eq!(s, 403);
    let (s, p) = app.post(&erase, &admin, &json!({"reason": " "})).await;
    assert_eq!((s, p["field"].as_str()), (422, Some("reason")));
    let hold = format!("/v1/persons/{person}/legal-hold");
    let (s, _) = app
        .put(&hold, &admin, &json!({"reason": "litigation hold 2026-17"}))
        .await;
    assert_eq!(s, 200);
    let (s, p) = app.post(&erase, &admin, &reason).await;
    assert_eq!(s, 409, "{p}");
    let res = app
        .http
        .delete(format!("{}{hold}", app.base))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 204);
    let (s, erased) = app.post(&erase, &admin, &reason).await;
    assert_eq!(
        (s, erased["status"].as_str()),
        (200, Some("erased")),
        "{erased}"
    );
    let (s, _) = app.post(&erase, &admin, &reason).await;
    assert_eq!(s, 200, "erasing again changes nothing");
    // The audit log is a read model: the erasure shows once it has applied it.
    eventually("the erasure in the audit log", WAIT, || async {
        let (_, audit) = app
            .get(&format!("/v1/audit?person_ref={person}"), &admin)
            .await;
        audit["items"]
            .as_array()?
            .iter()
            .any(|e| e["action"] == "erase" && e["detail"].as_str() == reason["reason"].as_str())
            .then_some(())
    })
    .await;

    // Nothing of the person reads any more, through the API either.
    let (s, _) = app
        .get(
            &format!("/v1/referrals/{rest_id}/contact-card"),
            &coordinator,
        )
        .await;
    assert_eq!(s, 410);
    let res = app
        .http
        .get(format!("{}/fhir/Patient/{person}", app.base))
        .bearer_auth(&coordinator)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 410);
    let (_, plan) = app
        .get(&format!("/v1/referrals/{rest_id}/followup"), &coordinator)
        .await;
    assert_eq!(
        plan["contacts"][0]["notes"],
        Value::Null,
        "the note is gone with the key"
    );
    assert_eq!(
        back.open(&person, &sealed).await.unwrap(),
        None,
        "the key is destroyed"
    );
    // Every service acted on PersonErased: the open referrals are cancelled.
    for id in [&rest_id, &fhir_id, &hl7_id, &again_id] {
        eventually("the referral cancelled", WAIT, || async {
            let (_, r) = app.get(&format!("/v1/referrals/{id}"), &coordinator).await;
            (r["status"] == "cancelled").then_some(())
        })
        .await;
    }

    // A replay rebuilds the read models from the events: still nothing readable.
    for projection in ["followups", "tasks", "referrals", "measures"] {
        careloop_app::cli::replay(&app.env.settings, projection)
            .await
            .unwrap();
    }
    let (_, plan) = app
        .get(&format!("/v1/referrals/{rest_id}/followup"), &coordinator)
        .await;
    assert_eq!(plan["contacts"][0]["notes"], Value::Null);
    nothing_readable(&app, &logs, "after erasure and replay").await;

    // The measures still count the discharges, without anyone's identity.
    let counted: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM follow_up.measure_discharges WHERE person_ref = $1",
    )
    .bind(&person)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(counted, 4);

    // The same MRN now names a new person.
    let (s, later) = app
        .post(
            "/v1/referrals",
            &hospital,
            &rest_body(&at(now - chrono::Duration::hours(1))),
        )
        .await;
    assert_eq!(s, 201, "{later}");
    let later_person = person_of(&app, later["referral_id"].as_str().unwrap()).await;
    assert_ne!(later_person, person);

    app.shutdown().await;
}

/// Guarantee: retention erases people past the period after their last activity,
/// never one on a legal hold; the report is a dry run that erases nothing.
#[tokio::test]
async fn retention_erases_people_past_the_period_except_those_on_a_legal_hold() {
    let app = spawn_app().await;
    let hospital = app.token("hospital", Some("st-marys"), None);
    let admin = app.token("admin", None, None);
    let discharged = at(Utc::now() - chrono::Duration::hours(3));
    let mut people = vec![];
    for mrn in ["RET-KEPT-1", "RET-GONE-1"] {
        let (s, r) = app
            .post("/v1/referrals", &hospital, &referral_body(mrn, &discharged))
            .await;
        assert_eq!(s, 201, "{r}");
        let id = r["referral_id"].as_str().unwrap().to_string();
        people.push((id.clone(), person_of(&app, &id).await));
    }
    let (kept, gone) = (&people[0], &people[1]);
    let (s, _) = app
        .put(
            &format!("/v1/persons/{}/legal-hold", kept.1),
            &admin,
            &json!({"reason": "records request pending"}),
        )
        .await;
    assert_eq!(s, 200);

    // Retention is off: the report says so, and shows what a period would do.
    let (s, off) = app.get("/v1/retention/report", &admin).await;
    assert_eq!((s, off["retention"].as_str()), (200, Some("off")), "{off}");
    let later = at(Utc::now() + chrono::Duration::minutes(10));
    let (s, report) = app
        .get(
            &format!("/v1/retention/report?period=5m&as_of={later}"),
            &admin,
        )
        .await;
    assert_eq!(s, 200, "{report}");
    let listed = |group: &str| -> Vec<String> {
        report[group]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d["person_ref"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(listed("would_erase"), vec![gone.1.clone()]);
    assert_eq!(listed("held"), vec![kept.1.clone()]);
    assert_eq!(report["held"][0]["legal_hold"], "records request pending");
    let (s, _) = app.get("/v1/retention/report?period=soon", &admin).await;
    assert_eq!(s, 422);
    let (s, _) = app
        .get(
            "/v1/retention/report",
            &app.token("coordinator", None, None),
        )
        .await;
    assert_eq!(s, 403);
    let coordinator = app.token("coordinator", None, None);
    let card = |id: String| {
        let (app, coordinator) = (&app, coordinator.clone());
        async move {
            app.get(&format!("/v1/referrals/{id}/contact-card"), &coordinator)
                .await
                .0
        }
    };
    assert_eq!(
        card(gone.0.clone()).await,
        200,
        "the dry run erased nothing"
    );

    // A sweep with a period everyone is past: only the person without a hold goes.
    let retention = careloop_intake::retention::Retention {
        pool: sqlx_pool(&app).await,
        reception: app.intake.reception(),
        settings: careloop_config::RetentionSettings {
            period: Some(std::time::Duration::from_secs(1)),
            sweep: std::time::Duration::from_secs(3600),
        },
    };
    eventually("a second of inactivity", WAIT, || async {
        let n = retention.sweep().await.unwrap();
        (n > 0).then_some(n)
    })
    .await;
    assert_eq!(card(gone.0.clone()).await, 410);
    assert_eq!(card(kept.0.clone()).await, 200, "the legal hold keeps them");
    assert_eq!(retention.sweep().await.unwrap(), 0, "nobody else is due");

    app.shutdown().await;
}

/// Guarantee: what a database from before the vault holds in the clear (Person events,
/// the identifier index) is sealed at start, and still reads. (Contact notes take the
/// same path in follow-up: `careloop_follow_up::notes::upgrade_clear_notes`.)
#[tokio::test]
async fn what_was_written_in_the_clear_before_the_vault_is_sealed_at_start() {
    let app = spawn_app().await;
    let pool = sqlx_pool(&app).await;
    let vault = app.intake.vault().clone();
    let person = uuid::Uuid::new_v4();
    let clear = json!({"PersonRegistered": {
        "identifiers": [{"system": SYSTEM, "value": "MRN-OLD-1"}],
        "name": {"given": "Old", "family": "Clearwater"}, "birth_date": null,
        "phone": "+1-402-555-0100", "gender": null, "postcode": null, "language": "en"}});
    sqlx::query(
        "INSERT INTO intake.events (aggregate_type, aggregate_id, sequence, event_type,
                                    event_version, payload, metadata)
         VALUES ('Person', $1, 1, 'PersonRegistered', '1', $2, '{}')",
    )
    .bind(person.to_string())
    .bind(&clear)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO intake.person_identifiers (system, value, person_ref) VALUES ($1, 'MRN-OLD-1', $2)")
        .bind(SYSTEM)
        .bind(person)
        .execute(&pool)
        .await
        .unwrap();

    // A second person, erased before the upgrade ran: nothing of them reads, and the
    // upgrade blanks their clear event once.
    let gone = uuid::Uuid::new_v4();
    let mut gone_event = clear.clone();
    gone_event["PersonRegistered"]["name"]["family"] = json!("Goneaway");
    sqlx::query(
        "INSERT INTO intake.events (aggregate_type, aggregate_id, sequence, event_type,
                                    event_version, payload, metadata)
         VALUES ('Person', $1, 1, 'PersonRegistered', '1', $2, '{}')",
    )
    .bind(gone.to_string())
    .bind(&gone_event)
    .execute(&pool)
    .await
    .unwrap();
    let reception = app.intake.reception();
    let meta = careloop_backbone::Metadata::new("test");
    let erased = reception
        .erase(
            &gone.to_string(),
            careloop_intake::domain::ErasureCause::Request,
            &meta,
        )
        .await
        .unwrap();
    assert!(erased.is_some());
    let read = reception.person(&gone.to_string()).await.unwrap();
    assert!(
        read.details.is_none() && read.erased_at.is_some(),
        "nothing of them reads"
    );

    // Run the upgrade now. The start-up pass may still be running on a loaded machine
    // and take some of the rows first: between the two, each is sealed once, and a
    // second run finds nothing (what was sealed is checked below).
    let upgrade_identifiers = careloop_intake::identity::upgrade_clear_identifiers(&pool, &vault);
    assert!(upgrade_identifiers.await.unwrap() <= 1);
    for most in [2, 0] {
        let sealed = careloop_intake::sealing::upgrade_clear_events(&pool, &vault);
        assert!(sealed.await.unwrap() <= most);
    }
    let all: String = sqlx::query_scalar(
        "SELECT string_agg(payload::text, '|') FROM intake.events WHERE aggregate_type = 'Person'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(
        !all.contains("Clearwater") && !all.contains("Goneaway"),
        "{all}"
    );
    let stored: Value = sqlx::query_scalar(
        "SELECT payload FROM intake.events WHERE aggregate_type = 'Person' AND aggregate_id = $1",
    )
    .bind(person.to_string())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert!(!stored.to_string().contains("Clearwater"), "{stored}");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM intake.person_identifiers")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(left, 0);
    // Still the same person, found by the same MRN, with the same details.
    let id = careloop_intake::domain::Identifier {
        system: SYSTEM.into(),
        value: "MRN-OLD-1".into(),
    };
    assert_eq!(
        reception.find(&[id]).await.unwrap(),
        Some(person.to_string())
    );
    let loaded = reception.person(&person.to_string()).await.unwrap();
    assert_eq!(loaded.details.unwrap().name.unwrap().family, "Clearwater");
    // The append-only guard is back.
    let refused = sqlx::query("UPDATE intake.events SET payload = '{}' WHERE aggregate_id = $1")
        .bind(person.to_string())
        .execute(&pool)
        .await;
    assert!(refused.is_err(), "events are append-only again");

    app.shutdown().await;
}

/// Guarantee: contact notes written in the clear before the vault are sealed at start
/// (events and read model), and the plan still shows them.
#[tokio::test]
async fn contact_notes_written_in_the_clear_before_the_vault_are_sealed_at_start() {
    let app = spawn_app().await;
    let pool = sqlx_pool(&app).await;
    let hospital = app.token("hospital", Some("st-marys"), None);
    let coordinator = app.token("coordinator", None, None);
    let (s, _) = app
        .post(
            "/v1/peers",
            &coordinator,
            &json!({"name": "Ana", "languages": ["en"], "gender": "female", "max_caseload": 5}),
        )
        .await;
    assert_eq!(s, 201);
    let (s, r) = app
        .post(
            "/v1/referrals",
            &hospital,
            &referral_body("MRN-NOTE-1", &at(Utc::now() - chrono::Duration::hours(2))),
        )
        .await;
    assert_eq!(s, 201, "{r}");
    let id = r["referral_id"].as_str().unwrap().to_string();
    eventually("the plan", WAIT, || async {
        let (s, _) = app
            .get(&format!("/v1/referrals/{id}/followup"), &coordinator)
            .await;
        (s == 200).then_some(())
    })
    .await;
    let contact = json!({"occurred_at": at(Utc::now() - chrono::Duration::minutes(5)),
                         "channel": "phone", "outcome": "reached", "notes": "placeholder"});
    let (s, c) = app
        .post(
            &format!("/v1/referrals/{id}/contacts"),
            &coordinator,
            &contact,
        )
        .await;
    assert_eq!(s, 201, "{c}");
    eventually("the contact on the plan", WAIT, || async {
        let (_, plan) = app
            .get(&format!("/v1/referrals/{id}/followup"), &coordinator)
            .await;
        plan["contacts"][0].get("notes").cloned()
    })
    .await;
    // As an older careloop wrote it: the note in the clear, in the event and the row.
    let old = "spoke about the garden allotment";
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("ALTER TABLE follow_up.events DISABLE TRIGGER events_append_only")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE follow_up.events SET payload = json_build_object('ContactRecorded',
             (payload->'ContactRecorded')::jsonb
             || jsonb_build_object('contact', (payload->'ContactRecorded'->'contact')::jsonb
                                              || jsonb_build_object('notes', $2::text)))
         WHERE aggregate_id = $1 AND event_type = 'ContactRecorded'",
    )
    .bind(&id)
    .bind(old)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query("ALTER TABLE follow_up.events ENABLE TRIGGER events_append_only")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    sqlx::query("UPDATE follow_up.contacts SET notes = $2 WHERE referral_id = $1")
        .bind(&id)
        .bind(old)
        .execute(&pool)
        .await
        .unwrap();

    let vault = app.intake.vault().clone();
    assert_eq!(
        careloop_follow_up::notes::upgrade_clear_notes(&pool, &vault)
            .await
            .unwrap(),
        1
    );
    let stored: String = sqlx::query_scalar(
        "SELECT string_agg(payload::text, '|') FROM follow_up.events WHERE aggregate_id = $1",
    )
    .bind(&id)
    .fetch_one(&pool)
    .await
    .unwrap();
    let row: String =
        sqlx::query_scalar("SELECT notes FROM follow_up.contacts WHERE referral_id = $1")
            .bind(&id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(
        !stored.contains(old) && !row.contains(old),
        "sealed in events and read model"
    );
    let (_, plan) = app
        .get(&format!("/v1/referrals/{id}/followup"), &coordinator)
        .await;
    assert_eq!(plan["contacts"][0]["notes"], old, "{plan}");

    app.shutdown().await;
}
