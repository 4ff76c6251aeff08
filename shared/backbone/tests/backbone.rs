//! The backbone's guarantees, each against the real Postgres and JetStream, in a
//! fresh database and namespace per test.

use std::sync::Arc;
use std::time::Duration;

use careloop_backbone::consumer::{Delivery, Disposition};
use careloop_backbone::db::{self, Migration};
use careloop_backbone::{
    Backbone, Consumer, EventHandler, Incoming, IntegrationMapper, Relay, Shutdown, StoredEvent,
};
use careloop_events::{Payload, v1};
use careloop_test_support::plans::rows_read;
use careloop_test_support::{TestEnv, eventually};
use futures::StreamExt;
use sqlx::{PgConnection, PgPool};

const SCHEMA: &str = "demo";
const WAIT: Duration = Duration::from_secs(20);

const EFFECTS: &[Migration] = &[
    Migration {
        name: "0001_effects",
        sql: "CREATE TABLE {schema}.effects (n bigserial PRIMARY KEY, aggregate_id text NOT NULL,
          sequence bigint NOT NULL, event_id text NOT NULL)",
    },
    Migration {
        name: "0002_commands",
        sql: "CREATE TABLE {schema}.commands (n bigserial PRIMARY KEY, aggregate_id text NOT NULL,
          sequence bigint NOT NULL)",
    },
    Migration {
        name: "0003_doomed",
        sql: "CREATE TABLE {schema}.doomed (n int UNIQUE DEFERRABLE INITIALLY DEFERRED)",
    },
];

/// Maps every "Ping" event to an integration event carrying its aggregate id.
struct PingMapper;

impl IntegrationMapper for PingMapper {
    fn published_types(&self) -> &'static [&'static str] {
        &["Ping"]
    }
    fn to_integration(&self, e: &StoredEvent) -> anyhow::Result<Payload> {
        Ok(Payload::FollowUpClosed(v1::FollowUpClosed {
            referral_id: e.aggregate_id.clone(),
            outcome: e.sequence.to_string(),
            reason: String::new(),
            ..Default::default()
        }))
    }
}

/// Records each applied event in `demo.effects` (in the consumer's transaction) and,
/// as a service's command would, in `demo.commands` (committed on its own, before the
/// consumer's transaction); fails forever for aggregate "poison" sequence 1.
struct Recorder {
    pool: PgPool,
}

#[async_trait::async_trait]
impl EventHandler for Recorder {
    async fn handle(&self, event: &Incoming, tx: &mut PgConnection) -> anyhow::Result<()> {
        let env = &event.envelope;
        if env.aggregate_id == "poison" && env.aggregate_sequence == 1 {
            anyhow::bail!("this message can never be applied");
        }
        sqlx::query("INSERT INTO demo.commands (aggregate_id, sequence) VALUES ($1, $2)")
            .bind(&env.aggregate_id)
            .bind(env.aggregate_sequence as i64)
            .execute(&self.pool)
            .await?;
        // A little jitter so two instances really interleave.
        let jitter = uuid::Uuid::new_v4().as_u128() % 5;
        tokio::time::sleep(Duration::from_millis(jitter as u64)).await;
        sqlx::query(
            "INSERT INTO demo.effects (aggregate_id, sequence, event_id) VALUES ($1, $2, $3)",
        )
        .bind(&env.aggregate_id)
        .bind(env.aggregate_sequence as i64)
        .bind(&env.event_id)
        .execute(&mut *tx)
        .await?;
        Ok(())
    }
}

struct Fixture {
    env: TestEnv,
    bb: Backbone,
}

async fn fixture() -> Fixture {
    let env = TestEnv::new();
    let bb = Backbone::connect(&env.settings).await.unwrap();
    db::migrate(&bb.pool, SCHEMA, EFFECTS).await.unwrap();
    Fixture { env, bb }
}

impl Fixture {
    fn relay(&self) -> Relay {
        Relay::new(
            self.bb.pool.clone(),
            self.bb.stream.clone(),
            "demo",
            SCHEMA,
            Arc::new(PingMapper),
        )
    }

    fn consumer(&self) -> Consumer {
        Consumer::new(
            self.bb.pool.clone(),
            self.bb.stream.clone(),
            "demo",
            SCHEMA,
            "demo",
            Arc::new(Recorder {
                pool: self.bb.pool.clone(),
            }),
        )
        .max_deliver(3)
    }

    async fn stream_len(&self) -> u64 {
        let mut s = self
            .bb
            .js
            .get_stream(self.bb.namespace.stream_name())
            .await
            .unwrap();
        s.info().await.unwrap().state.messages
    }

    async fn count(&self, sql: &str) -> i64 {
        sqlx::query_scalar(sql)
            .fetch_one(&self.bb.pool)
            .await
            .unwrap()
    }
}

/// Runs relay passes until `n` events in all were sent. A pass may send fewer than
/// are committed: the relay waits for every older transaction on the server (other
/// tests' too) to finish, which is the guarantee under test, not a fault.
async fn publish(relay: &Relay, n: usize) -> usize {
    let deadline = tokio::time::Instant::now() + WAIT;
    let mut sent = 0;
    while sent < n {
        sent += relay.publish_pending().await.unwrap();
        assert!(
            tokio::time::Instant::now() < deadline,
            "sent only {sent} of {n} events"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sent
}

/// Appends Ping events for `aggregate`, as postgres-es would (explicit column list).
async fn append(pool: &PgPool, aggregate: &str, from: i64, to: i64) {
    for seq in from..=to {
        sqlx::query(
            "INSERT INTO demo.events (aggregate_type, aggregate_id, sequence, event_type,
                event_version, payload, metadata)
             VALUES ('Demo', $1, $2, 'Ping', '1', '{}', '{}')",
        )
        .bind(aggregate)
        .bind(seq)
        .execute(pool)
        .await
        .unwrap();
    }
}

/// Guarantee 2: the relay killed after publishing but before moving its cursor sends
/// the batch again, and JetStream keeps one copy (Nats-Msg-Id = event id). Killed
/// before publishing, it loses nothing: the next relay sends what was committed.
#[tokio::test]
async fn a_relay_crash_loses_nothing_and_duplicates_nothing() {
    let f = fixture().await;
    append(&f.bb.pool, "a", 1, 5).await;

    let relay = f.relay();
    let mut batch = eventually("a batch of all five events", WAIT, || async {
        let batch = relay.next_batch().await.unwrap();
        (batch.events.len() == 5).then_some(batch)
    })
    .await;
    relay.publish(&mut batch).await.unwrap();
    drop(batch); // the process dies here: the cursor never moved
    assert_eq!(f.stream_len().await, 5);

    // Killed between commit and publish: these events only exist in Postgres.
    append(&f.bb.pool, "a", 6, 8).await;

    let restarted = f.relay();
    assert_eq!(
        publish(&restarted, 8).await,
        8,
        "re-sends the uncommitted batch"
    );
    assert_eq!(
        f.stream_len().await,
        8,
        "JetStream dropped the 5 re-sent events"
    );
    assert_eq!(
        restarted.publish_pending().await.unwrap(),
        0,
        "nothing left after the cursor moved"
    );
}

/// Guarantee 2 (the bigserial gap): an event whose transaction commits after a later
/// position's is still published, and in commit-safe order.
#[tokio::test]
async fn a_late_committing_transaction_is_not_skipped() {
    let f = fixture().await;
    let mut slow = f.bb.pool.begin().await.unwrap();
    sqlx::query(
        "INSERT INTO demo.events (aggregate_type, aggregate_id, sequence, event_type,
            event_version, payload, metadata) VALUES ('Demo', 'slow', 1, 'Ping', '1', '{}', '{}')",
    )
    .execute(&mut *slow)
    .await
    .unwrap();
    append(&f.bb.pool, "fast", 1, 1).await; // a later position, committed first

    let relay = f.relay();
    assert_eq!(
        relay.publish_pending().await.unwrap(),
        0,
        "nothing is read past a transaction still running"
    );
    slow.commit().await.unwrap();
    assert_eq!(publish(&relay, 2).await, 2);
    assert_eq!(f.stream_len().await, 2);
}

