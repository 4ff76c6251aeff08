//! Runs services: the same code runs one service per process (the `services/*`
//! binaries) or all four in one (`careloop dev`).
//!
//! Like mini-redis's server, [`Host::serve`] takes its listener and a shutdown future,
//! so tests start exactly what production starts. On shutdown the HTTP server stops
//! taking requests and finishes the ones in flight, then every relay, consumer and
//! projection finishes the message in hand and stops.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use axum::Router;
use careloop_backoff::Backoff;
use careloop_config::{AuthMode, Namespace, Settings};
use careloop_web::access::AccessRules;
use careloop_web::health::{self, Capability, ReadinessCheck};
use careloop_web::jwks::KeySource;
use careloop_web::{Authenticator, RouteRule};
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::db::{self, Migration};
use crate::nats::EventStream;
use crate::{Consumer, ProjectionRunner, Relay, Shutdown, metrics, nats};

/// The connections a service works with.
#[derive(Clone)]
pub struct Backbone {
    pub pool: PgPool,
    pub nats: async_nats::Client,
    pub js: jetstream::Context,
    /// The namespace's event stream, created by whichever relay or consumer needs it.
    pub stream: EventStream,
    pub namespace: Namespace,
    pub settings: Settings,
    /// How many messages this process's consumers handle at once, all consumers
    /// together: a quarter of the pool. A handling holds its transaction's connection
    /// and its commands take a second, so consumers hold at most half the pool and
    /// requests always find connections.
    pub consumer_slots: Arc<tokio::sync::Semaphore>,
}

impl Backbone {
    /// Connections that contact nothing yet: Postgres connections open on first use
    /// and NATS connects in the background, so a service starts with whatever is up
    /// (a service binary: [`run`]).
    pub async fn start(settings: &Settings) -> anyhow::Result<Self> {
        let pool = db::pool(&settings.database_url, &settings.database)?;
        let nats = nats::connect(&settings.nats_url).await?;
        let js = jetstream::new(nats.clone());
        let stream = EventStream::new(js.clone(), settings.namespace.clone(), settings.into());
        Ok(Backbone {
            pool,
            nats,
            js,
            stream,
            namespace: settings.namespace.clone(),
            settings: settings.clone(),
            consumer_slots: Arc::new(tokio::sync::Semaphore::new(
                (settings.database.pool_max as usize / 4).max(1),
            )),
        })
    }

    /// Connects now: Postgres answers (the database is created if missing) and the
    /// namespace's stream exists. For `careloop dev`, commands and tests, which need
    /// both at once.
    pub async fn connect(settings: &Settings) -> anyhow::Result<Self> {
        let backbone = Self::start(settings).await?;
        db::ensure_database(&backbone.pool).await?;
        backbone.stream.ensure().await?;
        Ok(backbone)
    }
}

impl Backbone {
    /// The relay publishing `service`'s events from `schema`.
    pub fn relay(
        &self,
        service: &'static str,
        schema: &'static str,
        mapper: Arc<dyn crate::IntegrationMapper>,
    ) -> Relay {
        Relay::new(
            self.pool.clone(),
            self.stream.clone(),
            service,
            schema,
            mapper,
        )
    }

    /// `service`'s durable consumer of `source`'s events.
    pub fn consumer(
        &self,
        service: &'static str,
        schema: &'static str,
        source: &'static str,
        handler: Arc<dyn crate::EventHandler>,
    ) -> Consumer {
        Consumer::new(
            self.pool.clone(),
            self.stream.clone(),
            service,
            schema,
            source,
            handler,
        )
        .sharing(self.consumer_slots.clone())
    }

    /// A read model fed from `schema`'s events.
    pub fn projection(
        &self,
        schema: &'static str,
        projection: Arc<dyn crate::Projection>,
    ) -> ProjectionRunner {
        ProjectionRunner::new(self.pool.clone(), schema, projection)
    }
}

