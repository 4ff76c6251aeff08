//! Durable pull consumers that apply integration events exactly once in effect, in
//! per-aggregate order, and dead-letter what keeps failing.
//!
//! For each message, in one Postgres transaction:
//! 1. take this consumer's lock for the source aggregate (an advisory transaction
//!    lock: unlike a row lock it gives the transaction no id, so it does not hold back
//!    outbox readers while the handler runs);
//! 2. a sequence at or below the stored position is a duplicate (redelivery, re-send):
//!    ack;
//! 3. a `previous_sequence` above the position means an earlier event of the same
//!    aggregate is still in flight at another instance: nak with a short delay, so
//!    the order per aggregate holds with any number of instances (after
//!    [`STALL_LIMIT`] in the stream the event is applied anyway, with an error logged,
//!    rather than stalling its aggregate for ever);
//! 4. otherwise run the handler, move the position to the event's sequence and commit
//!    both together, then ack. Ack comes only after the commit.
//!
//! Under load a worker takes every message waiting in its lane (up to [`BATCH`]) and
//! applies them this way in one transaction: one lock statement, one read and one
//! write of positions and one commit for the batch ([`Consumer::process_batch`]),
//! never two events of one aggregate in one transaction. Anything out of the ordinary
//! in a batch rolls it back and its messages are handled one by one, as above.
//!
//! A handler error rolls everything back, is counted in `consumer_failures`, and the
//! message is redelivered with backoff. After `max_deliver` handler failures (waits
//! for an earlier event and infrastructure errors outside the handler do not count)
//! it is written whole to the dead-letter table, with the position moved past it in
//! the same transaction; `careloop_dead_letters` (read from the table) goes up and
//! the consumer goes on.
//!
//! Handlers that send commands to the service's aggregates (a separate transaction in
//! cqrs-es) must make those commands idempotent: if the process dies after the
//! command committed but before the position did, the redelivered event must find
//! the work already done (for example "already accepted by this peer": no new event).
//! Those commands commit without waiting for the disk; the position's commit, durable
//! and later in the write-ahead log, flushes them before the ack
//! ([`crate::store::flushed_by_caller`]); only after it may a later command start
//! from the copies of what they wrote ([`crate::recent::Flush`]).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use async_nats::jetstream::{self, AckKind};
use careloop_backoff::Backoff;
use careloop_events::Payload;
use careloop_events::v1::Envelope;
use futures::StreamExt;
use prost::Message;
use sqlx::{PgConnection, PgPool};
use tracing::Instrument;

use crate::metrics;
use crate::nats::EventStream;
use crate::shutdown::Shutdown;
use crate::store::Metadata;

/// How long an event may wait in the stream for its predecessor before it is applied
/// anyway. Only a lost or unpublishable predecessor waits this long.
pub const STALL_LIMIT: Duration = Duration::from_secs(600);

/// How long a failed message waits before its next delivery.
const REDELIVERY: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(12_800));
/// How long the consumer waits while its stream or consumer cannot be reached.
const UNAVAILABLE: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));

/// A decoded integration event.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub envelope: Envelope,
    pub payload: Payload,
}

impl Incoming {
    /// Metadata for commands this event causes: same correlation, caused by this
    /// event, and acted on by `service` for whoever started it
    /// ([`Incoming::actor_for`]).
    pub fn metadata(&self, service: &str) -> Metadata {
        Metadata {
            correlation_id: self.envelope.correlation_id.clone(),
            causation_id: Some(self.envelope.event_id.clone()),
            actor: Some(self.actor_for(service)),
            request_id: None,
        }
    }

    /// `<who started it> via <service>` (who started it: the person, client or HL7
    /// sender the first event of the chain names), or `service` alone when the event
    /// names nobody.
    pub fn actor_for(&self, service: &str) -> String {
        let origin = self
            .envelope
            .actor
            .split(" via ")
            .next()
            .unwrap_or_default()
            .trim();
        if origin.is_empty() {
            service.to_string()
        } else {
            format!("{origin} via {service}")
        }
    }
}

