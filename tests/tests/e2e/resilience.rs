//! Backbone resilience under the faults a long fault-injection run found (issue 13),
//! in a bounded form: a NATS that lost its store, a read model rebuilt while people
//! read it, a Postgres that hangs, a client retrying after a crash, services started
//! before their dependencies, and a NATS that hangs. The full run is
//! `deploy/cluster/run.sh` (docs/operations.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use careloop_backbone::{Backbone, Service};
use careloop_test_support::{PrivateNats, StallProxy, TestEnv, eventually};
use serde_json::{Value, json};

use crate::edges::{adt, hl7_time, mllp_addr, msa, send_mllp};
use crate::*;

/// How long a fault's recovery may take here (stream checks run every 10 s).
const RECOVERY: Duration = Duration::from_secs(60);

async fn register_peers(app: &TestApp, n: usize) -> Vec<String> {
    let coordinator = app.token("coordinator", None, None);
    let mut ids = Vec::new();
    for i in 0..n {
        let (s, peer) = app
            .post(
                "/v1/peers",
                &coordinator,
                &json!({"name": format!("Peer {i:02}"), "languages": ["en"],
                        "gender": "female", "max_caseload": 5}),
            )
            .await;
        assert_eq!(s, 201, "{peer}");
        ids.push(peer["peer_id"].as_str().unwrap().to_string());
    }
    eventually("the roster", WAIT, || async {
        let (_, list) = app.get("/v1/peers", &coordinator).await;
        (list["items"].as_array()?.len() == n).then_some(())
    })
    .await;
    ids
}

async fn submit(app: &TestApp, mrn: &str) -> String {
    let hospital = app.token("hospital", Some("st-marys"), None);
    let (s, created) = app
        .post(
            "/v1/referrals",
            &hospital,
            &referral_body(mrn, &at(recent_discharge())),
        )
        .await;
    assert_eq!(s, 201, "{created}");
    created["referral_id"].as_str().unwrap().to_string()
}

/// Waits until the referral is accepted; returns its peer.
async fn accepted(app: &TestApp, id: &str, within: Duration) -> String {
    let coordinator = app.token("coordinator", None, None);
    eventually(&format!("referral {id} accepted"), within, || async {
        let (_, r) = app.get(&format!("/v1/referrals/{id}"), &coordinator).await;
        (r["status"] == "accepted").then(|| r["assigned_peer_id"].as_str().unwrap().to_string())
    })
    .await
}

