//! `careloop bench`: the throughput benchmark (README, "Performance"). It measures, in
//! one run on one machine, the figures whose ratios matter:
//!
//! 1. the raw Postgres floor: `pgbench`, one durable single-row jsonb insert per
//!    transaction, 16 clients, on a database of its own;
//! 2. intake: `POST /v1/referrals` from concurrent HTTP clients, each a new person;
//! 3. the pipeline: how fast those referrals become accepted with a peer (all four
//!    services, read from the referral read model);
//! 4. end to end at idle: one referral at a time, POST → accepted; and the same behind
//!    a backlog of background work: while the deadline check, run with a clock a month
//!    ahead, marks every open referral of the run overdue (one ReferralOverdue each,
//!    through the aggregate and the read model, as a real backlog of due marks is).
//!    With `--rate R`, end to end once more at R referrals a second sustained for
//!    `--sustain S` seconds (sent at that pace whatever the answers, each measured
//!    POST → accepted), with the p99 by minute of sending and each hop's share
//!    (`hops`, and the relay's and consumers' waits from their metrics);
//! 5. replay of every read model, in events/s: over what the run recorded, or with
//!    `--history N` over a history grown to about N events per service (below);
//! 6. the process's resident memory.
//!
//! It starts its own careloop (exactly what `careloop dev` starts) on a fresh database
//! and NATS namespace, both dropped at the end, with a roster that has room for every
//! referral (peers are added before the sustained measure for its referrals), so
//! matching never waitlists.
//!
//! A run of seconds records a few thousand events per service, too few to show what a
//! rebuild of a long history costs. careloop stops after the end-to-end measures (a
//! replay needs only the database); `--history N` then grows each service's event
//! store to about N events by copying what the run recorded under new aggregate ids
//! (`~1`, `~2`, ... appended), so the grown history has the run's mix of events; then
//! every read model is replayed. (Ids inside
//! payloads are copied as they are: fine for what a run records, which has no contacts;
//! a contact's id is a key of its own in the followups read model.)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use careloop_config::Settings;
use serde_json::json;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};

use crate::Application;

/// What `careloop bench` is told.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// How long intake is loaded (`--seconds`, default 20).
    pub seconds: u64,
    /// Concurrent HTTP clients (`--clients`, default 16).
    pub clients: usize,
    /// Peers on the roster (`--peers`, default 80), each with room for 200.
    pub peers: usize,
    /// Referrals sent one at a time for the idle latency (`--idle`, default 30).
    pub idle: usize,
    /// Events per service to replay over (`--history`, default 0: what the run
    /// recorded).
    pub history: u64,
    /// Referrals a second sent at a steady pace for the sustained measure (`--rate`,
    /// default 0: no sustained measure).
    pub rate: u64,
    /// How long the sustained measure lasts (`--sustain`, seconds, default 60).
    pub sustain: u64,
}

impl BenchOptions {
    pub fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut o = BenchOptions {
            seconds: 20,
            clients: 16,
            peers: 80,
            idle: 30,
            history: 0,
            rate: 0,
            sustain: 60,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            let value: u64 = it
                .next()
                .with_context(|| format!("{flag} needs a number"))?
                .parse()
                .with_context(|| format!("{flag} needs a number"))?;
            match flag.as_str() {
                "--seconds" => o.seconds = value.max(1),
                "--clients" => o.clients = value.clamp(1, 256) as usize,
                "--peers" => o.peers = value.clamp(1, 1000) as usize,
                "--idle" => o.idle = value as usize,
                "--history" => o.history = value,
                "--rate" => o.rate = value.min(10_000),
                "--sustain" => o.sustain = value.max(1),
                other => bail!(
                    "unknown option {other:?}; usage: careloop bench [--seconds N] [--clients N] [--peers N] [--idle N] [--history N] [--rate N] [--sustain N]"
                ),
            }
        }
        Ok(o)
    }
}

/// Runs the benchmark against the servers `base` points at and prints the table.
pub async fn run(base: &Settings, o: &BenchOptions) -> anyhow::Result<()> {
    let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    let admin: PgConnectOptions = base
        .database_url
        .parse()
        .context("DATABASE_URL is not a Postgres URL")?;
    let database = format!("careloop_bench_{id}");
    let floor_db = format!("careloop_bench_{id}_floor");
    let db_url = with_database(&base.database_url, &database);
    let namespace = format!("bench{id}");
    let pool_max = std::env::var("CARELOOP_DB_POOL_MAX").unwrap_or_else(|_| "16".into());
    let settings = Settings::from_lookup(|name| match name {
        "DATABASE_URL" => Some(db_url.clone()),
        "CARELOOP_NAMESPACE" => Some(namespace.clone()),
        "CARELOOP_HTTP_ADDR" | "CARELOOP_MLLP_ADDR" => Some("127.0.0.1:0".into()),
        "CARELOOP_AUTH" => Some("dev".into()),
        "CARELOOP_DB_POOL_MAX" => Some(pool_max.clone()),
        other => std::env::var(other).ok(),
    })?;

    println!(
        "careloop bench: {} s of intake load, {} clients, {} peers",
        o.seconds, o.clients, o.peers
    );
    let floor = pg_floor(&admin, &base.database_url, &floor_db, o.clients).await;
    let result = measure(&settings, o).await;
    drop_database(&base.database_url, &database).await;
    if let Ok(client) = async_nats::connect(&settings.nats_url).await {
        let _ = async_nats::jetstream::new(client)
            .delete_stream(settings.namespace.stream_name())
            .await;
    }
    let m = result?;
    let floor = floor.unwrap_or_else(|e| {
        println!("  (pgbench failed: {e:#})");
        0.0
    });
    print_table(floor, &m, o);
    Ok(())
}

