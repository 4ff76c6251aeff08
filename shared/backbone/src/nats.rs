//! NATS JetStream: the connection and the namespaced stream of integration events.
//!
//! Only features of nats-server 2.9 are used (one filter subject per consumer, no
//! stream metadata). JetStream is never the only copy of an event: every event is in
//! a service's Postgres events table first, and the relay sends again what JetStream
//! did not acknowledge.

use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, stream};
use careloop_backoff::Backoff;
use careloop_config::{Namespace, Settings};

/// How long the first connection is retried (every server of the list, with backoff)
/// before start-up fails; a rolling restart of the NATS cluster takes less.
const INITIAL_CONNECT: Duration = Duration::from_secs(30);
const INITIAL_RETRY: Backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));

/// Connects to NATS. `url` is one `nats://` URL or a comma-separated list of a
/// cluster's servers (`NATS_URL`); the client also learns the other servers the
/// cluster announces. Once connected it reconnects for ever, to any server of the
/// cluster, across the loss of a node (publishes and pulls fail meanwhile, and the
/// relay and consumers retry them).
pub async fn connect(url: &str) -> anyhow::Result<async_nats::Client> {
    let servers: Vec<String> = url
        .split(',')
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
        .collect();
    let deadline = tokio::time::Instant::now() + INITIAL_CONNECT;
    let mut retries = INITIAL_RETRY.start();
    loop {
        let connected = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(5))
            // Never give up reconnecting (the default too, said explicitly).
            .max_reconnects(None)
            .event_callback(|event| async move {
                match event {
                    async_nats::Event::Connected => tracing::info!("NATS connected"),
                    async_nats::Event::Disconnected => {
                        tracing::warn!("NATS disconnected; reconnecting")
                    }
                    other => tracing::debug!(%other, "NATS event"),
                }
            })
            .connect(servers.as_slice())
            .await;
        match connected {
            Ok(client) => return Ok(client),
            Err(e) if tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, servers = %url, "NATS not reachable yet; retrying");
                retries.wait().await;
            }
            Err(e) => {
                return Err(anyhow::Error::new(e))
                    .with_context(|| format!("could not connect to NATS at {url} (NATS_URL)"));
            }
        }
    }
}

/// How the event stream is replicated and placed (`CARELOOP_STREAM_REPLICAS`,
/// `CARELOOP_STREAM_PLACEMENT_TAGS`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamLayout {
    pub replicas: usize,
    pub placement_tags: Vec<String>,
}

impl Default for StreamLayout {
    /// One replica, anywhere: a single nats-server (dev, tests).
    fn default() -> Self {
        StreamLayout {
            replicas: 1,
            placement_tags: Vec::new(),
        }
    }
}

impl From<&Settings> for StreamLayout {
    fn from(s: &Settings) -> Self {
        StreamLayout {
            replicas: s.stream_replicas,
            placement_tags: s.stream_placement_tags.clone(),
        }
    }
}

/// Creates (or finds) the namespace's event stream with one replica.
pub async fn ensure_stream(js: &jetstream::Context, ns: &Namespace) -> anyhow::Result<()> {
    ensure_stream_with(js, ns, &StreamLayout::default()).await
}

/// Creates (or finds) the namespace's event stream with `layout`'s replicas and
/// placement. An existing stream with another replica count is scaled to it (JetStream
/// moves replicas online); consumers follow their stream's replica count.
pub async fn ensure_stream_with(
    js: &jetstream::Context,
    ns: &Namespace,
    layout: &StreamLayout,
) -> anyhow::Result<()> {
    let placement = (!layout.placement_tags.is_empty()).then(|| stream::Placement {
        cluster: None,
        tags: layout.placement_tags.clone(),
    });
    let stream = js
        .get_or_create_stream(stream::Config {
            name: ns.stream_name(),
            subjects: vec![ns.all_events()],
            storage: stream::StorageType::File,
            num_replicas: layout.replicas,
            placement: placement.clone(),
            // JetStream drops a re-sent event (same Nats-Msg-Id) within this window.
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .with_context(|| {
            format!(
                "creating JetStream stream {} with {} replica(s) (CARELOOP_STREAM_REPLICAS)",
                ns.stream_name(),
                layout.replicas
            )
        })?;
    let config = stream.cached_info().config.clone();
    let tags = config.placement.as_ref().map(|p| p.tags.clone());
    if config.num_replicas.max(1) != layout.replicas
        || tags.unwrap_or_default() != layout.placement_tags
    {
        tracing::info!(
            stream = %ns.stream_name(),
            from = config.num_replicas,
            to = layout.replicas,
            "scaling the event stream (CARELOOP_STREAM_REPLICAS)"
        );
        js.update_stream(stream::Config {
            num_replicas: layout.replicas,
            placement,
            ..config
        })
        .await
        .with_context(|| {
            format!(
                "updating JetStream stream {} to {} replica(s) (CARELOOP_STREAM_REPLICAS)",
                ns.stream_name(),
                layout.replicas
            )
        })?;
    }
    Ok(())
}
