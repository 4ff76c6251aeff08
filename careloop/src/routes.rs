//! `careloop routes`: every route each service binary serves, with its access rule.
//!
//! The list is read from the services themselves (`Host::route_rules` of a host
//! running that one service, exactly as `careloop-<service>` does), built on a
//! backbone that never connects, so it needs neither Postgres nor NATS. The front
//! door's configuration is generated from it ([`crate::frontdoor`]), and a test checks
//! that each binary's router serves exactly these routes.

use std::sync::Arc;

use careloop_backbone::{Backbone, Host, Service};
use careloop_config::Settings;
use careloop_follow_up::FollowUpService;
use careloop_intake::IntakeService;
use careloop_peer_assignment::PeerAssignmentService;
use careloop_referral::ReferralService;
use careloop_web::{RouteRule, Rule};

/// One route of one service binary.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Route {
    /// The service (`intake`, `referral`, `peer-assignment`, `follow-up`); its binary
    /// is `careloop-<service>`.
    pub service: &'static str,
    pub method: &'static str,
    /// The path as the router has it (`/v1/referrals/{id}`).
    pub path: &'static str,
    /// `open`, or the scopes a token needs (`token system/Task.read`).
    pub rule: String,
}

/// The services in the order the front door and the manifests list them.
pub const SERVICES: [&str; 4] = ["intake", "referral", "peer-assignment", "follow-up"];

/// A backbone whose pool and NATS client connect lazily to nothing: enough to build
/// the services and their routers without any server (needs a Tokio runtime).
pub async fn offline_backbone() -> anyhow::Result<Backbone> {
    let settings = Settings::from_lookup(|name| match name {
        // Nothing is served: dev mode only spares the start-up checks.
        "CARELOOP_AUTH" => Some("dev".into()),
        // Nothing listens there: nothing is ever contacted.
        "DATABASE_URL" => Some("postgres://careloop-offline@127.0.0.1:1/offline".into()),
        "NATS_URL" => Some("nats://127.0.0.1:1".into()),
        _ => None,
    })?;
    Backbone::start(&settings).await
}

/// Each service, built on `backbone`, in [`SERVICES`] order.
pub fn services(backbone: &Backbone) -> Vec<Arc<dyn Service>> {
    vec![
        Arc::new(IntakeService::new(backbone)),
        Arc::new(ReferralService::new(backbone)),
        Arc::new(PeerAssignmentService::new(backbone)),
        Arc::new(FollowUpService::new(backbone)),
    ]
}

/// The host a service binary runs (`careloop_backbone::host::run_one`).
pub fn host_of(backbone: &Backbone, service: Arc<dyn Service>) -> Host {
    Host::new(backbone.clone(), vec![service])
}

/// Every route of every service binary, sorted by service (in [`SERVICES`] order),
/// path and method.
pub fn all(backbone: &Backbone) -> Vec<Route> {
    let mut routes = Vec::new();
    for service in services(backbone) {
        let name = service.name();
        for r in host_of(backbone, service).route_rules() {
            routes.push(Route {
                service: name,
                method: r.method,
                path: r.path,
                rule: describe(&r),
            });
        }
    }
    let order = |s: &str| SERVICES.iter().position(|x| *x == s).unwrap_or(usize::MAX);
    routes.sort_by(|a, b| {
        (order(a.service), a.path, a.method).cmp(&(order(b.service), b.path, b.method))
    });
    routes.dedup();
    routes
}

/// Whether `path` matches the router pattern `pattern` (`{name}`: one non-empty
/// segment; `{*name}`: the non-empty rest).
pub fn pattern_matches(pattern: &str, path: &str) -> bool {
    let mut want = pattern.split('/');
    let mut got = path.split('/');
    loop {
        match (want.next(), got.next()) {
            (None, None) => return true,
            (Some(w), Some(g)) if w.starts_with("{*") => {
                return !g.is_empty() || got.next().is_some();
            }
            (Some(w), Some(g)) if w.starts_with('{') => {
                if g.is_empty() {
                    return false;
                }
            }
            (Some(w), Some(g)) if w == g => {}
            _ => return false,
        }
    }
}

fn describe(r: &RouteRule) -> String {
    match r.rule {
        Rule::Open => "open".into(),
        Rule::Token(needs) => {
            let scopes: Vec<String> = needs.iter().map(|n| n.describe()).collect();
            format!("token {}", scopes.join(" "))
        }
    }
}

/// The table `careloop routes` prints.
pub fn table(routes: &[Route]) -> String {
    let w = |f: fn(&Route) -> usize, title: &str| {
        routes.iter().map(f).max().unwrap_or(0).max(title.len())
    };
    let (ws, wm, wp) = (
        w(|r| r.service.len(), "SERVICE"),
        w(|r| r.method.len(), "METHOD"),
        w(|r| r.path.len(), "PATH"),
    );
    let mut out = format!(
        "{:ws$}  {:wm$}  {:wp$}  RULE\n",
        "SERVICE", "METHOD", "PATH"
    );
    for r in routes {
        out.push_str(&format!(
            "{:ws$}  {:wm$}  {:wp$}  {}\n",
            r.service, r.method, r.path, r.rule
        ));
    }
    out
}

