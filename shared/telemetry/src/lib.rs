//! Tracing set-up shared by every careloop process.
//!
//! Log lines carry the correlation id as a span field; they never carry PHI (names,
//! birth dates, phone numbers, identifiers), which only the intake service holds.

use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Installs the global subscriber once. The level comes from `RUST_LOG` in the
/// `target=level,...` form (default `info`). Safe to call more than once.
pub fn init() {
    let filter: Targets = std::env::var("RUST_LOG")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            "info,sqlx=warn,async_nats=warn"
                .parse()
                .expect("valid filter")
        });
    let _ = tracing_subscriber::registry()
        .with(tracing_subscriber::fmt::layer().with_target(true))
        .with(filter)
        .try_init();
}

/// Installs a subscriber writing every careloop log line, down to `trace`, to
/// `writer`: tests use it to prove what the logs never contain.
pub fn init_with_writer<W>(writer: W)
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    let filter: Targets =
        "trace,sqlx=info,async_nats=info,hyper=info,h2=info,tokio=info,runtime=info"
            .parse()
            .expect("valid filter");
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(writer),
        )
        .with(filter)
        .try_init();
}
