//! cqrs-es wired to postgres-es in a service's own schema.
//!
//! postgres-es loads an aggregate's events; careloop writes a command's events itself,
//! in one statement (see [`Repository`]), since postgres-es wraps each command's
//! inserts in `BEGIN`/`COMMIT` and most of a referral's round trips were those.
//!
//! The plain event store is used (no snapshots, no aggregate store: those modes may
//! apply events twice). A command starts from the aggregate as the last command on it
//! left it, when that copy is kept ([`crate::recent`]), from a kept copy brought up
//! to date with the events stored after it when the store may have moved on, and
//! from a load otherwise.
//! No cqrs-es `Query` is attached: queries run in-process after commit and would be
//! lost on a crash, so read models are fed from the outbox instead (see
//! [`crate::projection`]).
//!
//! A service whose events carry PHI gives its store a [`PayloadSeal`]: payloads are
//! sealed on their way into `{schema}.events` and opened on their way out, so the
//! domain works on clear values and the table holds sealed ones.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use careloop_backoff::Backoff;
use cqrs_es::persist::EventStoreAggregateContext;
use cqrs_es::persist::{
    PersistedEventRepository, PersistedEventStore, PersistenceError, ReplayStream, SerializedEvent,
    SerializedSnapshot,
};
use cqrs_es::{Aggregate, AggregateError};
use postgres_es::PostgresEventRepository;
use sqlx::PgPool;

use crate::recent::{self, Flush, Found, Recent};

/// Retries of a command that lost an optimistic-concurrency race: short, spread by
/// jitter so racing writers do not collide again in step.
const CONFLICT: Backoff =
    Backoff::new(Duration::from_millis(5), Duration::from_millis(80)).with_jitter(1.0);

/// An aggregate type's event store in a service's schema: postgres-es's, with the
/// copies of recently written aggregates ([`crate::recent`]) in front for commands.
/// Loads through the `cqrs_es::EventStore` trait ([`load`]) always read the store.
pub struct EventStore<A: Aggregate> {
    inner: PersistedEventStore<Repository, A>,
    /// `None` for a sealed store: PHI is not kept in memory beyond a command.
    copies: Option<Copies<A>>,
}

/// The kept copies of an unsealed store, and how it reads what was stored after one.
struct Copies<A> {
    recent: Arc<Recent<A>>,
    pool: PgPool,
    /// [`catch_up_statement`].
    catch_up: String,
}

/// A command processor for aggregate `A`: its store and the services its commands use.
pub struct Cqrs<A: Aggregate> {
    store: EventStore<A>,
    services: A::Services,
}

/// A command processor for aggregate `A` over `{schema}.events`.
pub fn cqrs<A>(pool: PgPool, schema: &str, services: A::Services) -> Arc<Cqrs<A>>
where
    A: Aggregate + Clone + Send + Sync + 'static,
{
    Arc::new(Cqrs {
        store: event_store(pool, schema),
        services,
    })
}

/// Like [`cqrs`], with payloads sealed by `seal` at rest.
pub fn sealed_cqrs<A>(
    pool: PgPool,
    schema: &str,
    services: A::Services,
    seal: Arc<dyn PayloadSeal>,
) -> Arc<Cqrs<A>>
where
    A: Aggregate + Clone + Send + Sync + 'static,
{
    Arc::new(Cqrs {
        store: sealed_event_store(pool, schema, seal),
        services,
    })
}

/// Seals and opens event payloads at the event store's edge (for events that carry
/// PHI). `seal` runs on each event about to be stored, `open` on each event loaded;
/// an event `open` cannot read any more (its key destroyed) is turned into one the
/// aggregate understands as such.
#[async_trait::async_trait]
pub trait PayloadSeal: Send + Sync {
    async fn seal(&self, event: &mut SerializedEvent) -> anyhow::Result<()>;
    async fn open(&self, event: &mut SerializedEvent) -> anyhow::Result<()>;
}

