//! The `careloop` subcommands: dev, token, migrate, replay, redrive, vault, bench, routes,
//! frontdoor.

use anyhow::{Context, bail};
use careloop_backbone::host::shutdown_signal;
use careloop_config::Settings;
use careloop_web::{Authenticator, Role};

use crate::{Application, dev};

const HELP: &str =
    "careloop: referral and care-coordination engine for peer support after discharge

USAGE:
  careloop dev                      run all four services in one process (starts private
                                    Postgres/NATS instances if none answer)
  careloop token --role ROLE [--facility F] [--peer-id P] [--hours H]
                                    print a signed token (roles: hospital, coordinator,
                                    peer, admin)
  careloop migrate                  apply every service's migrations
  careloop replay PROJECTION        rebuild one read model from events, without
                                    blanking it (referrals, roster, followups, measures,
                                    tasks, facilities, audit)
  careloop redrive [--service S] [--since T]
                                    publish a service's events again from Postgres (all
                                    services, every event, unless narrowed; T is an
                                    RFC 3339 time or an age like 2h); consumers skip what
                                    they applied
  careloop vault rewrap             after a new CARELOOP_KEY_ENCRYPTION_KEY (the old one in
                                    CARELOOP_PREVIOUS_KEY_ENCRYPTION_KEYS): re-wrap every
                                    data key under the new one; no event is touched
  careloop bench [--seconds N] [--clients N] [--peers N] [--idle N] [--history N]
                 [--rate N] [--sustain N]
                                    the throughput benchmark on a fresh database and
                                    namespace: Postgres floor (pgbench), intake, pipeline,
                                    end to end (idle, behind a backlog, at N referrals/s
                                    sustained), replay, memory (README, Performance)
  careloop routes                   every route of each service binary: service, method,
                                    path, access rule (needs no server)
  careloop frontdoor nginx [OPTIONS]
                                    print the front door's nginx.conf, generated from the
                                    routes; options: --listen ADDR, --mllp-listen ADDR,
                                    --upstream SERVICE=HOST:PORT[,HOST:PORT...],
                                    --mllp-upstream HOST:PORT[,...], --stream-module PATH,
                                    --runtime-dir DIR, --log-dir DIR, --trust-proxy CIDR,
                                    --no-trusted-proxies, --expose-upstream (tests only)
  careloop frontdoor write [--root DIR]
                                    regenerate the committed front-door files
                                    (deploy/frontdoor/, deploy/kubernetes/base/frontdoor/)

CONFIGURATION (environment):
  DATABASE_URL        postgres://postgres@127.0.0.1:5432/careloop
  NATS_URL            nats://127.0.0.1:4222
  CARELOOP_HTTP_ADDR  127.0.0.1:8080
  CARELOOP_MLLP_ADDR  127.0.0.1:2575
  CARELOOP_NAMESPACE  careloop
  CARELOOP_JWT_SECRET (dev default, with a warning)
  (more in the README: due times, follow-up protocol, match weights, webhooks)
";

pub async fn run(args: Vec<String>) -> anyhow::Result<()> {
    let Some(command) = args.first().map(String::as_str) else {
        print!("{HELP}");
        return Ok(());
    };
    match command {
        "help" | "--help" | "-h" => {
            print!("{HELP}");
            Ok(())
        }
        "token" => token(&args[1..]),
        "dev" => run_dev().await,
        "migrate" => {
            careloop_telemetry::init();
            let settings = Settings::from_env()?;
            Application::build(&settings).await?;
            println!("migrations applied");
            Ok(())
        }
        "routes" => {
            let backbone = crate::routes::offline_backbone().await?;
            print!("{}", crate::routes::table(&crate::routes::all(&backbone)));
            Ok(())
        }
        "frontdoor" => frontdoor(&args[1..]).await,
        "replay" => {
            careloop_telemetry::init();
            let name = args.get(1).context("usage: careloop replay PROJECTION")?;
            replay(&Settings::from_env()?, name).await
        }
        "bench" => {
            let options = crate::bench::BenchOptions::parse(&args[1..])?;
            crate::bench::run(&Settings::from_env()?, &options).await
        }
        "redrive" => {
            careloop_telemetry::init();
            redrive(&Settings::from_env()?, &args[1..]).await
        }
        "vault" => {
            careloop_telemetry::init();
            match args.get(1).map(String::as_str) {
                Some("rewrap") => rewrap(&Settings::from_env()?).await,
                _ => bail!("usage: careloop vault rewrap"),
            }
        }
        other => bail!("unknown command {other:?}; see `careloop help`"),
    }
}

