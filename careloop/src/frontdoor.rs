//! `careloop frontdoor`: the front door's nginx configuration, generated from the
//! routes the services declare ([`crate::routes`]), so clients see one base URL and a
//! new route cannot be forgotten.
//!
//! Routing follows the services' own router (matchit): a path is matched against
//! every route pattern, a literal segment beats a `{param}`, which beats a `{*rest}`;
//! then the method picks the service where one pattern is shared (`POST
//! /v1/referrals` is intake's, `GET /v1/referrals` referral's). In nginx: an exact
//! location per literal path, a regex location per pattern with parameters, written
//! most specific first (nginx takes the first regex that matches), and a `map` on the
//! method where services share a pattern. The console's event stream is not buffered;
//! HL7 v2 MLLP gets its own TCP listener (the `stream` module).
//!
//! Routes every process serves (`/healthz`, `/readyz`, `/metrics`) describe one
//! instance: probes and Prometheus reach the instances directly, and the front door
//! answers `/healthz` itself and keeps the other two to the inside.
//! `/v1/operations/backbone/{service}` goes to the named service.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::routes::{Route, SERVICES};

/// Where the generated files live, relative to the repository root. Both files are
/// the same configuration (Kustomize reads only files below its own folder).
pub const COMMITTED: [&str; 2] = [
    "deploy/frontdoor/nginx.conf",
    "deploy/kubernetes/base/frontdoor/nginx.conf",
];
/// The route table, next to the configuration, for reviewers.
pub const ROUTES_TABLE: &str = "deploy/frontdoor/routes.txt";

/// What differs between deployments of the same routing.
#[derive(Debug, Clone)]
pub struct NginxOptions {
    /// HTTP listen address (`8080`, `127.0.0.1:18080`).
    pub listen: String,
    /// MLLP (TCP) listen address.
    pub mllp_listen: String,
    /// The instances of each service (`host:port`).
    pub upstreams: BTreeMap<String, Vec<String>>,
    /// The instances serving MLLP (intake's).
    pub mllp_upstreams: Vec<String>,
    /// `load_module` of the stream module, where nginx builds it as a dynamic module
    /// (Debian: `/usr/lib/nginx/modules/ngx_stream_module.so`).
    pub stream_module: Option<String>,
    /// A writable directory for the pid file and temporary files (the root file
    /// system is read-only in Kubernetes).
    pub runtime_dir: String,
    /// Where logs go: `-` for stdout/stderr, or a directory.
    pub log_dir: String,
    /// Address ranges of proxies in front (the Ingress controller) whose
    /// `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
    /// Adds `X-Careloop-Upstream` (the instance that answered) to every answer: for
    /// the routing test, never in production.
    pub expose_upstream: bool,
}

impl Default for NginxOptions {
    /// The Kubernetes deployment: each service behind its Service name.
    fn default() -> Self {
        NginxOptions {
            listen: "8080".into(),
            mllp_listen: "2575".into(),
            upstreams: SERVICES
                .iter()
                .map(|s| (s.to_string(), vec![format!("{s}:8080")]))
                .collect(),
            mllp_upstreams: vec!["intake:2575".into()],
            stream_module: None,
            runtime_dir: "/tmp".into(),
            log_dir: "-".into(),
            trusted_proxies: vec![
                "10.0.0.0/8".into(),
                "172.16.0.0/12".into(),
                "192.168.0.0/16".into(),
            ],
            expose_upstream: false,
        }
    }
}

