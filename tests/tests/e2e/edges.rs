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

pub(crate) async fn mllp_addr(app: &TestApp) -> std::net::SocketAddr {
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

pub(crate) fn msa(ack: &str) -> Vec<String> {
    let seg = ack
        .split('\r')
        .find(|s| s.starts_with("MSA|"))
        .unwrap_or_else(|| panic!("no MSA in {ack:?}"));
    seg.split('|').map(str::to_string).collect()
}

pub(crate) fn hl7_time(t: chrono::DateTime<Utc>) -> String {
    t.format("%Y%m%d%H%M%S+0000").to_string()
}

/// An ADT message from St Mary's in the shape interface engines send: two PID-3
/// repetitions (an MRN with its assigning authority's OID, and an SSN), `\n`
/// segment endings, an escaped name.
pub(crate) fn adt(
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

pub(crate) fn fixture(name: &str) -> Value {
    let path = format!(
        "{}/../services/intake/fixtures/fhir/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

/// The IG's own Patient, ServiceRequest and Consent in a transaction Bundle.
pub(crate) fn bundle(discharged: &str) -> Value {
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

pub(crate) async fn post_fhir(
    app: &TestApp,
    path: &str,
    token: &str,
    body: &Value,
) -> (u16, String, Value) {
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
    // One entry per request, absolute fullUrls; the ServiceRequest as a read gives it,
    // and its Task has the same id.
    assert_eq!(response["entry"].as_array().unwrap().len(), 3, "{response}");
    let sr = &response["entry"][1]["resource"];
    assert_eq!(sr["resourceType"], "ServiceRequest");
    let referral_id = sr["id"].as_str().unwrap().to_string();
    assert_eq!(
        response["entry"][1]["fullUrl"],
        format!("{}/fhir/ServiceRequest/{referral_id}", app.base)
    );
    let (_, read) = app
        .get(&format!("/fhir/ServiceRequest/{referral_id}"), &hospital)
        .await;
    assert_eq!(&read, sr, "the answer is what a read returns");
    let (s, _, again) = post_fhir(&app, "/fhir", &hospital, &bundle(&at(discharged))).await;
    assert_eq!(s, 200);
    assert_eq!(again["entry"][1]["response"]["status"], "200 OK", "{again}");
    assert_eq!(
        &again["entry"][1]["resource"], sr,
        "a repeat answers the same"
    );
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
    // Searches read the tasks read model, a moment behind the events a read renders.
    eventually("the Task found by search", WAIT, || async {
        let (_, found) = app
            .get(&format!("/fhir/Task?_lastUpdated=gt{since}"), &hospital)
            .await;
        (found["total"] == 1).then_some(())
    })
    .await;
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
        (s == 200 && v["status"] != "requested").then_some(v)
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

/// What any refused input could have written: the intake's events (apart from the
/// registry's demo facilities), its identifier index and its HL7 message log.
async fn writes(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar(
        "SELECT (SELECT count(*) FROM intake.events WHERE aggregate_type <> 'Facility')
              + (SELECT count(*) FROM intake.person_identifier_digests)
              + (SELECT count(*) FROM intake.hl7_messages)",
    )
    .fetch_one(pool)
    .await
    .unwrap()
}

/// An ERR segment's location (ERR-2, v2.5 on).
fn err_location(ack: &str) -> String {
    let seg = ack
        .split('\r')
        .find(|s| s.starts_with("ERR|"))
        .unwrap_or_else(|| panic!("no ERR in {ack:?}"));
    seg.split('|').nth(2).unwrap_or_default().to_string()
}

async fn post_raw(
    app: &TestApp,
    path: &str,
    token: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, String, Value) {
    let res = app
        .http
        .post(format!("{}{path}", app.base))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let ct = res
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, res.json().await.unwrap_or(Value::Null))
}

/// Finding 1: two HL7 messages in one MLLP frame were answered AA for the first and
/// the second was silently dropped. A frame holding more than one message is now
/// refused whole (AR, ERR at MSH), nothing of it is stored, and each message sent in
/// its own frame is taken.
#[tokio::test]
async fn a_frame_holding_two_messages_is_refused_whole() {
    let app = spawn_app().await;
    let pool = sqlx_pool(&app).await;
    let discharged = Utc::now() - chrono::Duration::hours(2);
    let first = adt("A03", "TWO-1", "MRN-TWO-1", "", &hl7_time(discharged), true);
    let second = adt("A03", "TWO-2", "MRN-TWO-2", "", &hl7_time(discharged), true);
    let addr = mllp_addr(&app).await;
    let ack = send_mllp(addr, &format!("{first}{second}")).await;
    assert_eq!(
        msa(&ack)[1..3],
        ["AR".to_string(), "TWO-1".to_string()],
        "{ack}"
    );
    assert!(msa(&ack)[3].contains("one message per MLLP frame"), "{ack}");
    assert_eq!(err_location(&ack), "MSH^1", "{ack}");
    assert_eq!(writes(&pool).await, 0, "nothing of the frame is stored");
    // One message per frame: both are taken.
    let mut s = TcpStream::connect(addr).await.unwrap();
    assert_eq!(msa(&exchange(&mut s, &first).await)[1], "AA");
    assert_eq!(msa(&exchange(&mut s, &second).await)[1], "AA");
    let submitted: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM intake.events WHERE event_type = 'ReferralSubmitted'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(submitted, 2);
    app.shutdown().await;
}

/// Finding 2: every repeating input and every string has a limit, refused naming
/// the field and the limit, over each channel, writing nothing; 20,000 PID-3
/// repetitions no longer reach Postgres (they exhausted its lock table).
#[tokio::test]
async fn every_repeating_input_has_a_limit_named_in_the_refusal() {
    use careloop_web::limits;
    let app = spawn_app().await;
    let pool = sqlx_pool(&app).await;
    let hospital = app.token("hospital", Some("st-marys"), None);
    let discharged = at(recent_discharge());
    fn id(i: usize) -> Value {
        json!({"system": "urn:oid:2.16.840.1.113883.3.999.1", "value": format!("MRN-L-{i}")})
    }

    // REST: each list and string past its limit, named.
    type Change = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(Change, &str)> = vec![
        (
            Box::new(|b| {
                b["person"]["identifiers"] = json!((0..5_000).map(id).collect::<Vec<_>>())
            }),
            "person.identifiers",
        ),
        (
            Box::new(|b| {
                b["person"]["identifiers"] =
                    json!((0..=limits::MAX_IDENTIFIERS).map(id).collect::<Vec<_>>())
            }),
            "person.identifiers",
        ),
        (
            Box::new(|b| b["needs"] = json!(vec!["emotional"; limits::MAX_LIST_ITEMS + 1])),
            "needs",
        ),
        (
            Box::new(|b| {
                b["person"]["preferences"]["lived_experience"] =
                    json!(vec!["bipolar"; limits::MAX_LIST_ITEMS + 1])
            }),
            "person.preferences.lived_experience",
        ),
        (
            Box::new(|b| b["notes"] = json!("n".repeat(limits::MAX_NOTES_CHARS + 1))),
            "notes",
        ),
        (
            Box::new(|b| {
                b["person"]["identifiers"][0]["value"] =
                    json!("9".repeat(limits::MAX_TEXT_CHARS + 1))
            }),
            "person.identifiers[0]",
        ),
    ];
    for (change, field) in cases {
        let mut body = referral_body("MRN-LIMITS", &discharged);
        change(&mut body);
        let (s, p) = app.post("/v1/referrals", &hospital, &body).await;
        assert_eq!((s, p["field"].as_str()), (422, Some(field)), "{p}");
        assert!(p["detail"].as_str().unwrap().contains("at most"), "{p}");
    }
    // A body past the limit: 413 as problem+json (it was text/plain), and a body that
    // says it is not JSON: 415.
    let big = vec![b' '; limits::MAX_BODY_BYTES + 1];
    let (s, ct, p) = post_raw(
        &app,
        "/v1/referrals",
        &hospital,
        "application/json",
        big.clone(),
    )
    .await;
    assert_eq!((s, ct.as_str()), (413, "application/problem+json"), "{p}");
    let (s, ct, _) = post_raw(&app, "/fhir", &hospital, "application/fhir+json", big).await;
    assert_eq!((s, ct.as_str()), (413, "application/fhir+json"));
    let body = referral_body("MRN-LIMITS", &discharged)
        .to_string()
        .into_bytes();
    let (s, _, p) = post_raw(&app, "/v1/referrals", &hospital, "text/plain", body).await;
    assert_eq!((s, p["field"].as_str()), (415, Some("Content-Type")), "{p}");

    // FHIR: identifiers and Bundle entries past their limits.
    let mut many_ids = bundle(&discharged);
    many_ids["entry"][0]["resource"]["identifier"] = json!(
        (0..=limits::MAX_IDENTIFIERS)
            .map(
                |i| json!({"system": "http://hospital.smarthealthit.org", "value": format!("X{i}")})
            )
            .collect::<Vec<_>>()
    );
    let mut many_entries = bundle(&discharged);
    for i in 0..limits::MAX_BUNDLE_ENTRIES {
        let extra = json!({"resource": {"resourceType": "Basic", "id": format!("b{i}")}});
        many_entries["entry"].as_array_mut().unwrap().push(extra);
    }
    for (body, expression) in [
        (many_ids, "Bundle.entry[0].resource.identifier"),
        (many_entries, "Bundle.entry"),
    ] {
        let (s, _, o) = post_fhir(&app, "/fhir", &hospital, &body).await;
        assert_eq!(s, 422, "{o}");
        assert_eq!(o["issue"][0]["expression"][0], expression, "{o}");
        assert!(
            o["issue"][0]["diagnostics"]
                .as_str()
                .unwrap()
                .contains("at most"),
            "{o}"
        );
    }

    // HL7: 20,000 PID-3 repetitions, and one past the limit: AR naming PID^1^3.
    let addr = mllp_addr(&app).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    for (control, reps) in [
        ("REPS-20000", 20_000),
        ("REPS-21", limits::MAX_HL7_REPETITIONS + 1),
    ] {
        let pid3 = (0..reps)
            .map(|i| format!("{i}"))
            .collect::<Vec<_>>()
            .join("~");
        let message = adt(
            "A03",
            control,
            "MRN-REPS",
            "",
            &hl7_time(recent_discharge()),
            true,
        )
        .replace("|1||MRN-REPS^^^", &format!("|1||{pid3}~MRN-REPS^^^"));
        let ack = exchange(&mut s, &message).await;
        assert_eq!(msa(&ack)[1], "AR", "{ack}");
        assert_eq!(err_location(&ack), "PID^1^3", "{ack}");
        assert!(ack.contains("at most 20"), "{ack}");
    }
    assert_eq!(writes(&pool).await, 0, "nothing refused was stored");

    // At the limit, each channel takes it.
    let mut body = referral_body("MRN-L-0", &discharged);
    body["person"]["identifiers"] = json!((0..limits::MAX_IDENTIFIERS).map(id).collect::<Vec<_>>());
    let (s, p) = app.post("/v1/referrals", &hospital, &body).await;
    assert_eq!(s, 201, "{p}");
    app.shutdown().await;
}

/// Finding 3: input that can never succeed (a NUL byte, bytes that are not UTF-8,
/// text that cannot be represented) is refused as the client's (422 naming the
/// field, AR naming it) on every channel, where a NUL used to be `500 internal error`
/// and an HL7 `AE … resend` (resent for ever); AE and 503 are kept for what a retry
/// can fix (a database not answering), and the retry then succeeds.
#[tokio::test]
async fn permanent_errors_are_refused_and_only_retryable_ones_ask_for_a_retry() {
    let mut env = TestEnv::new();
    env.settings.request_timeout = Duration::from_secs(2);
    let app = spawn_app_with(env).await;
    let pool = sqlx_pool(&app).await;
    let hospital = app.token("hospital", Some("st-marys"), None);
    let discharged = at(recent_discharge());

    // A NUL byte: REST and FHIR name the field.
    let mut body = referral_body("MRN-NUL", &discharged);
    body["person"]["name"]["given"] = json!("Al\u{0}ex");
    let (s, p) = app.post("/v1/referrals", &hospital, &body).await;
    assert_eq!(
        (s, p["field"].as_str()),
        (422, Some("person.name.given")),
        "{p}"
    );
    let mut fhir = bundle(&discharged);
    fhir["entry"][0]["resource"]["name"][0]["family"] = json!("Sha\u{0}w");
    let (s, _, o) = post_fhir(&app, "/fhir", &hospital, &fhir).await;
    assert_eq!(s, 422, "{o}");
    assert_eq!(
        o["issue"][0]["expression"][0],
        "Bundle.entry[0].resource.name[0].family"
    );
    // Bytes that are not UTF-8, and an escape no text can hold.
    let raw = referral_body("MRN-UTF8", &discharged)
        .to_string()
        .replace("Rivera", "Riv\u{1}era");
    let mut bytes = raw.into_bytes();
    let at_byte = bytes.windows(3).position(|w| w == b"Riv").unwrap() + 3;
    bytes[at_byte] = 0xFF;
    let (s, _, p) = post_raw(&app, "/v1/referrals", &hospital, "application/json", bytes).await;
    assert_eq!(
        (s, p["field"].as_str()),
        (422, Some("person.name.family")),
        "{p}"
    );
    let surrogate = referral_body("MRN-UTF8", &discharged)
        .to_string()
        .replace("Rivera", "\\ud800");
    let (s, _, p) = post_raw(
        &app,
        "/v1/referrals",
        &hospital,
        "application/json",
        surrogate.into_bytes(),
    )
    .await;
    assert_eq!(
        (s, p["field"].as_str()),
        (422, Some("person.name.family")),
        "{p}"
    );

    // HL7: a NUL in PID-5, and bytes that are not the UTF-8 MSH-18 declares: AR.
    let addr = mllp_addr(&app).await;
    let hl7 = |control: &str| {
        adt(
            "A03",
            control,
            "MRN-HL7-NUL",
            "",
            &hl7_time(recent_discharge()),
            true,
        )
    };
    let ack = send_mllp(addr, &hl7("NUL-1").replace("O\\T\\RIVERA", "RIV\u{0}ERA")).await;
    assert_eq!(msa(&ack)[1], "AR", "{ack}");
    assert_eq!(err_location(&ack), "PID^1^5", "{ack}");
    let mut bytes = vec![SB];
    bytes.extend(
        hl7("UTF8-1")
            .replace("O\\T\\RIVERA", "RIV@ERA")
            .into_bytes(),
    );
    let at_byte = bytes.iter().position(|b| *b == b'@').unwrap();
    bytes[at_byte] = 0xDC;
    bytes.extend_from_slice(&[0x1C, 0x0D]);
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&bytes).await.unwrap();
    let ack = read_frame(&mut s).await;
    assert_eq!(msa(&ack)[1], "AR", "{ack}");
    assert_eq!(err_location(&ack), "PID^1^5", "{ack}");
    assert_eq!(writes(&pool).await, 0, "nothing refused was stored");

    // Retryable: the person vault locked past the request deadline. HL7 answers AE
    // and REST 503 with Retry-After; once it answers again, the same input is taken.
    let mut lock = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE intake.person_identifier_digests IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .unwrap();
    let a03 = hl7("RETRY-1");
    let ack = send_mllp(addr, &a03).await;
    assert_eq!(msa(&ack)[1], "AE", "{ack}");
    assert!(ack.contains("resend"), "{ack}");
    let res = app
        .http
        .post(format!("{}/v1/referrals", app.base))
        .bearer_auth(&hospital)
        .json(&referral_body("MRN-RETRY", &discharged))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 503);
    assert!(res.headers().get("retry-after").is_some());
    lock.rollback().await.unwrap();
    let ack = eventually("the resend taken", WAIT, || async {
        let ack = send_mllp(addr, &a03).await;
        (msa(&ack)[1] == "AA").then_some(ack)
    })
    .await;
    assert!(ack.contains("referral"), "{ack}");
    let (s, p) = app
        .post(
            "/v1/referrals",
            &hospital,
            &referral_body("MRN-RETRY", &discharged),
        )
        .await;
    assert!(s == 201 || s == 200, "{s} {p}");
    app.shutdown().await;
}

/// Finding 7: 10,000 generated malformed inputs (the fixtures and documented bodies,
/// mutated) across REST, FHIR and MLLP to a running careloop: no crash, no 5xx (no
/// AE), nothing written. `CARELOOP_FUZZ_CASES` sets the number.
#[tokio::test]
async fn ten_thousand_malformed_inputs_crash_nothing_and_write_nothing() {
    use careloop_intake::fuzz::{self, Rng};
    use futures::StreamExt;
    let app = spawn_app().await;
    let pool = sqlx_pool(&app).await;
    let hospital = app.token("hospital", Some("st-marys"), None);
    let addr = mllp_addr(&app).await;
    let discharged = at(recent_discharge());
    let total = fuzz::cases();
    let mut rng = Rng::new(fuzz::seed());

    // The seeds: the documented REST body, the IG's Bundle, and ADT messages from a
    // registered sender (the fixtures' own and this test's).
    let rest_seed = fuzz::referral_body("MRN-FUZZ", &discharged);
    let fhir_seed = fuzz::fhir_bundle(&discharged);
    let mut hl7_seeds: Vec<Vec<u8>> = vec![
        adt(
            "A03",
            "FUZZ",
            "MRN-FUZZ",
            "",
            &hl7_time(recent_discharge()),
            true,
        )
        .into_bytes(),
        adt("A08", "FUZZ", "MRN-FUZZ", "", "", false).into_bytes(),
    ];
    for m in fuzz::hl7_corpus() {
        let text = String::from_utf8_lossy(&m).into_owned();
        let mut fields: Vec<String> = text.splitn(5, '|').map(str::to_string).collect();
        if fields.len() == 5 {
            fields[3] = "ST MARYS".into();
            hl7_seeds.push(fields.join("|").into_bytes());
        }
    }

    // Only malformed inputs: each is what its reader refuses.
    enum Input {
        Rest(Vec<u8>),
        Fhir(Vec<u8>),
        Mllp(Vec<u8>),
    }
    let generating = std::time::Instant::now();
    let mut inputs = Vec::with_capacity(total);
    while inputs.len() < total {
        let input = match inputs.len() % 3 {
            0 => {
                let bytes = if rng.below(2) == 0 {
                    serde_json::to_vec(&fuzz::mutate_json(&mut rng, &rest_seed)).unwrap()
                } else {
                    fuzz::mutate_bytes(&mut rng, rest_seed.to_string().as_bytes())
                };
                let taken =
                    careloop_web::json::parse::<careloop_intake::api::ReferralRequest>(&bytes)
                        .ok()
                        .and_then(|r| careloop_intake::domain::NewReferral::try_from(r).ok());
                if taken.is_some() {
                    continue;
                }
                Input::Rest(bytes)
            }
            1 => {
                let bytes = if rng.below(2) == 0 {
                    serde_json::to_vec(&fuzz::mutate_json(&mut rng, &fhir_seed)).unwrap()
                } else {
                    fuzz::mutate_bytes(&mut rng, fhir_seed.to_string().as_bytes())
                };
                let taken = careloop_web::json::parse_document(&bytes)
                    .ok()
                    .and_then(|v| careloop_intake::fhir::api::read_bundle(&v, "st-marys").ok());
                if taken.is_some() {
                    continue;
                }
                Input::Fhir(bytes)
            }
            _ => {
                let seed = rng.below(hl7_seeds.len());
                let framed = careloop_intake::hl7::mllp::frame_bytes(&fuzz::mutate_bytes(
                    &mut rng,
                    &hl7_seeds[seed],
                ));
                // What the listener will see: the first frame.
                let Some((first, _)) = careloop_intake::hl7::mllp::next_frame(&framed) else {
                    continue;
                };
                let read = careloop_intake::hl7::adt::read_text(first)
                    .map_err(|_| ())
                    .and_then(|t| careloop_intake::hl7::adt::parse(&t).map_err(|_| ()));
                if read.is_ok() {
                    continue;
                }
                Input::Mllp(framed)
            }
        };
        inputs.push(input);
    }

    eprintln!(
        "{total} malformed inputs generated in {:.1} s",
        generating.elapsed().as_secs_f64()
    );
    let started = std::time::Instant::now();
    let outcomes: Vec<Result<u16, String>> = futures::stream::iter(inputs)
        .map(|input| {
            let app = &app;
            let hospital = &hospital;
            async move {
                match input {
                    Input::Rest(body) => app
                        .http
                        .post(format!("{}/v1/referrals", app.base))
                        .bearer_auth(hospital)
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .map_err(|e| format!("REST: {e}")),
                    Input::Fhir(body) => app
                        .http
                        .post(format!("{}/fhir", app.base))
                        .bearer_auth(hospital)
                        .header("content-type", "application/fhir+json")
                        .body(body)
                        .send()
                        .await
                        .map(|r| r.status().as_u16())
                        .map_err(|e| format!("FHIR: {e}")),
                    Input::Mllp(framed) => {
                        let mut s = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
                        s.write_all(&framed).await.map_err(|e| e.to_string())?;
                        let ack = read_frame(&mut s).await;
                        match msa(&ack)[1].as_str() {
                            "AR" => Ok(422),
                            "AA" => Ok(200),
                            other => Err(format!("MLLP: {other}: {ack}")),
                        }
                    }
                }
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let elapsed = started.elapsed();
    let failures: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    let server_errors = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(s) if *s >= 500))
        .count();
    let accepted = outcomes
        .iter()
        .filter(|o| matches!(o, Ok(s) if *s < 300))
        .count();
    let mut by_status = std::collections::BTreeMap::<u16, usize>::new();
    for s in outcomes.iter().flatten() {
        *by_status.entry(*s).or_default() += 1;
    }
    eprintln!(
        "{total} malformed inputs in {:.1} s: {} transport failures or AE, {server_errors} 5xx, {accepted} 2xx/AA; answers {by_status:?} (MLLP AR counted as 422)",
        elapsed.as_secs_f64(),
        failures.len()
    );
    assert!(
        failures.is_empty(),
        "{:?}",
        &failures[..failures.len().min(5)]
    );
    assert_eq!(server_errors, 0, "no 5xx");
    assert_eq!(writes(&pool).await, 0, "nothing written");
    let health = app
        .http
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200, "still serving");
    app.shutdown().await;
}

/// Finding 4: after `201 {referral_id}`, `GET /v1/referrals/{id}` answered 404 for
/// 90-190 ms, every time. The 201 now carries `Location`, and a read right after the
/// write finds the referral (as `requested` until the referral service has it), for
/// the hospital that created it and for a coordinator; another facility still gets
/// 403, and an id nobody created 404.
#[tokio::test]
async fn a_referral_is_read_right_after_it_is_created() {
    let app = spawn_app().await;
    let hospital = app.token("hospital", Some("st-marys"), None);
    let coordinator = app.token("coordinator", None, None);
    let other = app.token("hospital", Some("mercy"), None);
    let mut pending_reads = 0;
    for i in 0..5 {
        let res = app
            .http
            .post(format!("{}/v1/referrals", app.base))
            .bearer_auth(&hospital)
            .json(&referral_body(
                &format!("MRN-RYW-{i}"),
                &at(recent_discharge()),
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 201);
        let location = res.headers()["location"].to_str().unwrap().to_string();
        let created: Value = res.json().await.unwrap();
        let id = created["referral_id"].as_str().unwrap();
        assert_eq!(location, format!("/v1/referrals/{id}"));
        for token in [&hospital, &coordinator] {
            let (s, v) = app.get(&location, token).await;
            assert_eq!(s, 200, "read at once: {v}");
            assert_eq!(v["referral_id"], id);
            let status = v["status"].as_str().unwrap();
            assert!(
                status == "requested" || status == "received" || status == "accepted",
                "{v}"
            );
            if status == "requested" {
                pending_reads += 1;
            }
        }
        let (s, _) = app.get(&location, &other).await;
        assert_eq!(s, 403);
    }
    eprintln!("{pending_reads} of 10 reads found the referral before the referral service had it");
    let (s, _) = app
        .get(
            &format!("/v1/referrals/{}", uuid::Uuid::new_v4()),
            &hospital,
        )
        .await;
    assert_eq!(s, 404);
    app.shutdown().await;
}

/// Finding 6 (webhooks): a hospital token could point its webhook at 127.0.0.1 or
/// any private address and read the connection errors back from the delivery log,
/// probing careloop's own network. Loopback, private and link-local destinations are
/// refused (unless an administrator allow-lists the host), and the log says only the
/// kind of failure.
#[tokio::test]
async fn a_webhook_may_not_point_inside_careloops_network() {
    let app = spawn_app().await;
    let hospital = app.token("hospital", Some("st-marys"), None);
    for url in [
        "http://127.0.0.1:5432/",
        "http://localhost:4222/",
        "http://10.0.0.7/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:8080/",
    ] {
        let (s, p) = app
            .put(
                "/v1/facilities/st-marys/webhook",
                &hospital,
                &json!({"url": url, "secret": "a-secret-of-16-chars"}),
            )
            .await;
        assert_eq!((s, p["field"].as_str()), (422, Some("url")), "{url}: {p}");
        assert!(p["detail"].as_str().unwrap().contains("allow-lists"), "{p}");
    }
    app.shutdown().await;
}

/// Finding 5: every list pages with `next_cursor` and a documented maximum, and a
/// `limit` of 0, a negative one or one past the maximum is refused (it was silently
/// 1, and `/v1/followups` was silently capped at 500 and ignored paging).
#[tokio::test]
async fn every_list_pages_and_refuses_a_limit_out_of_range() {
    let app = spawn_app().await;
    let coordinator = app.token("coordinator", None, None);
    let admin = app.token("admin", None, None);
    let hospital = app.token("hospital", Some("st-marys"), None);
    for name in ["Ana", "Bo", "Cy"] {
        let (s, _) = app
            .post(
                "/v1/peers",
                &coordinator,
                &json!({"name": name, "languages": ["en"], "gender": "female", "max_caseload": 5}),
            )
            .await;
        assert_eq!(s, 201);
    }
    eventually("the roster", WAIT, || async {
        let (_, l) = app.get("/v1/peers?limit=500", &coordinator).await;
        (l["items"].as_array()?.len() == 3).then_some(())
    })
    .await;
    // Two referrals, each assigned with a plan.
    for mrn in ["MRN-PAGE-1", "MRN-PAGE-2"] {
        let (s, _) = app
            .post(
                "/v1/referrals",
                &hospital,
                &referral_body(mrn, &at(recent_discharge())),
            )
            .await;
        assert_eq!(s, 201);
    }
    eventually("two plans", WAIT, || async {
        let (_, l) = app.get("/v1/followups", &coordinator).await;
        (l["items"].as_array()?.len() == 2).then_some(())
    })
    .await;

    // Followed page by page, each list yields every item once.
    async fn walk(app: &TestApp, path: &str, token: &str, key: &str) -> Vec<String> {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let url = match &cursor {
                None => format!("{path}{sep}limit=1"),
                Some(c) => format!("{path}{sep}limit=1&cursor={c}"),
            };
            let (s, page) = app.get(&url, token).await;
            assert_eq!(s, 200, "{url}: {page}");
            let items = page["items"].as_array().unwrap();
            assert!(items.len() <= 1, "{page}");
            seen.extend(items.iter().map(|i| i[key].as_str().unwrap().to_string()));
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return seen,
            }
            assert!(seen.len() < 10, "paging does not end: {seen:?}");
        }
    }
    let peers = walk(&app, "/v1/peers", &coordinator, "peer_id").await;
    assert_eq!(peers.len(), 3, "{peers:?}");
    let plans = walk(&app, "/v1/followups", &coordinator, "referral_id").await;
    assert_eq!(plans.len(), 2, "{plans:?}");
    let referrals = walk(&app, "/v1/referrals", &coordinator, "referral_id").await;
    assert_eq!(referrals.len(), 2, "{referrals:?}");

    // A limit out of range is refused on every list, naming it.
    for (path, token) in [
        ("/v1/peers", &coordinator),
        ("/v1/followups", &coordinator),
        ("/v1/referrals", &coordinator),
        ("/v1/facilities/st-marys/webhook/deliveries", &hospital),
        ("/v1/audit", &admin),
        ("/v1/operations/backbone/intake", &admin),
    ] {
        for limit in ["0", "-1", "501"] {
            let (s, p) = app.get(&format!("{path}?limit={limit}"), token).await;
            assert_eq!(
                (s, p["field"].as_str()),
                (422, Some("limit")),
                "{path}?limit={limit}: {p}"
            );
        }
        let (s, p) = app.get(&format!("{path}?cursor=not-ours"), token).await;
        assert_eq!(
            (s, p["field"].as_str()),
            (422, Some("cursor")),
            "{path}: {p}"
        );
    }
    let (_, d) = app
        .get("/v1/facilities/st-marys/webhook/deliveries", &hospital)
        .await;
    assert!(d.get("next_cursor").is_some(), "{d}");
    let (_, o) = app.get("/v1/operations/backbone/intake", &admin).await;
    assert!(o["dead_letters"].get("next_cursor").is_some(), "{o}");
    app.shutdown().await;
}

/// Finding 6 (A11): after an A11 the referral's timeline still showed the readmission
/// without its cancellation. An admission cancelled by the hospital now shows on the
/// timeline as ReadmissionCancelled, after the ReadmissionNoted it cancels.
#[tokio::test]
async fn an_a11_shows_the_readmission_cancelled_on_the_timeline() {
    let app = spawn_app().await;
    let coordinator = app.token("coordinator", None, None);
    let (s, _) = app
        .post(
            "/v1/peers",
            &coordinator,
            &json!({"name": "Ana", "languages": ["en"], "gender": "female", "max_caseload": 5}),
        )
        .await;
    assert_eq!(s, 201);
    eventually("the roster", WAIT, || async {
        let (_, l) = app.get("/v1/peers", &coordinator).await;
        (l["items"].as_array()?.len() == 1).then_some(())
    })
    .await;
    let addr = mllp_addr(&app).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    let discharged = Utc::now() - chrono::Duration::hours(3);
    let admitted = hl7_time(Utc::now() - chrono::Duration::hours(1));
    let a03 = adt("A03", "A11-1", "MRN-A11", "", &hl7_time(discharged), true);
    let ack = exchange(&mut s, &a03).await;
    assert_eq!(msa(&ack)[1], "AA", "{ack}");
    let id = msa(&ack)[3].split(' ').nth(1).unwrap().to_string();
    eventually("the plan started", WAIT, || async {
        let (s, _) = app
            .get(&format!("/v1/referrals/{id}/followup"), &coordinator)
            .await;
        (s == 200).then_some(())
    })
    .await;
    let events = || async {
        let (_, v) = app.get(&format!("/v1/referrals/{id}"), &coordinator).await;
        v["timeline"]
            .as_array()
            .map(|t| {
                t.iter()
                    .filter_map(|e| e["event"].as_str().map(str::to_string))
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default()
    };
    let ack = exchange(
        &mut s,
        &adt("A01", "A11-2", "MRN-A11", &admitted, "", false),
    )
    .await;
    assert!(msa(&ack)[3].contains("admission recorded"), "{ack}");
    eventually("the readmission on the timeline", WAIT, || async {
        events()
            .await
            .contains(&"ReadmissionNoted".to_string())
            .then_some(())
    })
    .await;
    let ack = exchange(
        &mut s,
        &adt("A11", "A11-3", "MRN-A11", &admitted, "", false),
    )
    .await;
    assert!(msa(&ack)[3].contains("admission cancelled"), "{ack}");
    let timeline = eventually("the cancellation on the timeline", WAIT, || async {
        let e = events().await;
        e.contains(&"ReadmissionCancelled".to_string()).then_some(e)
    })
    .await;
    // Who acted: the HL7 sender that started it, and the service that recorded it.
    let (_, v) = app.get(&format!("/v1/referrals/{id}"), &coordinator).await;
    let actors: Vec<&str> = v["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["actor"].as_str())
        .collect();
    assert!(actors.contains(&"hl7 st-marys via referral"), "{actors:?}");
    let noted = timeline
        .iter()
        .position(|e| e == "ReadmissionNoted")
        .unwrap();
    let cancelled = timeline
        .iter()
        .position(|e| e == "ReadmissionCancelled")
        .unwrap();
    assert!(noted < cancelled, "{timeline:?}");
    app.shutdown().await;
}

/// Issue 16, first step: `GET /fhir/metadata` answers a CapabilityStatement (no token,
/// as FHIR clients expect) made from the table the routes are checked against; every
/// interaction it lists answers (not 404/405); a Task search parameter careloop does
/// not apply is refused (400) unless the client asks for lenient handling, and the
/// searchset's `self` link says what was applied.
#[tokio::test]
async fn the_capability_statement_tells_the_truth() {
    let app = spawn_app().await;
    let res = app
        .http
        .get(format!("{}/fhir/metadata", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    assert_eq!(res.headers()["content-type"], "application/fhir+json");
    let cs: Value = res.json().await.unwrap();
    assert_eq!(cs["resourceType"], "CapabilityStatement");
    assert_eq!(cs["fhirVersion"], "4.0.1");
    let hospital = app.token("hospital", Some("st-marys"), None);
    // Every read and search it lists is served (asked by an administrator, who may
    // read any facility's: a hospital is told 403 about people it never referred).
    let admin = app.token("admin", None, None);
    for r in cs["rest"][0]["resource"].as_array().unwrap() {
        let t = r["type"].as_str().unwrap();
        for i in r["interaction"].as_array().unwrap() {
            let path = match i["code"].as_str().unwrap() {
                "read" => format!("/fhir/{t}/no-such-id"),
                "vread" => format!("/fhir/{t}/no-such-id/_history/1"),
                "history-instance" => format!("/fhir/{t}/no-such-id/_history"),
                "search-type" => format!("/fhir/{t}"),
                _ => continue,
            };
            let (s, body) = app.get(&path, &admin).await;
            assert!(
                s == 200 || s == 404 && body["resourceType"] == "OperationOutcome",
                "{path}: {s} {body}"
            );
            if i["code"] != "search-type" {
                assert_eq!(body["issue"][0]["code"], "not-found", "{path}: {body}");
            }
        }
    }
    // An unknown search parameter: refused, or ignored on request and left out of self.
    let (s, o) = app.get("/fhir/Task?subject=Patient/x", &hospital).await;
    assert_eq!(s, 400, "{o}");
    assert_eq!(o["issue"][0]["expression"][0], "subject", "{o}");
    let res = app
        .http
        .get(format!(
            "{}/fhir/Task?subject=Patient/x&focus=ServiceRequest/y",
            app.base
        ))
        .bearer_auth(&hospital)
        .header("prefer", "handling=lenient")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let searchset: Value = res.json().await.unwrap();
    let self_link = searchset["link"][0]["url"].as_str().unwrap();
    assert!(
        self_link.ends_with("/fhir/Task?focus=ServiceRequest/y"),
        "{self_link}"
    );

    // The Location a ServiceRequest is answered with can be read, and so can its
    // Patient, by the facility that referred the person (and not by another).
    let (s, created) = app
        .post(
            "/v1/referrals",
            &hospital,
            &referral_body("MRN-FHIR-READ", &at(recent_discharge())),
        )
        .await;
    assert_eq!(s, 201);
    let id = created["referral_id"].as_str().unwrap();
    let (s, sr) = app
        .get(&format!("/fhir/ServiceRequest/{id}"), &hospital)
        .await;
    assert_eq!(
        (s, sr["resourceType"].as_str()),
        (200, Some("ServiceRequest")),
        "{sr}"
    );
    assert_eq!(sr["priority"], "asap");
    let patient_ref = sr["subject"]["reference"].as_str().unwrap().to_string();
    let (s, patient) = app.get(&format!("/fhir/{patient_ref}"), &hospital).await;
    assert_eq!(s, 200, "{patient}");
    assert_eq!(patient["identifier"][0]["value"], "MRN-FHIR-READ");
    assert_eq!(patient["name"][0]["family"], "Rivera");
    let other = app.token("hospital", Some("mercy"), None);
    let (s, _) = app.get(&format!("/fhir/ServiceRequest/{id}"), &other).await;
    assert_eq!(s, 403);
    let (s, _) = app.get(&format!("/fhir/{patient_ref}"), &other).await;
    assert_eq!(s, 403);

    // Task search pages by _count with a next link, and filters by status.
    let (s, _) = app
        .post(
            "/v1/referrals",
            &hospital,
            &referral_body("MRN-FHIR-READ-2", &at(recent_discharge())),
        )
        .await;
    assert_eq!(s, 201);
    eventually("both Tasks searchable", WAIT, || async {
        let (_, b) = app.get("/fhir/Task", &hospital).await;
        (b["entry"].as_array()?.len() == 2).then_some(())
    })
    .await;
    let (s, page) = app
        .get("/fhir/Task?_count=1&status=requested", &hospital)
        .await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(page["entry"].as_array().unwrap().len(), 1);
    let next = page["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .map(|l| l["url"].as_str().unwrap().to_string())
        .expect("a next link");
    let next = next.strip_prefix(&app.base).unwrap().to_string();
    let (_, last) = app.get(&next, &hospital).await;
    assert_eq!(last["entry"].as_array().unwrap().len(), 1, "{last}");
    assert_ne!(last["entry"][0]["fullUrl"], page["entry"][0]["fullUrl"]);
    assert!(
        last["link"]
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["relation"] != "next")
    );
    let (s, _) = app.get("/fhir/Task?_count=0", &hospital).await;
    assert_eq!(s, 422);
    let (_, none) = app.get("/fhir/Task?status=completed", &hospital).await;
    assert_eq!(none["total"], 0, "{none}");

    // A Task read carries a weak ETag and Last-Modified; If-None-Match with it is 304.
    let res = app
        .http
        .get(format!("{}/fhir/Task/{id}", app.base))
        .bearer_auth(&hospital)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 200);
    let etag = res.headers()["etag"].to_str().unwrap().to_string();
    assert!(etag.starts_with("W/\""), "{etag}");
    assert!(res.headers().contains_key("last-modified"));
    let again = app
        .http
        .get(format!("{}/fhir/Task/{id}", app.base))
        .bearer_auth(&hospital)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    let status = again.status().as_u16();
    // 304, unless the referral changed in between (then a new ETag).
    assert!(
        status == 304 || again.headers()["etag"].to_str().unwrap() != etag,
        "{status}"
    );

    // JSON only: XML asked for is a 406 OperationOutcome, not JSON with a 200.
    for (path, accept) in [
        (format!("/fhir/Task/{id}"), "application/fhir+xml"),
        (format!("/fhir/Task/{id}?_format=xml"), "*/*"),
        ("/fhir/metadata".to_string(), "application/xml"),
    ] {
        let res = app
            .http
            .get(format!("{}{path}", app.base))
            .bearer_auth(&hospital)
            .header("accept", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status().as_u16(), 406, "{path} {accept}");
        let o: Value = res.json().await.unwrap();
        assert_eq!(o["resourceType"], "OperationOutcome");
    }
    // A code outside its required value set: Patient.gender "robot".
    let mut robot = bundle(&at(recent_discharge()));
    robot["entry"][0]["resource"]["gender"] = json!("robot");
    let (s, _, o) = post_fhir(&app, "/fhir", &hospital, &robot).await;
    assert_eq!(s, 422, "{o}");
    assert_eq!(
        o["issue"][0]["expression"][0],
        "Bundle.entry[0].resource.gender"
    );
    app.shutdown().await;
}