/// What a service brings to a host.
pub trait Service: Send + Sync + 'static {
    /// The service's name, used in subjects, consumer names and metric labels.
    fn name(&self) -> &'static str;
    /// The Postgres schema the service owns.
    fn schema(&self) -> &'static str;
    fn migrations(&self) -> &'static [Migration];
    /// The service's `/v1` (and other) routes, state applied.
    fn routes(&self) -> Router;
    /// The access rule of each of those routes (a route without one is refused).
    fn route_rules(&self) -> Vec<RouteRule>;
    /// The outbox relay publishing this service's integration events (`None` for a
    /// service that publishes nothing).
    fn relay(&self) -> Option<Relay>;
    /// One durable consumer per service whose events this one consumes.
    fn consumers(&self) -> Vec<Consumer>;
    /// The read models this service keeps (`careloop replay` rebuilds each).
    fn projections(&self) -> Vec<ProjectionRunner>;
    /// Work fed from the service's own events like a projection, with a stored
    /// position, whose effects are not a read model and must not be redone by a
    /// replay (the closed loop's delivery outbox, for example).
    fn reactors(&self) -> Vec<ProjectionRunner> {
        Vec::new()
    }
    /// Whether the service seals PHI through the vault (its data keys are wrapped by
    /// the key-encryption key, which must then be configured).
    fn holds_phi(&self) -> bool {
        false
    }

    /// The signing keys of careloop's own tokens, when this service holds them (the
    /// identity service): the process then verifies tokens with them directly.
    fn key_source(&self) -> Option<Arc<dyn KeySource>> {
        None
    }
    /// Other background work (deadline checks, webhook delivery), stopped by `shutdown`.
    fn workers(&self, shutdown: &Shutdown) -> Vec<tokio::task::JoinHandle<()>> {
        let _ = shutdown;
        Vec::new()
    }
}

#[derive(Clone)]
pub struct Host {
    pub backbone: Backbone,
    pub services: Vec<Arc<dyn Service>>,
    pub auth: Arc<Authenticator>,
    /// Set once every service's migrations are applied: until then requests are
    /// answered 503 and no background work runs.
    migrated: Arc<AtomicBool>,
    /// Why the start is not done yet (shown by `/readyz`).
    waiting_for: Arc<std::sync::Mutex<Option<String>>>,
}

/// How long a starting process waits between attempts to reach Postgres.
const STARTUP: Backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
/// How often readiness and the dead-letter gauges are refreshed without a probe.
const MONITOR: Duration = Duration::from_secs(10);

impl Host {
    /// A host for `services`, verifying tokens as the settings say.
    pub fn new(backbone: Backbone, services: Vec<Arc<dyn Service>>) -> Self {
        let keys = services.iter().find_map(|s| s.key_source());
        let settings = &backbone.settings;
        let auth = Authenticator::from_settings(&settings.identity, &settings.jwt_secret, keys);
        Host {
            backbone,
            services,
            auth,
            migrated: Arc::new(AtomicBool::new(false)),
            waiting_for: Default::default(),
        }
    }