/// The nginx upstream name of a service.
pub fn upstream(service: &str) -> String {
    format!("careloop_{}", service.replace('-', "_"))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Match {
    Exact(String),
    Regex(String),
}

/// One nginx location: a route pattern and who serves each method.
#[derive(Debug, Clone)]
struct Location {
    pattern: String,
    matcher: Match,
    /// Method → service.
    methods: BTreeMap<String, &'static str>,
}

impl Location {
    fn services(&self) -> Vec<&'static str> {
        let mut s: Vec<&'static str> = self.methods.values().copied().collect();
        s.sort();
        s.dedup();
        s
    }

    /// The service of methods not listed (HEAD goes with GET).
    fn default_service(&self) -> &'static str {
        self.methods
            .get("GET")
            .or_else(|| self.methods.values().next())
            .copied()
            .expect("a location has a method")
    }

    fn map_variable(&self) -> String {
        let name: String = self
            .pattern
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        format!("careloop_route{}", name.trim_end_matches('_'))
    }

    /// matchit's precedence: per segment, literal (0) before `{param}` (1) before
    /// `{*rest}` (2).
    fn specificity(&self) -> Vec<u8> {
        self.pattern
            .split('/')
            .map(|s| {
                if s.starts_with("{*") {
                    2
                } else if s.starts_with('{') {
                    1
                } else {
                    0
                }
            })
            .collect()
    }
}

fn regex_escape(s: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if ".+*?()[]{}|^$\\".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn matcher(pattern: &str) -> Match {
    if !pattern.contains('{') {
        return Match::Exact(pattern.to_string());
    }
    let segments: Vec<String> = pattern
        .split('/')
        .map(|s| {
            if s.starts_with("{*") {
                ".+".to_string()
            } else if s.starts_with('{') {
                "[^/]+".to_string()
            } else {
                regex_escape(s)
            }
        })
        .collect();
    Match::Regex(format!("^{}$", segments.join("/")))
}

/// A route every service serves (health, metrics, operations).
fn is_per_process(routes: &[Route], r: &Route) -> bool {
    SERVICES.iter().all(|s| {
        routes
            .iter()
            .any(|o| o.service == *s && o.method == r.method && o.path == r.path)
    })
}

/// The locations, exact ones first, then regexes most specific first.
fn locations(routes: &[Route]) -> Vec<Location> {
    let mut by_path: BTreeMap<&str, BTreeMap<String, &'static str>> = BTreeMap::new();
    for r in routes.iter().filter(|r| !is_per_process(routes, r)) {
        let previous = by_path
            .entry(r.path)
            .or_default()
            .insert(r.method.to_string(), r.service);
        assert!(
            previous.is_none_or(|p| p == r.service),
            "{} {} is declared by two services",
            r.method,
            r.path
        );
    }
    // The operations view of each service, by its name.
    for s in SERVICES {
        let path = careloop_backbone::operations::PATH.replace("{service}", s);
        let path: &'static str = Box::leak(path.into_boxed_str());
        by_path.entry(path).or_default().insert("GET".into(), s);
    }
    let mut locations: Vec<Location> = by_path
        .into_iter()
        .map(|(pattern, methods)| Location {
            pattern: pattern.to_string(),
            matcher: matcher(pattern),
            methods,
        })
        .collect();
    locations.sort_by(|a, b| {
        let is_regex = |l: &Location| matches!(l.matcher, Match::Regex(_));
        (is_regex(a), a.specificity(), &a.pattern).cmp(&(is_regex(b), b.specificity(), &b.pattern))
    });
    locations
}

/// Which service the generated configuration sends `method path` to (`None`: the
/// front door answers itself), decided as nginx decides: exact locations, then the
/// first matching regex, then the method.
pub fn route_of(routes: &[Route], method: &str, path: &str) -> Option<&'static str> {
    let locations = locations(routes);
    let hit = locations
        .iter()
        .find(|l| l.matcher == Match::Exact(path.to_string()))
        .or_else(|| {
            locations.iter().find(|l| {
                matches!(l.matcher, Match::Regex(_))
                    && crate::routes::pattern_matches(&l.pattern, path)
            })
        })?;
    Some(
        hit.methods
            .get(method)
            .copied()
            .unwrap_or_else(|| hit.default_service()),
    )
}

