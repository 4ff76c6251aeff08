//! Typed settings for every careloop process, read from the environment.
//!
//! One name per setting everywhere (`DATABASE_URL`, `NATS_URL`, `CARELOOP_*`), so the
//! all-in-one `careloop dev` and each service binary are configured the same way. A bad
//! value stops start-up with an error naming the variable.

mod billing;
mod due;
mod identity;
mod namespace;
mod privacy;

pub use billing::{DEFAULT_SERVICE_CODES, Rounding, ServiceCode};
pub use due::{DueTimes, parse_duration};
pub use identity::{AuthMode, DEV_KEY_ENCRYPTION_KEY, IdentitySettings, OidcSettings};
pub use namespace::Namespace;
pub use privacy::RetentionSettings;

use std::net::SocketAddr;

/// The dev-only signing secret used when `CARELOOP_JWT_SECRET` is not set.
pub const DEV_JWT_SECRET: &str = "careloop-dev-secret-do-not-use-in-production";

#[derive(Debug, Clone)]
pub struct Settings {
    pub database_url: String,
    /// The connection budget and timeouts of the Postgres pool.
    pub database: DatabaseSettings,
    /// One NATS URL, or a comma-separated list of the cluster's servers
    /// ([`Settings::nats_servers`]).
    pub nats_url: String,
    /// Replicas of the event stream (`CARELOOP_STREAM_REPLICAS`, 1 to 5): 1 for a
    /// single nats-server, 3 on a JetStream cluster.
    pub stream_replicas: usize,
    /// Placement tags of the event stream (`CARELOOP_STREAM_PLACEMENT_TAGS`): only
    /// servers carrying every tag hold a replica. Empty: anywhere in the cluster.
    pub stream_placement_tags: Vec<String>,
    pub http_addr: SocketAddr,
    pub mllp_addr: SocketAddr,
    pub namespace: Namespace,
    /// The HS256 secret of dev tokens (`CARELOOP_JWT_SECRET`; only with
    /// `CARELOOP_AUTH=dev`).
    pub jwt_secret: String,
    /// True when `CARELOOP_JWT_SECRET` was not set and the dev default is in use.
    pub jwt_secret_is_dev_default: bool,
    pub identity: IdentitySettings,
    /// How long people's details are kept after their last activity.
    pub retention: RetentionSettings,
    /// When a referral should be accepted, by priority, after discharge.
    pub acceptance_due: DueTimes,
    /// When the person should first be contacted, by priority, after discharge.
    pub first_contact_due: DueTimes,
    /// Whether a rejected referral may be sent back to matching.
    pub reroute_after_reject: bool,
    /// The first retry delay of a failed webhook delivery (doubling after that).
    pub webhook_retry_base: std::time::Duration,
    /// Hosts a webhook may point at although they are loopback, private or
    /// link-local (`CARELOOP_WEBHOOK_ALLOWED_HOSTS`, comma-separated; none by default).
    pub webhook_allowed_hosts: Vec<String>,
    /// The follow-up protocol every new plan gets.
    pub protocol: FollowUpProtocol,
    /// How much each term of a peer match counts.
    pub match_weights: MatchWeights,
    /// `CARELOOP_CASELOAD_NORM`: the organisation's caseload norm (people per peer),
    /// a ceiling on every peer's `max_caseload`; none by default.
    pub caseload_norm: Option<u32>,
    /// `CARELOOP_SERVICE_CODES`: the codes billable contacts are documented under
    /// (default H0038 per 15 minutes with the 8-minute rule; see [`billing`]).
    pub service_codes: Vec<ServiceCode>,
    /// An MLLP connection silent this long is closed.
    pub mllp_read_timeout: std::time::Duration,
    /// A request (or an HL7 message) not answered within this is answered 503 (AE)
    /// (`CARELOOP_REQUEST_TIMEOUT_SECS`, 1 to 25, default 15: below the 30 s lease of
    /// an `Idempotency-Key`, so a retry never overlaps its own first attempt).
    pub request_timeout: std::time::Duration,
}