#[async_trait::async_trait]
pub trait EventHandler: Send + Sync + 'static {
    /// Applies one event. Writes through `tx` commit together with the processed record.
    ///
    /// Commands sent from here commit without waiting for the disk
    /// ([`crate::store::flushed_by_caller`]): the consumer's own commit, before its
    /// ack, makes them durable. So a handler never promises anything outside careloop
    /// itself (an HTTP call, a message): that goes through an outbox that a durable
    /// commit feeds. A task it spawns does not inherit this and commits durably.
    async fn handle(&self, event: &Incoming, tx: &mut PgConnection) -> anyhow::Result<()>;
}

/// Several handlers of one consumer, run in order in the same transaction (a service
/// hosting another part, like the measures, adds its handler to its own).
pub struct Chain(pub Vec<Arc<dyn EventHandler>>);

#[async_trait::async_trait]
impl EventHandler for Chain {
    async fn handle(&self, event: &Incoming, tx: &mut PgConnection) -> anyhow::Result<()> {
        for handler in &self.0 {
            handler.handle(event, tx).await?;
        }
        Ok(())
    }
}

/// What became of one delivery of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    Applied,
    Duplicate,
    /// An earlier event of the same aggregate has not been applied yet.
    NotYet,
    Failed(String),
    DeadLettered,
}

impl Disposition {
    /// The outcome as a metric label (never the error text).
    pub fn label(&self) -> &'static str {
        match self {
            Disposition::Applied => "applied",
            Disposition::Duplicate => "duplicate",
            Disposition::NotYet => "not_yet",
            Disposition::Failed(_) => "failed",
            Disposition::DeadLettered => "dead_lettered",
        }
    }
}

/// How many messages of different aggregates one consumer handles at a time (within
/// the process's shared slots).
pub const PARTITIONS: usize = 4;

/// Messages waiting for each worker (JetStream holds the rest).
const LANE_DEPTH: usize = 16;

/// The most messages one worker applies in one transaction: all that wait in its lane
/// when it takes the next, up to this many (see [`Consumer::process_batch`]).
pub const BATCH: usize = LANE_DEPTH;

/// One delivery of a message, as [`Consumer::process_batch`] takes it.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    pub subject: &'a str,
    pub bytes: &'a [u8],
    /// Which delivery of the message this is (1 for the first).
    pub delivered: i64,
    /// How long ago the message was published.
    pub in_stream_for: Duration,
}

/// The read of a batch's positions in `schema`: `$1` the consumer, `$2` and `$3` the
/// aggregates' types and ids. One primary-key lookup per aggregate, whatever the
/// table's statistics: as a plain join, a plan made while the table was small (a
/// fresh deployment, before autovacuum's next analyse) read every position the
/// consumer holds, 0.7 ms a batch and growing with every aggregate; the LIMIT keeps
/// each lookup a subquery the planner cannot turn back into that join. Public for
/// its test (`key_lookups_read_only_the_rows_they_name`).
pub fn positions_statement(schema: &str) -> String {
    format!(
        "SELECT a.t, a.i, p.last_sequence
         FROM (SELECT DISTINCT t, i FROM unnest($2::text[], $3::text[]) AS a(t, i)) a
         CROSS JOIN LATERAL (
             SELECT last_sequence FROM {schema}.consumer_positions p
             WHERE p.consumer = $1 AND p.aggregate_type = a.t AND p.aggregate_id = a.i
             LIMIT 1) p"
    )
}

#[derive(Clone)]
pub struct Consumer {
    pool: PgPool,
    stream: EventStream,
    /// The consuming service (its schema holds positions and dead letters).
    service: &'static str,
    schema: &'static str,
    /// The service whose events are consumed.
    source: &'static str,
    handler: Arc<dyn EventHandler>,
    max_deliver: i64,
    /// Permits for handling a message, shared by the process's consumers.
    slots: Arc<tokio::sync::Semaphore>,
}