/// A concrete path for a route pattern (`{id}` → a sample segment), for tests.
#[cfg(test)]
pub(crate) fn tests_sample(path: &str) -> String {
    path.split('/')
        .map(|seg| {
            if seg.starts_with("{*") {
                "sample/file.js".to_string()
            } else if seg.starts_with('{') {
                "sample-1".to_string()
            } else {
                seg.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Method, Request, StatusCode};
    use tower::ServiceExt;

    /// Whether `router` has a route for `method path` (as opposed to answering with
    /// its fallbacks: 404 "no such route" or 405).
    async fn serves(router: &axum::Router, method: &str, path: &str) -> bool {
        let req = Request::builder()
            .method(Method::from_bytes(method.as_bytes()).unwrap())
            .uri(path)
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap();
        let res = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            router.clone().oneshot(req),
        )
        .await
        .expect("the router answers")
        .unwrap();
        let status = res.status();
        if status == StatusCode::METHOD_NOT_ALLOWED {
            return false;
        }
        if status != StatusCode::NOT_FOUND {
            return true;
        }
        let body = axum::body::to_bytes(res.into_body(), 1 << 20)
            .await
            .unwrap_or_default();
        !String::from_utf8_lossy(&body).contains("no such route")
    }

    #[tokio::test]
    async fn every_binary_serves_exactly_its_declared_routes() {
        let backbone = offline_backbone().await.unwrap();
        let routes = all(&backbone);
        for service in services(&backbone) {
            let name = service.name();
            let router = host_of(&backbone, service).router();
            for r in &routes {
                let path = tests_sample(r.path);
                // Its own route, or another service's whose sample path one of its own
                // patterns also matches (`POST /v1/referrals/{id}/{action}` takes
                // `.../contacts` too: why the front door routes by the full pattern).
                let own = routes.iter().any(|o| {
                    o.service == name && o.method == r.method && pattern_matches(o.path, &path)
                });
                let served = serves(&router, r.method, &path).await;
                assert_eq!(
                    served,
                    own,
                    "careloop-{name}: {} {} ({}'s route) is {}served",
                    r.method,
                    r.path,
                    r.service,
                    if served { "" } else { "not " }
                );
            }
        }
    }

    #[test]
    fn patterns_match_like_the_router() {
        assert!(pattern_matches("/v1/referrals/{id}", "/v1/referrals/r1"));
        assert!(!pattern_matches("/v1/referrals/{id}", "/v1/referrals/"));
        assert!(!pattern_matches("/v1/referrals/{id}", "/v1/referrals/r1/x"));
        assert!(pattern_matches(
            "/v1/referrals/{id}/{action}",
            "/v1/referrals/r1/contacts"
        ));
        assert!(pattern_matches("/assets/{*path}", "/assets/a/b.js"));
        assert!(!pattern_matches("/assets/{*path}", "/assets/"));
        assert!(pattern_matches("/", "/"));
        assert!(!pattern_matches("/", "/x"));
    }

    #[tokio::test]
    async fn the_list_names_every_service_and_the_shared_routes() {
        let backbone = offline_backbone().await.unwrap();
        let routes = all(&backbone);
        for s in SERVICES {
            for (m, p) in [
                ("GET", "/healthz"),
                ("GET", "/readyz"),
                ("GET", "/metrics"),
                ("GET", careloop_backbone::operations::PATH),
            ] {
                assert!(
                    routes
                        .iter()
                        .any(|r| r.service == s && r.method == m && r.path == p),
                    "{s} serves {m} {p}"
                );
            }
        }
        let owner = |m: &str, p: &str| {
            routes
                .iter()
                .find(|r| r.method == m && r.path == p)
                .map(|r| r.service)
        };
        assert_eq!(owner("POST", "/v1/referrals"), Some("intake"));
        assert_eq!(owner("GET", "/v1/referrals"), Some("referral"));
        assert_eq!(
            owner("POST", "/v1/referrals/{id}/contacts"),
            Some("follow-up")
        );
        assert_eq!(
            owner("GET", "/v1/referrals/{id}/matches"),
            Some("peer-assignment")
        );
        assert_eq!(owner("GET", "/v1/reports/continuity"), Some("follow-up"));
        assert_eq!(owner("GET", "/session/stream"), Some("intake"));
        let printed = table(&routes);
        assert!(printed.starts_with("SERVICE"));
        assert_eq!(printed.lines().count(), routes.len() + 1);
    }
}