/// How a process uses Postgres (`CARELOOP_DB_*`). The defaults fit four services
/// with two instances each into Postgres's default 100 connections with room left
/// for operators (docs/operations.md, "Connection budget").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatabaseSettings {
    /// The most connections the pool opens (`CARELOOP_DB_POOL_MAX`, default 8;
    /// `careloop dev`, four services in one process, defaults to 16).
    pub pool_max: u32,
    /// A connection idle this long is closed (`CARELOOP_DB_IDLE_TIMEOUT_SECS`, 60).
    pub idle_timeout: std::time::Duration,
    /// How long a request waits for a free connection before it is answered 503
    /// (`CARELOOP_DB_ACQUIRE_TIMEOUT_MS`, 2000).
    pub acquire_timeout: std::time::Duration,
    /// The server cancels a statement running longer (`CARELOOP_DB_STATEMENT_TIMEOUT_MS`,
    /// 5000; migrations are exempt).
    pub statement_timeout: std::time::Duration,
}

impl DatabaseSettings {
    /// The pool size when nothing is configured.
    pub const DEFAULT_POOL_MAX: u32 = 8;
}

/// Weights of the peer-match score terms (each term is between 0 and 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatchWeights {
    /// Shared lived experience with the person's preferences and needs.
    pub lived_experience: f64,
    /// The peer serves the person's region.
    pub region: f64,
    /// The peer supported this person before.
    pub continuity: f64,
    /// The peer's free share of their caseload.
    pub load: f64,
}

impl TryFrom<&str> for MatchWeights {
    type Error = String;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        let mut w = MatchWeights {
            lived_experience: 3.0,
            region: 1.0,
            continuity: 2.0,
            load: 1.0,
        };
        for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("expected term=weight, got {part:?}"))?;
            let v: f64 = v
                .trim()
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| format!("weight of {k} must be a number >= 0"))?;
            match k.trim() {
                "lived_experience" => w.lived_experience = v,
                "region" => w.region = v,
                "continuity" => w.continuity = v,
                "load" => w.load = v,
                other => return Err(format!("unknown term {other:?}")),
            }
        }
        Ok(w)
    }
}

/// When check-ins fall due after discharge, when a plan ends, and when a person who
/// cannot be reached counts as lost to follow-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FollowUpProtocol {
    /// Check-in due times after discharge (default 7, 14 and 30 days).
    pub checkins: Vec<std::time::Duration>,
    /// The plan ends this long after discharge (default 30 days).
    pub ends_after: std::time::Duration,
    /// Failed: this many attempts without reaching the person ...
    pub failed_after_attempts: u32,
    /// ... spread over at least this long.
    pub failed_after: std::time::Duration,
    /// The caring-contacts series a completed plan may go on with
    /// (`CARELOOP_CARING_CONTACTS`, `EVERY:COUNT`, default `30d:12`: monthly for a
    /// year; `off`: none).
    pub caring_contacts: Option<CaringContacts>,
}

/// Brief, non-demanding contacts after a plan completes, every `every`, `count` times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaringContacts {
    pub every: std::time::Duration,
    pub count: u32,
}

impl TryFrom<&str> for CaringContacts {
    type Error = String;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        let (every, count) = value
            .trim()
            .split_once(':')
            .ok_or_else(|| format!("must be off or EVERY:COUNT such as 30d:12, got {value:?}"))?;
        let every = parse_duration(every.trim())
            .filter(|d| d.as_secs() >= 60)
            .ok_or_else(|| format!("the interval must be a period such as 30d, got {every:?}"))?;
        let count = count
            .trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=52).contains(n))
            .ok_or_else(|| format!("the count must be 1 to 52, got {count:?}"))?;
        Ok(CaringContacts { every, count })
    }
}