/// The Postgres event repository, with an optional [`PayloadSeal`] in front.
///
/// A command's events are written by one `INSERT` (see [`Repository::append`]);
/// loading and the snapshot calls are postgres-es's. The replay streams
/// (`stream_events`, `stream_all_events`) give payloads as stored: careloop's
/// projections read `{schema}.events` through the outbox, never these.
pub struct Repository {
    inner: PostgresEventRepository,
    pool: PgPool,
    /// The statement that appends a command's events (see [`append_statement`]).
    append: String,
    /// The same, committing without waiting for the disk (see [`flushed_by_caller`]).
    append_lazily: String,
    seal: Option<Arc<dyn PayloadSeal>>,
}

fn unknown(e: anyhow::Error) -> PersistenceError {
    PersistenceError::UnknownError(e.into())
}

impl Repository {
    async fn opened(
        &self,
        mut events: Vec<SerializedEvent>,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        if let Some(seal) = &self.seal {
            for event in &mut events {
                seal.open(event).await.map_err(unknown)?;
            }
        }
        Ok(events)
    }
}

/// Appends a command's events, in their order, in one statement: a single statement
/// is a transaction of its own, all or nothing, so the events need no `BEGIN` and
/// `COMMIT` around them. postgres-es sends those two and one `INSERT` per event, 2 + n
/// round trips per command where this is 1; commands are most of a referral's
/// statements. The `ORDER BY` hands the rows to the insert in sequence order, so their
/// positions (taken as each row is inserted) keep the aggregate's order for readers.
///
/// The events are written only if the one before the first of them is stored (or the
/// first is the aggregate's first): a command decided on a state the store does not
/// hold, including an event it no longer holds (a consumer's command that a crash of
/// Postgres took back before it reached the disk, guarantee 1), writes nothing and
/// is decided again, instead of leaving a gap in the aggregate's sequence. With the
/// primary key, which refuses a sequence already taken, a command is stored only when
/// it was decided at the store's latest sequence. (Sequences, not contents: a state
/// holding an event the store lost, whose sequence another writer has taken since
/// with a different event, would pass; docs/operations.md says when that can be.)
/// One more lookup on the primary key, in the same statement.
///
/// `lazily`: the statement's own transaction commits without waiting for the disk
/// (`synchronous_commit` off until its end), for [`flushed_by_caller`].
fn append_statement(schema: &str, lazily: bool) -> String {
    let lazily = if lazily {
        ", (SELECT set_config('synchronous_commit', 'off', true)) lazily"
    } else {
        ""
    };
    format!(
        "INSERT INTO {schema}.events
             (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         SELECT $1, $2, e.sequence, e.event_type, e.event_version, e.payload, e.metadata
         FROM unnest($3::bigint[], $4::text[], $5::text[], $6::jsonb[], $7::jsonb[])
              AS e(sequence, event_type, event_version, payload, metadata){lazily}
         WHERE ($3::bigint[])[1] = 1
            OR EXISTS (SELECT 1 FROM {schema}.events prior
                       WHERE prior.aggregate_type = $1 AND prior.aggregate_id = $2
                         AND prior.sequence = ($3::bigint[])[1] - 1)
         ORDER BY e.sequence"
    )
}

/// Reads an aggregate's events from a sequence on, that one included: the events
/// stored after a copy, and the copy's own last event, which says the store still
/// holds what the copy was built from (see [`EventStore::catch_up`]). On the primary
/// key, so a few rows whatever the length of the stream; only what applying them
/// needs (an aggregate applies payloads, not their metadata).
fn catch_up_statement(schema: &str) -> String {
    format!(
        "SELECT sequence, payload
         FROM {schema}.events
         WHERE aggregate_type = $1 AND aggregate_id = $2 AND sequence >= $3
         ORDER BY sequence"
    )
}

tokio::task_local! {
    /// Set while a caller that flushes its commands' commits itself runs them: the
    /// caller's [`Flush`], done once its durable commit has succeeded.
    static FLUSHED_BY_CALLER: Flush;
}

/// Runs `work`, whose commands commit without waiting for the disk: for a caller
/// whose own durable commit follows them before it promises anything, which makes
/// them durable too. That caller is a consumer: it acknowledges a message only after
/// committing its position, synchronously, and the write-ahead log is flushed in
/// order, so that flush carries every command its handler ran before. A crash of
/// Postgres before it loses the commands and the position together, and the
/// message, never acknowledged, is delivered again. Until then the events are
/// visible without being on disk, so whatever sends them outside careloop waits for
/// the disk first: the relay ([`crate::outbox::wait_for_disk`]); read models are
/// redone; the webhook outbox commits durably before its rows are sent. The caller
/// marks `flush` done after its commit, which lets the next commands start from
/// what these wrote ([`crate::recent`]).
///
/// Only where `work` runs: a task it spawns commits durably, as do the API's
/// commands (the 2xx promises them) and the background workers'.
pub async fn flushed_by_caller<F: std::future::Future>(flush: Flush, work: F) -> F::Output {
    FLUSHED_BY_CALLER.scope(flush, work).await
}

/// The caller's flush when commands run under [`flushed_by_caller`]; `None` when
/// they commit durably themselves.
fn flushed_later() -> Option<Flush> {
    FLUSHED_BY_CALLER.try_with(Flush::clone).ok()
}

impl Repository {
    /// Writes `events` (one aggregate's, from one command) with [`append_statement`].
    /// Another command that committed the same sequence first makes the statement
    /// fail on the primary key, and a missing event before the first makes it write
    /// nothing: both are the optimistic lock, reported as such so the command is
    /// decided again on the store's latest.
    async fn append<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
    ) -> Result<(), PersistenceError> {
        let Some(first) = events.first() else {
            return Ok(());
        };
        let sequences: Vec<i64> = events.iter().map(|e| e.sequence as i64).collect();
        let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
        let versions: Vec<&str> = events.iter().map(|e| e.event_version.as_str()).collect();
        let payloads: Vec<&serde_json::Value> = events.iter().map(|e| &e.payload).collect();
        let metadata: Vec<&serde_json::Value> = events.iter().map(|e| &e.metadata).collect();
        let statement = match flushed_later() {
            Some(_) => &self.append_lazily,
            None => &self.append,
        };
        let written = sqlx::query(statement)
            .bind(A::TYPE)
            .bind(first.aggregate_id.as_str())
            .bind(sequences)
            .bind(types)
            .bind(versions)
            .bind(payloads)
            .bind(metadata)
            .execute(&self.pool)
            .await
            .map_err(persistence_error)?;
        match written.rows_affected() {
            0 => Err(PersistenceError::OptimisticLockError),
            _ => Ok(()),
        }
    }
}