struct Measured {
    intake_rate: f64,
    intake_p50: Duration,
    intake_p99: Duration,
    submitted: usize,
    accepted: usize,
    pipeline_rate: f64,
    drained_after: Duration,
    idle_p50: Duration,
    idle_max: Duration,
    /// Overdue marks made behind the backlog, how long they took, and end to end
    /// meanwhile (p50, p99, max, count).
    marks: usize,
    marks_took: Duration,
    behind: Vec<Duration>,
    sustained: Option<Sustained>,
    replay: Vec<(String, usize, f64)>,
    /// Per consumer, over the load and its drain: messages and busy seconds.
    consumers: Vec<(String, u64, f64)>,
    /// Commands' decisions during the load and drain ([`decisions`]).
    started_from: Decisions,
    rss_mb: f64,
}

fn with_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let root = match base.rfind('/') {
        Some(i) if base[..i].ends_with('/') => base.to_string(), // no path: postgres://host
        Some(i) => base[..i].to_string(),
        None => base.to_string(),
    };
    match query {
        Some(q) => format!("{root}/{database}?{q}"),
        None => format!("{root}/{database}"),
    }
}

async fn drop_database(url: &str, database: &str) {
    if let Ok(mut conn) = PgConnection::connect(&with_database(url, "postgres")).await {
        let _ = sqlx::query(&format!(
            "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
        ))
        .execute(&mut conn)
        .await;
    }
}

/// The raw floor: `pgbench` with one single-row jsonb insert per transaction.
async fn pg_floor(
    admin: &PgConnectOptions,
    url: &str,
    database: &str,
    clients: usize,
) -> anyhow::Result<f64> {
    let mut conn = PgConnection::connect(&with_database(url, "postgres")).await?;
    sqlx::query(&format!("CREATE DATABASE \"{database}\""))
        .execute(&mut conn)
        .await?;
    let mut db = PgConnection::connect(&with_database(url, database)).await?;
    sqlx::query("CREATE TABLE floor (id bigserial PRIMARY KEY, body jsonb NOT NULL)")
        .execute(&mut db)
        .await?;
    db.close().await?;
    let script = std::env::temp_dir().join(format!("{database}.sql"));
    std::fs::write(
        &script,
        "INSERT INTO floor (body) VALUES ('{\"referral\": \"x\", \"status\": \"received\", \"n\": 1}');\n",
    )?;
    let out = tokio::process::Command::new("pgbench")
        .args(["-n", "-T", "10", "-j", "2"])
        .args(["-c", &clients.to_string()])
        .args(["-h", admin.get_host()])
        .args(["-p", &admin.get_port().to_string()])
        .args(["-U", admin.get_username()])
        .arg("-f")
        .arg(&script)
        .arg(database)
        .output()
        .await
        .context("running pgbench (Debian: postgresql-client)")?;
    let _ = std::fs::remove_file(&script);
    let _ = sqlx::query(&format!(
        "DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)"
    ))
    .execute(&mut conn)
    .await;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| {
            let rest = l.strip_prefix("tps = ")?;
            rest.split_whitespace().next()?.parse().ok()
        })
        .with_context(|| format!("no tps in pgbench's output: {text}"))
}