#[derive(Debug, thiserror::Error)]
#[error("configuration: {variable} {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl Settings {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, so tests can supply their own values.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str, default: &str| {
            lookup(name)
                .filter(|v| !v.trim().is_empty())
                .unwrap_or_else(|| default.to_string())
        };
        let database_url = get(
            "DATABASE_URL",
            "postgres://postgres@127.0.0.1:5432/careloop",
        );
        if !(database_url.starts_with("postgres://") || database_url.starts_with("postgresql://")) {
            return Err(ConfigError {
                variable: "DATABASE_URL",
                problem: format!("must be a postgres:// URL, got {database_url:?}"),
            });
        }
        let database = database_settings(&get)?;
        let nats_url = get("NATS_URL", "nats://127.0.0.1:4222");
        if !nats_url
            .split(',')
            .all(|u| u.trim().starts_with("nats://") && u.trim().len() > "nats://".len())
        {
            return Err(ConfigError {
                variable: "NATS_URL",
                problem: format!(
                    "must be a nats:// URL or a comma-separated list of them, got {nats_url:?}"
                ),
            });
        }
        let raw = get("CARELOOP_STREAM_REPLICAS", "1");
        let stream_replicas = raw
            .trim()
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=5).contains(n))
            .ok_or_else(|| ConfigError {
                variable: "CARELOOP_STREAM_REPLICAS",
                problem: format!("must be a whole number from 1 to 5, got {raw:?}"),
            })?;
        let stream_placement_tags = get("CARELOOP_STREAM_PLACEMENT_TAGS", "")
            .split(',')
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        let addr = |name: &'static str, default: &str| -> Result<SocketAddr, ConfigError> {
            let raw = get(name, default);
            raw.parse().map_err(|_| ConfigError {
                variable: name,
                problem: format!("must be HOST:PORT with an IP address, got {raw:?}"),
            })
        };
        let http_addr = addr("CARELOOP_HTTP_ADDR", "127.0.0.1:8080")?;
        let mllp_addr = addr("CARELOOP_MLLP_ADDR", "127.0.0.1:2575")?;
        let namespace = Namespace::try_from(get("CARELOOP_NAMESPACE", "careloop").as_str())
            .map_err(|problem| ConfigError {
                variable: "CARELOOP_NAMESPACE",
                problem,
            })?;
        let secret = lookup("CARELOOP_JWT_SECRET").filter(|v| !v.is_empty());
        if let Some(s) = &secret
            && s.len() < 16
        {
            return Err(ConfigError {
                variable: "CARELOOP_JWT_SECRET",
                problem: "must be at least 16 bytes long".into(),
            });
        }
        let due = |name: &'static str, default: &str| -> Result<DueTimes, ConfigError> {
            DueTimes::try_from(get(name, default).as_str()).map_err(|problem| ConfigError {
                variable: name,
                problem,
            })
        };
        let acceptance_due = due("CARELOOP_ACCEPTANCE_DUE", "asap=4h,urgent=12h,routine=24h")?;
        let first_contact_due = due(
            "CARELOOP_FIRST_CONTACT_DUE",
            "asap=24h,urgent=48h,routine=72h",
        )?;
        let reroute_after_reject = match get("CARELOOP_REROUTE_AFTER_REJECT", "false").as_str() {
            "true" | "1" | "yes" => true,
            "false" | "0" | "no" => false,
            other => {
                return Err(ConfigError {
                    variable: "CARELOOP_REROUTE_AFTER_REJECT",
                    problem: format!("must be true or false, got {other:?}"),
                });
            }
        };
        let webhook_allowed_hosts: Vec<String> = get("CARELOOP_WEBHOOK_ALLOWED_HOSTS", "")
            .split(',')
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .collect();
        let retry_ms = get("CARELOOP_WEBHOOK_RETRY_BASE_MS", "2000");
        let webhook_retry_base = retry_ms
            .parse::<u64>()
            .ok()
            .filter(|ms| (1..=3_600_000).contains(ms))
            .map(std::time::Duration::from_millis)
            .ok_or_else(|| ConfigError {
                variable: "CARELOOP_WEBHOOK_RETRY_BASE_MS",
                problem: format!("must be milliseconds between 1 and 3600000, got {retry_ms:?}"),
            })?;
        let bad = |variable: &'static str, problem: String| ConfigError { variable, problem };
        let raw = get("CARELOOP_FOLLOWUP_CHECKINS", "7d,14d,30d");
        let mut checkins = raw
            .split(',')
            .map(|d| parse_duration(d.trim()))
            .collect::<Option<Vec<_>>>()
            .filter(|c| !c.is_empty())
            .ok_or_else(|| {
                bad(
                    "CARELOOP_FOLLOWUP_CHECKINS",
                    format!("must be durations like 7d,14d,30d, got {raw:?}"),
                )
            })?;
        checkins.sort();
        let duration = |name: &'static str, default: &str| {
            let raw = get(name, default);
            parse_duration(&raw)
                .ok_or_else(|| bad(name, format!("must be a duration like 30d, got {raw:?}")))
        };
        let ends_after = duration("CARELOOP_FOLLOWUP_ENDS_AFTER", "30d")?;
        let failed_after = duration("CARELOOP_FAILED_AFTER", "14d")?;
        let raw = get("CARELOOP_FAILED_AFTER_ATTEMPTS", "5");
        let failed_after_attempts =
            raw.parse::<u32>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                bad(
                    "CARELOOP_FAILED_AFTER_ATTEMPTS",
                    format!("must be a whole number of at least 1, got {raw:?}"),
                )
            })?;
        let match_weights = MatchWeights::try_from(
            get(
                "CARELOOP_MATCH_WEIGHTS",
                "lived_experience=3,region=1,continuity=2,load=1",
            )
            .as_str(),
        )
        .map_err(|p| bad("CARELOOP_MATCH_WEIGHTS", p))?;
        let raw = get("CARELOOP_MLLP_READ_TIMEOUT_SECS", "30");
        let mllp_read_timeout = raw
            .parse::<u64>()
            .ok()
            .filter(|s| (1..=3600).contains(s))
            .map(std::time::Duration::from_secs)
            .ok_or_else(|| {
                bad(
                    "CARELOOP_MLLP_READ_TIMEOUT_SECS",
                    format!("must be seconds between 1 and 3600, got {raw:?}"),
                )
            })?;
        let raw = get("CARELOOP_REQUEST_TIMEOUT_SECS", "15");
        let request_timeout = raw
            .parse::<u64>()
            .ok()
            .filter(|s| (1..=25).contains(s))
            .map(std::time::Duration::from_secs)
            .ok_or_else(|| {
                bad(
                    "CARELOOP_REQUEST_TIMEOUT_SECS",
                    format!("must be seconds between 1 and 25, got {raw:?}"),
                )
            })?;
        let identity = identity_settings(&lookup, &get, http_addr)?;
        let retention = privacy::retention_settings(&get)?;
        let raw = get("CARELOOP_CASELOAD_NORM", "");
        let caseload_norm = match raw.trim() {
            "" | "off" => None,
            n => Some(
                n.parse::<u32>()
                    .ok()
                    .filter(|n| (1..=200).contains(n))
                    .ok_or_else(|| {
                        bad(
                            "CARELOOP_CASELOAD_NORM",
                            format!("must be people per peer, 1 to 200, got {raw:?}"),
                        )
                    })?,
            ),
        };
        let service_codes = billing::service_codes(&get)?;
        let raw = get("CARELOOP_CARING_CONTACTS", "30d:12");
        let caring_contacts = match raw.trim() {
            "off" => None,
            spec => Some(
                CaringContacts::try_from(spec).map_err(|p| bad("CARELOOP_CARING_CONTACTS", p))?,
            ),
        };
        Ok(Settings {
            retention,
            caseload_norm,
            service_codes,
            request_timeout,
            identity,
            mllp_read_timeout,
            match_weights,
            protocol: FollowUpProtocol {
                checkins,
                ends_after,
                failed_after_attempts,
                failed_after,
                caring_contacts,
            },
            webhook_retry_base,
            webhook_allowed_hosts,
            acceptance_due,
            first_contact_due,
            reroute_after_reject,
            database_url,
            database,
            nats_url,
            stream_replicas,
            stream_placement_tags,
            http_addr,
            mllp_addr,
            namespace,
            jwt_secret_is_dev_default: secret.is_none(),
            jwt_secret: secret.unwrap_or_else(|| DEV_JWT_SECRET.to_string()),
        })
    }
}