/// A failed append as cqrs-es expects it (as postgres-es maps it): a duplicate
/// sequence is the optimistic lock; a broken connection stays recognisable as such.
fn persistence_error(err: sqlx::Error) -> PersistenceError {
    match &err {
        sqlx::Error::Database(e) if e.code().as_deref() == Some("23505") => {
            PersistenceError::OptimisticLockError
        }
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) => PersistenceError::ConnectionError(err.into()),
        _ => PersistenceError::UnknownError(err.into()),
    }
}

impl PersistedEventRepository for Repository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let events = self.inner.get_events::<A>(aggregate_id).await?;
        self.opened(events).await
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        let events = self
            .inner
            .get_last_events::<A>(aggregate_id, last_sequence)
            .await?;
        self.opened(events).await
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        self.inner.get_snapshot::<A>(aggregate_id).await
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, serde_json::Value, usize)>,
    ) -> Result<(), PersistenceError> {
        if snapshot_update.is_some() {
            // Never asked for: careloop's stores take no snapshots (module note).
            return Err(unknown(anyhow::anyhow!(
                "snapshots are not kept in careloop's event stores"
            )));
        }
        let Some(seal) = &self.seal else {
            return self.append::<A>(events).await;
        };
        let mut sealed = events.to_vec();
        for event in &mut sealed {
            seal.seal(event).await.map_err(unknown)?;
        }
        self.append::<A>(&sealed).await
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        self.inner.stream_events::<A>(aggregate_id).await
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        self.inner.stream_all_events::<A>().await
    }
}