/// The complete nginx.conf.
pub fn nginx(routes: &[Route], o: &NginxOptions) -> String {
    let locations = locations(routes);
    let mut c = String::new();
    let w = &mut c;
    let log = |name: &str| {
        if o.log_dir == "-" {
            if name == "error" {
                "/dev/stderr".to_string()
            } else {
                "/dev/stdout".to_string()
            }
        } else {
            format!("{}/{name}.log", o.log_dir)
        }
    };
    let rt = &o.runtime_dir;
    writeln!(
        w,
        "# careloop's front door: one base URL for the four services, and MLLP.\n\
         # GENERATED by `careloop frontdoor write` from the routes the services declare\n\
         # (`careloop routes`); do not edit. A test (careloop/src/frontdoor.rs) fails when\n\
         # this file differs from what the code generates."
    )
    .unwrap();
    if let Some(m) = &o.stream_module {
        writeln!(w, "load_module {m};").unwrap();
    }
    writeln!(
        w,
        "worker_processes auto;\npid {rt}/nginx.pid;\nerror_log {} warn;\n\nevents {{\n    worker_connections 4096;\n}}\n",
        log("error")
    )
    .unwrap();

    writeln!(w, "http {{").unwrap();
    writeln!(
        w,
        "    server_tokens off;\n    \
         client_body_temp_path {rt}/client_body;\n    \
         proxy_temp_path {rt}/proxy;\n    \
         fastcgi_temp_path {rt}/fastcgi;\n    \
         uwsgi_temp_path {rt}/uwsgi;\n    \
         scgi_temp_path {rt}/scgi;\n    \
         log_format careloop '$remote_addr \"$request\" $status $body_bytes_sent '\n                        \
         '$request_time upstream=$upstream_addr upstream_status=$upstream_status';\n    \
         access_log {} careloop;\n    \
         # The services decide (FHIR Bundles are larger than nginx's 1 MiB default).\n    \
         client_max_body_size 4m;\n    \
         keepalive_timeout 65s;",
        log("access")
    )
    .unwrap();
    if !o.trusted_proxies.is_empty() {
        writeln!(
            w,
            "\n    # The client's address, as the proxy in front (the Ingress controller) saw it."
        )
        .unwrap();
        for p in &o.trusted_proxies {
            writeln!(w, "    set_real_ip_from {p};").unwrap();
        }
        writeln!(
            w,
            "    real_ip_header X-Forwarded-For;\n    real_ip_recursive on;"
        )
        .unwrap();
    }
    writeln!(w).unwrap();
    for s in SERVICES {
        writeln!(w, "    upstream {} {{", upstream(s)).unwrap();
        for server in o.upstreams.get(s).into_iter().flatten() {
            writeln!(w, "        server {server} max_fails=1 fail_timeout=5s;").unwrap();
        }
        writeln!(w, "        keepalive 32;\n    }}").unwrap();
    }
    writeln!(w).unwrap();
    writeln!(
        w,
        "    # Patterns several services share pick the service by method (HEAD goes with GET)."
    )
    .unwrap();
    for l in locations.iter().filter(|l| l.services().len() > 1) {
        writeln!(w, "    map $request_method ${} {{", l.map_variable()).unwrap();
        for (m, s) in &l.methods {
            if *s != l.default_service() {
                writeln!(w, "        {m} {};", upstream(s)).unwrap();
            }
        }
        writeln!(
            w,
            "        default {};\n    }}",
            upstream(l.default_service())
        )
        .unwrap();
    }
    writeln!(w).unwrap();

    writeln!(w, "    server {{\n        listen {};", o.listen).unwrap();
    writeln!(
        w,
        "        proxy_http_version 1.1;\n        \
         proxy_set_header Connection \"\";\n        \
         proxy_set_header Host $http_host;\n        \
         # The services read the client's address from the first X-Forwarded-For entry:\n        \
         # set it, never append to what the client sent.\n        \
         proxy_set_header X-Forwarded-For $remote_addr;\n        \
         proxy_set_header X-Forwarded-Proto $scheme;\n        \
         proxy_set_header X-Forwarded-Host $host;\n        \
         proxy_connect_timeout 5s;\n        \
         proxy_send_timeout 60s;\n        \
         proxy_read_timeout 60s;\n        \
         # A refused connection (an instance gone) is tried on the next instance; a\n        \
         # request already sent is not (nginx never resends a POST on its own).\n        \
         proxy_next_upstream error timeout;\n        \
         proxy_next_upstream_tries 2;"
    )
    .unwrap();
    if o.expose_upstream {
        writeln!(
            w,
            "        # Test only: which instance answered.\n        \
             add_header X-Careloop-Upstream $upstream_addr always;"
        )
        .unwrap();
    }
    writeln!(
        w,
        "\n        # The front door's own liveness; each instance's /healthz, /readyz and\n        \
         # /metrics are reached directly (probes, Prometheus), not through here.\n        \
         location = /healthz {{\n            \
         default_type text/plain;\n            \
         return 200 \"ok\\n\";\n        }}\n"
    )
    .unwrap();
    for l in &locations {
        let (head, pattern) = match &l.matcher {
            Match::Exact(p) => ("location =", p.clone()),
            Match::Regex(r) => ("location ~", format!("\"{r}\"")),
        };
        let methods: Vec<String> = l.methods.iter().map(|(m, s)| format!("{m} {s}")).collect();
        writeln!(w, "        # {}: {}", l.pattern, methods.join(", ")).unwrap();
        writeln!(w, "        {head} {pattern} {{").unwrap();
        if l.pattern == "/session/stream" {
            writeln!(
                w,
                "            # Server-sent events: pass every event on at once, keep the stream open.\n            \
                 proxy_buffering off;\n            \
                 proxy_cache off;\n            \
                 proxy_read_timeout 1h;"
            )
            .unwrap();
        }
        if l.services().len() > 1 {
            writeln!(w, "            proxy_pass http://${};", l.map_variable()).unwrap();
        } else {
            writeln!(
                w,
                "            proxy_pass http://{};",
                upstream(l.services()[0])
            )
            .unwrap();
        }
        writeln!(w, "        }}").unwrap();
    }
    writeln!(
        w,
        "\n        # Anything else is no route of careloop's.\n        \
         location / {{\n            \
         default_type application/problem+json;\n            \
         return 404 '{{\"type\":\"about:blank\",\"title\":\"Not Found\",\"status\":404,\"detail\":\"no such route\"}}';\n        \
         }}\n    }}\n}}\n"
    )
    .unwrap();

    writeln!(
        w,
        "# HL7 v2 over MLLP: TCP to intake's listeners, each connection to one instance.\n\
         stream {{\n    \
         log_format careloop_mllp '$remote_addr $status $bytes_sent $bytes_received $session_time upstream=$upstream_addr';\n    \
         access_log {} careloop_mllp;\n    \
         upstream careloop_mllp {{",
        log("mllp")
    )
    .unwrap();
    for server in &o.mllp_upstreams {
        writeln!(w, "        server {server} max_fails=1 fail_timeout=5s;").unwrap();
    }
    writeln!(
        w,
        "    }}\n    server {{\n        \
         listen {};\n        \
         proxy_pass careloop_mllp;\n        \
         proxy_connect_timeout 5s;\n        \
         # Longer than intake's own idle limit (CARELOOP_MLLP_READ_TIMEOUT_SECS).\n        \
         proxy_timeout 1h;\n    }}\n}}",
        o.mllp_listen
    )
    .unwrap();
    c
}

