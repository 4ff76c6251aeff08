//! Continuity-of-care measures: a known-answer cohort built through the public API,
//! compared with hand-computed numbers in the report and on /metrics, and the proof
//! that no PHI reaches integration events, logs or metrics.

use chrono::{DateTime, Duration, Utc};
use futures::StreamExt;
use serde_json::{Value, json};

use careloop_test_support::{LogCapture, eventually};

use crate::*;

const SECOND_FACILITY: &str = "mercy";

struct Cohort<'a> {
    app: &'a TestApp,
    coordinator: String,
}

impl Cohort<'_> {
    /// A referral discharged at `at`; returns its id once the referral service has it.
    async fn refer(
        &self,
        mrn: &str,
        facility: &str,
        discharged: DateTime<Utc>,
        language: &str,
    ) -> String {
        let hospital = self.app.token("hospital", Some(facility), None);
        let mut body = referral_body(mrn, &at(discharged));
        body["facility"] = json!(facility);
        body["person"]["language"] = json!(language);
        body["person"]["name"] = json!({"given": "Alex", "family": "Rivera"});
        let (s, r) = self.app.post("/v1/referrals", &hospital, &body).await;
        assert_eq!(s, 201, "{r}");
        let id = r["referral_id"].as_str().unwrap().to_string();
        eventually("the referral received", WAIT, || async {
            let (s, v) = self
                .app
                .get(&format!("/v1/referrals/{id}"), &self.coordinator)
                .await;
            (s == 200 && v["status"] != "requested").then_some(())
        })
        .await;
        id
    }

    async fn wait_for_plan(&self, id: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let (s, _) = self
                .app
                .get(&format!("/v1/referrals/{id}/followup"), &self.coordinator)
                .await;
            if s == 200 {
                return;
            }
            if tokio::time::Instant::now() > deadline {
                let (_, r) = self
                    .app
                    .get(&format!("/v1/referrals/{id}"), &self.coordinator)
                    .await;
                panic!("no follow-up plan for {id}: {r}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    async fn contact(&self, id: &str, at_time: DateTime<Utc>, outcome: &str) -> (u16, Value) {
        self.app
            .post(
                &format!("/v1/referrals/{id}/contacts"),
                &self.coordinator,
                &json!({"occurred_at": at(at_time), "channel": "phone", "outcome": outcome}),
            )
            .await
    }

    async fn admit(&self, mrn: &str, facility: &str, admitted: DateTime<Utc>) {
        let hospital = self.app.token("hospital", Some(facility), None);
        let body = json!({"facility": facility, "admitted_at": at(admitted), "unit": "inpatient-psychiatry",
                          "person": {"identifiers": [{"system": "urn:oid:2.16.840.1.113883.3.999.1", "value": mrn}]}});
        let (s, r) = self.app.post("/v1/admissions", &hospital, &body).await;
        assert_eq!(s, 201, "{r}");
    }

    async fn act(&self, id: &str, action: &str) {
        let (s, r) = self
            .app
            .post(
                &format!("/v1/referrals/{id}/{action}"),
                &self.coordinator,
                &json!({"reason": "test"}),
            )
            .await;
        assert_eq!(s, 200, "{action}: {r}");
    }
}

fn block(m: &Value) -> Value {
    json!({
        "f7": [m["followup_7d"]["discharges"], m["followup_7d"]["followed_up"]],
        "f30": [m["followup_30d"]["discharges"], m["followup_30d"]["followed_up"]],
        "readmission": [m["readmission_30d"]["discharges"], m["readmission_30d"]["readmitted"],
                        m["readmission_30d"]["readmitted_engaged"], m["readmission_30d"]["readmitted_not_engaged"]],
        "first_contact": [m["first_contact_seconds"]["count"], m["first_contact_seconds"]["p50"],
                          m["first_contact_seconds"]["p90"]],
    })
}

fn metric(text: &str, line_start: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The known answer: every edge of the definitions, by hand.
#[tokio::test]
async fn the_measures_equal_hand_computed_numbers_and_carry_no_phi() {
    let logs = LogCapture::default();
    let sink = logs.clone();
    careloop_telemetry::init_with_writer(move || sink.clone());

    let app = spawn_app().await;
    let c = Cohort {
        app: &app,
        coordinator: app.token("coordinator", None, None),
    };
    for name in ["Ana", "Bea"] {
        let (s, _) = app
            .post(
                "/v1/peers",
                &c.coordinator,
                &json!({"name": name, "languages": ["en"], "gender": "female", "max_caseload": 20}),
            )
            .await;
        assert_eq!(s, 201);
    }
    eventually("the roster", WAIT, || async {
        let (_, l) = app.get("/v1/peers", &c.coordinator).await;
        (l["items"].as_array()?.len() == 2).then_some(())
    })
    .await;

    let t0: DateTime<Utc> =
        DateTime::from_timestamp((Utc::now() - Duration::hours(1)).timestamp(), 0).unwrap();
    let day = Duration::days(1);
    let sec = Duration::seconds(1);
    let hour = Duration::hours(1);

    // R1: reached exactly at +7d (counts for 7 days); readmitted exactly at +30d
    // (counts), after the reach (engaged).
    let r1d = t0 - day * 40;
    let r1 = c.refer("MRN-A", "st-marys", r1d, "en").await;
    // R2: reached one second after +7d (30 days only); readmitted on day 31 (no).
    let r2d = t0 - day * 40;
    let r2 = c.refer("MRN-B", "st-marys", r2d, "en").await;
    // R3: the same person as R1, discharged 20 days ago, never reached.
    let r3 = c.refer("MRN-A", "st-marys", t0 - day * 20, "en").await;
    // R4: discharged exactly 7 days before as_of, reached an hour later.
    let r4d = t0 - day * 7;
    let r4 = c.refer("MRN-C", "st-marys", r4d, "en").await;
    // R5: one second too recent for the 7-day denominator.
    let r5d = t0 - day * 7 + sec;
    let r5 = c.refer("MRN-D", "st-marys", r5d, "en").await;
    // R6: nobody speaks the language: waits, then is cancelled (still counted).
    let r6 = c.refer("MRN-E", "st-marys", t0 - day * 35, "xx").await;
    // R7: entered in error: excluded everywhere, even with a reach.
    let r7d = t0 - day * 35;
    let r7 = c.refer("MRN-F", "st-marys", r7d, "en").await;
    // R8 (another facility): readmitted on day 10, reached only on day 12 (not engaged).
    let r8d = t0 - day * 45;
    let r8 = c.refer("MRN-G", SECOND_FACILITY, r8d, "en").await;

    for id in [&r1, &r2, &r3, &r4, &r5, &r7, &r8] {
        c.wait_for_plan(id).await;
    }
    let ok = |(s, r): (u16, Value)| assert_eq!(s, 201, "{r}");
    ok(c.contact(&r1, r1d + day * 7, "reached").await);
    ok(c.contact(&r1, r1d + day * 2, "no_answer").await);
    ok(c.contact(&r2, r2d + day * 7 + sec, "reached").await);
    let (s, p) = c.contact(&r2, r2d - hour, "reached").await;
    assert_eq!(
        (s, p["field"].as_str()),
        (422, Some("occurred_at")),
        "a contact before discharge"
    );
    ok(c.contact(&r4, r4d + hour, "reached").await);
    ok(c.contact(&r5, r5d + hour * 2 - sec, "reached").await);
    ok(c.contact(&r7, r7d + day, "reached").await);
    ok(c.contact(&r8, r8d + day * 12, "reached").await);
    c.admit("MRN-A", "st-marys", r1d + day * 30).await;
    c.admit("MRN-B", "st-marys", r2d + day * 31).await;
    c.admit("MRN-G", SECOND_FACILITY, r8d + day * 10).await;
    c.act(&r6, "cancel").await;
    c.act(&r7, "entered-in-error").await;
    let _ = r3;

    let expected = json!({
        "total": {"f7": [6, 2], "f30": [4, 3], "readmission": [4, 2, 1, 1],
                  "first_contact": [5, 604_800, 1_036_800]},
        "mercy": {"f7": [1, 0], "f30": [1, 1], "readmission": [1, 1, 0, 1],
                  "first_contact": [1, 1_036_800, 1_036_800]},
        "st-marys": {"f7": [5, 2], "f30": [3, 2], "readmission": [3, 1, 1, 0],
                     "first_contact": [4, 7_199, 604_801]},
    });
    let url = format!(
        "/v1/reports/continuity?as_of={}",
        at(t0).replace('+', "%2B")
    );
    let report = eventually(
        "the report to settle on the known answer",
        std::time::Duration::from_secs(30),
        || async {
            let (_, r) = app.get(&url, &c.coordinator).await;
            let facilities = r["facilities"].as_array()?;
            let mut got = json!({"total": block(&r["total"])});
            for f in facilities {
                got[f["facility"].as_str()?] = block(f);
            }
            (got == expected).then_some(r)
        },
    )
    .await;
    assert_eq!(report["total"]["followup_7d"]["ratio"], json!(2.0 / 6.0));
    // Guarantee 5 for the measures: rebuilt from follow-up's own events, the same.
    careloop_app::cli::replay(&app.env.settings, "measures")
        .await
        .unwrap();
    let (_, replayed) = app.get(&url, &c.coordinator).await;
    assert_eq!(replayed, report, "replay yields the same report");
    assert_eq!(report["total"]["readmission_30d"]["ratio"], json!(0.5));
    assert!(!report["cohorts"].as_array().unwrap().is_empty());

    let csv = app.get_csv(&url, &c.coordinator).await;
    let total_line = csv.lines().nth(1).unwrap();
    assert!(
        total_line
            .starts_with("total,,,6,2,0.333333,4,3,0.750000,4,2,1,1,0.500000,5,604800,1036800"),
        "{csv}"
    );

    // The same numbers on /metrics (as of now, one hour after as_of: R5's discharge
    // and its reach are then inside the 7-day window too).
    let pool = sqlx_pool(&app).await;
    careloop_measures::metrics::refresh(&pool).await.unwrap();
    let text = app.metrics_text().await;
    let expect = [
        (
            "careloop_continuity_discharges{facility=\"st-marys\",window=\"7d\"}",
            6.0,
        ),
        (
            "careloop_continuity_followed_up{facility=\"st-marys\",window=\"7d\"}",
            3.0,
        ),
        (
            "careloop_continuity_discharges{facility=\"st-marys\",window=\"30d\"}",
            3.0,
        ),
        (
            "careloop_continuity_followed_up{facility=\"st-marys\",window=\"30d\"}",
            2.0,
        ),
        (
            "careloop_continuity_discharges{facility=\"mercy\",window=\"30d\"}",
            1.0,
        ),
        (
            "careloop_readmission_discharges{facility=\"st-marys\"}",
            3.0,
        ),
        (
            "careloop_readmissions_30d{engaged=\"true\",facility=\"st-marys\"}",
            1.0,
        ),
        (
            "careloop_readmissions_30d{engaged=\"false\",facility=\"mercy\"}",
            1.0,
        ),
        ("careloop_first_contact_seconds_count", 5.0),
        ("careloop_first_contact_seconds_bucket{le=\"86400\"}", 2.0),
        ("careloop_first_contact_seconds_bucket{le=\"604800\"}", 3.0),
        ("careloop_first_contact_seconds_bucket{le=\"1209600\"}", 5.0),
        (
            "careloop_referrals_received_total{channel=\"api\",facility=\"st-marys\"}",
            7.0,
        ),
        (
            "careloop_referrals_received_total{channel=\"api\",facility=\"mercy\"}",
            1.0,
        ),
    ];
    for (series, value) in expect {
        assert_eq!(metric(&text, series), Some(value), "{series}\n{text}");
    }
    assert!(
        !text.contains("status=\"entered-in-error\""),
        "excluded everywhere"
    );

    // No PHI anywhere it must not be: not in metrics, logs or integration events.
    let phi = [
        "Rivera",
        "402-555-0134",
        "1990-04-12",
        "MRN-A",
        "MRN-G",
        "68102",
    ];
    let js = async_nats::jetstream::new(
        async_nats::connect(&app.env.settings.nats_url)
            .await
            .unwrap(),
    );
    let stream = js
        .get_stream(app.env.settings.namespace.stream_name())
        .await
        .unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer
        .fetch()
        .max_messages(10_000)
        .expires(std::time::Duration::from_secs(2))
        .messages()
        .await
        .unwrap();
    let mut events = 0;
    while let Some(Ok(m)) = messages.next().await {
        events += 1;
        let bytes = String::from_utf8_lossy(&m.payload).into_owned();
        let headers = format!("{:?}", m.headers);
        for p in phi {
            assert!(
                !bytes.contains(p) && !headers.contains(p),
                "{p} in an integration event"
            );
        }
    }
    assert!(events > 20, "scanned {events} integration events");
    let log = logs.contents();
    assert!(log.len() > 1000, "the logs were captured");
    for p in phi {
        assert!(!text.contains(p), "{p} on /metrics");
        assert!(!log.contains(p), "{p} in the logs");
    }
    app.shutdown().await;
}

/// Program impact and engagement, a known answer built through the public API:
/// encounters posted as history (`POST /v1/encounters`), an admission
/// (`POST /v1/admissions`), an outpatient visit over MLLP (A04, PV1-2 `O`), contacts
/// on and after the discharge day. Edges: an admission exactly 180 days before, a
/// visit exactly 180 days after, the index stay left out, a stay spanning the index
/// date split there, a stay with no known end, a contact on the discharge day.
#[tokio::test]
async fn engagement_fuh_and_program_impact_equal_hand_computed_numbers() {
    let app = spawn_app().await;
    let c = Cohort {
        app: &app,
        coordinator: app.token("coordinator", None, None),
    };
    let (s, _) = app
        .post(
            "/v1/peers",
            &c.coordinator,
            &json!({"name": "Ana", "languages": ["en"], "gender": "female", "max_caseload": 20}),
        )
        .await;
    assert_eq!(s, 201);
    eventually("the roster", WAIT, || async {
        let (_, l) = app.get("/v1/peers", &c.coordinator).await;
        (l["items"].as_array()?.len() == 1).then_some(())
    })
    .await;
    let day = Duration::days(1);
    // The index discharge, 200 days ago at 10:00 UTC: its 180 days after have passed.
    let d = (Utc::now() - day * 200)
        .date_naive()
        .and_hms_opt(10, 0, 0)
        .unwrap()
        .and_utc();
    let a = c.refer("MRN-IA", "st-marys", d, "en").await;
    let b = c.refer("MRN-IB", "st-marys", d, "en").await;
    let cc = c.refer("MRN-IC", "st-marys", d, "en").await;
    for id in [&a, &b, &cc] {
        c.wait_for_plan(id).await;
    }
    let ok = |(s, r): (u16, Value)| assert_eq!(s, 201, "{r}");
    // A: reached on day 2 (engaged; FUH 7).
    ok(c.contact(&a, d + day * 2, "reached").await);
    // B: first reached on day 45 (not engaged; 60-day engagement).
    ok(c.contact(&b, d + day * 45, "reached").await);
    // C: reached an hour after discharge, the same day (engaged, 7-day follow-up, but
    // not FUH), then on day 8 (FUH 30, not FUH 7).
    ok(c.contact(&cc, d + Duration::hours(1), "reached").await);
    ok(c.contact(&cc, d + day * 8, "reached").await);

    let hospital = app.token("hospital", Some("st-marys"), None);
    let encounter = |mrn: &str, class: &str, start: DateTime<Utc>, end: Option<DateTime<Utc>>| {
        let mut body = json!({"facility": "st-marys", "class": class, "started_at": at(start),
            "person": {"identifiers": [{"system": "urn:oid:2.16.840.1.113883.3.999.1", "value": mrn}]}});
        if let Some(end) = end {
            body["ended_at"] = json!(at(end));
        }
        body
    };
    let post = |body: Value| {
        let (app, hospital) = (&app, &hospital);
        async move {
            let (s, r) = app.post("/v1/encounters", hospital, &body).await;
            assert_eq!(s, 201, "{body}: {r}");
        }
    };
    // A: a stay admitted exactly 180 days before (4 days), the index stay itself (left
    // out), and visits on day 10 and exactly on day 180 (both after).
    post(encounter(
        "MRN-IA",
        "inpatient",
        d - day * 180,
        Some(d - day * 176),
    ))
    .await;
    post(encounter("MRN-IA", "inpatient", d - day * 10, Some(d))).await;
    post(encounter("MRN-IA", "outpatient", d + day * 10, None)).await;
    post(encounter("MRN-IA", "outpatient", d + day * 180, None)).await;
    // ... and a visit on day 30, sent as an A04 for an outpatient.
    let visit = crate::edges::adt(
        "A04",
        "IMPACT-A04",
        "MRN-IA",
        &crate::edges::hl7_time(d + day * 30),
        "",
        false,
    )
    .replace("PV1|1|I|", "PV1|1|O|");
    let ack = crate::edges::send_mllp(crate::edges::mllp_addr(&app).await, &visit).await;
    assert_eq!(crate::edges::msa(&ack)[1], "AA", "{ack}");
    // B: a stay spanning the index date (2 days before, 3 after), a readmission on
    // day 20 with no known end, and a 10-day stay from day 100.
    post(encounter(
        "MRN-IB",
        "inpatient",
        d - day * 2,
        Some(d + day * 3),
    ))
    .await;
    c.admit("MRN-IB", "st-marys", d + day * 20).await;
    post(encounter(
        "MRN-IB",
        "inpatient",
        d + day * 100,
        Some(d + day * 110),
    ))
    .await;
    // Refused by field, nothing written: a visit with an end, an end before the start.
    for (body, field) in [
        (
            encounter("MRN-IA", "outpatient", d, Some(d + day)),
            "ended_at",
        ),
        (
            encounter("MRN-IA", "inpatient", d, Some(d - day)),
            "ended_at",
        ),
        (encounter("MRN-IA", "surgery", d, None), "class"),
    ] {
        let (s, p) = app.post("/v1/encounters", &hospital, &body).await;
        assert_eq!((s, p["field"].as_str()), (422, Some(field)), "{p}");
    }
    // A person careloop was never asked to help: nothing stored.
    let (s, _) = app
        .post(
            "/v1/encounters",
            &hospital,
            &encounter("MRN-NOBODY", "outpatient", d, None),
        )
        .await;
    assert_eq!(s, 202);

    let pair = |m: &Value, k: &str| json!([m[k]["discharges"], m[k]["followed_up"]]);
    let report = eventually("the engagement measures", WAIT, || async {
        let (_, r) = app.get("/v1/reports/continuity", &c.coordinator).await;
        let t = &r["total"];
        let got = json!([
            pair(t, "followup_7d"),
            pair(t, "followup_30d"),
            pair(t, "engagement_60d"),
            pair(t, "engagement_90d"),
            pair(t, "fuh_7d"),
            pair(t, "fuh_30d")
        ]);
        (got == json!([[3, 2], [3, 2], [3, 3], [3, 3], [3, 1], [3, 2]])).then_some(r)
    })
    .await;
    assert_eq!(report["total"]["fuh_7d"]["ratio"], json!(1.0 / 3.0));

    let py = |n: f64| n * 180.0 / 365.25;
    let rate = |g: &Value, m: &str, p: &str| {
        let r = &g[m][p];
        (
            r["count"].as_f64().unwrap_or(-1.0),
            r["per_person_year"].as_f64(),
        )
    };
    let impact = eventually("the impact report", WAIT, || async {
        let (_, i) = app.get("/v1/reports/impact", &c.coordinator).await;
        let e = &i["engaged"];
        let n = &i["not_engaged"];
        let settled = e["people"] == 2
            && n["people"] == 1
            && rate(e, "outpatient_visits", "after").0 == 3.0
            && rate(n, "inpatient_admissions", "after").0 == 2.0
            && rate(n, "inpatient_days", "after").0 == 13.0;
        settled.then_some(i)
    })
    .await;
    let (e, n) = (&impact["engaged"], &impact["not_engaged"]);
    // (count, per person-year) against the hand-computed rate, to rounding.
    let assert_rate = |got: (f64, Option<f64>), count: f64, per: f64| {
        assert_eq!(got.0, count, "{got:?}");
        assert!((got.1.unwrap() - per).abs() < 1e-9, "{got:?} vs {per}");
    };
    assert_eq!(impact["pending"], 0);
    assert_eq!(impact["stays_without_end"], 1);
    assert_rate(
        rate(e, "inpatient_admissions", "before"),
        1.0,
        1.0 / py(2.0),
    );
    assert_rate(rate(e, "inpatient_admissions", "after"), 0.0, 0.0);
    assert_rate(rate(e, "inpatient_days", "before"), 4.0, 4.0 / py(2.0));
    assert_rate(rate(e, "outpatient_visits", "before"), 0.0, 0.0);
    assert_rate(rate(e, "outpatient_visits", "after"), 3.0, 3.0 / py(2.0));
    assert_rate(
        rate(n, "inpatient_admissions", "before"),
        1.0,
        1.0 / py(1.0),
    );
    assert_rate(rate(n, "inpatient_days", "before"), 2.0, 2.0 / py(1.0));
    assert_rate(rate(n, "inpatient_days", "after"), 13.0, 13.0 / py(1.0));
    // Exact Poisson interval of 3 visits (0.6187, 8.7673) over 2 people's half-years.
    let ci = e["outpatient_visits"]["after"]["ci95"].as_array().unwrap();
    let lo = ci[0].as_f64().unwrap() * py(2.0);
    let hi = ci[1].as_f64().unwrap() * py(2.0);
    assert!(
        (lo - 0.6187).abs() < 1e-3 && (hi - 8.7673).abs() < 1e-3,
        "{ci:?}"
    );
    assert!(
        n["inpatient_days"]["after"]["ci95"].is_null(),
        "no interval from one person"
    );
    // As of 20 days earlier nobody's 180 days had passed.
    let (_, early) = app
        .get(
            &format!(
                "/v1/reports/impact?as_of={}",
                at(d + day * 179).replace('+', "%2B")
            ),
            &c.coordinator,
        )
        .await;
    assert_eq!(
        (early["pending"].as_u64(), early["all"]["people"].as_u64()),
        (Some(3), Some(0))
    );
    // CSV and metrics carry the same, and no PHI.
    let csv = app.get_csv("/v1/reports/impact", &c.coordinator).await;
    assert!(
        csv.lines()
            .any(|l| l.starts_with("not_engaged,1,0.493,inpatient_days,after,13,")),
        "{csv}"
    );
    let pool = sqlx_pool(&app).await;
    careloop_measures::metrics::refresh(&pool).await.unwrap();
    let text = app.metrics_text().await;
    let series = "careloop_impact_rate_per_person_year{group=\"not_engaged\",measure=\"inpatient_days\",period=\"after\"}";
    let v = metric(&text, series).unwrap_or_else(|| panic!("{series}\n{text}"));
    assert!((v - 13.0 / py(1.0)).abs() < 1e-9);
    assert_eq!(
        metric(
            &text,
            "careloop_continuity_fuh_followed_up{facility=\"st-marys\",window=\"7d\"}"
        ),
        Some(1.0)
    );
    assert_eq!(
        metric(
            &text,
            "careloop_continuity_followed_up{facility=\"st-marys\",window=\"60d\"}"
        ),
        Some(3.0)
    );
    assert!(!text.contains("MRN-I") && !csv.contains("MRN-I"));
    // Guarantee 5: the measures rebuild from follow-up's own events, the same.
    let (_, before) = app.get("/v1/reports/impact", &c.coordinator).await;
    careloop_app::cli::replay(&app.env.settings, "measures")
        .await
        .unwrap();
    let (_, after) = app.get("/v1/reports/impact", &c.coordinator).await;
    let strip = |mut v: Value| {
        v["as_of"] = Value::Null;
        v
    };
    assert_eq!(strip(after), strip(before));
    app.shutdown().await;
}