/// How many places the roster's peers hold between them.
fn places_held(roster: &Value) -> i64 {
    roster["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["active_count"].as_i64().unwrap())
        .sum()
}

/// The roster once the places it shows reach `places`. The roster is a background read
/// model: it shows an acceptance up to `outbox::BACKGROUND_PACE` after the referral
/// queue does.
async fn roster_holding(app: &TestApp, places: i64) -> Value {
    let coordinator = app.token("coordinator", None, None);
    eventually(
        &format!("the roster holding {places} places"),
        WAIT,
        || async {
            let (_, roster) = app.get("/v1/peers", &coordinator).await;
            (places_held(&roster) == places).then_some(roster)
        },
    )
    .await
}

async fn metric(base: &str, series: &str) -> f64 {
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Item 1: NATS restarted with an empty store. The stream is created again and every
/// event is published again from Postgres, so a referral submitted after the loss is
/// accepted without restarting anything; consumers skip what they already applied, so
/// nothing is applied twice; the reset is counted for the alert.
#[tokio::test]
async fn a_stream_lost_with_its_store_is_rebuilt_from_postgres() {
    let mut nats = PrivateNats::start().await;
    let mut env = TestEnv::new();
    env.settings.nats_url = nats.url();
    let app = spawn_app_with(env).await;
    register_peers(&app, 2).await;
    let first = submit(&app, "MRN-LOSS-1").await;
    let first_peer = accepted(&app, &first, WAIT).await;
    let pool = sqlx_pool(&app).await;
    let events_of = |id: String| {
        let pool = pool.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM referral.events WHERE aggregate_id = $1",
            )
            .bind(id)
            .fetch_one(&pool)
            .await
            .unwrap()
        }
    };
    let before = events_of(first.clone()).await;

    nats.stop().await;
    nats.wipe();
    nats.restart().await;
    let second = submit(&app, "MRN-LOSS-2").await;
    accepted(&app, &second, RECOVERY).await;
    // Every publishing service saw the reset and sent its events again.
    for service in ["intake", "referral", "peer-assignment", "follow-up"] {
        let series = format!("careloop_stream_resets_total{{service=\"{service}\"}}");
        eventually(&format!("{service} counted the reset"), RECOVERY, || {
            let series = series.clone();
            let base = app.base.clone();
            async move { (metric(&base, &series).await >= 1.0).then_some(()) }
        })
        .await;
    }
    // Published after the re-sent events, so consumed after them.
    let third = submit(&app, "MRN-LOSS-3").await;
    accepted(&app, &third, RECOVERY).await;

    assert_eq!(
        events_of(first.clone()).await,
        before,
        "re-sent events are not applied twice"
    );
    let coordinator = app.token("coordinator", None, None);
    let (_, r) = app
        .get(&format!("/v1/referrals/{first}"), &coordinator)
        .await;
    assert_eq!(r["status"], "accepted");
    assert_eq!(r["assigned_peer_id"], first_peer.as_str());
    let roster = roster_holding(&app, 3).await;
    let held = places_held(&roster);
    assert_eq!(held, 3, "three referrals hold three places: {roster}");
    app.shutdown().await;
}

