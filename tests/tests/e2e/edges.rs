//! The hospital edge: HL7 v2 ADT over a real MLLP socket, FHIR R4 Bundles and
//! Tasks, consent revocation, and one referral per discharge across channels.

use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use careloop_test_support::{TestEnv, eventually};

use crate::*;

const SB: u8 = 0x0B;

async fn mllp_addr(app: &TestApp) -> std::net::SocketAddr {
    eventually("the MLLP listener", WAIT, || async {
        app.intake.mllp_addr()
    })
    .await
}

/// Sends one framed message and reads one framed reply.
async fn exchange(stream: &mut TcpStream, message: &str) -> String {
    let mut out = vec![SB];
    out.extend_from_slice(message.as_bytes());
    out.extend_from_slice(&[0x1C, 0x0D]);
    stream.write_all(&out).await.unwrap();
    read_frame(stream).await
}

/// Connects to `addr`, sends one framed message, and returns the reply.
pub async fn send_mllp(addr: std::net::SocketAddr, message: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    exchange(&mut stream, message).await
}

async fn read_frame(stream: &mut TcpStream) -> String {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        let n = tokio::time::timeout(WAIT, stream.read(&mut byte))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n > 0,
            "connection closed before a reply: {:?}",
            String::from_utf8_lossy(&buf)
        );
        buf.push(byte[0]);
        if buf.ends_with(&[0x1C, 0x0D]) {
            let text = String::from_utf8_lossy(&buf[1..buf.len() - 2]).into_owned();
            return text;
        }
    }
}

fn msa(ack: &str) -> Vec<String> {
    let seg = ack
        .split('\r')
        .find(|s| s.starts_with("MSA|"))
        .unwrap_or_else(|| panic!("no MSA in {ack:?}"));
    seg.split('|').map(str::to_string).collect()
}

fn hl7_time(t: chrono::DateTime<Utc>) -> String {
    t.format("%Y%m%d%H%M%S+0000").to_string()
}

/// An ADT message from St Mary's in the shape interface engines send: two PID-3
/// repetitions (an MRN with its assigning authority's OID, and an SSN), `\n`
/// segment endings, an escaped name.
fn adt(
    trigger: &str,
    control_id: &str,
    mrn: &str,
    admitted: &str,
    discharged: &str,
    zps: bool,
) -> String {
    let mut m = format!(
        "MSH|^~\\&|EPIC|ST MARYS^2.16.840.1.113883.3.999^ISO|CARELOOP|CARELOOP|{now}||ADT^{trigger}^ADT_{trigger}|{control_id}|P|2.5.1||||||UNICODE UTF-8\n\
         EVN|{trigger}|{now}\n\
         PID|1||{mrn}^^^STMARYS&2.16.840.1.113883.3.999.1&ISO^MR~SSN-{mrn}^^^USSSA^SS||O\\T\\RIVERA^ALEX||19900412|F|||1 MAIN ST^^OMAHA^NE^68102||(402)555-0134|||||||||||||||||||\n\
         PV1|1|I|PSYCH^201^1{}{admitted}|{discharged}\n",
        "|".repeat(41),
        now = hl7_time(Utc::now()),
    );
    if zps {
        m.push_str("ZPS|Y||discharge planner|high\n");
    }
    m
}

