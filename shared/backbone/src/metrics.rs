//! Backbone health metrics (labels never carry PHI or ids).

use std::sync::LazyLock;

use prometheus::{
    GaugeVec, IntCounterVec, IntGaugeVec, Opts, register_gauge_vec, register_int_counter_vec,
    register_int_gauge_vec,
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

/// Makes every backbone metric visible on /metrics from the start, at zero.
pub fn register(service: &str) {
    OUTBOX_PENDING.with_label_values(&[service]);
    DEAD_LETTERS.with_label_values(&[service]);
    STREAM_RESETS.with_label_values(&[service]);
    DEPENDENCY_RETRIES.with_label_values(&[service]);
}
