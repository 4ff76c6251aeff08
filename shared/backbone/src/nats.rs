//! NATS JetStream: the connection and the namespaced stream of integration events.
//!
//! Only features of nats-server 2.9 are used (one filter subject per consumer, no
//! stream metadata). JetStream is never the only copy of an event: every event is in
//! a service's Postgres events table first, and the relay sends again what JetStream
//! did not acknowledge.

use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, stream};
use careloop_config::Namespace;

pub async fn connect(url: &str) -> anyhow::Result<async_nats::Client> {
    async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .with_context(|| format!("could not connect to NATS at {url} (NATS_URL)"))
}

/// Creates (or finds) the namespace's event stream.
pub async fn ensure_stream(js: &jetstream::Context, ns: &Namespace) -> anyhow::Result<()> {
    js.get_or_create_stream(stream::Config {
        name: ns.stream_name(),
        subjects: vec![ns.all_events()],
        storage: stream::StorageType::File,
        // JetStream drops a re-sent event (same Nats-Msg-Id) within this window.
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await
    .with_context(|| format!("creating JetStream stream {}", ns.stream_name()))?;
    Ok(())
}