/// An A03 sent over a real TCP socket becomes a referral whose Task is read back over
/// FHIR; a repeated MSH-10 is acknowledged again with no second referral; an A01 of
/// the same person is a readmission.
#[tokio::test]
async fn an_a03_over_mllp_becomes_a_task_read_over_fhir() {
    let app = spawn_app().await;
    let c = app.token("coordinator", None, None);
    let (s, _) = app
        .post(
            "/v1/peers",
            &c,
            &json!({"name": "Ana", "languages": ["en"], "gender": "female", "max_caseload": 5}),
        )
        .await;
    assert_eq!(s, 201);
    eventually("the roster", WAIT, || async {
        let (_, l) = app.get("/v1/peers", &c).await;
        (l["items"].as_array()?.len() == 1).then_some(())
    })
    .await;

    let discharged = Utc::now() - chrono::Duration::hours(2);
    let a03 = adt(
        "A03",
        "CTRL-0001",
        "MRN-HL7-1",
        &hl7_time(discharged - chrono::Duration::days(10)),
        &hl7_time(discharged),
        true,
    );
    let mut stream = TcpStream::connect(mllp_addr(&app).await).await.unwrap();
    let ack = exchange(&mut stream, &a03).await;
    let fields = msa(&ack);
    assert_eq!(
        (fields[1].as_str(), fields[2].as_str()),
        ("AA", "CTRL-0001"),
        "{ack}"
    );
    let referral_id = fields[3].split(' ').nth(1).unwrap().to_string();
    assert!(
        ack.starts_with("MSH|^~\\&|CARELOOP|CARELOOP|EPIC|"),
        "{ack}"
    );

    let again = exchange(&mut stream, &a03).await;
    assert_eq!(again, ack, "the same MSH-10 gets the same ACK");
    let reused = a03.replace("O\\T\\RIVERA", "SOMEONE-ELSE");
    let refused = exchange(&mut stream, &reused).await;
    assert_eq!(
        msa(&refused)[1],
        "AR",
        "a control id reused for another message: {refused}"
    );
    let pool = sqlx_pool(&app).await;
    let submitted: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM intake.events WHERE event_type = 'ReferralSubmitted'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(submitted, 1, "no second effect");

    let hospital = app.token("hospital", Some("st-marys"), None);
    let task = eventually("the Task accepted", WAIT, || async {
        let (s, t) = app
            .get(&format!("/fhir/Task/{referral_id}"), &hospital)
            .await;
        (s == 200 && t["status"] == "accepted").then_some(t)
    })
    .await;
    assert_eq!(task["resourceType"], "Task");
    assert_eq!(
        task["focus"]["reference"],
        format!("ServiceRequest/{referral_id}")
    );
    let (_, found) = app
        .get(
            &format!("/fhir/Task?focus=ServiceRequest/{referral_id}"),
            &hospital,
        )
        .await;
    assert_eq!(found["type"], "searchset");
    assert_eq!(found["total"], 1);
    let (_, view) = app
        .get(&format!("/v1/referrals/{referral_id}"), &hospital)
        .await;
    assert_eq!(view["priority"], "asap", "ZPS-4 high → asap");

    // The same person admitted again: a readmission.
    let a01 = adt(
        "A01",
        "CTRL-0002",
        "MRN-HL7-1",
        &hl7_time(Utc::now() - chrono::Duration::hours(1)),
        "",
        false,
    );
    let ack = exchange(&mut stream, &a01).await;
    assert_eq!(msa(&ack)[1], "AA");
    assert!(msa(&ack)[3].contains("admission recorded"), "{ack}");
    // Someone careloop was never asked to help: acknowledged, nothing stored.
    let stranger = adt(
        "A01",
        "CTRL-0003",
        "MRN-NOBODY",
        &hl7_time(Utc::now() - chrono::Duration::hours(1)),
        "",
        false,
    );
    let ack = exchange(&mut stream, &stranger).await;
    assert!(msa(&ack)[3].contains("nothing stored"), "{ack}");
    // A discharge cancelled (A13) withdraws the referral.
    let a13 = adt(
        "A13",
        "CTRL-0004",
        "MRN-HL7-1",
        "",
        &hl7_time(discharged),
        false,
    );
    assert_eq!(msa(&exchange(&mut stream, &a13).await)[1], "AA");
    eventually("the referral cancelled", WAIT, || async {
        let (_, v) = app
            .get(&format!("/v1/referrals/{referral_id}"), &hospital)
            .await;
        (v["status"] == "cancelled").then_some(())
    })
    .await;
    app.shutdown().await;
}

