//! The FHIR surface the SDOH Clinical Care IG expects (docs/fhir.md): Task versions
//! from the events (read, vread, `_history`, validators), search by the IG's
//! parameters with paging and totals, ServiceRequest search, Consent read.

use serde_json::{Value, json};

use careloop_test_support::eventually;

use crate::*;

async fn fhir_get(
    app: &TestApp,
    path: &str,
    token: &str,
    etag: Option<&str>,
) -> (u16, Option<String>, Value) {
    let mut req = app
        .http
        .get(format!("{}{path}", app.base))
        .bearer_auth(token);
    if let Some(e) = etag {
        req = req.header("if-none-match", e);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let tag = res
        .headers()
        .get("etag")
        .map(|v| v.to_str().unwrap().to_string());
    (status, tag, res.json().await.unwrap_or(Value::Null))
}

fn chrono_at(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s)
        .unwrap()
        .with_timezone(&chrono::Utc)
}

fn ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
        .collect()
}

/// Guarantee: each status change is a version of the Task, and read, vread,
/// `_history` and search give the same resource for the same version; searches apply
/// exactly the IG's parameters, never across facilities.
#[tokio::test]
async fn task_versions_and_searches_follow_the_ig() {
    let app = spawn_app().await;
    let coordinator = app.token("coordinator", None, None);
    let st_marys = app.token("hospital", Some("st-marys"), None);
    let mercy = app.token("hospital", Some("mercy"), None);
    let (s, _) = app
        .post(
            "/v1/peers",
            &coordinator,
            &json!({"name": "Ana", "languages": ["en"], "gender": "female", "max_caseload": 10}),
        )
        .await;
    assert_eq!(s, 201);
    let discharged = at(recent_discharge());
    let mut referrals = vec![];
    for (mrn, facility, token) in [
        ("MRN-V1", "st-marys", &st_marys),
        ("MRN-V2", "st-marys", &st_marys),
        ("MRN-V3", "mercy", &mercy),
    ] {
        let mut body = referral_body(mrn, &discharged);
        body["facility"] = json!(facility);
        let (s, r) = app.post("/v1/referrals", token, &body).await;
        assert_eq!(s, 201, "{r}");
        referrals.push(r["referral_id"].as_str().unwrap().to_string());
    }
    let (r1, r3) = (&referrals[0], &referrals[2]);
    let task = eventually("the Task accepted", WAIT, || async {
        let (_, _, t) = fhir_get(&app, &format!("/fhir/Task/{r1}"), &st_marys, None).await;
        (t["status"] == "accepted").then_some(t)
    })
    .await;

    // Versions: requested (submitted), received, accepted, … one per change.
    let version: usize = task["meta"]["versionId"].as_str().unwrap().parse().unwrap();
    assert!(version >= 3, "{task}");
    let (s, etag, read) = fhir_get(&app, &format!("/fhir/Task/{r1}"), &st_marys, None).await;
    assert_eq!(
        (s, etag.as_deref()),
        (200, Some(format!("W/\"{version}\"").as_str()))
    );
    let (s, _, _) = fhir_get(
        &app,
        &format!("/fhir/Task/{r1}"),
        &st_marys,
        etag.as_deref(),
    )
    .await;
    assert_eq!(s, 304, "unchanged since that version");
    let (s, _, history) =
        fhir_get(&app, &format!("/fhir/Task/{r1}/_history"), &st_marys, None).await;
    assert_eq!(
        (s, history["type"].as_str()),
        (200, Some("history")),
        "{history}"
    );
    let entries = history["entry"].as_array().unwrap();
    assert_eq!(entries.len(), version);
    assert_eq!(
        entries[0]["resource"], read,
        "the newest version is what a read returns"
    );
    let first = &entries[version - 1]["resource"];
    assert_eq!(
        (
            first["meta"]["versionId"].as_str(),
            first["status"].as_str()
        ),
        (Some("1"), Some("requested"))
    );
    for (i, e) in entries.iter().enumerate() {
        let v = version - i;
        let (s, tag, vread) = fhir_get(
            &app,
            &format!("/fhir/Task/{r1}/_history/{v}"),
            &st_marys,
            None,
        )
        .await;
        assert_eq!((s, tag), (200, Some(format!("W/\"{v}\""))));
        assert_eq!(vread, e["resource"], "vread {v} is history entry {i}");
    }
    let (s, _, o) = fhir_get(
        &app,
        &format!("/fhir/Task/{r1}/_history/{}", version + 1),
        &st_marys,
        None,
    )
    .await;
    assert_eq!(
        (s, o["resourceType"].as_str()),
        (404, Some("OperationOutcome"))
    );
    let (s, _, _) = fhir_get(&app, &format!("/fhir/Task/{r1}/_history"), &mercy, None).await;
    assert_eq!(s, 403, "another facility's history");

    // Search by the IG's parameters (searches read the tasks read model, a moment
    // behind the events a read renders: wait for all three there, at their latest).
    let patient = read["for"]["reference"].as_str().unwrap().to_string();
    eventually("the three Tasks searchable", WAIT, || async {
        let (_, _, b) = fhir_get(&app, "/fhir/Task?_total=accurate", &coordinator, None).await;
        let r1_now = b["entry"]
            .as_array()?
            .iter()
            .find(|e| e["resource"]["id"] == r1.as_str())?;
        (b["total"] == 3 && r1_now["resource"] == read).then_some(())
    })
    .await;
    let search = |q: String, token: String| {
        let app = &app;
        async move {
            let (s, _, b) = fhir_get(app, &format!("/fhir/Task?{q}"), &token, None).await;
            assert_eq!(s, 200, "{q}: {b}");
            b
        }
    };
    let found = search(format!("patient={patient}"), st_marys.clone()).await;
    assert_eq!(ids(&found), vec![r1.clone()]);
    assert_eq!(
        found["entry"][0]["resource"], read,
        "a search entry is what a read returns"
    );
    assert_eq!(
        ids(&search("owner=Organization/careloop".into(), coordinator.clone()).await).len(),
        3
    );
    assert_eq!(
        search("owner=Organization/elsewhere".into(), coordinator.clone()).await["total"],
        0
    );
    assert_eq!(
        ids(&search(
            "code=http://hl7.org/fhir/CodeSystem/task-code|fulfill".into(),
            coordinator.clone()
        )
        .await)
        .len(),
        3
    );
    assert_eq!(
        search("code=other".into(), coordinator.clone()).await["total"],
        0
    );
    assert_eq!(
        ids(&search("requester=Organization/mercy".into(), coordinator.clone()).await),
        vec![r3.clone()]
    );
    assert_eq!(
        search("requester=Organization/mercy".into(), st_marys.clone()).await["total"],
        0,
        "never another facility's"
    );
    assert_eq!(
        ids(&search(String::new(), st_marys.clone()).await).len(),
        2,
        "a hospital sees its own"
    );
    let changed = read["meta"]["lastUpdated"]
        .as_str()
        .unwrap()
        .replace('+', "%2B");
    let exact = search(
        format!("_lastUpdated=ge{changed}&_lastUpdated=le{changed}"),
        st_marys.clone(),
    )
    .await;
    assert!(ids(&exact).contains(r1), "{exact}");
    assert!(
        !ids(&search(
            format!("_lastUpdated=gt{changed}&patient={patient}"),
            st_marys.clone()
        )
        .await)
        .contains(r1)
    );
    let (s, _, o) = fhir_get(&app, "/fhir/Task?_lastUpdated=2026-01-01", &st_marys, None).await;
    assert_eq!(
        (s, o["issue"][0]["expression"][0].as_str()),
        (422, Some("_lastUpdated")),
        "{o}"
    );

    // Paging with an accurate total; the next link gives the rest. Pages follow the
    // last change, so a Task still moving would rightly show up again on page 2: wait
    // until all three have settled first.
    eventually("all three Tasks accepted", WAIT, || async {
        let all = search("_count=10".into(), coordinator.clone()).await;
        let entries = all["entry"].as_array().cloned().unwrap_or_default();
        (entries.len() == 3
            && entries
                .iter()
                .all(|e| e["resource"]["status"] == "accepted"))
        .then_some(())
    })
    .await;
    let page1 = search("_count=2&_total=accurate".into(), coordinator.clone()).await;
    assert_eq!(
        (page1["total"].as_i64(), ids(&page1).len()),
        (Some(3), 2),
        "{page1}"
    );
    let next = page1["link"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["relation"] == "next")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();
    let (s, _, page2) = fhir_get(
        &app,
        next.strip_prefix(&app.base).unwrap(),
        &coordinator,
        None,
    )
    .await;
    assert_eq!(s, 200, "{page2}");
    // Following the next link misses nothing, and a Task shows on both pages only
    // because it changed after page 1 was read (pages follow the last change).
    let updated = |e: &Value| {
        e["resource"]["meta"]["lastUpdated"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let page1_entries = page1["entry"].as_array().unwrap();
    let last_of_page1 = updated(page1_entries.last().unwrap());
    let first = ids(&page1);
    for e in page2["entry"].as_array().unwrap() {
        let id = e["resource"]["id"].as_str().unwrap();
        if first.iter().any(|f| f == id) {
            let (then, now) = (chrono_at(&last_of_page1), chrono_at(&updated(e)));
            assert!(
                now > then,
                "{id} is on both pages without a change: {page1} {page2}"
            );
        }
    }
    let mut all = [ids(&page1), ids(&page2)].concat();
    all.sort();
    all.dedup();
    let mut expected = referrals.clone();
    expected.sort();
    assert_eq!(all, expected, "{page1} {page2}");

    // ServiceRequest search, and the person's Consent.
    let (s, _, srs) = fhir_get(
        &app,
        &format!("/fhir/ServiceRequest?patient={patient}&status=active"),
        &st_marys,
        None,
    )
    .await;
    assert_eq!((s, ids(&srs)), (200, vec![r1.clone()]), "{srs}");
    let (_, _, sr) = fhir_get(&app, &format!("/fhir/ServiceRequest/{r1}"), &st_marys, None).await;
    assert_eq!(srs["entry"][0]["resource"], sr);
    let (_, _, none) = fhir_get(
        &app,
        "/fhir/ServiceRequest?status=completed",
        &st_marys,
        None,
    )
    .await;
    assert_eq!(none["total"], 0);
    let person = patient.strip_prefix("Patient/").unwrap();
    let (s, _, consent) = fhir_get(&app, &format!("/fhir/Consent/{person}"), &st_marys, None).await;
    assert_eq!(
        (s, consent["status"].as_str()),
        (200, Some("active")),
        "{consent}"
    );
    assert_eq!(consent["patient"]["reference"], patient.as_str());
    let (s, _, _) = fhir_get(&app, &format!("/fhir/Consent/{person}"), &mercy, None).await;
    assert_eq!(s, 403, "a facility that never referred the person");
    let (s, _, _) = fhir_get(&app, "/fhir/Consent/no-such-person", &st_marys, None).await;
    assert_eq!(
        s, 403,
        "a hospital learns nothing of people it never referred"
    );
    let (s, _, _) = fhir_get(&app, "/fhir/Consent/no-such-person", &coordinator, None).await;
    assert_eq!(s, 404);

    app.shutdown().await;
}

/// The Python FHIR client of `tests/fhir-client`, installed by
/// `deploy/dev/test-tools.sh` (which CI runs first; run here when missing).
fn fhir_client() -> std::path::PathBuf {
    let dir = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fhir-client");
    let python = dir.join(".venv/bin/python");
    if !python.is_file() {
        let script = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../deploy/dev/test-tools.sh");
        let ok = std::process::Command::new("bash")
            .arg(script)
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            ok && python.is_file(),
            "the FHIR client is not installed: run `bash deploy/dev/test-tools.sh`"
        );
    }
    dir
}

/// Guarantee: a FHIR client that is not careloop's code (SMART's `fhirclient`, with
/// its R4 models in strict mode) connects through the CapabilityStatement, refers
/// with the IG's own examples, and every resource careloop answers parses as valid
/// R4; the examples round-trip.
#[tokio::test]
async fn an_independent_fhir_client_validates_every_resource_careloop_returns() {
    let dir = fhir_client();
    let app = spawn_app().await;
    let hospital = app.token("hospital", Some("st-marys"), None);
    let coordinator = app.token("coordinator", None, None);
    let fixtures = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../services/intake/fixtures/fhir");
    let out = tokio::process::Command::new(dir.join(".venv/bin/python"))
        .arg(dir.join("check.py"))
        .arg(&app.base)
        .arg(&hospital)
        .arg(&coordinator)
        .arg(&fixtures)
        .output()
        .await
        .expect("python runs");
    assert!(
        out.status.success(),
        "the FHIR client failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value = serde_json::from_slice(&out.stdout).unwrap();
    let validated: Vec<&str> = summary["validated"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    for kind in [
        "CapabilityStatement",
        "Bundle/transaction-response",
        "Patient",
        "ServiceRequest",
        "Consent",
        "Task",
        "Bundle/history",
        "Bundle/searchset",
        "OperationOutcome",
        "Subscription",
    ] {
        assert!(
            validated.contains(&kind),
            "{kind} not validated: {validated:?}"
        );
    }
    app.shutdown().await;
}

/// A subscriber's endpoint: keeps every notification it accepts; answers 503 while
/// `failing`; refuses a request without the subscription's header.
#[derive(Default)]
struct Subscriber {
    failing: std::sync::atomic::AtomicBool,
    refused: std::sync::atomic::AtomicUsize,
    received: std::sync::Mutex<Vec<Value>>,
}

async fn start_subscriber() -> (String, std::sync::Arc<Subscriber>) {
    use axum::http::{HeaderMap, StatusCode};
    let state = std::sync::Arc::new(Subscriber::default());
    let s = state.clone();
    let app = axum::Router::new().route(
        "/notify",
        axum::routing::post(move |headers: HeaderMap, body: String| {
            let s = s.clone();
            async move {
                use std::sync::atomic::Ordering;
                if headers.get("authorization").and_then(|v| v.to_str().ok())
                    != Some("Bearer subscriber-secret")
                    || s.failing.load(Ordering::SeqCst)
                {
                    s.refused.fetch_add(1, Ordering::SeqCst);
                    return StatusCode::SERVICE_UNAVAILABLE;
                }
                s.received
                    .lock()
                    .unwrap()
                    .push(serde_json::from_str(&body).unwrap());
                StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/notify", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, state)
}

fn subscription(endpoint: &str, filter: &str, content: &str, heartbeat: u32) -> Value {
    let ext = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition";
    json!({
        "resourceType": "Subscription", "status": "requested", "reason": "closed loop",
        "criteria": careloop_intake::subscriptions::TOPIC,
        "_criteria": {"extension": [{"url": format!("{ext}/backport-filter-criteria"), "valueString": filter}]},
        "channel": {
            "type": "rest-hook", "endpoint": endpoint, "payload": "application/fhir+json",
            "_payload": {"extension": [{"url": format!("{ext}/backport-payload-content"), "valueCode": content}]},
            "extension": [{"url": format!("{ext}/backport-heartbeat-period"), "valueUnsignedInt": heartbeat}],
            "header": ["Authorization: Bearer subscriber-secret"]
        }
    })
}

/// What a notification says: (subscription URL, type, event number, Task URL, Task).
fn notification(bundle: &Value) -> (String, String, Option<i64>, Option<String>, Option<Value>) {
    let params = bundle["entry"][0]["resource"]["parameter"]
        .as_array()
        .unwrap();
    let get = |name: &str| params.iter().find(|p| p["name"] == name);
    let event = get("notification-event");
    let number = event.and_then(|e| {
        e["part"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "event-number")?["valueString"]
            .as_str()?
            .parse()
            .ok()
    });
    (
        get("subscription").unwrap()["valueReference"]["reference"]
            .as_str()
            .unwrap()
            .to_string(),
        get("type").unwrap()["valueCode"]
            .as_str()
            .unwrap()
            .to_string(),
        number,
        bundle["entry"][1]["fullUrl"].as_str().map(str::to_string),
        bundle["entry"][1].get("resource").cloned(),
    )
}

/// Guarantee: the closed loop by FHIR subscription. A handshake activates it; each
/// status change of the facility's Tasks that matches the filter is notified, numbered
/// per subscription without repeat or gap, with the Task as that version; heartbeats
/// come at the period; repeated failures put it in `error` and nothing queued is lost,
/// not even across a careloop killed between the commit and the delivery.
#[tokio::test]
async fn subscriptions_notify_each_status_change_in_order_across_failures_and_a_crash() {
    use std::sync::atomic::Ordering;
    let (endpoint, subscriber) = start_subscriber().await;
    let mut env = careloop_test_support::TestEnv::new();
    env.settings.webhook_retry_base = std::time::Duration::from_millis(50);
    env.settings.webhook_allowed_hosts = vec!["127.0.0.1".into()];
    let mut app = spawn_app_with(env).await;
    let hospital = app.token("hospital", Some("st-marys"), None);
    let mercy = app.token("hospital", Some("mercy"), None);
    let coordinator = app.token("coordinator", None, None);
    let post = |app: &TestApp, body: Value, token: String| {
        let req = app
            .http
            .post(format!("{}/fhir/Subscription", app.base))
            .bearer_auth(token)
            .header("content-type", "application/fhir+json")
            .body(body.to_string());
        async move {
            let res = req.send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };

    // Refused, naming the element: another topic, an endpoint inside the network.
    let mut other = subscription(&endpoint, "Task?status=completed", "id-only", 60);
    other["criteria"] = json!("http://example.org/topic");
    let (s, o) = post(&app, other, hospital.clone()).await;
    assert_eq!(
        (s, o["issue"][0]["expression"][0].as_str()),
        (422, Some("Subscription.criteria")),
        "{o}"
    );
    let (s, o) = post(
        &app,
        subscription(
            "http://10.1.2.3/notify",
            "Task?status=completed",
            "id-only",
            60,
        ),
        hospital.clone(),
    )
    .await;
    assert_eq!(
        (s, o["issue"][0]["expression"][0].as_str()),
        (422, Some("Subscription.channel.endpoint")),
        "{o}"
    );

    // Every change of St Mary's Tasks, with the Task; and only cancellations, by id.
    let (s, all) = post(
        &app,
        subscription(
            &endpoint,
            "Task?requester=Organization/st-marys",
            "full-resource",
            1,
        ),
        hospital.clone(),
    )
    .await;
    assert_eq!(
        (s, all["status"].as_str()),
        (201, Some("requested")),
        "{all}"
    );
    let all_id = all["id"].as_str().unwrap().to_string();
    let (s, cancelled) = post(
        &app,
        subscription(&endpoint, "Task?status=cancelled", "id-only", 3600),
        hospital.clone(),
    )
    .await;
    assert_eq!(s, 201, "{cancelled}");
    let cancelled_id = cancelled["id"].as_str().unwrap().to_string();
    for id in [&all_id, &cancelled_id] {
        eventually("the handshake makes it active", WAIT, || async {
            let (_, _, sub) =
                fhir_get(&app, &format!("/fhir/Subscription/{id}"), &hospital, None).await;
            (sub["status"] == "active").then_some(())
        })
        .await;
    }
    let (s, _, _) = fhir_get(&app, &format!("/fhir/Subscription/{all_id}"), &mercy, None).await;
    assert_eq!(s, 403, "another facility's subscription");

    // St Mary's referral is received, then cancelled; Mercy's is never notified.
    let (s, r) = app
        .post(
            "/v1/referrals",
            &hospital,
            &referral_body("MRN-SUB-1", &at(recent_discharge())),
        )
        .await;
    assert_eq!(s, 201, "{r}");
    let referral = r["referral_id"].as_str().unwrap().to_string();
    let mut mercy_body = referral_body("MRN-SUB-2", &at(recent_discharge()));
    mercy_body["facility"] = json!("mercy");
    let (s, _) = app.post("/v1/referrals", &mercy, &mercy_body).await;
    assert_eq!(s, 201);
    eventually("the referral received", WAIT, || async {
        let (_, r) = app
            .get(&format!("/v1/referrals/{referral}"), &coordinator)
            .await;
        (r["status"] != "requested").then_some(())
    })
    .await;
    let (s, _) = app
        .post(
            &format!("/v1/referrals/{referral}/cancel"),
            &coordinator,
            &json!({"reason": "moved away"}),
        )
        .await;
    assert_eq!(s, 200);
    let notified = |sub: &str, kind: &str| {
        let sub = format!("/fhir/Subscription/{sub}");
        subscriber
            .received
            .lock()
            .unwrap()
            .iter()
            .map(notification)
            .filter(|n| n.0.ends_with(&sub) && n.1 == kind)
            .collect::<Vec<_>>()
    };
    let events = eventually("the cancellation notified to both", WAIT, || async {
        let all = notified(&all_id, "event-notification");
        let last = all.last()?;
        (last.4.as_ref()?["status"] == "cancelled"
            && notified(&cancelled_id, "event-notification").len() == 1)
            .then_some(all)
    })
    .await;
    let numbers: Vec<i64> = events.iter().map(|n| n.2.unwrap()).collect();
    assert_eq!(
        numbers,
        (1..=numbers.len() as i64).collect::<Vec<_>>(),
        "in order, no repeat, no gap"
    );
    for (_, _, _, url, task) in &events {
        assert!(
            url.as_deref()
                .unwrap()
                .ends_with(&format!("/fhir/Task/{referral}")),
            "only St Mary's Task"
        );
        let task = task.as_ref().unwrap();
        let version = task["meta"]["versionId"].as_str().unwrap();
        let (_, _, vread) = fhir_get(
            &app,
            &format!("/fhir/Task/{referral}/_history/{version}"),
            &hospital,
            None,
        )
        .await;
        assert_eq!(task, &vread, "the Task as of that event");
    }
    let only = &notified(&cancelled_id, "event-notification")[0];
    assert_eq!(
        (only.2, only.4.is_none()),
        (Some(1), true),
        "id-only, numbered from 1"
    );
    eventually("a heartbeat at the 1 s period", WAIT, || async {
        (!notified(&all_id, "heartbeat").is_empty()).then_some(())
    })
    .await;
    let (_, _, status) = fhir_get(
        &app,
        &format!("/fhir/Subscription/{all_id}/$status"),
        &hospital,
        None,
    )
    .await;
    let params = status["entry"][0]["resource"]["parameter"]
        .as_array()
        .unwrap()
        .clone();
    let since = params
        .iter()
        .find(|p| p["name"] == "events-since-subscription-start")
        .unwrap();
    assert_eq!(since["valueString"], numbers.len().to_string());

    // The endpoint fails: after repeated failures the subscription is in error.
    subscriber.failing.store(true, Ordering::SeqCst);
    let (s, r) = app
        .post(
            "/v1/referrals",
            &hospital,
            &referral_body("MRN-SUB-3", &at(recent_discharge())),
        )
        .await;
    assert_eq!(s, 201, "{r}");
    eventually(
        "the subscription in error",
        std::time::Duration::from_secs(30),
        || async {
            let (_, _, sub) = fhir_get(
                &app,
                &format!("/fhir/Subscription/{all_id}"),
                &hospital,
                None,
            )
            .await;
            (sub["status"] == "error" && sub["error"].is_string()).then_some(())
        },
    )
    .await;
    // careloop is killed with the notification committed and not delivered, and
    // comes back; the endpoint recovers: it gets what was queued, numbered on.
    app = app.kill_and_restart().await;
    let hospital = app.token("hospital", Some("st-marys"), None);
    subscriber.failing.store(false, Ordering::SeqCst);
    let later = eventually(
        "the queued notification delivered after the restart",
        std::time::Duration::from_secs(30),
        || async {
            let n = notified(&all_id, "event-notification");
            (n.len() > numbers.len()).then_some(n)
        },
    )
    .await;
    assert_eq!(
        later[numbers.len()].2,
        Some(numbers.len() as i64 + 1),
        "numbered on, no gap"
    );
    assert!(
        later[numbers.len()].0.starts_with(&app.base),
        "delivered by the careloop started after the kill"
    );
    eventually("active again", WAIT, || async {
        let (_, _, sub) = fhir_get(
            &app,
            &format!("/fhir/Subscription/{all_id}"),
            &hospital,
            None,
        )
        .await;
        (sub["status"] == "active").then_some(())
    })
    .await;
    let res = app
        .http
        .delete(format!("{}/fhir/Subscription/{cancelled_id}", app.base))
        .bearer_auth(&hospital)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status().as_u16(), 204);
    let (s, _, _) = fhir_get(
        &app,
        &format!("/fhir/Subscription/{cancelled_id}"),
        &hospital,
        None,
    )
    .await;
    assert_eq!(s, 404);
    app.shutdown().await;
}