async fn frontdoor(args: &[String]) -> anyhow::Result<()> {
    use crate::frontdoor::{self, NginxOptions};
    let backbone = crate::routes::offline_backbone().await?;
    let routes = crate::routes::all(&backbone);
    match args.first().map(String::as_str) {
        Some("nginx") => {
            let options = frontdoor::options(&args[1..])?;
            print!("{}", frontdoor::nginx(&routes, &options));
            Ok(())
        }
        Some("write") => {
            let root = match args.get(1).map(String::as_str) {
                Some("--root") => std::path::PathBuf::from(args.get(2).context("--root DIR")?),
                Some(other) => bail!("unknown option {other:?}"),
                None => std::path::PathBuf::from("."),
            };
            if !root.join("deploy").is_dir() {
                bail!(
                    "{} has no deploy/ folder: run from the repository root or pass --root",
                    root.display()
                );
            }
            let conf = frontdoor::nginx(&routes, &NginxOptions::default());
            for file in frontdoor::COMMITTED {
                let path = root.join(file);
                std::fs::create_dir_all(path.parent().expect("a folder"))?;
                std::fs::write(&path, &conf)?;
                println!("wrote {}", path.display());
            }
            let path = root.join(frontdoor::ROUTES_TABLE);
            std::fs::write(&path, crate::routes::table(&routes))?;
            println!("wrote {}", path.display());
            Ok(())
        }
        _ => bail!(
            "usage: careloop frontdoor nginx [OPTIONS] | careloop frontdoor write [--root DIR]"
        ),
    }
}

/// Rebuilds the read model `name`; returns after the rows are rebuilt.
pub async fn replay(settings: &Settings, name: &str) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    let projections = app.projections();
    let Some(p) = projections.iter().find(|p| p.name() == name) else {
        let names: Vec<&str> = projections.iter().map(|p| p.name()).collect();
        bail!("no projection {name:?}; known: {}", names.join(", "));
    };
    let n = p.replay().await?;
    println!("replayed {name}: {n} events applied");
    Ok(())
}

/// `careloop vault rewrap`: every data key and vault secret wrapped under a previous
/// key-encryption key is re-wrapped under the current one.
pub async fn rewrap(settings: &Settings) -> anyhow::Result<()> {
    // Without the key configured, a throwaway one would wrap everything: refused.
    if settings.identity.key_encryption_key.is_none()
        && settings.identity.mode != careloop_config::AuthMode::Dev
    {
        bail!(
            "CARELOOP_KEY_ENCRYPTION_KEY (or _FILE) is not set: give the new key there and the old one in CARELOOP_PREVIOUS_KEY_ENCRYPTION_KEYS"
        );
    }
    let app = Application::build(settings).await?;
    let report = app.intake().vault().rewrap().await?;
    println!(
        "re-wrapped {} person keys and {} vault secrets under the current key-encryption key; the previous keys are no longer needed",
        report.person_keys, report.secrets
    );
    Ok(())
}

/// `careloop redrive`: moves the relay cursor of each chosen service back, so the
/// running relays publish those events again (after a stream loss careloop does this
/// by itself; see docs/operations.md).
pub async fn redrive(settings: &Settings, args: &[String]) -> anyhow::Result<()> {
    let mut service = None;
    let mut since = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--service" => service = Some(value()?.clone()),
            "--since" => since = Some(parse_since(value()?)?),
            other => {
                bail!("unknown option {other:?}; usage: careloop redrive [--service S] [--since T]")
            }
        }
    }
    let app = Application::build(settings).await?;
    let relays: Vec<_> = app
        .services()
        .iter()
        .filter(|s| service.as_deref().is_none_or(|n| n == s.name()))
        .filter_map(|s| s.relay().map(|r| (s.name(), r)))
        .collect();
    if relays.is_empty() {
        let names: Vec<&str> = app
            .services()
            .iter()
            .filter(|s| s.relay().is_some())
            .map(|s| s.name())
            .collect();
        bail!(
            "no service {:?} publishes events; known: {}",
            service.unwrap_or_default(),
            names.join(", ")
        );
    }
    // The stream may be the thing that was lost.
    app.backbone().stream.ensure().await?;
    for (name, relay) in relays {
        let n = relay.redrive(since).await?;
        println!("{name}: {n} events will be published again");
    }
    Ok(())
}