    /// Applies every service's migrations.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        for s in &self.services {
            db::migrate(&self.backbone.pool, s.schema(), s.migrations()).await?;
        }
        self.migrated.store(true, Ordering::Release);
        Ok(())
    }

    /// What `/readyz` (commands: Postgres, migrations applied) and
    /// `/readyz/publishing` (NATS JetStream answers, the stream exists) check.
    pub fn capabilities(&self) -> Vec<Capability> {
        let pool = self.backbone.pool.clone();
        let migrated = self.migrated.clone();
        let waiting_for = self.waiting_for.clone();
        let client = self.backbone.nats.clone();
        let stream = self.backbone.stream.clone();
        vec![
            Capability {
                name: "commands",
                path: "/readyz",
                checks: vec![
                    ReadinessCheck::new("postgres", move || {
                        let pool = pool.clone();
                        async move {
                            sqlx::query("SELECT 1")
                                .execute(&pool)
                                .await
                                .map(|_| ())
                                .map_err(|e| e.to_string())
                        }
                    }),
                    ReadinessCheck::new("migrations", move || {
                        let done = migrated.load(Ordering::Acquire);
                        let why = waiting_for.lock().map(|w| w.clone()).unwrap_or_default();
                        async move {
                            match (done, why) {
                                (true, _) => Ok(()),
                                (false, Some(why)) => Err(format!("not applied yet: {why}")),
                                (false, None) => Err("not applied yet".into()),
                            }
                        }
                    }),
                ],
            },
            Capability {
                name: "publishing",
                path: "/readyz/publishing",
                checks: vec![ReadinessCheck::new("nats", move || {
                    let state = client.connection_state();
                    let stream = stream.clone();
                    async move {
                        if state != async_nats::connection::State::Connected {
                            return Err(format!("{state:?}"));
                        }
                        // A JetStream round trip: a connected but hung server (or a
                        // stream NATS lost) is not ready either.
                        stream
                            .js
                            .get_stream(stream.namespace.stream_name())
                            .await
                            .map(|_| ())
                            .map_err(|e| format!("event stream: {e}"))
                    }
                })],
            },
        ]
    }

    /// Every service's routes, plus `/healthz`, `/readyz`, `/readyz/publishing`,
    /// `/metrics`.
    pub fn router(&self) -> Router {
        let mut router = health::router(self.capabilities());
        for s in &self.services {
            router = router.merge(s.routes());
        }
        let operations = self
            .services
            .iter()
            .map(|s| crate::operations::Operations {
                service: s.name(),
                schema: s.schema(),
                pool: self.backbone.pool.clone(),
                projections: Arc::new(s.projections()),
                published: s.relay().map(|r| r.published_types()),
            })
            .collect();
        router = router.merge(crate::operations::routes(operations));
        router
            .route_layer(axum::middleware::from_fn_with_state(
                Arc::new(AccessRules::new(&self.route_rules())),
                careloop_web::access::layer,
            ))
            .route_layer(axum::middleware::from_fn_with_state(
                self.migrated.clone(),
                careloop_web::availability::starting,
            ))
            .fallback(|| async { careloop_web::Problem::not_found("no such route") })
            .method_not_allowed_fallback(|| async {
                careloop_web::Problem::new(
                    axum::http::StatusCode::METHOD_NOT_ALLOWED,
                    "this method is not allowed on this route",
                )
            })
            .layer(axum::middleware::from_fn_with_state(
                self.backbone.settings.request_timeout,
                careloop_web::availability::deadline,
            ))
            .layer(axum::middleware::from_fn(careloop_web::limits::body_limit))
            .layer(axum::middleware::from_fn(no_store_by_default))
            .layer(axum::Extension(self.auth.clone()))
            .layer(axum::middleware::from_fn(careloop_web::correlation::layer))
    }

    /// Every route this process serves, with its access rule.
    pub fn route_rules(&self) -> Vec<RouteRule> {
        health::RULES
            .iter()
            .copied()
            .chain(std::iter::once(crate::operations::RULE))
            .chain(self.services.iter().flat_map(|s| s.route_rules()))
            .collect()
    }

    /// Starts every relay, consumer and projection; they stop when `shutdown` fires.
    pub fn spawn_background(&self, shutdown: &Shutdown) -> Vec<tokio::task::JoinHandle<()>> {
        let mut tasks = Vec::new();
        for s in &self.services {
            metrics::register(s.name());
            tasks.extend(s.relay().map(|r| tokio::spawn(r.run(shutdown.clone()))));
            for c in s.consumers() {
                tasks.push(tokio::spawn(c.run(shutdown.clone())));
            }
            for p in s.projections().into_iter().chain(s.reactors()) {
                tasks.push(tokio::spawn(p.run(shutdown.clone())));
            }
            tasks.extend(s.workers(shutdown));
            // The dead-letter gauge comes from the table, so it survives restarts.
            let (pool, name, schema) = (self.backbone.pool.clone(), s.name(), s.schema());
            tasks.push(tokio::spawn(crate::shutdown::every(
                "counting dead letters",
                MONITOR,
                shutdown.clone(),
                move || {
                    let pool = pool.clone();
                    async move {
                        metrics::count_dead_letters(&pool, name, schema).await;
                        Ok(())
                    }
                },
            )));
        }
        let capabilities = self.capabilities();
        tasks.push(tokio::spawn(crate::shutdown::every(
            "checking readiness",
            MONITOR,
            shutdown.clone(),
            move || {
                let capabilities = capabilities.clone();
                async move {
                    for c in &capabilities {
                        health::evaluate(c).await;
                    }
                    Ok(())
                }
            },
        )));
        tasks
    }

    /// Reaches Postgres and applies the migrations (retrying until it can), then runs
    /// the background work until `shutdown`. HTTP is served meanwhile: `/readyz` says
    /// what the start waits for, and other requests are answered 503.
    async fn bring_up(self, mut shutdown: Shutdown) {
        let mut retries = STARTUP.start();
        while !self.migrated.load(Ordering::Acquire) {
            let attempt = async {
                db::ensure_database(&self.backbone.pool).await?;
                self.migrate().await
            };
            match attempt.await {
                Ok(()) => {
                    *self.waiting_for.lock().unwrap_or_else(|e| e.into_inner()) = None;
                    tracing::info!("migrations applied; serving");
                }
                Err(e) => {
                    let why = format!("{e:#}");
                    tracing::warn!(error = %why, "waiting for Postgres");
                    *self.waiting_for.lock().unwrap_or_else(|e| e.into_inner()) = Some(why);
                    tokio::select! {
                        _ = retries.wait() => {}
                        _ = shutdown.wait() => return,
                    }
                }
            }
        }
        let mut tasks: Vec<AbortOnDrop<()>> = self
            .spawn_background(&shutdown)
            .into_iter()
            .map(AbortOnDrop)
            .collect();
        for t in &mut tasks {
            let _ = (&mut t.0).await;
        }
    }

    /// Serves HTTP on `listener` and runs the background work until `signal` resolves,
    /// then drains: in-flight requests finish, background loops finish their message.
    /// Migrations not applied yet (a service binary starting before Postgres) are
    /// applied in the background first.
    pub async fn serve(
        self,
        listener: TcpListener,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let (trigger, shutdown) = Shutdown::new();
        let mut background = AbortOnDrop(tokio::spawn(self.clone().bring_up(shutdown.clone())));
        let mut http_shutdown = shutdown.clone();
        let app = self.router();
        // The peer address reaches handlers (the audit log records where a request
        // came from).
        let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
        let server = axum::serve(listener, app)
            .with_graceful_shutdown(async move { http_shutdown.wait().await });
        let server = AbortOnDrop(tokio::spawn(async move { server.await }));
        signal.await;
        tracing::info!("shutting down: draining requests and background work");
        trigger.trigger();
        // Requests in flight end within their deadline; a stream that never ends by
        // itself (the console's change stream) is cut when that deadline passes, and
        // the browser reconnects to another instance.
        let drain = self.backbone.settings.request_timeout + Duration::from_secs(1);
        let mut server = server;
        match tokio::time::timeout(drain, &mut server.0).await {
            Ok(served) => served??,
            Err(_) => {
                server.0.abort();
                tracing::info!("open streams cut after the drain deadline");
            }
        }
        let _ = (&mut background.0).await;
        Ok(())
    }
}

