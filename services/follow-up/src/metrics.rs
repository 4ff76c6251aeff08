//! Follow-up's own metric: how many active plans have an overdue check-in (the
//! coordinators' overdue list), refreshed from the read model by each deadline check.

use std::sync::LazyLock;

use prometheus::{IntGauge, register_int_gauge};

pub static FOLLOWUPS_OVERDUE: LazyLock<IntGauge> = LazyLock::new(|| {
    register_int_gauge!(
        "careloop_followups_overdue",
        "Active follow-up plans with an overdue check-in"
    )
    .expect("metric registers once")
});