/// Partial frames, bytes that are not HL7, oversized messages, silent senders and
/// many connections at once: the listener answers or closes cleanly and stays up.
#[tokio::test]
async fn the_mllp_listener_survives_what_the_network_sends() {
    let mut env = TestEnv::new();
    env.settings.mllp_read_timeout = Duration::from_secs(1);
    let app = spawn_app_with(env).await;
    let addr = mllp_addr(&app).await;
    let update = |id: &str| adt("A08", id, "MRN-NOBODY", "", "", false);

    // Not HL7 at all: AR.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let ack = exchange(&mut s, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(msa(&ack)[1], "AR", "{ack}");
    // Noise before a frame, and a frame split across writes: still answered.
    s.write_all(b"\x00\x01garbage").await.unwrap();
    let msg = update("SPLIT-1");
    let (a, b) = msg.as_bytes().split_at(20);
    s.write_all(&[SB]).await.unwrap();
    s.write_all(a).await.unwrap();
    tokio::task::yield_now().await;
    s.write_all(b).await.unwrap();
    s.write_all(&[0x1C, 0x0D]).await.unwrap();
    let ack = read_frame(&mut s).await;
    assert_eq!(
        msa(&ack)[1..3],
        ["AA".to_string(), "SPLIT-1".to_string()],
        "{ack}"
    );

    // Oversized: AR, then the connection closes.
    let mut big = TcpStream::connect(addr).await.unwrap();
    let mut payload = vec![SB];
    payload.extend(std::iter::repeat_n(b'A', (1 << 20) + 10));
    let _ = big.write_all(&payload).await;
    let ack = read_frame(&mut big).await;
    assert_eq!(msa(&ack)[1], "AR", "{ack}");
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(WAIT, big.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the connection is closed after an oversized message"
    );

    // Silent: closed after the read timeout.
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut one = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(5), silent.read(&mut one))
        .await
        .expect("the server closes a silent connection")
        .unwrap_or(0);
    assert_eq!(n, 0);

    // Fifty connections at once, each answered.
    let senders = (0..50).map(|i| {
        let msg = update(&format!("MANY-{i}"));
        tokio::spawn(async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            exchange(&mut s, &msg).await
        })
    });
    for (i, h) in senders.enumerate() {
        let ack = h.await.unwrap();
        assert_eq!(msa(&ack)[1..3], ["AA".to_string(), format!("MANY-{i}")]);
    }
    // A field present but wrong is an AR naming it (a resend cannot fix it), not a
    // silent default.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let bad_risk = adt(
        "A03",
        "BAD-RISK",
        "MRN-X",
        "",
        &hl7_time(Utc::now() - chrono::Duration::hours(1)),
        false,
    ) + "ZPS|Y||planner|extreme\n";
    let ack = exchange(&mut s, &bad_risk).await;
    assert_eq!(msa(&ack)[1], "AR", "{ack}");
    assert!(ack.contains("ERR||ZPS^1^4|102^Data type error"), "{ack}");
    let bad_time = adt("A03", "BAD-TIME", "MRN-X", "", "notatime", true);
    let ack = exchange(&mut s, &bad_time).await;
    assert_eq!(msa(&ack)[1], "AR", "{ack}");
    assert!(ack.contains("PV1^1^45"), "{ack}");

    // And it still serves.
    let mut s = TcpStream::connect(addr).await.unwrap();
    assert_eq!(msa(&exchange(&mut s, &update("AFTER")).await)[1], "AA");
    app.shutdown().await;
}

fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/../services/intake/fixtures/fhir/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The IG's own Patient, ServiceRequest and Consent in a transaction Bundle.
fn bundle(discharged: &str) -> Value {
    let mut sr = fixture(
        "ServiceRequest-SDOHCC-ServiceRequestActiveFoodPantryApplicationAssistExample.json",
    );
    sr["occurrenceDateTime"] = json!(discharged);
    sr["priority"] = json!("urgent");
    json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "Patient/pat-53234", "resource": fixture("Patient-pat-53234.json"),
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:sr-1", "resource": sr, "request": {"method": "POST", "url": "ServiceRequest"}},
        {"fullUrl": "urn:uuid:consent-1", "resource": fixture("Consent-SDOHCC-ConsentInformationDisclosureExample.json"),
         "request": {"method": "POST", "url": "Consent"}},
    ]})
}