/// Item 2: `careloop replay` rebuilds aside and swaps in one transaction. People
/// reading throughout (and matching, which reads the roster) never see a referral
/// vanish or a partial roster, and referrals submitted during the rebuild are in the
/// model that is swapped in.
#[tokio::test]
async fn a_replay_under_load_never_blanks_the_read_model() {
    let app = Arc::new(spawn_app().await);
    let peers = register_peers(&app, 12).await;
    let mut ids = Vec::new();
    for i in 0..12 {
        ids.push(submit(&app, &format!("MRN-REPLAY-{i}")).await);
    }
    for id in &ids {
        accepted(&app, id, WAIT).await;
    }
    let pool = sqlx_pool(&app).await;
    let done = Arc::new(AtomicBool::new(false));
    let polls = Arc::new(AtomicUsize::new(0));

    // A person reading, over HTTP.
    let reader = {
        let (app, ids, done, polls) = (app.clone(), ids.clone(), done.clone(), polls.clone());
        tokio::spawn(async move {
            let coordinator = app.token("coordinator", None, None);
            let mut seen = Vec::new();
            while !done.load(Ordering::Acquire) {
                for id in &ids {
                    let (s, _) = app.get(&format!("/v1/referrals/{id}"), &coordinator).await;
                    if s != 200 {
                        seen.push(format!("referral {id}: {s}"));
                    }
                }
                let (_, list) = app.get("/v1/peers", &coordinator).await;
                let n = list["items"].as_array().map_or(0, Vec::len);
                if n != 12 {
                    seen.push(format!("roster of {n}"));
                }
                polls.fetch_add(1, Ordering::Relaxed);
            }
            seen
        })
    };
    // What matching reads, as often as Postgres answers.
    let counter = {
        let (pool, done) = (pool.clone(), done.clone());
        tokio::spawn(async move {
            let mut seen = Vec::new();
            while !done.load(Ordering::Acquire) {
                let (referrals, roster): (i64, i64) = sqlx::query_as(
                    "SELECT (SELECT count(*) FROM referral.referrals),
                            (SELECT count(*) FROM peer_assignment.peers)",
                )
                .fetch_one(&pool)
                .await
                .unwrap();
                if referrals < 12 || roster != 12 {
                    seen.push(format!("{referrals} referrals, {roster} peers"));
                }
            }
            seen
        })
    };
    // Referrals keep arriving during the rebuild.
    let writer = {
        let app = app.clone();
        tokio::spawn(async move {
            let mut ids = Vec::new();
            for i in 0..8 {
                ids.push(submit(&app, &format!("MRN-DURING-{i}")).await);
            }
            ids
        })
    };
    for name in ["referrals", "roster", "referrals", "roster"] {
        careloop_app::cli::replay(&app.env.settings, name)
            .await
            .unwrap();
    }
    let during = writer.await.unwrap();
    done.store(true, Ordering::Release);
    let read = reader.await.unwrap();
    let counted = counter.await.unwrap();
    assert!(polls.load(Ordering::Relaxed) > 0, "the reader read");
    assert!(read.is_empty(), "readers saw a blank model: {read:?}");
    assert!(
        counted.is_empty(),
        "matching saw a partial model: {counted:?}"
    );
    for id in &during {
        accepted(&app, id, WAIT).await;
    }
    let roster = roster_holding(&app, 20).await;
    let mut after: Vec<String> = roster["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["peer_id"].as_str().unwrap().to_string())
        .collect();
    after.sort();
    let mut before = peers;
    before.sort();
    assert_eq!(after, before, "the rebuilt roster is the roster");
    let held = places_held(&roster);
    assert_eq!(held, 20, "every accepted referral holds one place");
    Arc::into_inner(app).unwrap().shutdown().await;
}

/// Item 3: a Postgres that hangs (accepts bytes, answers nothing). Every answer is a
/// prompt 503 with Retry-After, readiness says so, HL7 gets AE (resend later), and
/// everything works again when Postgres does.
#[tokio::test]
async fn a_hung_postgres_gets_prompt_503s_with_retry_after() {
    let mut env = TestEnv::new();
    let url = env.settings.database_url.clone();
    let (scheme_user, rest) = url.split_once('@').unwrap();
    let (host, database) = rest.split_once('/').unwrap();
    let upstream: std::net::SocketAddr =
        tokio::net::lookup_host(host).await.unwrap().next().unwrap();
    let proxy = StallProxy::start(upstream).await;
    env.settings.database_url = format!("{scheme_user}@{}/{database}", proxy.addr);
    env.settings.request_timeout = Duration::from_secs(3);
    env.settings.database.acquire_timeout = Duration::from_millis(1000);
    let app = spawn_app_with(env).await;
    register_peers(&app, 1).await;
    let id = submit(&app, "MRN-STALL-1").await;
    accepted(&app, &id, WAIT).await;
    let mllp = mllp_addr(&app).await;
    let coordinator = app.token("coordinator", None, None);
    let hospital = app.token("hospital", Some("st-marys"), None);
    // A hang fails the test instead of passing it late.
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(12))
        .build()
        .unwrap();

    proxy.stall();
    let read = http
        .get(format!("{}/v1/referrals/{id}", app.base))
        .bearer_auth(&coordinator)
        .send();
    let write = http
        .post(format!("{}/v1/referrals", app.base))
        .bearer_auth(&hospital)
        .json(&referral_body("MRN-STALL-2", &at(recent_discharge())))
        .send();
    let roster = http
        .post(format!("{}/v1/peers", app.base))
        .bearer_auth(&coordinator)
        .json(&json!({"name": "Kim", "languages": ["en"], "max_caseload": 2}))
        .send();
    let ready = http.get(format!("{}/readyz", app.base)).send();
    let discharged = chrono::Utc::now() - chrono::Duration::hours(1);
    let a03 = adt(
        "A03",
        "CTRL-STALL",
        "MRN-STALL-3",
        &hl7_time(discharged - chrono::Duration::days(3)),
        &hl7_time(discharged),
        true,
    );
    let hl7 = tokio::time::timeout(Duration::from_secs(12), send_mllp(mllp, &a03));
    let (read, write, roster, ready, hl7) = tokio::join!(read, write, roster, ready, hl7);
    for (what, res) in [("read", read), ("referral", write), ("peer", roster)] {
        let res = res.unwrap_or_else(|e| panic!("{what}: no prompt answer: {e}"));
        assert_eq!(res.status(), 503, "{what}");
        assert!(
            res.headers().get("retry-after").is_some(),
            "{what} says when to retry"
        );
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["status"], 503, "{what} is problem+json: {body}");
    }
    assert_eq!(ready.unwrap().status(), 503, "not ready for commands");
    let ack = hl7.expect("HL7 answered promptly");
    assert_eq!(msa(&ack)[1], "AE", "a resend can succeed: {ack}");

    proxy.resume();
    eventually("ready again", RECOVERY, || async {
        let s = http
            .get(format!("{}/readyz", app.base))
            .send()
            .await
            .ok()?
            .status();
        (s == 200).then_some(())
    })
    .await;
    let (s, _) = app.get(&format!("/v1/referrals/{id}"), &coordinator).await;
    assert_eq!(s, 200);
    let after = submit(&app, "MRN-STALL-4").await;
    accepted(&app, &after, WAIT).await;
    app.shutdown().await;
}