/// Answers are not cached unless a route says otherwise: most carry PHI or tokens.
async fn no_store_by_default(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut res = next.run(req).await;
    res.headers_mut()
        .entry(axum::http::header::CACHE_CONTROL)
        .or_insert(axum::http::HeaderValue::from_static("no-store"));
    res
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
}

/// Whether a service binary may start with `settings`: outside dev mode it needs the
/// staff's OpenID provider (and, for the identity service, the key store's
/// key-encryption key); dev mode is refused unless asked for, and said loudly.
pub fn check_auth_settings(settings: &Settings, holds_keys: bool) -> anyhow::Result<()> {
    let id = &settings.identity;
    match id.mode {
        AuthMode::Dev => {
            tracing::warn!(
                "CARELOOP_AUTH=dev: dev tokens (careloop token) and the pick-a-demo-person sign-in are accepted. Never outside a laptop."
            );
            Ok(())
        }
        AuthMode::Standard => {
            if id.oidc.is_none() {
                anyhow::bail!(
                    "CARELOOP_OIDC_ISSUER is not set: staff sign in through an OpenID Connect provider (or set CARELOOP_AUTH=dev on a laptop)"
                );
            }
            if holds_keys && id.key_encryption_key.is_none() {
                anyhow::bail!(
                    "CARELOOP_KEY_ENCRYPTION_KEY (or _FILE) is not set: the identity service's signing keys and the PHI vault's data keys are wrapped with it"
                );
            }
            Ok(())
        }
    }
}