async fn post_fhir(app: &TestApp, path: &str, token: &str, body: &Value) -> (u16, String, Value) {
    let res = app
        .http
        .post(format!("{}{path}", app.base))
        .bearer_auth(token)
        .header("content-type", "application/fhir+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let ct = res.headers()["content-type"].to_str().unwrap().to_string();
    (status, ct, res.json().await.unwrap_or(Value::Null))
}

/// A transaction Bundle of the IG's examples refers; the Task answers and follows
/// the referral; invalid resources get an OperationOutcome naming the element and
/// store nothing; the same discharge over REST is the same referral.
#[tokio::test]
async fn fhir_bundles_refer_and_tasks_follow() {
    let app = spawn_app().await;
    let hospital = app.token("hospital", Some("st-marys"), None);
    let discharged =
        chrono::DateTime::from_timestamp((Utc::now() - chrono::Duration::hours(3)).timestamp(), 0)
            .unwrap();
    let pool = sqlx_pool(&app).await;
    // What the refused requests could have written: anything but the registry's
    // own events (the demo facilities).
    let events = || async {
        sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM intake.events WHERE aggregate_type <> 'Facility'",
        )
        .fetch_one(&pool)
        .await
        .unwrap()
    };

    // Invalid resources first: nothing may be stored.
    let mut wrong_subject = bundle(&at(discharged));
    wrong_subject["entry"][1]["resource"]["subject"]["reference"] = json!("Patient/someone-else");
    let mut draft_consent = bundle(&at(discharged));
    draft_consent["entry"][2]["resource"]["status"] = json!("draft");
    let mut future = bundle("2999-01-01T00:00:00Z");
    future["type"] = json!("transaction");
    let mut no_identifier = bundle(&at(discharged));
    no_identifier["entry"][0]["resource"]
        .as_object_mut()
        .unwrap()
        .remove("identifier");
    for (body, status, expression) in [
        (wrong_subject, 422, "Bundle.entry[1].resource.subject"),
        (draft_consent, 422, "Bundle.entry[2].resource.status"),
        (future, 422, "Bundle.entry[1].resource.occurrenceDateTime"),
        (no_identifier, 422, "Bundle.entry[0].resource.identifier"),
    ] {
        let (s, ct, outcome) = post_fhir(&app, "/fhir", &hospital, &body).await;
        assert_eq!(s, status, "{outcome}");
        assert_eq!(ct, "application/fhir+json");
        assert_eq!(outcome["resourceType"], "OperationOutcome");
        assert_eq!(
            outcome["issue"][0]["expression"][0], expression,
            "{outcome}"
        );
    }
    let (s, _, outcome) = post_fhir(&app, "/fhir", &hospital, &json!("not a resource")).await;
    assert_eq!(
        (s, outcome["issue"][0]["code"].as_str()),
        (400, Some("structure"))
    );
    assert_eq!(events().await, 0, "nothing stored");

    let (s, _, response) = post_fhir(&app, "/fhir", &hospital, &bundle(&at(discharged))).await;
    assert_eq!(s, 200, "{response}");
    assert_eq!(response["type"], "transaction-response");
    let task = &response["entry"][3]["resource"];
    assert_eq!(task["resourceType"], "Task");
    assert_eq!(task["status"], "requested");
    let referral_id = task["id"].as_str().unwrap().to_string();
    let patient = response["entry"][0]["response"]["location"]
        .as_str()
        .unwrap()
        .to_string();

    let task = eventually("the Task received", WAIT, || async {
        let (s, t) = app
            .get(&format!("/fhir/Task/{referral_id}"), &hospital)
            .await;
        (s == 200 && t["businessStatus"]["text"] == "received").then_some(t)
    })
    .await;
    assert_eq!(task["status"], "requested", "received shows as requested");
    assert_eq!(task["for"]["reference"], patient.as_str());
    let since = at(discharged).replace('+', "%2B");
    let (_, found) = app
        .get(&format!("/fhir/Task?_lastUpdated=gt{since}"), &hospital)
        .await;
    assert_eq!(found["total"], 1);
    let other = app.token("hospital", Some("mercy"), None);
    let (s, _) = app.get(&format!("/fhir/Task/{referral_id}"), &other).await;
    assert_eq!(s, 403);

    // The same discharge over REST (the same MR identifier): the same referral.
    let mut rest = referral_body("1032702", &at(discharged));
    rest["person"]["identifiers"] =
        json!([{"system": "http://hospital.smarthealthit.org", "value": "1032702"}]);
    let (s, again) = app.post("/v1/referrals", &hospital, &rest).await;
    assert_eq!(
        (s, again["referral_id"].as_str()),
        (200, Some(referral_id.as_str())),
        "{again}"
    );
    assert_eq!(again["duplicate"], true);

    // A ServiceRequest for the Patient sent earlier: another discharge, another Task.
    let mut sr = fixture(
        "ServiceRequest-SDOHCC-ServiceRequestActiveFoodPantryApplicationAssistExample.json",
    );
    sr["subject"]["reference"] = json!(patient);
    sr["occurrenceDateTime"] = json!(at(discharged + chrono::Duration::hours(1)));
    let (s, _, t) = post_fhir(&app, "/fhir/ServiceRequest", &hospital, &sr).await;
    assert_eq!(s, 201, "{t}");
    assert_ne!(t["id"], referral_id.as_str());

    // A Consent with status inactive revokes: every open referral of the person is
    // cancelled with the reason on its timeline.
    let mut revoke = fixture("Consent-SDOHCC-ConsentInformationDisclosureExample.json");
    revoke["status"] = json!("inactive");
    revoke["patient"]["reference"] = json!(patient);
    let (s, _, _) = post_fhir(&app, "/fhir/Consent", &hospital, &revoke).await;
    assert_eq!(s, 200);
    let task = eventually("the Task cancelled", WAIT, || async {
        let (_, t) = app
            .get(&format!("/fhir/Task/{referral_id}"), &hospital)
            .await;
        (t["status"] == "cancelled").then_some(t)
    })
    .await;
    assert!(
        task["statusReason"]["text"]
            .as_str()
            .unwrap()
            .contains("consent revoked"),
        "{task}"
    );
    app.shutdown().await;
}