impl Settings {
    /// The NATS servers of `NATS_URL`, in order (one, or the cluster's list).
    pub fn nats_servers(&self) -> Vec<String> {
        self.nats_url
            .split(',')
            .map(|u| u.trim().to_string())
            .filter(|u| !u.is_empty())
            .collect()
    }
}

fn database_settings(get: &impl Fn(&str, &str) -> String) -> Result<DatabaseSettings, ConfigError> {
    let number = |variable: &'static str, default: u64, min: u64, max: u64| {
        let raw = get(variable, &default.to_string());
        raw.trim()
            .parse::<u64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| ConfigError {
                variable,
                problem: format!("must be a whole number from {min} to {max}, got {raw:?}"),
            })
    };
    let ms = std::time::Duration::from_millis;
    Ok(DatabaseSettings {
        pool_max: number(
            "CARELOOP_DB_POOL_MAX",
            DatabaseSettings::DEFAULT_POOL_MAX.into(),
            2,
            500,
        )? as u32,
        idle_timeout: std::time::Duration::from_secs(number(
            "CARELOOP_DB_IDLE_TIMEOUT_SECS",
            60,
            1,
            3600,
        )?),
        acquire_timeout: ms(number("CARELOOP_DB_ACQUIRE_TIMEOUT_MS", 2000, 100, 60_000)?),
        statement_timeout: ms(number(
            "CARELOOP_DB_STATEMENT_TIMEOUT_MS",
            5000,
            100,
            600_000,
        )?),
    })
}