/// Guarantee 2, with the horizon: the relay's cursor moves past events it never
/// publishes (so looking for work stays cheap), yet an event of its type whose
/// transaction began before them and commits after them is still published.
#[tokio::test]
async fn the_cursor_moves_past_unpublished_events_without_skipping_a_late_commit() {
    let f = fixture().await;
    let insert = "INSERT INTO demo.events (aggregate_type, aggregate_id, sequence, event_type,
        event_version, payload, metadata) VALUES ('Demo', $1, $2, $3, '1', '{}', '{}')";
    let relay = f.relay();
    for round in 1..=2 {
        // A Ping still uncommitted, then 150 events of a type never published, and a
        // Ping committed at once.
        let slow_id = format!("slow{round}");
        let mut slow = f.bb.pool.begin().await.unwrap();
        sqlx::query(insert)
            .bind(&slow_id)
            .bind(1i64)
            .bind("Ping")
            .execute(&mut *slow)
            .await
            .unwrap();
        for seq in 1..=150i64 {
            sqlx::query(insert)
                .bind(format!("secret{round}"))
                .bind(seq)
                .bind("Secret")
                .execute(&f.bb.pool)
                .await
                .unwrap();
        }
        append(&f.bb.pool, &format!("fast{round}"), 1, 1).await;
        assert_eq!(
            relay.publish_pending().await.unwrap(),
            0,
            "nothing is read past a transaction still running"
        );
        slow.commit().await.unwrap();
        assert_eq!(publish(&relay, 2).await, 2, "round {round}");
        assert_eq!(f.stream_len().await, 2 * round as u64);
    }
    // Every event is behind the cursor now, the unpublished ones included (other
    // tests' transactions may hold the horizon back for a moment: wait for it).
    eventually("the cursor past every event", WAIT, || async {
        relay.publish_pending().await.unwrap();
        let mut conn = f.bb.pool.acquire().await.unwrap();
        let beyond: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM demo.events e, demo.cursors c
             WHERE c.name = 'relay' AND (e.txid, e.position) > (c.txid, c.position)",
        )
        .fetch_one(&mut *conn)
        .await
        .unwrap();
        let backlog = careloop_backbone::outbox::backlog(
            &mut conn,
            SCHEMA,
            "relay",
            Some(&["Ping".to_string()]),
        )
        .await
        .unwrap();
        (beyond == 0 && !backlog.waiting() && !backlog.worth_a_pass()).then_some(())
    })
    .await;
    assert_eq!(f.stream_len().await, 4, "each Ping once");
}

/// Guarantee 2's liveness: a reader opens a pass exactly when one has work. The look
/// (`outbox::backlog`, which stops early rather than count) says events of the
/// reader's types wait while an older transaction hides them, that they are readable
/// once it ends, and that other types' events are worth a pass only from the
/// hundredth on. A look that never said "readable" would leave events unpublished.
#[tokio::test]
async fn a_look_says_whether_a_pass_has_work() {
    let f = fixture().await;
    let look = || async {
        let mut conn = f.bb.pool.acquire().await.unwrap();
        careloop_backbone::outbox::backlog(&mut conn, SCHEMA, "relay", Some(&["Ping".into()]))
            .await
            .unwrap()
    };
    let b = look().await;
    assert!(!b.waiting() && !b.worth_a_pass(), "{b:?}");

    // A Ping committed after a transaction that is still running: waiting, not
    // readable (a pass would read nothing).
    let mut older = f.bb.pool.begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *older)
        .await
        .unwrap();
    append(&f.bb.pool, "late", 1, 1).await;
    let b = look().await;
    assert!(b.waiting() && !b.readable && !b.worth_a_pass(), "{b:?}");
    older.commit().await.unwrap();
    eventually("the Ping readable", WAIT, || async {
        look().await.worth_a_pass().then_some(())
    })
    .await;
    assert_eq!(publish(&f.relay(), 1).await, 1);
    assert!(!look().await.waiting());

    // Events of other types: not worth a pass until there are SKIP_AFTER of them.
    let other = |n: i64| {
        let pool = f.bb.pool.clone();
        async move {
            sqlx::query(
                "INSERT INTO demo.events (aggregate_type, aggregate_id, sequence, event_type,
                    event_version, payload, metadata)
                 SELECT 'Demo', 'other' || g, 1, 'Other', '1', '{}', '{}'
                 FROM generate_series($1::bigint, $2::bigint) g",
            )
            .bind(n)
            .bind(n + 98)
            .execute(&pool)
            .await
            .unwrap();
        }
    };
    other(1).await;
    eventually("99 others readable", WAIT, || async {
        (look().await.skippable == 99).then_some(())
    })
    .await;
    assert!(!look().await.worth_a_pass());
    other(100).await;
    eventually("198 others readable", WAIT, || async {
        let b = look().await;
        (b.skippable == careloop_backbone::outbox::SKIP_AFTER && b.worth_a_pass()).then_some(())
    })
    .await;
    assert!(!look().await.waiting(), "none of them is the reader's");
}