async fn post_with_key(
    app: &TestApp,
    path: &str,
    token: &str,
    key: &str,
    body: &Value,
) -> (u16, Option<String>, Value) {
    let res = app
        .http
        .post(format!("{}{path}", app.base))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = res.status().as_u16();
    let retry = res
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, retry, res.json().await.unwrap_or(Value::Null))
}

/// Makes the service "crash" right after its command committed: the answer is never
/// stored under the Idempotency-Key, as when a process dies between the two.
async fn crash_after_commit(pool: &sqlx::PgPool, schema: &str) {
    sqlx::query(&format!(
        "CREATE FUNCTION {schema}.simulated_crash() RETURNS trigger LANGUAGE plpgsql
         AS $$ BEGIN RAISE EXCEPTION 'simulated crash after the commit'; END $$"
    ))
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(&format!(
        "CREATE TRIGGER simulated_crash BEFORE UPDATE ON {schema}.idempotency_keys
         FOR EACH ROW WHEN (NEW.status IS NOT NULL) EXECUTE FUNCTION {schema}.simulated_crash()"
    ))
    .execute(pool)
    .await
    .unwrap();
}

/// The process is back, and the crashed request's lease has run out.
async fn recover(pool: &sqlx::PgPool, schema: &str) {
    sqlx::query(&format!(
        "DROP TRIGGER simulated_crash ON {schema}.idempotency_keys"
    ))
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(&format!(
        "UPDATE {schema}.idempotency_keys SET created_at = now() - interval '1 hour'"
    ))
    .execute(pool)
    .await
    .unwrap();
}