fn identity_settings(
    lookup: &impl Fn(&str) -> Option<String>,
    get: &impl Fn(&str, &str) -> String,
    http_addr: SocketAddr,
) -> Result<IdentitySettings, ConfigError> {
    let bad = |variable: &'static str, problem: String| ConfigError { variable, problem };
    let mode = match get("CARELOOP_AUTH", "standard").as_str() {
        "standard" => AuthMode::Standard,
        "dev" => AuthMode::Dev,
        other => {
            return Err(bad(
                "CARELOOP_AUTH",
                format!("must be standard or dev, got {other:?}"),
            ));
        }
    };
    let url = |variable: &'static str, raw: String| -> Result<String, ConfigError> {
        let raw = raw.trim_end_matches('/').to_string();
        if raw.starts_with("http://") || raw.starts_with("https://") {
            Ok(raw)
        } else {
            Err(bad(
                variable,
                format!("must be an http(s) URL, got {raw:?}"),
            ))
        }
    };
    let public_url = url(
        "CARELOOP_PUBLIC_URL",
        get("CARELOOP_PUBLIC_URL", &format!("http://{http_addr}")),
    )?;
    let jwks_url = url(
        "CARELOOP_JWKS_URL",
        get(
            "CARELOOP_JWKS_URL",
            &format!("{public_url}/.well-known/jwks.json"),
        ),
    )?;
    let secret = |name: &'static str| -> Result<Option<String>, ConfigError> {
        if let Some(v) = lookup(name).filter(|v| !v.trim().is_empty()) {
            return Ok(Some(v.trim().to_string()));
        }
        let file = format!("{name}_FILE");
        match lookup(&file).filter(|v| !v.trim().is_empty()) {
            None => Ok(None),
            Some(path) => std::fs::read_to_string(path.trim())
                .map(|v| Some(v.trim().to_string()))
                .map_err(|e| bad(name, format!("{file}: {e}"))),
        }
    };
    let key = |name: &'static str, b64: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(b64.trim().as_bytes())
            .ok()
            .filter(|k| k.len() == 32)
            .ok_or_else(|| {
                bad(
                    name,
                    "must be 32 bytes in base64 (openssl rand -base64 32)".into(),
                )
            })
    };
    let key_encryption_key = match secret("CARELOOP_KEY_ENCRYPTION_KEY")? {
        None => None,
        Some(b64) => Some(key("CARELOOP_KEY_ENCRYPTION_KEY", &b64)?),
    };
    let previous_key_encryption_keys = match secret("CARELOOP_PREVIOUS_KEY_ENCRYPTION_KEYS")? {
        None => vec![],
        Some(list) => list
            .split(',')
            .filter(|k| !k.trim().is_empty())
            .map(|k| key("CARELOOP_PREVIOUS_KEY_ENCRYPTION_KEYS", k))
            .collect::<Result<_, _>>()?,
    };
    let oidc = match lookup("CARELOOP_OIDC_ISSUER").filter(|v| !v.trim().is_empty()) {
        None => None,
        Some(issuer) => {
            let issuer = url("CARELOOP_OIDC_ISSUER", issuer)?;
            let client_id = get("CARELOOP_OIDC_CLIENT_ID", "careloop-console");
            let client_secret = secret("CARELOOP_OIDC_CLIENT_SECRET")?.ok_or_else(|| {
                bad(
                    "CARELOOP_OIDC_CLIENT_SECRET",
                    "is needed with CARELOOP_OIDC_ISSUER (or CARELOOP_OIDC_CLIENT_SECRET_FILE)"
                        .into(),
                )
            })?;
            Some(OidcSettings {
                issuer,
                client_id,
                client_secret,
                scopes: get("CARELOOP_OIDC_SCOPES", "openid profile email careloop"),
                audience: get("CARELOOP_OIDC_AUDIENCE", "careloop-api"),
                api_scope: get("CARELOOP_OIDC_API_SCOPE", "careloop"),
                role_claim: get("CARELOOP_OIDC_ROLE_CLAIM", "careloop_role"),
                facility_claim: get("CARELOOP_OIDC_FACILITY_CLAIM", "careloop_facility"),
                peer_claim: get("CARELOOP_OIDC_PEER_CLAIM", "careloop_peer_id"),
                name_claim: get("CARELOOP_OIDC_NAME_CLAIM", "name"),
            })
        }
    };
    let minutes = |name: &'static str, default: &str, max: u64| {
        let raw = get(name, default);
        raw.parse::<u64>()
            .ok()
            .filter(|m| (1..=max).contains(m))
            .ok_or_else(|| {
                bad(
                    name,
                    format!("must be a whole number from 1 to {max}, got {raw:?}"),
                )
            })
    };
    Ok(IdentitySettings {
        mode,
        public_url,
        jwks_url,
        key_encryption_key,
        previous_key_encryption_keys,
        oidc,
        session_idle: std::time::Duration::from_secs(
            60 * minutes("CARELOOP_SESSION_IDLE_MINUTES", "30", 24 * 60)?,
        ),
        key_rotation: std::time::Duration::from_secs(
            3600 * minutes("CARELOOP_SIGNING_KEY_ROTATION_HOURS", "24", 24 * 365)?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(pairs: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let s = with(&[]).unwrap();
        assert_eq!(
            s.database_url,
            "postgres://postgres@127.0.0.1:5432/careloop"
        );
        assert_eq!(s.nats_url, "nats://127.0.0.1:4222");
        assert_eq!(s.nats_servers(), ["nats://127.0.0.1:4222"]);
        assert_eq!(s.stream_replicas, 1);
        assert!(s.stream_placement_tags.is_empty());
        assert_eq!(s.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(s.mllp_addr.to_string(), "127.0.0.1:2575");
        assert_eq!(s.namespace.as_str(), "careloop");
        assert!(s.jwt_secret_is_dev_default);
        assert_eq!(s.identity.mode, AuthMode::Standard);
        assert_eq!(s.identity.public_url, "http://127.0.0.1:8080");
        assert_eq!(
            s.identity.jwks_url,
            "http://127.0.0.1:8080/.well-known/jwks.json"
        );
        assert!(s.identity.oidc.is_none());
        let caring = s.protocol.caring_contacts.unwrap();
        assert_eq!((caring.every.as_secs(), caring.count), (30 * 86_400, 12));
    }

    #[test]
    fn caring_contacts_are_a_series_or_off() {
        let s = with(&[("CARELOOP_CARING_CONTACTS", "7d:4")]).unwrap();
        let caring = s.protocol.caring_contacts.unwrap();
        assert_eq!((caring.every.as_secs(), caring.count), (7 * 86_400, 4));
        let s = with(&[("CARELOOP_CARING_CONTACTS", "off")]).unwrap();
        assert!(s.protocol.caring_contacts.is_none());
        for bad in ["monthly", "30d:0", "30d:99", "0s:3", "30x:3"] {
            let err = with(&[("CARELOOP_CARING_CONTACTS", bad)]).unwrap_err();
            assert_eq!(err.variable, "CARELOOP_CARING_CONTACTS", "{bad}");
        }
    }

    #[test]
    fn identity_settings_read_and_refuse_by_name() {
        let s = with(&[
            ("CARELOOP_OIDC_ISSUER", "https://idp.example/"),
            ("CARELOOP_OIDC_CLIENT_SECRET", "s3cret"),
            (
                "CARELOOP_KEY_ENCRYPTION_KEY",
                "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
            ),
            ("CARELOOP_AUTH", "dev"),
        ])
        .unwrap();
        let oidc = s.identity.oidc.unwrap();
        assert_eq!(oidc.issuer, "https://idp.example");
        assert_eq!(oidc.role_claim, "careloop_role");
        assert_eq!(s.identity.key_encryption_key.unwrap().len(), 32);
        assert_eq!(s.identity.mode, AuthMode::Dev);
        let err = with(&[("CARELOOP_OIDC_ISSUER", "https://idp.example")]).unwrap_err();
        assert_eq!(err.variable, "CARELOOP_OIDC_CLIENT_SECRET");
        let err = with(&[("CARELOOP_KEY_ENCRYPTION_KEY", "short")]).unwrap_err();
        assert_eq!(err.variable, "CARELOOP_KEY_ENCRYPTION_KEY");
        let err = with(&[("CARELOOP_AUTH", "none")]).unwrap_err();
        assert_eq!(err.variable, "CARELOOP_AUTH");
    }

    #[test]
    fn a_bad_value_names_its_variable() {
        let err = with(&[("CARELOOP_HTTP_ADDR", "localhost")]).unwrap_err();
        assert_eq!(err.variable, "CARELOOP_HTTP_ADDR");
        let err = with(&[("CARELOOP_NAMESPACE", "has.dots")]).unwrap_err();
        assert_eq!(err.variable, "CARELOOP_NAMESPACE");
        let err = with(&[("DATABASE_URL", "mysql://x")]).unwrap_err();
        assert_eq!(err.variable, "DATABASE_URL");
        let err = with(&[("CARELOOP_JWT_SECRET", "short")]).unwrap_err();
        assert_eq!(err.variable, "CARELOOP_JWT_SECRET");
        for bad in ["0", "6", "three"] {
            let err = with(&[("CARELOOP_STREAM_REPLICAS", bad)]).unwrap_err();
            assert_eq!(err.variable, "CARELOOP_STREAM_REPLICAS");
        }
        let err = with(&[("NATS_URL", "nats://a:4222,b:4222")]).unwrap_err();
        assert_eq!(err.variable, "NATS_URL");
    }

    #[test]
    fn a_nats_cluster_is_a_list_of_urls_and_the_stream_is_replicated() {
        let s = with(&[
            ("NATS_URL", "nats://n0:4222, nats://n1:4222,nats://n2:4222"),
            ("CARELOOP_STREAM_REPLICAS", "3"),
            ("CARELOOP_STREAM_PLACEMENT_TAGS", "ssd, eu"),
        ])
        .unwrap();
        assert_eq!(
            s.nats_servers(),
            ["nats://n0:4222", "nats://n1:4222", "nats://n2:4222"]
        );
        assert_eq!(s.stream_replicas, 3);
        assert_eq!(s.stream_placement_tags, ["ssd", "eu"]);
    }
}