impl Consumer {
    pub fn new(
        pool: PgPool,
        stream: EventStream,
        service: &'static str,
        schema: &'static str,
        source: &'static str,
        handler: Arc<dyn EventHandler>,
    ) -> Self {
        Consumer {
            pool,
            stream,
            service,
            schema,
            source,
            handler,
            max_deliver: 10,
            slots: Arc::new(tokio::sync::Semaphore::new(PARTITIONS)),
        }
    }

    /// Handles messages only with a permit from `slots` (shared with the process's
    /// other consumers, so together they never take more connections than that).
    pub fn sharing(mut self, slots: Arc<tokio::sync::Semaphore>) -> Self {
        self.slots = slots;
        self
    }

    /// Handler failures after which a message is dead-lettered (default 10).
    pub fn max_deliver(mut self, n: i64) -> Self {
        self.max_deliver = n.max(1);
        self
    }

    /// The service whose events this consumer reads.
    pub fn source(&self) -> &'static str {
        self.source
    }

    pub fn durable_name(&self) -> String {
        self.stream
            .namespace
            .durable_name(self.service, self.source)
    }

    /// Creates the durable consumer (and the stream, if NATS lost it) if it does not
    /// exist yet. A consumer created on a stream created again starts from the
    /// stream's first message: the relays publish everything again, and the processed
    /// records drop what was applied before.
    pub async fn ensure(&self) -> anyhow::Result<jetstream::consumer::Consumer<pull::Config>> {
        let stream = self.stream.ensure().await?;
        let name = self.durable_name();
        let consumer = stream
            .get_or_create_consumer(
                &name,
                pull::Config {
                    durable_name: Some(name.clone()),
                    filter_subject: self.stream.namespace.service_filter(self.source),
                    deliver_policy: DeliverPolicy::All,
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: Duration::from_secs(30),
                    // Unlimited at the server: careloop dead-letters by itself, so a
                    // message is never dropped by JetStream.
                    max_deliver: -1,
                    ..Default::default()
                },
            )
            .await?;
        Ok(consumer)
    }

    /// Consumes until `shutdown`; the messages in hand are finished first.
    ///
    /// Messages of different aggregates are handled up to [`PARTITIONS`] at a time
    /// (and only with a permit from the process's shared slots); those of one aggregate
    /// always by the same worker, in the order JetStream delivers them. Order and
    /// exactly-once effect do not depend on this (the per-aggregate lock and
    /// `previous_sequence` keep them whatever the concurrency, as with several
    /// instances); partitioning keeps one aggregate's events from overtaking each other
    /// and being sent back.
    pub async fn run(self, mut shutdown: Shutdown) {
        let mut lanes = Vec::with_capacity(PARTITIONS);
        let mut workers = Vec::with_capacity(PARTITIONS);
        for _ in 0..PARTITIONS {
            let (lane, mut queue) = tokio::sync::mpsc::channel::<jetstream::Message>(LANE_DEPTH);
            let (me, mut shutdown) = (self.clone(), shutdown.clone());
            workers.push(tokio::spawn(async move {
                while let Some(first) = queue.recv().await {
                    // Whatever else waits in the lane goes in the same transaction.
                    let mut batch = vec![first];
                    while batch.len() < BATCH {
                        match queue.try_recv() {
                            Ok(msg) => batch.push(msg),
                            Err(_) => break,
                        }
                    }
                    // Never wait behind the process's other handlers once stopping.
                    let permit = if shutdown.is_triggered() {
                        None
                    } else {
                        tokio::select! {
                            p = me.slots.clone().acquire_owned() => p.ok(),
                            _ = shutdown.wait() => None,
                        }
                    };
                    let Some(_permit) = permit else {
                        // Not started: back to JetStream at once, for another instance.
                        for msg in batch {
                            let _ = msg.ack_with(AckKind::Nak(None)).await;
                        }
                        continue;
                    };
                    me.deliver(batch).await;
                }
            }));
            lanes.push(lane);
        }
        self.pull(&lanes, &mut shutdown).await;
        drop(lanes);
        for w in workers {
            let _ = w.await;
        }
    }

    /// The worker that handles `msg`: chosen by its source aggregate.
    fn lane(msg: &jetstream::Message) -> usize {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        if let Ok(env) = Envelope::decode(msg.payload.as_ref()) {
            env.aggregate_type.hash(&mut h);
            env.aggregate_id.hash(&mut h);
        }
        (h.finish() % PARTITIONS as u64) as usize
    }

    /// Pulls messages and hands each to its lane, subscribing again after errors.
    async fn pull(
        &self,
        lanes: &[tokio::sync::mpsc::Sender<jetstream::Message>],
        shutdown: &mut Shutdown,
    ) {
        let mut retries = UNAVAILABLE.start();
        while !shutdown.is_triggered() {
            let messages = match self.ensure().await {
                Ok(c) => c.messages().await.map_err(anyhow::Error::from),
                Err(e) => Err(e),
            };
            let mut messages = match messages {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(consumer = %self.durable_name(), error = %e, "consumer unavailable; retrying");
                    tokio::select! {
                        _ = retries.wait() => {}
                        _ = shutdown.wait() => {}
                    }
                    continue;
                }
            };
            loop {
                let next = tokio::select! {
                    m = messages.next() => m,
                    _ = shutdown.wait() => return,
                };
                match next {
                    Some(Ok(msg)) => {
                        retries.reset();
                        // A full lane holds the pull back (JetStream keeps the rest;
                        // a lane's few messages are handled well within ack_wait).
                        let sent = tokio::select! {
                            sent = lanes[Self::lane(&msg)].send(msg) => sent.is_ok(),
                            _ = shutdown.wait() => false,
                        };
                        if !sent {
                            return;
                        }
                    }
                    // Missed heartbeats, a deleted consumer, a stream NATS lost, a
                    // server gone: subscribe again (creating what is missing) after a
                    // pause that grows while the errors go on.
                    Some(Err(e)) => {
                        tracing::debug!(consumer = %self.durable_name(), error = %e, "pull error; subscribing again");
                        tokio::select! {
                            _ = retries.wait() => {}
                            _ = shutdown.wait() => return,
                        }
                        break;
                    }
                    None => break,
                }
            }
        }
    }

    /// Handles `batch` (one lane's messages, in delivery order) and acks each message
    /// after the commit that applied it.
    async fn deliver(&self, batch: Vec<jetstream::Message>) {
        let started = std::time::Instant::now();
        let deliveries: Vec<Delivery> = batch
            .iter()
            .map(|msg| {
                let (delivered, in_stream_for) = match msg.info() {
                    Ok(i) => {
                        let age = time::OffsetDateTime::now_utc() - i.published;
                        (i.delivered, age.try_into().unwrap_or_default())
                    }
                    Err(_) => (1, Duration::ZERO),
                };
                Delivery {
                    subject: msg.subject.as_str(),
                    bytes: &msg.payload,
                    delivered,
                    in_stream_for,
                }
            })
            .collect();
        let waited = metrics::CONSUMER_WAIT.with_label_values(&[self.durable_name().as_str()]);
        // First deliveries only (a redelivery's wait includes its backoff), and only
        // with a known publication time.
        for d in deliveries
            .iter()
            .filter(|d| d.delivered == 1 && !d.in_stream_for.is_zero())
        {
            waited.observe(d.in_stream_for.as_secs_f64());
        }
        let outcomes = self.process_batch(&deliveries).await;
        for ((msg, d), outcome) in batch.iter().zip(&deliveries).zip(&outcomes) {
            let ack = match &outcome {
                Disposition::Applied | Disposition::Duplicate | Disposition::DeadLettered => {
                    AckKind::Ack
                }
                Disposition::NotYet => AckKind::Nak(Some(Duration::from_millis(20))),
                Disposition::Failed(_) => {
                    AckKind::Nak(Some(REDELIVERY.delay(d.delivered.clamp(1, 64) as u32)))
                }
            };
            if let Err(e) = msg.ack_with(ack).await {
                // The message will be redelivered after ack_wait; processing is idempotent.
                tracing::warn!(error = %e, "ack failed");
            }
        }
        // Each message's share of the batch's time, delivery to ack, so the busy time
        // sums up as it would one message at a time.
        let share = started.elapsed().as_secs_f64() / batch.len() as f64;
        for outcome in &outcomes {
            metrics::CONSUMER_SECONDS
                .with_label_values(&[self.durable_name().as_str(), outcome.label()])
                .observe(share);
        }
    }

    /// Handles several deliveries, in order, in as few transactions as the rule below
    /// allows: one lock statement for all their aggregates, one read of their
    /// positions, the handlers one after the other, one write of the positions moved,
    /// one commit. Under load this is what keeps a message's cost down to its
    /// handler's: the transaction, lock and position statements a message needs on its
    /// own are shared by the batch.
    ///
    /// A transaction takes at most one event of each aggregate: at an aggregate's
    /// second event a new one begins. That keeps a rolled-back batch safe: anything out
    /// of the ordinary (a handler error, an undecodable, unknown or stalled message,
    /// the database failing) rolls it back and each of its deliveries is handled on its
    /// own with [`Consumer::process`], which counts failures and dead-letters. Handlers
    /// that already ran run again then; their commands committed on their own (see the
    /// module note), and an event done again before any later event of its aggregate is
    /// exactly the case of a crash between a command and the position, which the
    /// commands' idempotence covers. Two events of one aggregate in one batch would
    /// instead run the first again after the second had taken effect.
    pub async fn process_batch(&self, deliveries: &[Delivery<'_>]) -> Vec<Disposition> {
        // Decoded once, for the runs and the batches both.
        let envelopes: Vec<Option<Envelope>> = deliveries
            .iter()
            .map(|d| Envelope::decode(d.bytes).ok())
            .collect();
        let mut outcomes = Vec::with_capacity(deliveries.len());
        let mut start = 0;
        while start < deliveries.len() {
            let end = start + distinct_aggregates(&envelopes[start..]);
            let run = &deliveries[start..end];
            let decoded = &envelopes[start..end];
            start = end;
            if run.len() > 1 {
                match self.try_batch(run, decoded).await {
                    Ok(done) => {
                        outcomes.extend(done);
                        continue;
                    }
                    Err(e) => {
                        tracing::debug!(consumer = %self.durable_name(), error = %format!("{e:#}"),
                            "batch rolled back; handling its messages one by one");
                    }
                }
            }
            for d in run {
                outcomes.push(
                    self.process(d.subject, d.bytes, d.delivered, d.in_stream_for)
                        .await,
                );
            }
        }
        outcomes
    }

    /// One transaction of [`Consumer::process_batch`] (no two events of one
    /// aggregate), or why its deliveries must be handled one by one.
    async fn try_batch(
        &self,
        deliveries: &[Delivery<'_>],
        envelopes: &[Option<Envelope>],
    ) -> anyhow::Result<Vec<Disposition>> {
        let mut events = Vec::with_capacity(deliveries.len());
        for (d, envelope) in deliveries.iter().zip(envelopes) {
            anyhow::ensure!(d.in_stream_for <= STALL_LIMIT, "a stalled message");
            let envelope = envelope.clone().context("an undecodable message")?;
            let payload = envelope.payload.clone().context("an unknown payload")?;
            events.push(Incoming { envelope, payload });
        }
        let envelopes: Vec<&Envelope> = events.iter().map(|e| &e.envelope).collect();
        let mut tx = self.pool.begin().await?;
        let flush = crate::recent::Flush::default();
        let positions = self.lock_positions(&mut tx, &envelopes).await?;
        let mut applied = Vec::with_capacity(events.len());
        let mut outcomes = Vec::with_capacity(events.len());
        for event in &events {
            let env = &event.envelope;
            let last = positions.of(env);
            let seq = env.aggregate_sequence as i64;
            if seq <= last {
                outcomes.push(Disposition::Duplicate);
                continue;
            }
            if env.previous_sequence as i64 > last {
                outcomes.push(Disposition::NotYet);
                continue;
            }
            let span = tracing::info_span!(
                "consume",
                consumer = %self.durable_name(),
                event_type = %env.event_type,
                correlation_id = %env.correlation_id,
            );
            let handled = self.handler.handle(event, &mut tx).instrument(span);
            crate::store::flushed_by_caller(flush.clone(), handled).await?;
            applied.push(env);
            outcomes.push(Disposition::Applied);
        }
        // The positions are always written when a handler ran, so this commit has a
        // transaction id and waits for the disk, flushing the handlers' commands
        // (a commit that wrote nothing would not wait, and could not mark `flush`).
        self.set_positions(&mut tx, &applied).await?;
        tx.commit().await?;
        flush.done();
        Ok(outcomes)
    }

    /// Serialises this consumer's work on the source aggregates of `envelopes` and
    /// reads how far it got with each. One statement takes the locks, in the order of
    /// their lock ids, so two batches sharing aggregates wait for each other instead of
    /// deadlocking (and two keys of one id are one lock); one reads the positions.
    async fn lock_positions(
        &self,
        tx: &mut PgConnection,
        envelopes: &[&Envelope],
    ) -> sqlx::Result<Positions> {
        let keys: Vec<String> = envelopes
            .iter()
            .map(|env| {
                format!(
                    "careloop.consumer:{}:{}:{}:{}",
                    self.schema,
                    self.durable_name(),
                    env.aggregate_type,
                    env.aggregate_id
                )
            })
            .collect();
        sqlx::query(
            "SELECT pg_advisory_xact_lock(id)
             FROM (SELECT DISTINCT hashtextextended(k, 0) AS id
                   FROM unnest($1::text[]) AS k ORDER BY id) ids",
        )
        .bind(&keys)
        .execute(&mut *tx)
        .await?;
        let (types, ids): (Vec<&str>, Vec<&str>) = envelopes
            .iter()
            .map(|env| (env.aggregate_type.as_str(), env.aggregate_id.as_str()))
            .unzip();
        let rows: Vec<(String, String, i64)> = sqlx::query_as(&positions_statement(self.schema))
            .bind(self.durable_name())
            .bind(&types)
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await?;
        Ok(Positions(
            rows.into_iter().map(|(t, i, s)| ((t, i), s)).collect(),
        ))
    }

    /// Moves this consumer's position for the aggregate of each of `envelopes` (one
    /// envelope per aggregate) to its sequence.
    async fn set_positions(
        &self,
        tx: &mut PgConnection,
        envelopes: &[&Envelope],
    ) -> sqlx::Result<()> {
        if envelopes.is_empty() {
            return Ok(());
        }
        let (types, ids): (Vec<&str>, Vec<&str>) = envelopes
            .iter()
            .map(|env| (env.aggregate_type.as_str(), env.aggregate_id.as_str()))
            .unzip();
        let sequences: Vec<i64> = envelopes
            .iter()
            .map(|env| env.aggregate_sequence as i64)
            .collect();
        sqlx::query(&format!(
            "INSERT INTO {}.consumer_positions (consumer, aggregate_type, aggregate_id, last_sequence)
             SELECT $1, t, i, s FROM unnest($2::text[], $3::text[], $4::bigint[]) AS m(t, i, s)
             ON CONFLICT (consumer, aggregate_type, aggregate_id)
             DO UPDATE SET last_sequence = excluded.last_sequence, updated_at = now()",
            self.schema
        ))
        .bind(self.durable_name())
        .bind(&types)
        .bind(&ids)
        .bind(&sequences)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    /// Handles one delivery of `bytes` (the `delivered`-th, `in_stream_for` after it
    /// was published). Public so tests can redeliver a message as JetStream would.
    pub async fn process(
        &self,
        subject: &str,
        bytes: &[u8],
        delivered: i64,
        in_stream_for: Duration,
    ) -> Disposition {
        let envelope = match Envelope::decode(bytes) {
            Ok(e) => e,
            Err(e) => {
                let error = format!("undecodable: {e}");
                return self
                    .dead_letter(subject, None, bytes, &error, delivered)
                    .await;
            }
        };
        let stalled = in_stream_for > STALL_LIMIT;
        let span = tracing::info_span!(
            "consume",
            consumer = %self.durable_name(),
            event_type = %envelope.event_type,
            correlation_id = %envelope.correlation_id,
        );
        async {
            let Some(payload) = envelope.payload.clone() else {
                // A payload this build does not know (a newer producer): nothing to do.
                tracing::debug!("unknown payload; skipped");
                return match self.apply(&envelope, None, stalled).await {
                    Ok(o) => o,
                    Err(e) => Disposition::Failed(format!("{:#}", e.error())),
                };
            };
            let incoming = Incoming {
                envelope: envelope.clone(),
                payload,
            };
            match self.apply(&envelope, Some(&incoming), stalled).await {
                Ok(outcome) => outcome,
                Err(ApplyError::Infrastructure(e)) => {
                    metrics::DEPENDENCY_RETRIES
                        .with_label_values(&[self.service])
                        .inc();
                    tracing::warn!(error = %format!("{e:#}"), "could not apply; will retry");
                    Disposition::Failed(format!("{e:#}"))
                }
                // A dependency the handler needed was unavailable (the database, NATS):
                // not the event's fault, so it never counts towards dead letters; it is
                // retried with backoff for as long as it takes.
                Err(ApplyError::Handler(e))
                    if careloop_web::dependency::is_transient_chain(e.as_ref()) =>
                {
                    metrics::DEPENDENCY_RETRIES
                        .with_label_values(&[self.service])
                        .inc();
                    tracing::warn!(error = %format!("{e:#}"), "a dependency is unavailable; will retry");
                    Disposition::Failed(format!("{e:#}"))
                }
                Err(ApplyError::Handler(e)) => {
                    let err = format!("{e:#}");
                    let failures = self.count_failure(&envelope, &err).await;
                    if failures >= self.max_deliver {
                        tracing::error!(error = %err, failures, "giving up on a message");
                        self.dead_letter(subject, Some(&envelope), bytes, &err, failures)
                            .await
                    } else {
                        tracing::warn!(error = %err, failures, "handler failed; will retry");
                        Disposition::Failed(err)
                    }
                }
            }
        }
        .instrument(span)
        .await
    }

    async fn apply(
        &self,
        envelope: &Envelope,
        incoming: Option<&Incoming>,
        stalled: bool,
    ) -> Result<Disposition, ApplyError> {
        let infra = |e: sqlx::Error| ApplyError::Infrastructure(e.into());
        let mut tx = self.pool.begin().await.map_err(infra)?;
        let last = self
            .lock_positions(&mut tx, &[envelope])
            .await
            .map_err(infra)?
            .of(envelope);
        let seq = envelope.aggregate_sequence as i64;
        if seq <= last {
            return Ok(Disposition::Duplicate);
        }
        if envelope.previous_sequence as i64 > last {
            if !stalled {
                return Ok(Disposition::NotYet);
            }
            tracing::error!(
                aggregate_id = %envelope.aggregate_id,
                waiting_for = envelope.previous_sequence,
                "an earlier event of this aggregate never arrived; applying this one anyway"
            );
        }
        let flush = crate::recent::Flush::default();
        if let Some(incoming) = incoming {
            crate::store::flushed_by_caller(flush.clone(), self.handler.handle(incoming, &mut tx))
                .await
                .map_err(ApplyError::Handler)?;
        }
        self.set_positions(&mut tx, &[envelope])
            .await
            .map_err(infra)?;
        tx.commit().await.map_err(infra)?;
        flush.done();
        Ok(Disposition::Applied)
    }

    /// Counts one more handler failure of this message; returns the count so far.
    async fn count_failure(&self, env: &Envelope, error: &str) -> i64 {
        let counted: sqlx::Result<i32> = sqlx::query_scalar(&format!(
            "INSERT INTO {}.consumer_failures (consumer, event_id, failures, last_error)
             VALUES ($1, $2, 1, $3)
             ON CONFLICT (consumer, event_id) DO UPDATE
             SET failures = consumer_failures.failures + 1, last_error = $3, updated_at = now()
             RETURNING failures",
            self.schema
        ))
        .bind(self.durable_name())
        .bind(&env.event_id)
        .bind(error)
        .fetch_one(&self.pool)
        .await;
        // If even counting fails, the database is in trouble: retry, never give up.
        counted.map(i64::from).unwrap_or(0)
    }

    async fn dead_letter(
        &self,
        subject: &str,
        envelope: Option<&Envelope>,
        bytes: &[u8],
        error: &str,
        failures: i64,
    ) -> Disposition {
        let result: anyhow::Result<()> = async {
            let mut tx = self.pool.begin().await?;
            if let Some(env) = envelope {
                // Move past it, so later events of the aggregate are not held up.
                let last = self.lock_positions(&mut tx, &[env]).await?.of(env);
                if env.aggregate_sequence as i64 <= last {
                    return Ok(());
                }
                self.set_positions(&mut tx, &[env]).await?;
            }
            sqlx::query(&format!(
                "INSERT INTO {}.dead_letters (consumer, subject, event_id, event_type, aggregate_type,
                     aggregate_id, aggregate_sequence, message, error, deliveries)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                self.schema
            ))
            .bind(self.durable_name())
            .bind(subject)
            .bind(envelope.map(|e| e.event_id.clone()))
            .bind(envelope.map(|e| e.event_type.clone()))
            .bind(envelope.map(|e| e.aggregate_type.clone()))
            .bind(envelope.map(|e| e.aggregate_id.clone()))
            .bind(envelope.map(|e| e.aggregate_sequence as i64))
            .bind(bytes)
            .bind(error)
            .bind(failures)
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            metrics::count_dead_letters(&self.pool, self.service, self.schema).await;
            Ok(())
        }
        .await;
        match result {
            Ok(()) => Disposition::DeadLettered,
            Err(e) => Disposition::Failed(format!("dead-lettering failed: {e:#}")),
        }
    }
}

/// A consumer's positions for some source aggregates: the last sequence applied of
/// each, by (aggregate type, aggregate id).
struct Positions(std::collections::HashMap<(String, String), i64>);

impl Positions {
    /// How far the consumer got with `env`'s aggregate (0: none of its events yet).
    fn of(&self, env: &Envelope) -> i64 {
        let key = (env.aggregate_type.clone(), env.aggregate_id.clone());
        self.0.get(&key).copied().unwrap_or(0)
    }
}

/// Why an event could not be applied: the handler said no (counted towards the
/// dead-letter limit) or the infrastructure failed around it (retried, not counted).
enum ApplyError {
    Handler(anyhow::Error),
    Infrastructure(anyhow::Error),
}

impl ApplyError {
    fn error(&self) -> &anyhow::Error {
        match self {
            ApplyError::Handler(e) | ApplyError::Infrastructure(e) => e,
        }
    }
}

/// How many of `envelopes`, from the first, name no aggregate twice (at least one):
/// the next transaction of [`Consumer::process_batch`]. An undecodable delivery
/// (`None`) ends the run before it, or is a run of its own.
fn distinct_aggregates(envelopes: &[Option<Envelope>]) -> usize {
    let mut seen = std::collections::HashSet::new();
    for (i, envelope) in envelopes.iter().enumerate() {
        let first_time = envelope
            .as_ref()
            .is_some_and(|e| seen.insert((&e.aggregate_type, &e.aggregate_id)));
        if !first_time {
            return i.max(1);
        }
    }
    envelopes.len()
}