/// Parses `careloop frontdoor nginx`'s options.
pub fn options(args: &[String]) -> anyhow::Result<NginxOptions> {
    use anyhow::{Context, bail};
    let mut o = NginxOptions::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--listen" => o.listen = value()?.clone(),
            "--mllp-listen" => o.mllp_listen = value()?.clone(),
            "--upstream" => {
                let v = value()?;
                let (service, servers) = v
                    .split_once('=')
                    .context("--upstream SERVICE=HOST:PORT[,HOST:PORT...]")?;
                if !SERVICES.contains(&service) {
                    bail!("--upstream: no service {service:?}; known: {SERVICES:?}");
                }
                o.upstreams.insert(
                    service.to_string(),
                    servers.split(',').map(str::to_string).collect(),
                );
            }
            "--mllp-upstream" => {
                o.mllp_upstreams = value()?.split(',').map(str::to_string).collect();
            }
            "--stream-module" => o.stream_module = Some(value()?.clone()),
            "--runtime-dir" => o.runtime_dir = value()?.clone(),
            "--log-dir" => o.log_dir = value()?.clone(),
            "--trust-proxy" => o.trusted_proxies = vec![value()?.clone()],
            "--no-trusted-proxies" => o.trusted_proxies.clear(),
            "--expose-upstream" => o.expose_upstream = true,
            other => bail!("unknown option {other:?}; see `careloop help`"),
        }
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes;

    fn repo_root() -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf()
    }

    #[tokio::test]
    async fn the_committed_front_door_is_the_generated_one() {
        let backbone = routes::offline_backbone().await.unwrap();
        let all = routes::all(&backbone);
        let expected = nginx(&all, &NginxOptions::default());
        for file in COMMITTED {
            let committed = std::fs::read_to_string(repo_root().join(file)).unwrap_or_default();
            assert!(
                committed == expected,
                "{file} is not what the routes generate: run `cargo run -p careloop-app -- frontdoor write`"
            );
        }
        let table = std::fs::read_to_string(repo_root().join(ROUTES_TABLE)).unwrap_or_default();
        assert!(
            table == routes::table(&all),
            "{ROUTES_TABLE} is not `careloop routes`: run `cargo run -p careloop-app -- frontdoor write`"
        );
    }

    #[tokio::test]
    async fn every_declared_route_reaches_its_service_through_the_front_door() {
        let backbone = routes::offline_backbone().await.unwrap();
        let all = routes::all(&backbone);
        for r in all.iter().filter(|r| !is_per_process(&all, r)) {
            let path = routes::tests_sample(r.path);
            assert_eq!(
                route_of(&all, r.method, &path),
                Some(r.service),
                "{} {} ({path}) must reach {}",
                r.method,
                r.path,
                r.service
            );
        }
        // Shared prefixes, by full pattern and method.
        let to = |m: &str, p: &str| route_of(&all, m, p);
        assert_eq!(to("POST", "/v1/referrals"), Some("intake"));
        assert_eq!(to("GET", "/v1/referrals"), Some("referral"));
        assert_eq!(to("HEAD", "/v1/referrals"), Some("referral"));
        assert_eq!(to("POST", "/v1/referrals/r1/contacts"), Some("follow-up"));
        assert_eq!(to("POST", "/v1/referrals/r1/reject"), Some("referral"));
        assert_eq!(
            to("PUT", "/v1/referrals/r1/assignment"),
            Some("peer-assignment")
        );
        assert_eq!(to("GET", "/v1/referrals/r1/contact-card"), Some("intake"));
        assert_eq!(to("GET", "/v1/referrals/r1"), Some("referral"));
        assert_eq!(to("POST", "/v1/referrals/people"), Some("intake"));
        assert_eq!(to("GET", "/assets/app/main.js"), Some("intake"));
        assert_eq!(to("GET", "/fhir/Task/r1"), Some("intake"));
        for s in SERVICES {
            assert_eq!(to("GET", &format!("/v1/operations/backbone/{s}")), Some(s));
        }
        assert_eq!(to("GET", "/metrics"), None);
        assert_eq!(to("GET", "/nothing/here"), None);
    }

    #[tokio::test]
    async fn the_configuration_has_what_the_front_door_needs() {
        let backbone = routes::offline_backbone().await.unwrap();
        let conf = nginx(&routes::all(&backbone), &NginxOptions::default());
        let stream = conf.split("location = /session/stream {").nth(1).unwrap();
        let stream = &stream[..stream.find('}').unwrap()];
        assert!(stream.contains("proxy_buffering off;"), "{stream}");
        assert!(stream.contains("proxy_read_timeout 1h;"), "{stream}");
        assert!(conf.contains("proxy_set_header X-Forwarded-For $remote_addr;"));
        assert!(conf.contains("stream {") && conf.contains("listen 2575;"));
        assert!(!conf.contains("X-Careloop-Upstream"));
        // The follow-up's literal segment is tried before referral's `{action}`.
        let contacts = conf.find("/contacts$").unwrap();
        let action = conf.find("\"^/v1/referrals/[^/]+/[^/]+$\"").unwrap();
        assert!(contacts < action);
    }
}
