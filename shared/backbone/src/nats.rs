//! NATS JetStream: the connection and the namespaced stream of integration events.
//!
//! Only features of nats-server 2.9 are used (one filter subject per consumer, no
//! stream metadata). JetStream is never the only copy of an event: every event is in
//! a service's Postgres events table first, and the relay sends again what JetStream
//! did not acknowledge.

use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::{self, stream};
use careloop_config::{Namespace, Settings};

/// A client for NATS that connects in the background. `url` is one `nats://` URL or
/// a comma-separated list of a cluster's servers (`NATS_URL`); the client also learns
/// the other servers the cluster announces.
///
/// The client is returned at once, connected or not, and keeps (re)connecting for
/// ever, to any server of the cluster: a service starts while NATS is down and takes
/// commands with Postgres alone, exactly as it does when NATS drops later (publishes
/// and pulls fail meanwhile; the relay and consumers retry them, and
/// `/readyz/publishing` says so).
pub async fn connect(url: &str) -> anyhow::Result<async_nats::Client> {
    let servers: Vec<String> = url
        .split(',')
        .map(|u| u.trim().to_string())
        .filter(|u| !u.is_empty())
        .collect();
    async_nats::ConnectOptions::new()
        .connection_timeout(Duration::from_secs(5))
        .retry_on_initial_connect()
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
        .await
        .with_context(|| format!("NATS_URL {url} cannot be used"))
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

/// The namespace's stream of integration events, as every relay and consumer of a
/// process sees it: created (with the configured replicas) by whichever needs it
/// first, at start-up or after NATS lost it.
#[derive(Clone)]
pub struct EventStream {
    pub js: jetstream::Context,
    pub namespace: Namespace,
    pub layout: StreamLayout,
}

impl EventStream {
    pub fn new(js: jetstream::Context, namespace: Namespace, layout: StreamLayout) -> Self {
        EventStream {
            js,
            namespace,
            layout,
        }
    }

    /// Creates the stream if it is missing (a NATS restarted with an empty store, a
    /// stream deleted by hand) and returns it.
    pub async fn ensure(&self) -> anyhow::Result<stream::Stream> {
        ensure_stream_with(&self.js, &self.namespace, &self.layout).await
    }

    /// When this incarnation of the stream was created: a stream lost and created
    /// again has a later time (the relay compares it with the one it published to).
    pub async fn incarnation(&self) -> anyhow::Result<time::OffsetDateTime> {
        Ok(self.ensure().await?.cached_info().created)
    }
}

/// Creates (or finds) the namespace's event stream with `layout`'s replicas and
/// placement. An existing stream with another replica count is scaled to it (JetStream
/// moves replicas online); consumers follow their stream's replica count.
pub async fn ensure_stream_with(
    js: &jetstream::Context,
    ns: &Namespace,
    layout: &StreamLayout,
) -> anyhow::Result<stream::Stream> {
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
    Ok(stream)
}