/// Item 7: a client retrying after a crash mid-request. Within the lease it is told
/// to retry (409, Retry-After, `retryable`), not that the request failed; after it,
/// the retry gets the original 201 and the original referral, even with a renewed
/// token; a peer registered the same way is registered once.
#[tokio::test]
async fn a_retry_after_a_crash_gets_the_original_answer() {
    let app = spawn_app().await;
    register_peers(&app, 1).await;
    let pool = sqlx_pool(&app).await;
    crash_after_commit(&pool, "intake").await;
    crash_after_commit(&pool, "peer_assignment").await;

    let body = referral_body("MRN-RETRY", &at(recent_discharge()));
    let hospital = app.token("hospital", Some("st-marys"), None);
    let (s, _, _) = post_with_key(&app, "/v1/referrals", &hospital, "k-1", &body).await;
    assert!(s >= 500, "the crash cut the answer off: {s}");
    let (s, retry, problem) = post_with_key(&app, "/v1/referrals", &hospital, "k-1", &body).await;
    assert_eq!(s, 409, "{problem}");
    assert!(retry.is_some(), "says when to retry");
    assert_eq!(problem["retryable"], true, "{problem}");

    let coordinator = app.token("coordinator", None, None);
    let peer = json!({"name": "Robin", "languages": ["en"], "max_caseload": 2});
    let (s, _, _) = post_with_key(&app, "/v1/peers", &coordinator, "p-1", &peer).await;
    assert!(s >= 500, "{s}");

    recover(&pool, "intake").await;
    recover(&pool, "peer_assignment").await;
    // Tokens expire and are renewed between retries.
    let renewed = app.token("hospital", Some("st-marys"), None);
    let (s, _, first) = post_with_key(&app, "/v1/referrals", &renewed, "k-1", &body).await;
    assert_eq!(s, 201, "the original answer: {first}");
    let (s, _, again) = post_with_key(&app, "/v1/referrals", &renewed, "k-1", &body).await;
    assert_eq!(s, 201, "{again}");
    assert_eq!(again["referral_id"], first["referral_id"]);
    let id = first["referral_id"].as_str().unwrap();
    accepted(&app, id, WAIT).await;
    let (_, list) = app.get("/v1/referrals", &coordinator).await;
    assert_eq!(
        list["items"].as_array().unwrap().len(),
        1,
        "one referral: {list}"
    );

    let renewed = app.token("coordinator", None, None);
    let (s, _, robin) = post_with_key(&app, "/v1/peers", &renewed, "p-1", &peer).await;
    assert_eq!(s, 201, "{robin}");
    eventually("the roster", WAIT, || async {
        let (_, list) = app.get("/v1/peers", &renewed).await;
        (list["items"].as_array()?.len() == 2).then_some(())
    })
    .await;
    let (_, list) = app.get("/v1/peers", &renewed).await;
    let robins = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["name"] == "Robin")
        .count();
    assert_eq!(robins, 1, "registered once: {list}");
    app.shutdown().await;
}