fn referral(i: usize, run: &str) -> serde_json::Value {
    let discharged = chrono::Utc::now() - chrono::Duration::hours(2);
    json!({
        "facility": "st-marys",
        "person": {
            "identifiers": [{"system": "urn:oid:2.16.840.1.113883.3.999.1",
                             "value": format!("BENCH-{run}-{i}")}],
            "name": {"given": "Alex", "family": "Rivera"},
            "birth_date": "1990-04-12",
            "language": "en",
            "postcode": "68102",
            "preferences": {"contact_modes": ["phone"]}
        },
        "discharge": {"discharged_at": discharged.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                      "unit": "inpatient-psychiatry", "risk_level": "moderate"},
        "consent": {"granted_at": discharged.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                    "scope": "peer-support-referral", "recorded_by": "discharge planner"},
        "needs": ["emotional"]
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

async fn accepted_count(pool: &sqlx::PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM referral.referrals WHERE status = 'accepted'")
        .fetch_one(pool)
        .await
        .unwrap_or(0)
}

async fn measure(settings: &Settings, o: &BenchOptions) -> anyhow::Result<Measured> {
    let app = Application::build(settings).await?;
    app.intake().identity().seed_demo(&[]).await?;
    let projections = app.projections();
    let pool = app.backbone().pool.clone();
    let check = careloop_referral::ReferralService::new(app.backbone()).overdue_check();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.serve(listener, async move {
        let _ = stopped.await;
    }));
    let auth = careloop_web::Authenticator::dev(&settings.jwt_secret);
    let coordinator = auth.issue(
        "coordinator".parse().map_err(anyhow::Error::msg)?,
        None,
        None,
        chrono::Duration::hours(4),
    );
    let http = reqwest::Client::new();
    let hospital = Hospital {
        http: http.clone(),
        url: format!("{base}/v1/referrals"),
        token: auth.issue(
            "hospital".parse().map_err(anyhow::Error::msg)?,
            Some("st-marys".into()),
            None,
            chrono::Duration::hours(4),
        ),
    };
    wait_for(Duration::from_secs(60), "the demo facilities", || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM intake.facilities")
            .fetch_one(&pool)
            .await
            .is_ok_and(|n| n >= 2)
    })
    .await?;
    add_peers(&http, &base, &coordinator, &pool, 0, o.peers).await?;

    // Intake under load; the pipeline runs behind it.
    let before = consumer_busy(&[]);
    let started_before = decisions(&[]);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(o.seconds);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut clients = Vec::new();
    for _ in 0..o.clients {
        let (hospital, next) = (hospital.clone(), next.clone());
        clients.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            while Instant::now() < deadline {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let t = Instant::now();
                match hospital.refer(i, "load").await {
                    Ok(_) => latencies.push(t.elapsed()),
                    Err(_) => errors += 1,
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for c in clients {
        let (l, e) = c.await?;
        latencies.extend(l);
        errors += e;
    }
    let load_time = started.elapsed();
    if errors > 0 {
        println!("  {errors} referrals were not accepted by intake (non-201)");
    }
    latencies.sort();
    let submitted = latencies.len();
    let drain_limit = Duration::from_secs(o.seconds * 10 + 60);
    let mut accepted = 0usize;
    while started.elapsed() < drain_limit {
        accepted = accepted_count(&pool).await as usize;
        if accepted >= submitted {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let drained_after = started.elapsed();
    let consumers = consumer_busy(&before);
    let started_from = decisions(&started_before);

    // End to end, one at a time, at idle.
    let mut idle = Vec::new();
    for i in 0..o.idle {
        idle.push(end_to_end(&hospital, &pool, i, "idle").await?);
    }
    idle.sort();

    // End to end again, while the deadline check works through a backlog of marks.
    let marks_before = overdue_marks(&pool).await?;
    let marking = tokio::spawn(async move {
        let t = Instant::now();
        let month_ahead = chrono::Utc::now() + chrono::Duration::days(30);
        // Until a pass finds nothing due (the referrals sent meanwhile are due at once
        // too), or a minute: a stalled read model must not hold the bench forever.
        while t.elapsed() < Duration::from_secs(60) {
            if check.run_once(month_ahead).await? == 0 {
                break;
            }
        }
        anyhow::Ok(t.elapsed())
    });
    let mut behind = Vec::new();
    while !marking.is_finished() || behind.len() < 5 {
        match end_to_end(&hospital, &pool, behind.len(), "behind").await {
            Ok(took) => behind.push(took),
            Err(e) => {
                marking.abort();
                return Err(e);
            }
        }
    }
    let marks_took = marking.await??;
    // The marks made, from the store (a pass may list a referral again while the
    // read model catches up; the aggregate marks it once).
    let marks = (overdue_marks(&pool).await? - marks_before) as usize;
    behind.sort();

    let sustained = if o.rate > 0 {
        // Room for every referral of the measure too (a peer takes at most 200).
        let held: i64 = sqlx::query_scalar("SELECT count(*) FROM referral.referrals")
            .fetch_one(&pool)
            .await?;
        let needed = held as usize + (o.rate * o.sustain) as usize + 100;
        add_peers(
            &http,
            &base,
            &coordinator,
            &pool,
            o.peers,
            needed.div_ceil(200),
        )
        .await?;
        Some(sustain(&hospital, &pool, o.rate, o.sustain).await?)
    } else {
        None
    };

    // careloop stops before the replays: nothing may act on a grown history's copies
    // (a replay needs only the database).
    let _ = stop.send(());
    server.await??;
    if o.history > 0 {
        grow_history(&pool, &projections, o.history).await?;
    }
    let mut replay = Vec::new();
    for p in &projections {
        let t = Instant::now();
        let n = p.replay().await?;
        let secs = t.elapsed().as_secs_f64();
        replay.push((p.name().to_string(), n, n as f64 / secs.max(1e-9)));
    }
    let rss_mb = rss_kb() as f64 / 1024.0;

    Ok(Measured {
        intake_rate: submitted as f64 / load_time.as_secs_f64(),
        intake_p50: percentile(&latencies, 0.5),
        intake_p99: percentile(&latencies, 0.99),
        submitted,
        accepted,
        pipeline_rate: accepted as f64 / drained_after.as_secs_f64(),
        drained_after,
        idle_p50: percentile(&idle, 0.5),
        idle_max: idle.last().copied().unwrap_or_default(),
        marks,
        marks_took,
        behind,
        sustained,
        replay,
        consumers,
        started_from,
        rss_mb,
    })
}

/// Grows the event store of each service that has a read model to about `events`
/// events: whole copies of what it holds, each under new aggregate ids.
async fn grow_history(
    pool: &sqlx::PgPool,
    projections: &[careloop_backbone::ProjectionRunner],
    events: u64,
) -> anyhow::Result<()> {
    let mut schemas: Vec<&str> = projections
        .iter()
        .filter_map(|p| p.tables().first()?.split_once('.').map(|(s, _)| s))
        .collect();
    schemas.sort_unstable();
    schemas.dedup();
    for schema in schemas {
        let mut tx = pool.begin().await?;
        sqlx::query("SET LOCAL statement_timeout = 0")
            .execute(&mut *tx)
            .await?;
        let held: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {schema}.events"))
            .fetch_one(&mut *tx)
            .await?;
        let copies = (events as i64 / held.max(1) - 1).max(0);
        let t = Instant::now();
        sqlx::query(&format!(
            "INSERT INTO {schema}.events (aggregate_type, aggregate_id, sequence, event_type,
                 event_version, payload, metadata)
             SELECT aggregate_type, aggregate_id || '~' || k, sequence, event_type,
                 event_version, payload, metadata
             FROM {schema}.events, generate_series(1, $1) k ORDER BY k, position"
        ))
        .bind(copies)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        // As autovacuum would soon: the planner then knows the store's new size.
        sqlx::query(&format!("ANALYZE {schema}.events"))
            .execute(pool)
            .await?;
        println!(
            "  {schema}: {held} events copied {copies} times ({} in all) in {:.1} s",
            held * (copies + 1),
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

/// How many ReferralOverdue events the referral service has recorded.
async fn overdue_marks(pool: &sqlx::PgPool) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM referral.events WHERE event_type = 'ReferralOverdue'",
    )
    .fetch_one(pool)
    .await?)
}

/// Registers peers number `from` to `to` (each with room for 200 referrals) and waits
/// until the roster has them all.
async fn add_peers(
    http: &reqwest::Client,
    base: &str,
    coordinator: &str,
    pool: &sqlx::PgPool,
    from: usize,
    to: usize,
) -> anyhow::Result<()> {
    for i in from..to {
        let res = http
            .post(format!("{base}/v1/peers"))
            .bearer_auth(coordinator)
            .json(
                &json!({"name": format!("Bench Peer {i:03}"), "languages": ["en"],
                          "modes": ["phone", "in_person"], "max_caseload": 200}),
            )
            .send()
            .await?;
        if !res.status().is_success() {
            bail!("registering a peer: {} {}", res.status(), res.text().await?);
        }
    }
    wait_for(Duration::from_secs(60), "the roster", || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM peer_assignment.peers")
            .fetch_one(pool)
            .await
            .is_ok_and(|n| n as usize >= to)
    })
    .await
}

/// The sustained measure: what became of referrals sent at a steady rate.
struct Sustained {
    rate: u64,
    seconds: u64,
    /// Referrals intake took (201), and how long the sending took in all.
    sent: usize,
    sending: Duration,
    refused: usize,
    /// POST → accepted, sorted, for those accepted within [`SUSTAIN_WAIT`].
    accepted: Vec<Duration>,
    /// p99 of POST → accepted by the minute of sending, to show whether it holds (one
    /// not accepted within [`SUSTAIN_WAIT`] counts as that long).
    p99_by_minute: Vec<Duration>,
    /// Where that time went, hop by hop ([`hops`]).
    hops: Vec<Hop>,
    /// Per service: events published during the measure and the seconds they waited
    /// from being recorded to publication (`careloop_relay_delay_seconds`).
    relayed: Vec<(String, u64, f64)>,
    /// Per consumer: messages it began during the measure and the seconds they waited
    /// from publication to handling (`careloop_consumer_wait_seconds`).
    waited: Vec<(String, u64, f64)>,
    /// Commands' decisions during the measure ([`decisions`]).
    decided: Decisions,
}

const RELAY_DELAY: &str = "careloop_relay_delay_seconds";
const CONSUMER_WAIT: &str = "careloop_consumer_wait_seconds";

/// One hop of a referral's way to acceptance, over the sustained measure's referrals.
struct Hop {
    what: &'static str,
    p50: Duration,
    p99: Duration,
}

/// The hops of the sustained referrals' way from their POST to the read model showing
/// them accepted: each hop ends when its event was recorded (`recorded_at`, the
/// database's clock) or, for the first and last, at the bench's own send and sight:
/// `timed`, per referral, on the wall clock. With Postgres on another
/// machine the two clocks differ and the first and last hops are off by that much
/// (a negative span counts as zero).
async fn hops(
    pool: &sqlx::PgPool,
    timed: &HashMap<String, (SystemTime, SystemTime)>,
) -> anyhow::Result<Vec<Hop>> {
    const NAMES: [&str; 6] = [
        "POST → ReferralSubmitted stored (intake)",
        "→ ReferralReceived stored (relay, JetStream, referral)",
        "→ AssignmentRequested stored (relay, JetStream, peer-assignment)",
        "→ PeerAssigned stored (matching: reserve, confirm)",
        "→ ReferralAccepted stored (relay, JetStream, referral)",
        "→ seen accepted in the read model (projection, the bench's 10 ms poll)",
    ];
    let ids: Vec<String> = timed.keys().cloned().collect();
    // A referral and when each of its events was recorded (seconds since the epoch).
    type Recorded = (
        String,
        Option<f64>,
        Option<f64>,
        Option<f64>,
        Option<f64>,
        Option<f64>,
    );
    let rows: Vec<Recorded> =
        sqlx::query_as(
            "SELECT s.aggregate_id, extract(epoch FROM s.recorded_at)::float8,
                    extract(epoch FROM r.received)::float8,
                    extract(epoch FROM a.requested)::float8,
                    extract(epoch FROM a.assigned)::float8,
                    extract(epoch FROM r.accepted)::float8
               FROM intake.events s,
               LATERAL (SELECT min(recorded_at) FILTER (WHERE event_type = 'ReferralReceived') AS received,
                               min(recorded_at) FILTER (WHERE event_type = 'ReferralAccepted') AS accepted
                          FROM referral.events
                         WHERE aggregate_type = 'Referral' AND aggregate_id = s.aggregate_id) r,
               LATERAL (SELECT min(recorded_at) FILTER (WHERE event_type = 'AssignmentRequested') AS requested,
                               min(recorded_at) FILTER (WHERE event_type = 'PeerAssigned') AS assigned
                          FROM peer_assignment.events
                         WHERE aggregate_type = 'Assignment' AND aggregate_id = s.aggregate_id) a
              WHERE s.aggregate_type = 'ReferralSubmission' AND s.sequence = 1
                AND s.aggregate_id = ANY($1)",
        )
        .bind(&ids)
        .fetch_all(pool)
        .await?;
    let epoch = |t: SystemTime| {
        t.duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64()
    };
    let mut spans: Vec<Vec<Duration>> = vec![Vec::new(); NAMES.len()];
    for (id, submitted, received, requested, assigned, accepted) in rows {
        let Some(&(sent, seen)) = timed.get(&id) else {
            continue;
        };
        let marks = [
            Some(epoch(sent)),
            submitted,
            received,
            requested,
            assigned,
            accepted,
            Some(epoch(seen)),
        ];
        let Some(marks) = marks.into_iter().collect::<Option<Vec<f64>>>() else {
            continue;
        };
        for (i, w) in marks.windows(2).enumerate() {
            spans[i].push(Duration::from_secs_f64((w[1] - w[0]).max(0.0)));
        }
    }
    Ok(NAMES
        .iter()
        .zip(spans)
        .map(|(what, mut d)| {
            d.sort();
            Hop {
                what,
                p50: percentile(&d, 0.5),
                p99: percentile(&d, 0.99),
            }
        })
        .collect())
}

/// How long a referral of the sustained measure may take to be accepted before it
/// counts as not accepted.
const SUSTAIN_WAIT: Duration = Duration::from_secs(30);

/// Sends `rate` referrals a second for `seconds` (each on its own connection when the
/// one before has not answered yet, so a slow answer does not slow the pace down) and
/// measures each one from the time it was due to be sent (so a busy runtime cannot hide
/// its own delay) to accepted with a peer, as a poll of the read model every 10 ms sees
/// it (so the figures may be up to a poll's time high).
async fn sustain(
    hospital: &Hospital,
    pool: &sqlx::PgPool,
    rate: u64,
    seconds: u64,
) -> anyhow::Result<Sustained> {
    let (posted, mut answers) = tokio::sync::mpsc::unbounded_channel();
    let (relayed_before, waited_before) = (
        histogram_totals(RELAY_DELAY, "service", &[]),
        histogram_totals(CONSUMER_WAIT, "consumer", &[]),
    );
    let decided_before = decisions(&[]);
    let started = Instant::now();
    // Wall-clock times of each referral's send and sight, for [`hops`], all on the
    // monotonic clock from here.
    let anchor = (started, SystemTime::now());
    let wall = |t: Instant| anchor.1 + t.saturating_duration_since(anchor.0);
    let total = (rate * seconds) as usize;
    let hospital = hospital.clone();
    // The pace is kept by a task of its own, while the loop below watches acceptance.
    let pacer = tokio::spawn(async move {
        let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
        pace.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut senders = tokio::task::JoinSet::new();
        for i in 0..total {
            let t = pace.tick().await.into_std();
            let (hospital, posted) = (hospital.clone(), posted.clone());
            senders.spawn(async move {
                let id = hospital.refer(i, "sustained").await.ok();
                let _ = posted.send((t, id));
            });
        }
        while senders.join_next().await.is_some() {}
    });
    // Whatever ends the measure (an error too) stops the sending.
    let mut pacer = careloop_backbone::AbortOnDrop(pacer);
    let mut waiting: HashMap<String, Instant> = Default::default();
    // Each accepted referral's send and sight on the wall clock, for [`hops`].
    let mut timed: HashMap<String, (SystemTime, SystemTime)> = HashMap::new();
    // POST → accepted by the minute of the measure the referral was due to be sent in.
    let mut by_minute: Vec<Vec<Duration>> = Vec::new();
    let (mut sent, mut refused, mut answered) = (0usize, 0usize, 0usize);
    let mut accepted = Vec::new();
    let mut sending = Duration::ZERO;
    let mut last_answer = Instant::now();
    loop {
        while let Ok((t, id)) = answers.try_recv() {
            answered += 1;
            last_answer = Instant::now();
            match id {
                Some(id) => {
                    sent += 1;
                    waiting.insert(id, t);
                }
                None => refused += 1,
            }
            if answered == total {
                sending = started.elapsed();
            }
        }
        if !waiting.is_empty() {
            let ids: Vec<String> = waiting.keys().cloned().collect();
            // By key only: with the status in the condition the planner read every
            // accepted referral at each poll (4 ms, a fifth of a core at 100/s).
            let statuses: Vec<(String, String)> = sqlx::query_as(
                "SELECT k.id, r.status FROM unnest($1::text[]) AS k(id)
                 CROSS JOIN LATERAL (SELECT status FROM referral.referrals r
                                     WHERE r.referral_id = k.id LIMIT 1) r",
            )
            .bind(&ids)
            .fetch_all(pool)
            .await?;
            let done = statuses
                .into_iter()
                .filter(|(_, status)| status == "accepted")
                .map(|(id, _)| id);
            for id in done {
                if let Some(t) = waiting.remove(&id) {
                    accepted.push(t.elapsed());
                    in_its_minute(&mut by_minute, started, t, t.elapsed());
                    timed.insert(id, (wall(t), wall(Instant::now())));
                }
            }
            // One not accepted in time counts in its minute as the longest wait.
            waiting.retain(|_, t| {
                let in_time = t.elapsed() < SUSTAIN_WAIT;
                if !in_time {
                    in_its_minute(&mut by_minute, started, *t, SUSTAIN_WAIT);
                }
                in_time
            });
        }
        if answered == total && waiting.is_empty() {
            break;
        }
        if answered < total && last_answer.elapsed() > SUSTAIN_WAIT {
            bail!("intake stopped answering during the sustained measure");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    (&mut pacer.0).await?;
    accepted.sort();
    Ok(Sustained {
        rate,
        seconds,
        sent,
        sending,
        refused,
        accepted,
        p99_by_minute: by_minute
            .into_iter()
            .map(|mut d| {
                d.sort();
                percentile(&d, 0.99)
            })
            .collect(),
        hops: hops(pool, &timed).await?,
        relayed: histogram_totals(RELAY_DELAY, "service", &relayed_before),
        waited: histogram_totals(CONSUMER_WAIT, "consumer", &waited_before),
        decided: decisions(&decided_before),
    })
}

/// Adds `took` to the times of the minute of the measure begun at `started` that
/// `t` (a referral's due time) falls in.
fn in_its_minute(by_minute: &mut Vec<Vec<Duration>>, started: Instant, t: Instant, took: Duration) {
    let minute = (t.saturating_duration_since(started).as_secs() / 60) as usize;
    if by_minute.len() <= minute {
        by_minute.resize(minute + 1, Vec::new());
    }
    by_minute[minute].push(took);
}

/// The bench's hospital: it refers people to intake as St Mary's.
#[derive(Clone)]
struct Hospital {
    http: reqwest::Client,
    /// `POST /v1/referrals` of the careloop under test.
    url: String,
    token: String,
}

impl Hospital {
    /// Refers person `i` of `run` ([`referral`]): the referral's id when intake took
    /// it (201), otherwise an error naming intake's answer.
    async fn refer(&self, i: usize, run: &str) -> anyhow::Result<String> {
        let res = self
            .http
            .post(&self.url)
            .bearer_auth(&self.token)
            .json(&referral(i, run))
            .send()
            .await?;
        if res.status().as_u16() != 201 {
            bail!("intake answered {}: {}", res.status(), res.text().await?);
        }
        let body: serde_json::Value = res.json().await?;
        body["referral_id"]
            .as_str()
            .map(str::to_string)
            .context("intake's answer names no referral_id")
    }
}

/// One referral, POST → accepted with a peer; an error when intake refuses it or it is
/// not accepted within 30 s.
async fn end_to_end(
    hospital: &Hospital,
    pool: &sqlx::PgPool,
    i: usize,
    run: &str,
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    let id = hospital.refer(i, run).await?;
    let limit = Instant::now() + Duration::from_secs(30);
    loop {
        let status: Option<String> =
            sqlx::query_scalar("SELECT status FROM referral.referrals WHERE referral_id = $1")
                .bind(&id)
                .fetch_optional(pool)
                .await?;
        if status.as_deref() == Some("accepted") {
            return Ok(t.elapsed());
        }
        if Instant::now() > limit {
            bail!("referral {id} was not accepted within 30 s (status {status:?})");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

async fn wait_for<F, Fut>(limit: Duration, what: &str, mut check: F) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + limit;
    while !check().await {
        if Instant::now() > until {
            bail!("{what}: not ready after {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

/// Messages and busy seconds per consumer so far (from
/// `careloop_consumer_message_seconds`), less what `before` had counted.
fn consumer_busy(before: &[(String, u64, f64)]) -> Vec<(String, u64, f64)> {
    histogram_totals("careloop_consumer_message_seconds", "consumer", before)
}

/// Count and sum of histogram `name` per value of `label` so far, less what `before`
/// had counted, the largest sum first.
fn histogram_totals(
    name: &str,
    label: &str,
    before: &[(String, u64, f64)],
) -> Vec<(String, u64, f64)> {
    let mut out: Vec<(String, u64, f64)> = Vec::new();
    for family in prometheus::gather() {
        if family.name() != name {
            continue;
        }
        for m in family.get_metric() {
            let Some(value) = m
                .get_label()
                .iter()
                .find(|l| l.name() == label)
                .map(|l| l.value().to_string())
            else {
                continue;
            };
            let h = m.get_histogram();
            match out.iter_mut().find(|(v, _, _)| *v == value) {
                Some(row) => {
                    row.1 += h.get_sample_count();
                    row.2 += h.get_sample_sum();
                }
                None => out.push((value, h.get_sample_count(), h.get_sample_sum())),
            }
        }
    }
    for row in &mut out {
        if let Some((_, n, secs)) = before.iter().find(|(v, _, _)| *v == row.0) {
            row.1 -= n;
            row.2 -= secs;
        }
    }
    out.sort_by(|a, b| b.2.total_cmp(&a.2));
    out
}

/// What commands' decisions were made on, as `careloop_command_loads_total` names it:
/// the copy the last command kept, the aggregate as new, a copy caught up with the
/// events stored after it, a load of the whole stream.
const DECIDED_ON: [&str; 4] = ["recent", "new", "catch-up", "store"];

/// Per aggregate type, commands' decisions by [`DECIDED_ON`].
type Decisions = Vec<(String, [u64; 4])>;

/// Commands' decisions since `before` (another call's answer; empty: since the
/// start), the aggregate types with the most loads first.
fn decisions(before: &[(String, [u64; 4])]) -> Decisions {
    let mut out: Decisions = Vec::new();
    for family in prometheus::gather() {
        if family.name() != "careloop_command_loads_total" {
            continue;
        }
        for m in family.get_metric() {
            let label = |name: &str| {
                m.get_label()
                    .iter()
                    .find(|l| l.name() == name)
                    .map(|l| l.value().to_string())
                    .unwrap_or_default()
            };
            let aggregate = label("aggregate");
            let Some(from) = DECIDED_ON.iter().position(|f| *f == label("from")) else {
                continue;
            };
            let earlier = before
                .iter()
                .find(|r| r.0 == aggregate)
                .map_or(0, |r| r.1[from]);
            let n = (m.get_counter().get_value() as u64).saturating_sub(earlier);
            match out.iter_mut().find(|r| r.0 == aggregate) {
                Some(row) => row.1[from] += n,
                None => {
                    let mut counts = [0; 4];
                    counts[from] = n;
                    out.push((aggregate, counts));
                }
            }
        }
    }
    out.sort_by_key(|r| std::cmp::Reverse(r.1[3]));
    out
}

/// `a` as a percentage of `b` (0 when `b` is 0).
fn pct(a: f64, b: f64) -> f64 {
    if b > 0.0 { 100.0 * a / b } else { 0.0 }
}

/// `decisions` as a table row's figure: the share of each kind, then the loads and
/// catch-ups of each aggregate type that had any.
fn decisions_figure(decisions: &Decisions) -> String {
    let totals: Vec<u64> = (0..4)
        .map(|i| decisions.iter().map(|r| r.1[i]).sum())
        .collect();
    let all: u64 = totals.iter().sum();
    let shares: Vec<String> = totals
        .iter()
        .map(|n| format!("{n} ({:.0}%)", pct(*n as f64, all as f64)))
        .collect();
    let by_aggregate: Vec<String> = decisions
        .iter()
        .filter(|(_, c)| c[2] + c[3] > 0)
        .map(|(aggregate, c)| {
            format!(
                "{aggregate} {} and {} of {}",
                c[3],
                c[2],
                c.iter().sum::<u64>()
            )
        })
        .collect();
    let by_aggregate = match by_aggregate.is_empty() {
        true => "none".to_string(),
        false => by_aggregate.join(", "),
    };
    format!(
        "{} of {all}; loads and catch-ups: {by_aggregate}",
        shares.join(" / ")
    )
}

/// Resident memory of this process (careloop and the benchmark's own clients), in kB.
fn rss_kb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

fn print_table(floor: f64, m: &Measured, o: &BenchOptions) {
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!();
    println!("| what | figure |");
    println!("|---|---|");
    println!(
        "| raw Postgres floor: pgbench, one single-row jsonb insert per transaction, {} clients | {floor:.0} commits/s |",
        o.clients
    );
    println!(
        "| intake: POST /v1/referrals at {} connections, each a new person | {:.1} referrals/s ({:.1}% of the floor), p50 {:.0} ms, p99 {:.0} ms |",
        o.clients,
        m.intake_rate,
        pct(m.intake_rate, floor),
        ms(m.intake_p50),
        ms(m.intake_p99)
    );
    println!(
        "| pipeline: submitted → accepted with a peer | {:.1} referrals/s ({:.0}% of intake); {} of {} accepted {:.1} s after the load began |",
        m.pipeline_rate,
        pct(m.pipeline_rate, m.intake_rate),
        m.accepted,
        m.submitted,
        m.drained_after.as_secs_f64()
    );
    println!(
        "| end to end at idle (POST → accepted), {} referrals | p50 {:.0} ms, max {:.0} ms |",
        o.idle,
        ms(m.idle_p50),
        ms(m.idle_max)
    );
    println!(
        "| end to end behind {} overdue marks made in {:.1} s, {} referrals meanwhile | p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms |",
        m.marks,
        m.marks_took.as_secs_f64(),
        m.behind.len(),
        ms(percentile(&m.behind, 0.5)),
        ms(percentile(&m.behind, 0.99)),
        ms(m.behind.last().copied().unwrap_or_default())
    );
    if let Some(s) = &m.sustained {
        let late = s.sent - s.accepted.len();
        println!(
            "| end to end at {} referrals/s sustained for {} s ({} sent in {:.1} s, {} refused) | p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; {} not accepted within {} s |",
            s.rate,
            s.seconds,
            s.sent,
            s.sending.as_secs_f64(),
            s.refused,
            ms(percentile(&s.accepted, 0.5)),
            ms(percentile(&s.accepted, 0.99)),
            ms(s.accepted.last().copied().unwrap_or_default()),
            late,
            SUSTAIN_WAIT.as_secs()
        );
        if s.p99_by_minute.len() > 1 {
            let minutes: Vec<String> = s
                .p99_by_minute
                .iter()
                .map(|d| format!("{:.0}", ms(*d)))
                .collect();
            println!("| … p99 by minute of sending | {} ms |", minutes.join(", "));
        }
        for hop in &s.hops {
            println!(
                "| … {} | p50 {:.0} ms, p99 {:.0} ms |",
                hop.what,
                ms(hop.p50),
                ms(hop.p99)
            );
        }
        let mean = |rows: &[(String, u64, f64)]| {
            rows.iter()
                .filter(|r| r.1 > 0)
                .map(|(what, n, secs)| format!("{what} {:.0} ms", 1000.0 * secs / *n as f64))
                .collect::<Vec<_>>()
                .join(", ")
        };
        println!(
            "| … of which, on average, recorded → published by the relay | {} |",
            mean(&s.relayed)
        );
        println!(
            "| … and published → handling began, per consumer | {} |",
            mean(&s.waited)
        );
        println!(
            "| commands' decisions during the sustained measure: on the copy the last command kept / as new / caught up / on a load | {} |",
            decisions_figure(&s.decided)
        );
    }
    for (consumer, n, busy) in &m.consumers {
        println!(
            "| consumer `{consumer}`: busy during load and drain | {busy:.1} s ({:.0}% of {:.1} s) for {n} messages, {:.1} ms each |",
            pct(*busy, m.drained_after.as_secs_f64()),
            m.drained_after.as_secs_f64(),
            1000.0 * busy / (*n).max(1) as f64
        );
    }
    println!(
        "| commands' decisions during load and drain: on the copy the last command kept / as new / caught up / on a load | {} |",
        decisions_figure(&m.started_from)
    );
    for (name, n, rate) in &m.replay {
        println!("| `careloop replay {name}` ({n} events) | {rate:.0} events/s |");
    }
    println!(
        "| resident memory after the run (careloop and the benchmark's clients) | {:.0} MB |",
        m.rss_mb
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_database_is_swapped_in_the_url() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/careloop", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u@h/careloop?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
    }

    #[test]
    fn options_parse_and_refuse_what_they_do_not_know() {
        let o = BenchOptions::parse(&["--seconds".into(), "5".into()]).unwrap();
        assert_eq!((o.seconds, o.history), (5, 0));
        let o = BenchOptions::parse(&["--history".into(), "1000000".into()]).unwrap();
        assert_eq!(o.history, 1_000_000);
        let o = BenchOptions::parse(&["--rate".into(), "100".into()]).unwrap();
        assert_eq!((o.rate, o.sustain), (100, 60));
        assert!(BenchOptions::parse(&["--fast".into(), "1".into()]).is_err());
        assert!(BenchOptions::parse(&["--seconds".into()]).is_err());
    }
}