/// Who and what caused a command; stored with every event it produces and carried
/// into the integration event's envelope.
#[derive(Debug, Clone, Default)]
pub struct Metadata {
    pub correlation_id: String,
    /// The event id that caused this command, when it came from a consumer.
    pub causation_id: Option<String>,
    /// The role (or service) that acted, for timelines.
    pub actor: Option<String>,
    /// The request that caused this command, when it carried an `Idempotency-Key`
    /// (`Key::request_id`): a retry finds what its first attempt recorded.
    pub request_id: Option<String>,
}

impl Metadata {
    pub fn new(correlation_id: impl Into<String>) -> Self {
        Metadata {
            correlation_id: correlation_id.into(),
            ..Default::default()
        }
    }

    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    pub fn request(mut self, request_id: Option<String>) -> Self {
        self.request_id = request_id;
        self
    }

    pub fn to_map(&self) -> HashMap<String, String> {
        let mut m = HashMap::from([("correlation_id".to_string(), self.correlation_id.clone())]);
        if let Some(c) = &self.causation_id {
            m.insert("causation_id".into(), c.clone());
        }
        if let Some(a) = &self.actor {
            m.insert("actor".into(), a.clone());
        }
        if let Some(r) = &self.request_id {
            m.insert("request_id".into(), r.clone());
        }
        m
    }
}

/// Executes `command`, retrying when another command on the same aggregate committed
/// first (optimistic concurrency): the retry is decided on the store's latest (a kept
/// copy caught up, or a load), so the rules are checked against the latest state and
/// no update is lost. Gives up with
/// `AggregateConflict` after a few attempts (the API answers 409).
pub async fn execute<A>(
    cqrs: &Cqrs<A>,
    aggregate_id: &str,
    command: A::Command,
    metadata: &Metadata,
) -> Result<(), AggregateError<A::Error>>
where
    A: Aggregate + Send + Sync + Clone,
    A::Command: Clone,
{
    execute_from(cqrs, aggregate_id, command, metadata, Start::Latest).await
}

/// Executes `command` like [`execute`], first decided on what `start` says when no
/// copy is kept: [`Start::New`] for a command that usually starts its aggregate.
pub async fn execute_from<A>(
    cqrs: &Cqrs<A>,
    aggregate_id: &str,
    command: A::Command,
    metadata: &Metadata,
    start: Start,
) -> Result<(), AggregateError<A::Error>>
where
    A: Aggregate + Send + Sync + Clone,
    A::Command: Clone,
{
    cqrs.store
        .run(
            &cqrs.services,
            aggregate_id,
            command,
            metadata,
            start,
            false,
        )
        .await
        .map(|_| ())
}

/// Executes `command` like [`execute_from`] and returns the aggregate as the command
/// left it (its events applied), so that a saga deciding its next step needs no
/// second load.
pub async fn execute_and_get<A>(
    store: &EventStore<A>,
    services: &A::Services,
    aggregate_id: &str,
    command: A::Command,
    metadata: &Metadata,
    start: Start,
) -> Result<A, AggregateError<A::Error>>
where
    A: Aggregate + Send + Sync + Clone,
    A::Command: Clone,
{
    let after = store
        .run(services, aggregate_id, command, metadata, start, true)
        .await?;
    Ok(after.expect("asked for"))
}

/// What a command is first decided on when no copy of its aggregate is kept.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Start {
    /// A load of the aggregate's stream: its latest state.
    Latest,
    /// The aggregate as if it had no events, with no load: for a command that
    /// usually starts its aggregate (a referral's first step in a service). The store
    /// checks that assumption as it checks a copy: if the aggregate has events after
    /// all, the append conflicts, and a refusal or a command that writes nothing is
    /// decided again on the store's latest.
    New,
}

impl Start {
    /// [`Start::New`] when `new`, else [`Start::Latest`].
    pub fn new_when(new: bool) -> Start {
        if new { Start::New } else { Start::Latest }
    }
}