/// Guarantee 3: a redelivered message changes nothing; the processed record is
/// written in the same transaction as the effect.
#[tokio::test]
async fn a_redelivered_message_changes_nothing() {
    let f = fixture().await;
    append(&f.bb.pool, "a", 1, 1).await;
    publish(&f.relay(), 1).await;
    let consumer = f.consumer();
    let msg = pull(&consumer, 1).await.remove(0);

    assert_eq!(
        consumer.process(&msg.0, &msg.1, 1, Duration::ZERO).await,
        Disposition::Applied
    );
    assert_eq!(
        consumer.process(&msg.0, &msg.1, 2, Duration::ZERO).await,
        Disposition::Duplicate
    );
    assert_eq!(f.count("SELECT count(*) FROM demo.effects").await, 1);
}

/// Guarantee 3, for a batch: messages applied together in one transaction are each
/// applied once, in order, and a batch delivered again changes nothing. A batch never
/// holds two events of one aggregate in one transaction, so when one with a failing
/// message is rolled back and handled one message at a time, no command runs again
/// for an event after a later event of its aggregate took effect; and the others are
/// still applied once, with only the failing one counted as a failure.
#[tokio::test]
async fn a_batch_applies_each_message_once_and_a_failure_falls_back_to_one_by_one() {
    let f = fixture().await;
    append(&f.bb.pool, "a", 1, 1).await;
    append(&f.bb.pool, "b", 1, 1).await;
    append(&f.bb.pool, "d", 1, 2).await;
    append(&f.bb.pool, "poison", 1, 1).await;
    publish(&f.relay(), 5).await;
    let consumer = f.consumer();
    let messages = pull(&consumer, 5).await;
    let by_id = |id: &str| {
        messages
            .iter()
            .find(|(_, bytes)| {
                let env =
                    <careloop_events::v1::Envelope as prost::Message>::decode(&bytes[..]).unwrap();
                format!("{}-{}", env.aggregate_id, env.aggregate_sequence) == id
            })
            .map(|(subject, bytes)| Delivery {
                subject,
                bytes,
                delivered: 1,
                in_stream_for: Duration::ZERO,
            })
            .unwrap()
    };
    let clean = [by_id("a-1"), by_id("b-1")];
    assert_eq!(
        consumer.process_batch(&clean).await,
        [Disposition::Applied, Disposition::Applied]
    );
    assert_eq!(
        f.count("SELECT count(DISTINCT updated_at) FROM demo.consumer_positions")
            .await,
        1,
        "the batch's positions moved in one transaction"
    );
    assert_eq!(
        consumer.process_batch(&clean).await,
        [Disposition::Duplicate, Disposition::Duplicate],
        "a batch delivered again changes nothing"
    );

    let mixed = [by_id("d-1"), by_id("d-2"), by_id("poison-1")];
    let outcomes = consumer.process_batch(&mixed).await;
    assert_eq!(outcomes[..2], [Disposition::Applied, Disposition::Applied]);
    assert!(
        matches!(outcomes[2], Disposition::Failed(_)),
        "{outcomes:?}"
    );
    let effects: Vec<(String, i64)> =
        sqlx::query_as("SELECT aggregate_id, sequence FROM demo.effects ORDER BY n")
            .fetch_all(&f.bb.pool)
            .await
            .unwrap();
    assert_eq!(
        effects,
        [
            ("a".into(), 1),
            ("b".into(), 1),
            ("d".into(), 1),
            ("d".into(), 2)
        ],
        "each applied once, in order"
    );
    let commands: Vec<i64> = sqlx::query_scalar(
        "SELECT sequence FROM demo.commands WHERE aggregate_id = 'd' ORDER BY n",
    )
    .fetch_all(&f.bb.pool)
    .await
    .unwrap();
    assert!(
        commands.windows(2).all(|w| w[0] <= w[1]),
        "no command ran for d-1 after d-2's: {commands:?}"
    );
    assert_eq!(
        f.count("SELECT sum(failures) FROM demo.consumer_failures")
            .await,
        1,
        "only the failing message counts a failure, once"
    );
}