/// An RFC 3339 time, or an age (`90m`, `2h`, `7d`) before now.
fn parse_since(raw: &str) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let (number, unit) = raw.split_at(raw.len().saturating_sub(1));
    let n: i64 = number
        .parse()
        .with_context(|| format!("--since {raw:?}: an RFC 3339 time or an age like 2h"))?;
    let age = match unit {
        "m" => chrono::Duration::minutes(n),
        "h" => chrono::Duration::hours(n),
        "d" => chrono::Duration::days(n),
        _ => bail!("--since {raw:?}: an age ends in m, h or d"),
    };
    Ok(chrono::Utc::now() - age)
}

fn token(args: &[String]) -> anyhow::Result<()> {
    let mut role = None;
    let mut facility = None;
    let mut peer_id = None;
    let mut hours = 24i64;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--role" => role = Some(value()?.parse::<Role>().map_err(anyhow::Error::msg)?),
            "--facility" => facility = Some(value()?.clone()),
            "--peer-id" => peer_id = Some(value()?.clone()),
            "--hours" => hours = value()?.parse().context("--hours must be a number")?,
            other => bail!("unknown option {other:?}; see `careloop help`"),
        }
    }
    let role = role.context("--role is required (hospital, coordinator, peer or admin)")?;
    if role == Role::Hospital && facility.is_none() {
        bail!("a hospital token needs --facility");
    }
    if role == Role::Peer && peer_id.is_none() {
        bail!("a peer token needs --peer-id");
    }
    let settings = Settings::from_env()?;
    let auth = Authenticator::dev(&settings.jwt_secret);
    println!(
        "{}",
        auth.issue(role, facility, peer_id, chrono_hours(hours))
    );
    Ok(())
}

fn chrono_hours(h: i64) -> chrono::Duration {
    chrono::Duration::hours(h)
}

async fn run_dev() -> anyhow::Result<()> {
    careloop_telemetry::init();
    let mut settings = Settings::from_env()?;
    // `careloop dev` is dev mode unless told otherwise.
    if std::env::var("CARELOOP_AUTH").is_err() {
        settings.identity.mode = careloop_config::AuthMode::Dev;
    }
    // Four services share this process's pool.
    if std::env::var("CARELOOP_DB_POOL_MAX").is_err() {
        settings.database.pool_max = 16;
    }
    careloop_backbone::host::check_auth_settings(&settings, true)?;
    if settings.jwt_secret_is_dev_default {
        tracing::warn!(
            "CARELOOP_JWT_SECRET is not set: using the INSECURE dev default secret. Never do this outside a laptop."
        );
    }
    let _infra = dev::ensure_infrastructure(&settings).await?;
    let app = Application::build(&settings).await?;
    let seeded = app.seed_demo().await?;
    let listener = tokio::net::TcpListener::bind(settings.http_addr)
        .await
        .with_context(|| format!("binding CARELOOP_HTTP_ADDR {}", settings.http_addr))?;
    let auth = Authenticator::dev(&settings.jwt_secret);
    let ttl = chrono::Duration::days(7);
    println!();
    println!("careloop is running at http://{}", settings.http_addr);
    println!(
        "the care console: open http://{}/ and pick a demo person (dev sign-in, never with real people's details)",
        settings.http_addr
    );
    println!(
        "HL7 v2 over MLLP on {} (when the port is free)",
        settings.mllp_addr
    );
    if seeded > 0 {
        println!("seeded a demo roster of {seeded} peers (GET /v1/peers)");
    }
    println!("dev tokens (valid 7 days):");
    println!(
        "  hospital (st-marys): {}",
        auth.issue(Role::Hospital, Some("st-marys".into()), None, ttl)
    );
    println!(
        "  coordinator:         {}",
        auth.issue(Role::Coordinator, None, None, ttl)
    );
    println!("  peer (any peer_id):  careloop token --role peer --peer-id <peer_id>");
    println!(
        "  admin:               {}",
        auth.issue(Role::Admin, None, None, ttl)
    );
    println!("Ctrl-C stops it.");
    println!();
    app.serve(listener, shutdown_signal()).await
}