struct Started {
    base: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Items 5 and 6: the four service binaries started together against a database that
/// does not exist yet and a NATS that is down. None crashes (the concurrent creates
/// of one database are handled); each is ready for commands once Postgres is, and
/// says it cannot publish; intake accepts referrals; when NATS comes, they flow.
#[tokio::test]
async fn services_start_before_nats_and_their_database() {
    let mut nats = PrivateNats::start().await;
    nats.stop().await;
    let mut env = TestEnv::new();
    env.settings.nats_url = nats.url();
    let mut started = Vec::new();
    let mut intake = None;
    for i in 0..4 {
        // One backbone each, as separate processes have.
        let backbone = Backbone::start(&env.settings).await.unwrap();
        let service: Arc<dyn Service> = careloop_app::routes::services(&backbone).remove(i);
        if i == 0 {
            intake = Some(careloop_intake::IntakeService::new(&backbone));
        }
        let host = careloop_app::routes::host_of(&backbone, service);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(host.serve(listener, async move {
            let _ = stopped.await;
        }));
        started.push(Started { base, stop, task });
    }
    let http = reqwest::Client::new();
    for s in &started {
        eventually(
            &format!("{} ready for commands", s.base),
            RECOVERY,
            || async {
                let r = http.get(format!("{}/readyz", s.base)).send().await.ok()?;
                (r.status() == 200).then_some(())
            },
        )
        .await;
        let r = http
            .get(format!("{}/readyz/publishing", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 503, "cannot publish without NATS");
    }
    intake.unwrap().identity().seed_demo(&[]).await.unwrap();
    demo_facilities_registered(&env.settings.database_url).await;
    let auth = careloop_web_auth(&env.settings.jwt_secret);
    let token = |role: &str, facility: Option<&str>| {
        auth.issue(
            role.parse().unwrap(),
            facility.map(String::from),
            None,
            chrono_hours(1),
        )
    };
    let res = http
        .post(format!("{}/v1/referrals", started[0].base))
        .bearer_auth(token("hospital", Some("st-marys")))
        .json(&referral_body("MRN-START", &at(recent_discharge())))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        201,
        "intake takes referrals with Postgres alone"
    );
    let id = res.json::<Value>().await.unwrap()["referral_id"]
        .as_str()
        .unwrap()
        .to_string();

    nats.restart().await;
    let coordinator = token("coordinator", None);
    eventually(
        "the referral reaches the referral service",
        RECOVERY,
        || async {
            let r = http
                .get(format!("{}/v1/referrals/{id}", started[1].base))
                .bearer_auth(&coordinator)
                .send()
                .await
                .ok()?;
            (r.status() == 200).then_some(())
        },
    )
    .await;
    for s in &started {
        let r = http
            .get(format!("{}/readyz/publishing", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{} publishes", s.base);
    }
    for s in started {
        let _ = s.stop.send(());
        s.task.await.unwrap().unwrap();
    }
}

/// Item 6: a NATS that hangs (SIGSTOP) is seen: not ready to publish within seconds,
/// while commands are still ready and referrals still accepted; they flow when it
/// comes back.
#[tokio::test]
async fn a_hung_nats_is_not_ready_to_publish_and_referrals_are_still_taken() {
    let nats = PrivateNats::start().await;
    let mut env = TestEnv::new();
    env.settings.nats_url = nats.url();
    let app = spawn_app_with(env).await;
    register_peers(&app, 1).await;
    let http = reqwest::Client::new();
    let status = |path: &'static str| {
        let http = http.clone();
        let base = app.base.clone();
        async move {
            http.get(format!("{base}{path}"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(status("/readyz/publishing").await, 200);

    nats.freeze();
    eventually("publishing not ready", WAIT, || async {
        (status("/readyz/publishing").await == 503).then_some(())
    })
    .await;
    assert_eq!(status("/readyz").await, 200, "commands are still served");
    let id = submit(&app, "MRN-FROZEN").await;

    nats.thaw();
    accepted(&app, &id, RECOVERY).await;
    assert_eq!(status("/readyz/publishing").await, 200);
    app.shutdown().await;
}

/// Item 1, by hand: `careloop redrive` publishes a service's events again; consumers
/// skip what they applied, so nothing changes, and the pipeline goes on.
#[tokio::test]
async fn redrive_publishes_again_and_changes_nothing() {
    let app = spawn_app().await;
    register_peers(&app, 1).await;
    let first = submit(&app, "MRN-REDRIVE-1").await;
    accepted(&app, &first, WAIT).await;
    let pool = sqlx_pool(&app).await;
    let history = || async {
        sqlx::query_as::<_, (String, String, i64)>(
            "SELECT aggregate_type, event_type, sequence FROM referral.events ORDER BY position",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
    };
    let before = history().await;
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let refused =
        careloop_app::cli::redrive(&app.env.settings, &args(&["--since", "yesterday"])).await;
    assert!(refused.is_err(), "a --since that is no time is refused");
    let refused =
        careloop_app::cli::redrive(&app.env.settings, &args(&["--service", "nobody"])).await;
    assert!(refused.is_err(), "an unknown service is refused");
    careloop_app::cli::redrive(
        &app.env.settings,
        &args(&["--service", "intake", "--since", "2h"]),
    )
    .await
    .unwrap();
    careloop_app::cli::redrive(&app.env.settings, &args(&[]))
        .await
        .unwrap();
    // Published after the re-sent events, so consumed after them.
    let second = submit(&app, "MRN-REDRIVE-2").await;
    accepted(&app, &second, WAIT).await;
    let after = history().await;
    assert_eq!(
        after[..before.len()],
        before[..],
        "the first referral's history is unchanged"
    );
    assert_eq!(
        after.len(),
        2 * before.len(),
        "the second referral added as much as the first, the re-sent events nothing: {after:?}"
    );
    app.shutdown().await;
}
