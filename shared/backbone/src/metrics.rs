//! Backbone health metrics (labels never carry PHI or ids).

use std::sync::LazyLock;

use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, register_gauge_vec,
    register_histogram_vec, register_int_counter_vec, register_int_gauge_vec,
};

/// Events committed but not yet acknowledged by JetStream, per service.
pub static OUTBOX_PENDING: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        Opts::new(
            "careloop_outbox_pending",
            "Committed events not yet published to JetStream"
        ),
        &["service"]
    )
    .expect("metric registers once")
});

/// Age of the oldest event a projection has not applied yet (0 when caught up).
pub static PROJECTION_LAG: LazyLock<GaugeVec> = LazyLock::new(|| {
    register_gauge_vec!(
        Opts::new(
            "careloop_projection_lag_seconds",
            "Age of the oldest event a read model has not applied"
        ),
        &["projection"]
    )
    .expect("metric registers once")
});

/// Messages in the dead-letter table, read from the table (so a restart does not
/// hide them): alert on it being above zero.
pub static DEAD_LETTERS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register_int_gauge_vec!(
        Opts::new(
            "careloop_dead_letters",
            "Messages in the service's dead-letter table"
        ),
        &["service"]
    )
    .expect("metric registers once")
});

/// Times the relay found the event stream lost and created again, and published the
/// service's events again from Postgres.
pub static STREAM_RESETS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        Opts::new(
            "careloop_stream_resets_total",
            "Event streams found lost and re-published from Postgres"
        ),
        &["service"]
    )
    .expect("metric registers once")
});

/// Sets `careloop_dead_letters` for `service` from its table (left as it was when
/// the database does not answer).
pub async fn count_dead_letters(pool: &sqlx::PgPool, service: &str, schema: &str) {
    let counted: sqlx::Result<i64> =
        sqlx::query_scalar(&format!("SELECT count(*) FROM {schema}.dead_letters"))
            .fetch_one(pool)
            .await;
    if let Ok(n) = counted {
        DEAD_LETTERS.with_label_values(&[service]).set(n);
    }
}

/// Messages a consumer will deliver again because a dependency was unavailable (never
/// counted towards dead letters).
pub static DEPENDENCY_RETRIES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        Opts::new(
            "careloop_consumer_dependency_retries_total",
            "Messages retried because the database or NATS was unavailable"
        ),
        &["service"]
    )
    .expect("metric registers once")
});

/// How long a consumer spends on one message, from delivery to ack (the handler's
/// work, its transaction and the ack; for messages applied together, each one's share
/// of the batch's time), per durable consumer and outcome. Its sum over
/// a window is the consumer's busy time: a consumer busy all the time is the
/// pipeline's bottleneck. Labels are the consumer's name and `applied`, `duplicate`,
/// `not_yet`, `failed` or `dead_lettered`; never ids.
pub static CONSUMER_SECONDS: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        HistogramOpts::new(
            "careloop_consumer_message_seconds",
            "Time a consumer spends on one message, delivery to ack"
        )
        .buckets(vec![
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5
        ]),
        &["consumer", "outcome"]
    )
    .expect("metric registers once")
});

/// Bucket bounds of the waits between services, 1 ms to 10 s.
const WAIT_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
];

/// How long a service's events wait between being recorded (`recorded_at`, at their
/// insert, so their own transaction's remaining time counts too) and the relay's
/// commit after JetStream acknowledged their publication: until every older
/// transaction has ended (`outbox::horizon`), the relay's next pass, the wait for the
/// disk and the publish. Observed once per event, after the relay's commit; events
/// sent again after a stream reset count with their age. Per service; never ids.
pub static RELAY_DELAY: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        HistogramOpts::new(
            "careloop_relay_delay_seconds",
            "Time from an event being recorded to its publication"
        )
        .buckets(WAIT_BUCKETS.to_vec()),
        &["service"]
    )
    .expect("metric registers once")
});

/// How long a message waits between its publication and the start of its first
/// handling: delivery from JetStream, its worker's lane, and a handling slot of the
/// process (`Backbone::consumer_slots`). Redeliveries are not observed (their wait
/// includes the backoff). Per durable consumer; never ids.
pub static CONSUMER_WAIT: LazyLock<HistogramVec> = LazyLock::new(|| {
    register_histogram_vec!(
        HistogramOpts::new(
            "careloop_consumer_wait_seconds",
            "Time from a message's publication to the start of its first handling"
        )
        .buckets(WAIT_BUCKETS.to_vec()),
        &["consumer"]
    )
    .expect("metric registers once")
});

/// Makes every backbone metric visible on /metrics from the start, at zero.
pub fn register(service: &str) {
    OUTBOX_PENDING.with_label_values(&[service]);
    DEAD_LETTERS.with_label_values(&[service]);
    STREAM_RESETS.with_label_values(&[service]);
    DEPENDENCY_RETRIES.with_label_values(&[service]);
    RELAY_DELAY.with_label_values(&[service]);
}