impl<A> EventStore<A>
where
    A: Aggregate + Send + Sync + Clone,
    A::Command: Clone,
{
    /// Decides `command` on the aggregate's latest state and stores its events; the
    /// aggregate as it left it when `wanted`.
    ///
    /// A first attempt is decided on the copy the last command kept
    /// ([`crate::recent`]) when it is usable and not known to be behind, on the
    /// aggregate as if new when no copy is kept and `start` says so, and otherwise on
    /// a state read from the store: a kept copy caught up with the events stored
    /// after it ([`EventStore::catch_up`]), or a load. A copy (or the assumption) may
    /// be behind the store (another instance or command wrote since): an append
    /// decided on it conflicts, and a refusal or a command that writes nothing, which
    /// the store cannot object to, is not taken as the answer. Every later attempt is
    /// decided on a state read from the store, and one after a conflict on such a
    /// state waits a little first ([`CONFLICT`]).
    ///
    /// A catch-up starts only from a kept copy, never from a state a load or
    /// catch-up read: kept copies are of events on disk (a consumer's only once its
    /// flush is done), where a load may have read an event committed without waiting
    /// for the disk, which a crash of Postgres can take back and another writer
    /// replace at the same sequence, unseen by the catch-up's check.
    async fn run(
        &self,
        services: &A::Services,
        aggregate_id: &str,
        command: A::Command,
        metadata: &Metadata,
        start: Start,
        wanted: bool,
    ) -> Result<Option<A>, AggregateError<A::Error>> {
        use cqrs_es::EventStore as _;
        let mut retries = CONFLICT.start();
        // The first attempt may decide on what the store has not confirmed (a copy,
        // or the assumption of a new aggregate); later ones only on what it read.
        let mut first = true;
        loop {
            let found = self
                .copies
                .as_ref()
                .and_then(|c| c.recent.get(aggregate_id));
            let (from, (mut aggregate, sequence)) = match found {
                Some(Found::Latest(state, sequence)) if first => ("recent", (state, sequence)),
                Some(Found::Latest(state, sequence) | Found::Earlier(state, sequence)) => {
                    match self.catch_up(aggregate_id, state, sequence).await? {
                        Some(caught_up) => ("catch-up", caught_up),
                        None => ("store", self.load_latest(aggregate_id).await?),
                    }
                }
                None if first && start == Start::New => ("new", (A::default(), 0)),
                None => ("store", self.load_latest(aggregate_id).await?),
            };
            first = false;
            let unchecked = matches!(from, "recent" | "new");
            recent::LOADS.with_label_values(&[A::TYPE, from]).inc();
            let sink = cqrs_es::event_sink::EventSink::<A>::default();
            let decided = aggregate.handle(command.clone(), services, &sink).await;
            let events = sink.collect().await;
            if unchecked && (decided.is_err() || events.is_empty()) {
                continue;
            }
            decided.map_err(AggregateError::UserError)?;
            if events.is_empty() {
                return Ok(wanted.then_some(aggregate));
            }
            let written = events.len();
            let ctx = EventStoreAggregateContext {
                aggregate_id: aggregate_id.to_string(),
                // Not read by the plain event store's commit; the state stays here.
                aggregate: A::default(),
                current_sequence: sequence,
                current_snapshot: None,
            };
            match self.inner.commit(events, ctx, metadata.to_map()).await {
                Ok(_) => {
                    let Some(copies) = &self.copies else {
                        return Ok(wanted.then_some(aggregate));
                    };
                    let returned = wanted.then(|| aggregate.clone());
                    let sequence = sequence + written;
                    copies
                        .recent
                        .keep(aggregate_id, aggregate, sequence, flushed_later());
                    return Ok(returned);
                }
                Err(e) => {
                    if let Some(copies) = &self.copies {
                        copies.recent.behind(aggregate_id, sequence);
                    }
                    match e {
                        AggregateError::AggregateConflict if unchecked => {}
                        AggregateError::AggregateConflict if retries.attempts() < 8 => {
                            retries.wait().await
                        }
                        e => return Err(e),
                    }
                }
            }
        }
    }

    /// The aggregate's latest state, and its sequence, from a load of its stream.
    async fn load_latest(
        &self,
        aggregate_id: &str,
    ) -> Result<(A, usize), AggregateError<A::Error>> {
        use cqrs_es::EventStore as _;
        let ctx = self.inner.load_aggregate(aggregate_id).await?;
        Ok((ctx.aggregate, ctx.current_sequence))
    }

    /// `state`, a kept copy of the aggregate at `sequence`, brought to the store's
    /// latest by applying the events stored after it: what a load gives, reading only
    /// those events. `None`, and the copy dropped, when the store does not hold the
    /// event at `sequence` or those after it do not follow one another (it lost
    /// events: a restore), so the copy may hold what the store does not and only a
    /// load tells the store's latest. For an unsealed store (the only kind that keeps
    /// copies).
    async fn catch_up(
        &self,
        aggregate_id: &str,
        mut state: A,
        sequence: usize,
    ) -> Result<Option<(A, usize)>, AggregateError<A::Error>> {
        let Some(copies) = &self.copies else {
            return Ok(None);
        };
        let rows: Vec<(i64, serde_json::Value)> = sqlx::query_as(&copies.catch_up)
            .bind(A::TYPE)
            .bind(aggregate_id)
            .bind(sequence as i64)
            .fetch_all(&copies.pool)
            .await
            .map_err(persistence_error)?;
        let follows = rows
            .iter()
            .enumerate()
            .all(|(i, row)| row.0 as usize == sequence + i);
        if rows.is_empty() || !follows {
            copies.recent.forget_at(aggregate_id, sequence);
            return Ok(None);
        }
        let latest = sequence + rows.len() - 1;
        for (_, payload) in rows.into_iter().skip(1) {
            let event: A::Event =
                serde_json::from_value(payload).map_err(PersistenceError::from)?;
            state.apply(event);
        }
        Ok(Some((state, latest)))
    }
}