/// `main` of a service binary: settings from the environment, then serve `services`
/// on `CARELOOP_HTTP_ADDR` until Ctrl-C or SIGTERM. Nothing needs to be up first:
/// Postgres is reached and migrated in the background, NATS connects when it can.
pub async fn run(make: impl FnOnce(&Backbone) -> Vec<Arc<dyn Service>>) -> anyhow::Result<()> {
    careloop_telemetry::init();
    let settings = Settings::from_env()?;
    let backbone = Backbone::start(&settings).await?;
    let services = make(&backbone);
    let holds_keys = services
        .iter()
        .any(|s| s.key_source().is_some() || s.holds_phi());
    check_auth_settings(&settings, holds_keys)?;
    let host = Host::new(backbone, services);
    let listener = TcpListener::bind(settings.http_addr).await?;
    tracing::info!(addr = %settings.http_addr, "listening");
    host.serve(listener, shutdown_signal()).await
}

/// `main` of a binary running one service.
pub async fn run_one<S: Service>(make: impl FnOnce(&Backbone) -> S) -> anyhow::Result<()> {
    run(|b| vec![Arc::new(make(b)) as Arc<dyn Service>]).await
}

/// A task aborted when its handle is dropped: a host whose `serve` is cancelled mid-
/// flight (a killed process, as tests simulate it) leaves nothing running behind it,
/// and a measure that ends early (the bench's pacer) stops what it started.
pub struct AbortOnDrop<T>(pub tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(move |n| pairs.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone()))
            .unwrap()
    }

    #[test]
    fn a_service_binary_needs_real_identity_or_an_explicit_dev_mode() {
        let err = check_auth_settings(&settings(&[]), false).unwrap_err();
        assert!(err.to_string().contains("CARELOOP_OIDC_ISSUER"), "{err}");
        let oidc = [
            ("CARELOOP_OIDC_ISSUER", "https://idp.example"),
            ("CARELOOP_OIDC_CLIENT_SECRET", "s"),
        ];
        assert!(check_auth_settings(&settings(&oidc), false).is_ok());
        let err = check_auth_settings(&settings(&oidc), true).unwrap_err();
        assert!(
            err.to_string().contains("CARELOOP_KEY_ENCRYPTION_KEY"),
            "{err}"
        );
        let with_kek = [
            oidc[0],
            oidc[1],
            (
                "CARELOOP_KEY_ENCRYPTION_KEY",
                "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
            ),
        ];
        assert!(check_auth_settings(&settings(&with_kek), true).is_ok());
        assert!(check_auth_settings(&settings(&[("CARELOOP_AUTH", "dev")]), true).is_ok());
    }
}