/// Revoking consent over REST cancels the person's open referrals, with the reason
/// on the timeline; a revocation of an unknown person is a 404.
#[tokio::test]
async fn revoking_consent_cancels_open_referrals() {
    let app = spawn_app().await;
    let hospital = app.token("hospital", Some("st-marys"), None);
    let (s, created) = app
        .post(
            "/v1/referrals",
            &hospital,
            &referral_body("MRN-REVOKE", &at(recent_discharge())),
        )
        .await;
    assert_eq!(s, 201);
    let id = created["referral_id"].as_str().unwrap().to_string();
    let view = eventually("the referral received", WAIT, || async {
        let (s, v) = app.get(&format!("/v1/referrals/{id}"), &hospital).await;
        (s == 200).then_some(v)
    })
    .await;
    let person_ref = view["person_ref"].as_str().unwrap();
    let c = app.token("coordinator", None, None);
    let (s, p) = app
        .post(
            &format!("/v1/persons/{person_ref}/consent/revoke"),
            &c,
            &json!({"reason": ""}),
        )
        .await;
    assert_eq!((s, p["field"].as_str()), (422, Some("reason")));
    let other = app.token("hospital", Some("mercy"), None);
    let (s, _) = app
        .post(
            &format!("/v1/persons/{person_ref}/consent/revoke"),
            &other,
            &json!({"reason": "x"}),
        )
        .await;
    assert_eq!(s, 403, "a hospital acts only on people it referred");
    let (s, _) = app
        .post(
            &format!("/v1/persons/{person_ref}/consent/revoke"),
            &c,
            &json!({"reason": "asked to stop"}),
        )
        .await;
    assert_eq!(s, 200);
    let view = eventually("the referral cancelled", WAIT, || async {
        let (_, v) = app.get(&format!("/v1/referrals/{id}"), &hospital).await;
        (v["status"] == "cancelled").then_some(v)
    })
    .await;
    let last = view["timeline"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["reason"], "consent revoked: asked to stop", "{view}");
    let (s, _) = app
        .post(
            &format!("/v1/persons/{}/consent/revoke", uuid::Uuid::new_v4()),
            &c,
            &json!({"reason": "x"}),
        )
        .await;
    assert_eq!(s, 404);
    app.shutdown().await;
}