impl<A> cqrs_es::EventStore<A> for EventStore<A>
where
    A: Aggregate + Send + Sync,
{
    type AC = EventStoreAggregateContext<A>;

    async fn load_events(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<cqrs_es::EventEnvelope<A>>, AggregateError<A::Error>> {
        self.inner.load_events(aggregate_id).await
    }

    async fn load_aggregate(
        &self,
        aggregate_id: &str,
    ) -> Result<Self::AC, AggregateError<A::Error>> {
        self.inner.load_aggregate(aggregate_id).await
    }

    /// A commit made outside [`execute`] drops the aggregate's kept copy.
    async fn commit(
        &self,
        events: Vec<A::Event>,
        context: Self::AC,
        metadata: HashMap<String, String>,
    ) -> Result<Vec<cqrs_es::EventEnvelope<A>>, AggregateError<A::Error>> {
        if let Some(copies) = &self.copies {
            copies.recent.forget(&context.aggregate_id);
        }
        self.inner.commit(events, context, metadata).await
    }
}

/// Loads the current state of aggregate `id` from the store (a fresh default when it
/// has no events).
pub async fn load<A>(cqrs_store: &EventStore<A>, id: &str) -> Result<A, AggregateError<A::Error>>
where
    A: Aggregate + Send + Sync + Clone,
{
    use cqrs_es::EventStore as _;
    Ok(cqrs_store.load_aggregate(id).await?.aggregate)
}

/// Executes `command` and returns the aggregate as it stands after it: how a process
/// manager records a fact and then decides from everything it knows. The state is
/// the store's latest when the command's events were stored (an append is written
/// only at the store's latest sequence), and for a command that writes nothing the
/// state read from the store it was decided on. So a fact another handler recorded
/// first is in it, and one recorded after it is decided on a state holding this one:
/// of two related facts recorded at once, the handler of the later acts on both
/// (decisions are idempotent, so acting twice does nothing twice). No load after the
/// command: the state is the command's own.
pub async fn record<A>(
    cqrs: &Cqrs<A>,
    aggregate_id: &str,
    command: A::Command,
    metadata: &Metadata,
) -> anyhow::Result<A>
where
    A: Aggregate + Send + Sync + Clone,
    A::Command: Clone,
{
    execute_and_get(
        &cqrs.store,
        &cqrs.services,
        aggregate_id,
        command,
        metadata,
        Start::Latest,
    )
    .await
    .map_err(into_anyhow)
}

/// A store for reading aggregate state outside a command (e.g. a saga's next step).
pub fn event_store<A>(pool: PgPool, schema: &str) -> EventStore<A>
where
    A: Aggregate + Clone + Send + Sync + 'static,
{
    let copies = Copies {
        recent: recent::shared::<A>(&pool, schema),
        pool: pool.clone(),
        catch_up: catch_up_statement(schema),
    };
    EventStore {
        inner: repository_store(pool, schema, None),
        copies: Some(copies),
    }
}

/// Like [`event_store`], with payloads sealed by `seal` at rest (and no copies kept).
pub fn sealed_event_store<A>(
    pool: PgPool,
    schema: &str,
    seal: Arc<dyn PayloadSeal>,
) -> EventStore<A>
where
    A: Aggregate + Send + Sync,
{
    EventStore {
        inner: repository_store(pool, schema, Some(seal)),
        copies: None,
    }
}

fn repository_store<A>(
    pool: PgPool,
    schema: &str,
    seal: Option<Arc<dyn PayloadSeal>>,
) -> PersistedEventStore<Repository, A>
where
    A: Aggregate + Send + Sync,
{
    PersistedEventStore::new_event_store(Repository {
        inner: PostgresEventRepository::new(pool.clone())
            .with_tables(&format!("{schema}.events"), &format!("{schema}.snapshots")),
        pool,
        append: append_statement(schema, false),
        append_lazily: append_statement(schema, true),
        seal,
    })
}

/// Whether a command failed because the database was unavailable (a retry may
/// succeed), not because of the command.
pub fn is_unavailable<E: std::error::Error>(err: &AggregateError<E>) -> bool {
    match err {
        AggregateError::DatabaseConnectionError(e) | AggregateError::UnexpectedError(e) => {
            careloop_web::dependency::is_transient_chain(e.as_ref())
        }
        _ => false,
    }
}

/// Maps a command's failure to the client's answer: the domain's own refusal as the
/// domain says, a conflict that outlasted the retries as 409 (retry), the database
/// unavailable as 503 (retry), anything else as a logged 500.
pub fn to_problem<E>(err: AggregateError<E>) -> careloop_web::Problem
where
    E: std::error::Error + Into<careloop_web::Problem>,
{
    if is_unavailable(&err) {
        tracing::warn!(error = %err, "database unavailable");
        return careloop_web::Problem::unavailable(
            "the database is not answering now; retry shortly",
        );
    }
    match err {
        AggregateError::UserError(e) => e.into(),
        AggregateError::AggregateConflict => careloop_web::Problem::conflict(
            "another change to this record was made at the same moment; retry",
        )
        .retry_after(1),
        other => careloop_web::Problem::internal(other),
    }
}

/// A command's failure inside a consumer or worker: the database unavailable stays
/// recognisable ([`careloop_web::dependency::Unavailable`]), so it is retried without
/// counting towards dead letters.
pub fn into_anyhow<E: std::error::Error>(err: AggregateError<E>) -> anyhow::Error {
    if is_unavailable(&err) {
        anyhow::Error::new(careloop_web::dependency::Unavailable(err.to_string()))
    } else {
        anyhow::anyhow!("{err}")
    }
}

/// In a consumer, a domain refusal is final (retrying cannot change the answer), so
/// it is logged and skipped; infrastructure failures are errors, to be retried.
pub fn tolerate_refusal<E: std::error::Error + Send + Sync + 'static>(
    result: Result<(), AggregateError<E>>,
) -> anyhow::Result<()> {
    match result {
        Ok(()) => Ok(()),
        Err(AggregateError::UserError(e)) => {
            tracing::warn!(reason = %e, "event not applied: the domain refused it");
            Ok(())
        }
        Err(e) => Err(into_anyhow(e)),
    }
}
