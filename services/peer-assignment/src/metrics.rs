//! Roster metrics, refreshed from the read model on every waitlist pass: how many
//! referrals wait for a peer, and how much of the roster's capacity is in use.

use std::sync::LazyLock;

use prometheus::{Gauge, IntGauge, register_gauge, register_int_gauge};
use sqlx::PgPool;

pub static WAITLIST_SIZE: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "careloop_waitlist_size",
        "Referrals waiting for a peer with room"
    )
    .expect("metric registers once")
});

pub static CASELOAD_USED_RATIO: LazyLock<Gauge> = LazyLock::new(|| {
    register_gauge!(
        "careloop_peer_caseload_used_ratio",
        "Active assignments over the total caseload capacity of available peers"
    )
    .expect("metric registers once")
});

pub async fn refresh(pool: &PgPool) -> sqlx::Result<()> {
    let (waiting, used, capacity) = crate::read_model::capacity(pool).await?;
    WAITLIST_SIZE.set(waiting);
    CASELOAD_USED_RATIO.set(if capacity > 0 {
        used as f64 / capacity as f64
    } else {
        0.0
    });
    Ok(())
}