/// Pulls `n` messages (unacknowledged) from the consumer.
async fn pull(consumer: &Consumer, n: usize) -> Vec<(String, Vec<u8>)> {
    let c = consumer.ensure().await.unwrap();
    let mut messages = c.messages().await.unwrap();
    let mut pulled = Vec::new();
    while pulled.len() < n {
        let msg = tokio::time::timeout(WAIT, messages.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        pulled.push((msg.subject.to_string(), msg.payload.to_vec()));
    }
    pulled
}

/// Guarantee 6: with two instances sharing one durable consumer, each aggregate's
/// events are applied in sequence order.
#[tokio::test]
async fn two_instances_keep_per_aggregate_order() {
    let f = fixture().await;
    // Interleave three aggregates so both instances get events of each.
    for seq in 1..=15 {
        for agg in ["x", "y", "z"] {
            append(&f.bb.pool, agg, seq, seq).await;
        }
    }
    publish(&f.relay(), 45).await;
    let (trigger, shutdown) = Shutdown::new();
    let a = tokio::spawn(f.consumer().run(shutdown.clone()));
    let b = tokio::spawn(f.consumer().run(shutdown.clone()));
    eventually("all 45 events applied", WAIT, || async {
        (f.count("SELECT count(*) FROM demo.effects").await == 45).then_some(())
    })
    .await;
    trigger.trigger();
    a.await.unwrap();
    b.await.unwrap();

    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT aggregate_id, sequence FROM demo.effects ORDER BY n")
            .fetch_all(&f.bb.pool)
            .await
            .unwrap();
    for agg in ["x", "y", "z"] {
        let seqs: Vec<i64> = rows.iter().filter(|r| r.0 == agg).map(|r| r.1).collect();
        assert_eq!(seqs, (1..=15).collect::<Vec<_>>(), "order of {agg}");
    }
}

/// Guarantee 3: a message that always fails lands in the dead-letter table after
/// max_deliver attempts, the metric counts it, and the consumer goes on, including
/// with the same aggregate's next event.
#[tokio::test]
async fn a_poison_message_is_dead_lettered_and_the_consumer_goes_on() {
    let f = fixture().await;
    append(&f.bb.pool, "poison", 1, 2).await;
    append(&f.bb.pool, "healthy", 1, 1).await;
    publish(&f.relay(), 3).await;
    let before = careloop_backbone::metrics::DEAD_LETTERS
        .with_label_values(&["demo"])
        .get();
    let (trigger, shutdown) = Shutdown::new();
    let task = tokio::spawn(f.consumer().run(shutdown));
    eventually(
        "the poison message dead-lettered and the rest applied",
        WAIT,
        || async {
            let dead = f.count("SELECT count(*) FROM demo.dead_letters").await;
            let applied = f.count("SELECT count(*) FROM demo.effects").await;
            (dead == 1 && applied == 2).then_some(())
        },
    )
    .await;
    trigger.trigger();
    task.await.unwrap();

    let (agg, seq, deliveries, error): (String, i64, i64, String) = sqlx::query_as(
        "SELECT aggregate_id, aggregate_sequence, deliveries, error FROM demo.dead_letters",
    )
    .fetch_one(&f.bb.pool)
    .await
    .unwrap();
    assert_eq!((agg.as_str(), seq, deliveries), ("poison", 1, 3));
    assert!(error.contains("never be applied"), "{error}");
    assert_eq!(
        f.count("SELECT count(*) FROM demo.effects WHERE aggregate_id = 'poison' AND sequence = 2")
            .await,
        1,
        "the aggregate's next event is applied after the dead letter"
    );
    let after = careloop_backbone::metrics::DEAD_LETTERS
        .with_label_values(&["demo"])
        .get();
    assert_eq!(after - before, 1);
    drop(f.env);
}

/// A counter whose `Add(n)` records n `Counted` events: a command with several events.
/// `applied` counts the events applied to this state, so a state that applied an
/// event twice, or skipped one, shows it.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
struct Tally {
    counted: usize,
    applied: usize,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
struct Counted {
    n: usize,
}

impl cqrs_es::DomainEvent for Counted {
    fn event_type(&self) -> String {
        "Counted".into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

impl cqrs_es::Aggregate for Tally {
    const TYPE: &'static str = "Tally";
    type Command = usize;
    type Event = Counted;
    type Error = std::io::Error;
    type Services = ();

    async fn handle(
        &mut self,
        add: usize,
        _: &(),
        sink: &cqrs_es::event_sink::EventSink<Self>,
    ) -> Result<(), Self::Error> {
        for _ in 0..add {
            let n = self.counted + 1;
            sink.write(Counted { n }, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Counted) {
        self.counted = event.n;
        self.applied += 1;
    }
}

/// Guarantee 1's write side: a command's events are stored all together, in one
/// transaction, in their order (positions follow sequences, so readers see them in
/// order), and a command decided on a stale load is refused as a conflict
/// (optimistic lock) and writes nothing, so the retry decides on the latest state.
#[tokio::test]
async fn a_commands_events_are_stored_together_in_order_and_a_stale_one_conflicts() {
    use careloop_backbone::store;
    use cqrs_es::{AggregateContext, AggregateError, EventStore};
    let f = fixture().await;
    let tallies = store::cqrs::<Tally>(f.bb.pool.clone(), SCHEMA, ());
    let meta = store::Metadata::new("test");
    store::execute(&tallies, "t", 3, &meta).await.unwrap();
    let rows: Vec<(i64, String, i64, serde_json::Value)> = sqlx::query_as(
        "SELECT sequence, txid::text, position, payload::jsonb FROM demo.events
         WHERE aggregate_type = 'Tally' ORDER BY position",
    )
    .fetch_all(&f.bb.pool)
    .await
    .unwrap();
    let sequences: Vec<i64> = rows.iter().map(|r| r.0).collect();
    assert_eq!(sequences, [1, 2, 3], "stored in the aggregate's order");
    assert!(rows.iter().all(|r| r.1 == rows[0].1), "one transaction");
    let payloads: Vec<&serde_json::Value> = rows.iter().map(|r| &r.3).collect();
    assert_eq!(payloads[2], &serde_json::json!({"n": 3}));

    let plain = store::event_store::<Tally>(f.bb.pool.clone(), SCHEMA);
    let stale = plain.load_aggregate("t").await.unwrap();
    let mut fresh = plain.load_aggregate("t").await.unwrap();
    assert_eq!(fresh.aggregate().counted, 3);
    let one = vec![Counted { n: 4 }];
    plain
        .commit(one.clone(), fresh, meta.to_map())
        .await
        .unwrap();
    let two = vec![Counted { n: 4 }, Counted { n: 5 }];
    let refused = plain.commit(two, stale, meta.to_map()).await;
    assert!(
        matches!(refused, Err(AggregateError::AggregateConflict)),
        "a stale command conflicts: {refused:?}"
    );
    let stored = f
        .count("SELECT count(*) FROM demo.events WHERE aggregate_type = 'Tally'")
        .await;
    assert_eq!(stored, 4, "the refused command wrote none of its events");
    // What `execute` does with a conflict: load again and decide on the latest state.
    store::execute(&tallies, "t", 1, &meta).await.unwrap();
    assert_eq!(store::load(&plain, "t").await.unwrap().counted, 5);
}

/// A seat that one person at a time can take: `Take` is refused while it is taken.
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
struct Seat {
    taken: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum SeatCommand {
    Take,
    Free,
}

#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
enum SeatEvent {
    Taken,
    Freed,
}

impl cqrs_es::DomainEvent for SeatEvent {
    fn event_type(&self) -> String {
        format!("{self:?}")
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

impl cqrs_es::Aggregate for Seat {
    const TYPE: &'static str = "Seat";
    type Command = SeatCommand;
    type Event = SeatEvent;
    type Error = std::io::Error;
    type Services = ();

    async fn handle(
        &mut self,
        command: SeatCommand,
        _: &(),
        sink: &cqrs_es::event_sink::EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let event = match command {
            SeatCommand::Take if self.taken => {
                return Err(std::io::Error::other("the seat is taken"));
            }
            SeatCommand::Take => SeatEvent::Taken,
            SeatCommand::Free if self.taken => SeatEvent::Freed,
            SeatCommand::Free => return Ok(()),
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: SeatEvent) {
        self.taken = event == SeatEvent::Taken;
    }
}

/// Decisions of `aggregate`'s commands so far made on `from`: `recent` (the copy the
/// last command kept), `new`, `catch-up` (a copy with the events stored after it) or
/// `store` (`careloop_command_loads_total`).
fn decided_on(aggregate: &str, from: &str) -> u64 {
    careloop_backbone::recent::LOADS
        .with_label_values(&[aggregate, from])
        .get()
}

/// Tally commands' decisions so far, by what they were decided on: `recent`, `new`,
/// `catch-up`, `store`.
fn tally_decisions() -> [u64; 4] {
    ["recent", "new", "catch-up", "store"].map(|from| decided_on("Tally", from))
}

/// Tally commands' decisions since `before` (a [`tally_decisions`]).
fn tally_decisions_since(before: [u64; 4]) -> [u64; 4] {
    let now = tally_decisions();
    std::array::from_fn(|i| now[i] - before[i])
}

/// The Tally events stored for aggregate `id`: (sequence, payload), in order.
async fn stored_tallies(pool: &PgPool, id: &str) -> Vec<(i64, serde_json::Value)> {
    sqlx::query_as(
        "SELECT sequence, payload::jsonb FROM demo.events
         WHERE aggregate_type = 'Tally' AND aggregate_id = $1 ORDER BY sequence",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// The sequences of the Tally events stored for aggregate `id`, in order.
async fn stored_sequences(pool: &PgPool, id: &str) -> Vec<i64> {
    let stored = stored_tallies(pool, id).await;
    stored.into_iter().map(|(sequence, _)| sequence).collect()
}

/// Deletes Tally `id`'s last event, as a crash of Postgres takes back a commit that
/// had not reached the disk (the append-only guard lifted for it).
async fn take_back_last_tally(pool: &PgPool, id: &str) {
    let mut tx = pool.begin().await.unwrap();
    sqlx::query("ALTER TABLE demo.events DISABLE TRIGGER events_append_only")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "DELETE FROM demo.events WHERE aggregate_type = 'Tally' AND aggregate_id = $1
           AND sequence = (SELECT max(sequence) FROM demo.events
                           WHERE aggregate_type = 'Tally' AND aggregate_id = $1)",
    )
    .bind(id)
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::query("ALTER TABLE demo.events ENABLE TRIGGER events_append_only")
        .execute(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();
}

/// Guarantee 1 with the kept copies (`recent`): a command starts from the aggregate
/// as this process's last command on it left it, and a copy older than the store
/// never decides. A second instance (its own pool, so its own copies) writes
/// between two commands of the first: the first's append conflicts and is decided
/// again on the store's latest (no lost update), and a refusal decided on the stale
/// copy is decided again too (the seat was freed meanwhile: taking it succeeds).
#[tokio::test]
async fn a_command_starts_from_the_kept_copy_and_a_stale_copy_never_decides() {
    use careloop_backbone::store;
    let f = fixture().await;
    let other_pool = db::pool(&f.env.settings.database_url, &f.env.settings.database).unwrap();
    let meta = store::Metadata::new("test");
    let here = store::cqrs::<Tally>(f.bb.pool.clone(), SCHEMA, ());
    let there = store::cqrs::<Tally>(other_pool.clone(), SCHEMA, ());

    store::execute(&here, "t", 1, &meta).await.unwrap();
    let copies = decided_on("Tally", "recent");
    store::execute(&here, "t", 1, &meta).await.unwrap();
    assert_eq!(
        decided_on("Tally", "recent"),
        copies + 1,
        "the second command skipped the load"
    );

    store::execute(&there, "t", 1, &meta).await.unwrap();
    store::execute(&here, "t", 1, &meta).await.unwrap();
    let stored = stored_tallies(&f.bb.pool, "t").await;
    assert_eq!(
        stored_sequences(&f.bb.pool, "t").await,
        [1, 2, 3, 4],
        "every command stored, none lost"
    );
    assert_eq!(
        stored[3].1,
        serde_json::json!({"n": 4}),
        "the last command was decided on the other instance's write, not on the stale copy"
    );

    let seats_here = store::cqrs::<Seat>(f.bb.pool.clone(), SCHEMA, ());
    let seats_there = store::cqrs::<Seat>(other_pool, SCHEMA, ());
    store::execute(&seats_here, "s", SeatCommand::Take, &meta)
        .await
        .unwrap();
    store::execute(&seats_there, "s", SeatCommand::Free, &meta)
        .await
        .unwrap();
    store::execute(&seats_here, "s", SeatCommand::Take, &meta)
        .await
        .expect("the seat was freed by the other instance: a refusal on the stale copy is decided again");
    let taken = f
        .count("SELECT count(*) FROM demo.events WHERE aggregate_type = 'Seat' AND event_type = 'Taken'")
        .await;
    assert_eq!(taken, 2);

    // A command that writes nothing on the stale copy is decided again too: here the
    // copy says free, the other instance took the seat since, so freeing it writes.
    store::execute(&seats_here, "s", SeatCommand::Free, &meta)
        .await
        .unwrap();
    store::execute(&seats_there, "s", SeatCommand::Take, &meta)
        .await
        .unwrap();
    let caught_up = decided_on("Seat", "catch-up");
    store::execute(&seats_here, "s", SeatCommand::Free, &meta)
        .await
        .unwrap();
    let freed = f
        .count("SELECT count(*) FROM demo.events WHERE aggregate_type = 'Seat' AND event_type = 'Freed'")
        .await;
    assert_eq!(
        freed, 3,
        "the no-op on the stale copy was decided again on the store's latest"
    );
    assert_eq!(
        decided_on("Seat", "catch-up"),
        caught_up + 1,
        "the instances keep copies of their own: the stale one was found behind and caught up"
    );
    drop(f.env);
}

/// Guarantee 1 with the kept copies, and what they save: a copy behind the store is
/// brought to the store's latest by reading only the events stored after it, never
/// the whole stream. Three ways a copy falls behind: another instance wrote since
/// (the append conflicts, then the copy catches up); the last copy waits for a
/// consumer's commit (the usable one before it catches up, without deciding on the
/// unflushed one); and the store lost the copy's last event (only a load tells the
/// store's latest then, and nothing is written after a gap).
#[tokio::test]
async fn a_copy_behind_the_store_catches_up_with_the_events_after_it() {
    use careloop_backbone::recent::Flush;
    use careloop_backbone::store;
    let f = fixture().await;
    let other_pool = db::pool(&f.env.settings.database_url, &f.env.settings.database).unwrap();
    let meta = store::Metadata::new("test");
    let here = store::cqrs::<Tally>(f.bb.pool.clone(), SCHEMA, ());
    let there = store::cqrs::<Tally>(other_pool, SCHEMA, ());
    for _ in 0..3 {
        store::execute(&here, "t", 1, &meta).await.unwrap();
    }
    store::execute(&there, "t", 1, &meta).await.unwrap();
    store::execute(&there, "t", 1, &meta).await.unwrap();

    // The same copies as `here` (one pool, schema and type): the state a command
    // left tells whether each event was applied once.
    let states = store::event_store::<Tally>(f.bb.pool.clone(), SCHEMA);
    let before = tally_decisions();
    let after = store::execute_and_get(&states, &(), "t", 1, &meta, store::Start::Latest)
        .await
        .unwrap();
    assert_eq!(
        tally_decisions_since(before),
        [1, 0, 1, 0],
        "decided on the stale copy, which conflicted, then on it caught up; no load"
    );
    assert_eq!(after.applied, 6, "each of the six events applied once");
    assert_eq!(
        stored_tallies(&f.bb.pool, "t").await[5],
        (6, serde_json::json!({"n": 6})),
        "decided on the other instance's writes"
    );

    let pending = Flush::default();
    store::flushed_by_caller(pending.clone(), store::execute(&here, "t", 1, &meta))
        .await
        .unwrap();
    let before = tally_decisions();
    let after = store::execute_and_get(&states, &(), "t", 1, &meta, store::Start::Latest)
        .await
        .unwrap();
    assert_eq!(after.applied, 8, "each of the eight events applied once");
    assert_eq!(
        tally_decisions_since(before),
        [0, 0, 1, 0],
        "the usable copy before the waiting one caught up; the waiting one decided nothing"
    );
    assert_eq!(
        stored_tallies(&f.bb.pool, "t").await[7],
        (8, serde_json::json!({"n": 8})),
        "the unflushed event was read from the store"
    );
    pending.done();

    take_back_last_tally(&f.bb.pool, "t").await;
    let before = tally_decisions();
    store::execute(&here, "t", 1, &meta).await.unwrap();
    assert_eq!(
        tally_decisions_since(before),
        [1, 0, 0, 1],
        "the copy's append found the gap; the store no longer holds the copy's last \
         event, so decided on a load, not a catch-up"
    );
    assert_eq!(
        stored_tallies(&f.bb.pool, "t").await[6..],
        [
            (7, serde_json::json!({"n": 7})),
            (8, serde_json::json!({"n": 8}))
        ],
        "no gap, and nothing decided on the lost event"
    );
    drop(f.env);
}

/// Guarantee 1 with `store::Start::New`: a command that usually starts its aggregate
/// is decided first as if the aggregate had no events, without a load, and the
/// store checks that assumption as it checks a copy. On an aggregate that has events
/// (written by another instance, so no copy here knows them) the append conflicts
/// and the command is decided again on a load (nothing lost, no sequence taken
/// twice), and a refusal decided on the assumption is decided again (the seat taken
/// elsewhere stays taken: the refusal stands, decided on the store).
#[tokio::test]
async fn a_command_decided_as_new_is_checked_by_the_store() {
    use careloop_backbone::store::{self, Start};
    let f = fixture().await;
    let other_pool = db::pool(&f.env.settings.database_url, &f.env.settings.database).unwrap();
    let meta = store::Metadata::new("test");
    let here = store::cqrs::<Tally>(f.bb.pool.clone(), SCHEMA, ());
    let there = store::cqrs::<Tally>(other_pool.clone(), SCHEMA, ());

    let assumed = decided_on("Tally", "new");
    store::execute_from(&here, "fresh", 2, &meta, Start::New)
        .await
        .unwrap();
    assert_eq!(
        decided_on("Tally", "new"),
        assumed + 1,
        "decided without a load"
    );

    store::execute(&there, "old", 2, &meta).await.unwrap();
    store::execute_from(&here, "old", 1, &meta, Start::New)
        .await
        .unwrap();
    assert_eq!(
        stored_tallies(&f.bb.pool, "old").await,
        [
            (1, serde_json::json!({"n": 1})),
            (2, serde_json::json!({"n": 2})),
            (3, serde_json::json!({"n": 3}))
        ],
        "decided again on the events the other instance wrote"
    );

    let seats_here = store::cqrs::<Seat>(f.bb.pool.clone(), SCHEMA, ());
    let seats_there = store::cqrs::<Seat>(other_pool, SCHEMA, ());
    store::execute(&seats_there, "s", SeatCommand::Take, &meta)
        .await
        .unwrap();
    store::execute_from(&seats_here, "s", SeatCommand::Free, &meta, Start::New)
        .await
        .unwrap();
    let freed = f
        .count("SELECT count(*) FROM demo.events WHERE aggregate_type = 'Seat' AND event_type = 'Freed'")
        .await;
    assert_eq!(
        freed, 1,
        "a no-op on the assumed-new seat was decided again on the store"
    );
    drop(f.env);
}

/// Guarantee 1: a command decided on an event the store no longer holds (a
/// consumer's command that a crash of Postgres took back before it reached the disk,
/// or a copy kept from before a restore) writes nothing and is decided again: the
/// append is written only right after the event before it, so the aggregate's
/// sequence never has a gap. Here the last event is taken back after a command's
/// load, and again after a durable command kept its copy.
#[tokio::test]
async fn a_command_decided_on_an_event_the_store_lost_writes_nothing() {
    use careloop_backbone::store;
    use cqrs_es::{AggregateError, EventStore};
    let f = fixture().await;
    let meta = store::Metadata::new("test");
    let tallies = store::cqrs::<Tally>(f.bb.pool.clone(), SCHEMA, ());
    let plain = store::event_store::<Tally>(f.bb.pool.clone(), SCHEMA);

    store::execute(&tallies, "t", 3, &meta).await.unwrap();
    let loaded = plain.load_aggregate("t").await.unwrap();
    take_back_last_tally(&f.bb.pool, "t").await;
    let refused = plain
        .commit(vec![Counted { n: 4 }], loaded, meta.to_map())
        .await;
    assert!(
        matches!(refused, Err(AggregateError::AggregateConflict)),
        "decided on the lost event: {refused:?}"
    );
    assert_eq!(
        stored_sequences(&f.bb.pool, "t").await,
        [1, 2],
        "nothing written after the gap"
    );

    store::execute(&tallies, "t", 1, &meta).await.unwrap();
    take_back_last_tally(&f.bb.pool, "t").await;
    store::execute(&tallies, "t", 1, &meta).await.unwrap();
    assert_eq!(stored_sequences(&f.bb.pool, "t").await, [1, 2, 3], "no gap");
    assert_eq!(store::load(&plain, "t").await.unwrap().counted, 3);
    drop(f.env);
}

/// Guarantee 1 with the kept copies: what a consumer's command wrote, committing
/// without waiting for the disk, is not a command's starting point until the
/// consumer's durable commit has succeeded (`recent::Flush`). Here the lazily
/// committed event is taken back, as a crash of Postgres before the consumer's commit
/// would take it: the next command decides on the store, so no sequence is skipped
/// and nothing is decided on the lost event. After a flush is done, its copy is used.
#[tokio::test]
async fn what_a_consumers_command_wrote_is_not_reused_before_its_commit() {
    use careloop_backbone::recent::Flush;
    use careloop_backbone::store;
    let f = fixture().await;
    let meta = store::Metadata::new("test");
    let tallies = store::cqrs::<Tally>(f.bb.pool.clone(), SCHEMA, ());
    store::execute(&tallies, "t", 1, &meta).await.unwrap();

    let unflushed = Flush::default();
    store::flushed_by_caller(unflushed, store::execute(&tallies, "t", 1, &meta))
        .await
        .unwrap();
    take_back_last_tally(&f.bb.pool, "t").await;

    // Decided on the store (the durable copy before it caught up), not on the
    // unflushed copy: the store's own check (the append follows the event before it)
    // would also refuse a write decided on that copy, so what shows it unused is
    // where the decision was made.
    let copies = decided_on("Tally", "recent");
    store::execute(&tallies, "t", 1, &meta).await.unwrap();
    assert_eq!(
        decided_on("Tally", "recent"),
        copies,
        "the unflushed copy was not a starting point"
    );
    assert_eq!(
        stored_tallies(&f.bb.pool, "t").await,
        [
            (1, serde_json::json!({"n": 1})),
            (2, serde_json::json!({"n": 2}))
        ],
        "decided on the store, not on the copy of the lost event"
    );

    let flushed = Flush::default();
    store::flushed_by_caller(flushed.clone(), store::execute(&tallies, "t", 1, &meta))
        .await
        .unwrap();
    flushed.done();
    let copies = decided_on("Tally", "recent");
    store::execute(&tallies, "t", 1, &meta).await.unwrap();
    assert_eq!(
        decided_on("Tally", "recent"),
        copies + 1,
        "a flushed copy is used"
    );
    assert_eq!(
        store::load(&store::event_store::<Tally>(f.bb.pool.clone(), SCHEMA), "t")
            .await
            .unwrap()
            .counted,
        4
    );
    drop(f.env);
}

/// Runs a Tally command for each event's aggregate, as a service's handler runs its
/// commands; for aggregate "doomed" it also writes, in the consumer's transaction,
/// two rows that a deferred unique constraint refuses, so the consumer's commit
/// fails after the command committed.
struct TallyThenMaybeFail {
    tallies: Arc<careloop_backbone::Cqrs<Tally>>,
}

#[async_trait::async_trait]
impl EventHandler for TallyThenMaybeFail {
    async fn handle(&self, event: &Incoming, tx: &mut PgConnection) -> anyhow::Result<()> {
        use careloop_backbone::store;
        let id = &event.envelope.aggregate_id;
        store::execute(&self.tallies, id, 1, &store::Metadata::new("test"))
            .await
            .map_err(store::into_anyhow)?;
        if id == "doomed" {
            sqlx::query("INSERT INTO demo.doomed (n) VALUES (1), (1)")
                .execute(&mut *tx)
                .await?;
        }
        Ok(())
    }
}

/// Guarantee 1 with the kept copies, through the consumer: the copy of what a
/// handler's command wrote becomes usable only once the consumer's own commit has
/// succeeded (`Flush::done` after `commit`), never when that commit fails.
#[tokio::test]
async fn a_consumers_failed_commit_leaves_its_commands_copies_unused() {
    use careloop_backbone::store;
    let f = fixture().await;
    append(&f.bb.pool, "fine", 1, 1).await;
    append(&f.bb.pool, "doomed", 1, 1).await;
    publish(&f.relay(), 2).await;
    let tallies = store::cqrs::<Tally>(f.bb.pool.clone(), SCHEMA, ());
    let consumer = Consumer::new(
        f.bb.pool.clone(),
        f.bb.stream.clone(),
        "demo",
        SCHEMA,
        "demo",
        Arc::new(TallyThenMaybeFail {
            tallies: tallies.clone(),
        }),
    )
    .max_deliver(3);
    let messages = pull(&consumer, 2).await;
    let meta = store::Metadata::new("test");
    for (subject, bytes) in &messages {
        let env = <careloop_events::v1::Envelope as prost::Message>::decode(&bytes[..]).unwrap();
        let delivery = Delivery {
            subject,
            bytes,
            delivered: 1,
            in_stream_for: Duration::ZERO,
        };
        let outcome = consumer.process_batch(&[delivery]).await;
        let (copies, loads) = (decided_on("Tally", "recent"), decided_on("Tally", "store"));
        store::execute(&tallies, &env.aggregate_id, 1, &meta)
            .await
            .unwrap();
        if env.aggregate_id == "doomed" {
            assert!(
                matches!(outcome[..], [Disposition::Failed(_)]),
                "{outcome:?}"
            );
            assert_eq!(
                decided_on("Tally", "store"),
                loads + 1,
                "decided on a load: the consumer's commit failed"
            );
        } else {
            assert_eq!(outcome, [Disposition::Applied]);
            assert_eq!(
                decided_on("Tally", "recent"),
                copies + 1,
                "the committed batch's copy is used"
            );
        }
    }
    drop(f.env);
}

/// Counts the passes (batches) a read model is given, and the events in them.
struct Passes {
    passes: Arc<std::sync::atomic::AtomicUsize>,
    events: Arc<std::sync::atomic::AtomicUsize>,
}

#[async_trait::async_trait]
impl careloop_backbone::Projection for Passes {
    fn name(&self) -> &'static str {
        "passes"
    }
    fn tables(&self) -> &'static [&'static str] {
        &[]
    }
    async fn apply(&self, events: &[StoredEvent], _tx: &mut PgConnection) -> anyhow::Result<()> {
        use std::sync::atomic::Ordering::SeqCst;
        self.passes.fetch_add(1, SeqCst);
        self.events.fetch_add(events.len(), SeqCst);
        Ok(())
    }
}

/// Guarantee 2, pacing (a background reader leaves the cores to the referrals): a read model
/// at the background pace takes a steady stream of commits in at most one pass per
/// pace, each pass taking what was committed meanwhile, instead of a pass per commit;
/// and every event is applied.
#[tokio::test]
async fn a_background_read_model_takes_a_steady_stream_in_few_passes() {
    use std::sync::atomic::Ordering::SeqCst;
    let f = fixture().await;
    let passes = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let events = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let projection = Arc::new(Passes {
        passes: passes.clone(),
        events: events.clone(),
    });
    assert_eq!(
        careloop_backbone::Projection::pace(projection.as_ref()),
        careloop_backbone::outbox::BACKGROUND_PACE
    );
    let runner = careloop_backbone::ProjectionRunner::new(f.bb.pool.clone(), SCHEMA, projection);
    let (trigger, shutdown) = Shutdown::new();
    let task = tokio::spawn(runner.run(shutdown));
    let started = tokio::time::Instant::now();
    // 60 commits, one every 10 ms or so: a pass per commit would be 60 passes.
    const COMMITS: usize = 60;
    for n in 1..=COMMITS as i64 {
        append(&f.bb.pool, "steady", n, n).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    eventually("every event applied", WAIT, || async {
        (events.load(SeqCst) == COMMITS).then_some(())
    })
    .await;
    let elapsed = started.elapsed();
    trigger.trigger();
    task.await.unwrap();
    let passes = passes.load(SeqCst);
    let most =
        (elapsed.as_millis() / careloop_backbone::outbox::BACKGROUND_PACE.as_millis()) as usize + 1;
    assert!(
        passes <= most,
        "{passes} passes in {elapsed:?}: more than one per pace ({most} at most)"
    );
    assert!(
        passes < COMMITS / 2,
        "{passes} passes for {COMMITS} commits"
    );
    assert_eq!(events.load(SeqCst), COMMITS, "an event applied twice");
}

/// A dependency outage is a 503, never a 500, and ends when the dependency is back:
/// the pool hands out a connection unchecked only while it was in use within the last
/// `CHECK_AFTER_IDLE` (checking every acquisition cost a round trip per statement), so
/// one that sat idle longer (through a Postgres restart, say) is checked first, and a
/// connection the server ended meanwhile is replaced instead of failing the statement.
/// (This is the check's correctness; that busy connections skip it is what the
/// benchmark shows, README, Performance.)
#[tokio::test]
async fn a_connection_idle_for_a_while_is_checked_before_it_is_used() {
    let f = fixture().await;
    let settings = careloop_config::DatabaseSettings {
        pool_max: 1,
        ..f.env.settings.database
    };
    let pool = db::pool(&f.env.settings.database_url, &settings).unwrap();
    let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .unwrap();
    // Back in the pool (after sqlx's ping on release), so what follows meets it there.
    eventually(
        "the connection back in the pool",
        Duration::from_secs(10),
        || async { (pool.num_idle() == 1).then_some(()) },
    )
    .await;
    let ended: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&f.bb.pool)
        .await
        .unwrap();
    assert!(ended);
    eventually(
        "the ended backend to be gone",
        Duration::from_secs(10),
        || async {
            let left: i64 =
                sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE pid = $1")
                    .bind(pid)
                    .fetch_one(&f.bb.pool)
                    .await
                    .unwrap();
            (left == 0).then_some(())
        },
    )
    .await;
    // The idle time under test (not a wait for anything to happen).
    tokio::time::sleep(db::CHECK_AFTER_IDLE + Duration::from_millis(100)).await;
    let fresh: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
        .fetch_one(&pool)
        .await
        .expect("the ended connection was checked and replaced, not used");
    assert_ne!(fresh, pid);
    drop(f.env);
}

/// Guarantee: a consumer's read of a batch's positions, and a read model's read of a
/// batch's rows, look up the rows they name and read no others, whatever the
/// table's statistics. Tables here grow from nothing under load, and a plan made from
/// the statistics of a small table (before autovacuum's next analyse) read every
/// position of the consumer, or every row, at each batch: under 100 referrals a
/// second that alone tripled the time to acceptance.
#[tokio::test]
async fn key_lookups_read_only_the_rows_they_name() {
    let f = fixture().await;
    let pool = &f.bb.pool;
    sqlx::raw_sql(
        "CREATE TABLE demo.keyed (id text PRIMARY KEY, n int NOT NULL);
         ALTER TABLE demo.keyed SET (autovacuum_enabled = off);
         ALTER TABLE demo.consumer_positions SET (autovacuum_enabled = off);
         INSERT INTO demo.keyed SELECT 'k' || g, g FROM generate_series(1, 5) g;
         INSERT INTO demo.consumer_positions (consumer, aggregate_type, aggregate_id, last_sequence)
             SELECT 'c', 'Ping', 'a' || g, 1 FROM generate_series(1, 5) g;
         ANALYZE demo.keyed; ANALYZE demo.consumer_positions;
         INSERT INTO demo.keyed SELECT 'k' || g, g FROM generate_series(6, 5000) g;
         INSERT INTO demo.consumer_positions (consumer, aggregate_type, aggregate_id, last_sequence)
             SELECT 'c', 'Ping', 'a' || g, 1 FROM generate_series(6, 5000) g;",
    )
    .execute(pool)
    .await
    .unwrap();

    let mut conn = pool.acquire().await.unwrap();
    let positions = rows_read(
        &mut conn,
        "consumer_positions",
        &careloop_backbone::consumer::positions_statement(SCHEMA),
        "text, text[], text[]",
        "'c', ARRAY['Ping', 'Ping', 'Ping'], ARRAY['a7', 'a4000', 'missing']",
    )
    .await;
    // At most one row per key named (the plan counts rows per loop, rounded).
    assert!(
        positions <= 3.0,
        "the positions' read took {positions} rows for 3 keys"
    );
    let rows = rows_read(
        &mut conn,
        "keyed",
        &careloop_backbone::rows::load_statement("demo.keyed", "id"),
        "text[]",
        "ARRAY['k7', 'k4000', 'missing']",
    )
    .await;
    assert!(rows <= 3.0, "the rows' read took {rows} rows for 3 keys");

    // The setup does make a plan from the small table's statistics read it all: the
    // statements as they were.
    let joined = rows_read(
        &mut conn,
        "consumer_positions",
        "SELECT p.aggregate_type, p.aggregate_id, p.last_sequence
         FROM demo.consumer_positions p
         JOIN (SELECT DISTINCT t, i FROM unnest($2::text[], $3::text[]) AS a(t, i)) a
           ON p.aggregate_type = a.t AND p.aggregate_id = a.i
         WHERE p.consumer = $1",
        "text, text[], text[]",
        "'c', ARRAY['Ping', 'Ping', 'Ping'], ARRAY['a7', 'a4000', 'missing']",
    )
    .await;
    let scanned = rows_read(
        &mut conn,
        "keyed",
        "SELECT id, to_jsonb(t) FROM demo.keyed t WHERE id = ANY($1)",
        "text[]",
        "ARRAY['k7', 'k4000', 'missing']",
    )
    .await;
    assert!(
        joined >= 1000.0 && scanned >= 1000.0,
        "the old statements read {joined} and {scanned} rows: the setup no longer shows the plan"
    );
    drop(f.env);
}
