//! The continuity metrics on `/metrics`, refreshed from the measures read model.
//!
//! Gauges and the first-contact histogram are a snapshot the refresher recomputes
//! from the read model (every 15 s in the service), so they are right after a restart
//! and never count an event twice. `careloop_referrals_received_total` counts
//! referrals as intake's events are handled. Labels are facility names, windows,
//! statuses and channels: never a person, referral or peer id.

use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex, Once};
use std::time::Duration;

use careloop_backbone::Shutdown;
use chrono::Utc;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Bucket, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType};
use prometheus::{IntCounterVec, Opts, register_int_counter_vec};
use sqlx::PgPool;

use super::report::{self, Scope, Tally};

pub static REFERRALS_RECEIVED: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register_int_counter_vec!(
        Opts::new(
            "careloop_referrals_received_total",
            "Referrals received from hospitals"
        ),
        &["facility", "channel"]
    )
    .expect("metric registers once")
});

/// Bucket bounds of `careloop_first_contact_seconds`: 1, 2, 3, 7, 14 and 30 days.
pub const FIRST_CONTACT_BUCKETS: [f64; 6] = [
    86_400.0,
    2.0 * 86_400.0,
    3.0 * 86_400.0,
    7.0 * 86_400.0,
    14.0 * 86_400.0,
    30.0 * 86_400.0,
];

#[derive(Debug, Default, Clone)]
struct Snapshot {
    facilities: BTreeMap<String, report::Measures>,
    first_contact_seconds: Vec<i64>,
    referrals_by_status: Vec<(String, i64)>,
    followups_overdue: i64,
}

static SNAPSHOT: LazyLock<Mutex<Snapshot>> = LazyLock::new(Default::default);

const GAUGES: [(&str, &str); 7] = [
    (
        "careloop_referrals",
        "Referrals by status (entered-in-error excluded)",
    ),
    (
        "careloop_continuity_discharges",
        "Discharges at least 7 or 30 days ago (D7, D30)",
    ),
    (
        "careloop_continuity_followed_up",
        "Of those, reached within 7 or 30 days (N7, N30)",
    ),
    (
        "careloop_readmission_discharges",
        "Discharges at least 30 days ago (DR)",
    ),
    (
        "careloop_readmissions_30d",
        "Of those, readmitted within 30 days (NR), by engagement",
    ),
    (
        "careloop_followups_overdue",
        "Active follow-up plans with an overdue check-in",
    ),
    (
        "careloop_first_contact_seconds",
        "Time from discharge to the first reached contact",
    ),
];

struct MeasuresCollector {
    descs: Vec<Desc>,
}

/// Puts the continuity metrics on the process's `/metrics` (once per process).
pub fn register() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        LazyLock::force(&REFERRALS_RECEIVED);
        let descs = GAUGES
            .iter()
            .map(|(name, help)| {
                Desc::new(
                    name.to_string(),
                    help.to_string(),
                    vec![],
                    Default::default(),
                )
                .expect("valid metric name")
            })
            .collect();
        prometheus::register(Box::new(MeasuresCollector { descs })).expect("registers once");
    });
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.to_string());
    l.set_value(value.to_string());
    l
}

fn gauge(labels: Vec<LabelPair>, value: f64) -> Metric {
    let mut g = Gauge::default();
    g.set_value(value);
    let mut m = Metric::from_gauge(g);
    m.set_label(labels);
    m
}

fn family(name: &str, help: &str, kind: MetricType, metrics: Vec<Metric>) -> MetricFamily {
    let mut f = MetricFamily::default();
    f.set_name(name.to_string());
    f.set_help(help.to_string());
    f.set_field_type(kind);
    f.set_metric(metrics);
    f
}

impl Collector for MeasuresCollector {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let s = SNAPSHOT.lock().map(|s| s.clone()).unwrap_or_default();
        let help = |n: &str| GAUGES.iter().find(|g| g.0 == n).map(|g| g.1).unwrap_or("");
        let mut by_status = Vec::new();
        for (status, n) in &s.referrals_by_status {
            by_status.push(gauge(vec![label("status", status)], *n as f64));
        }
        let (mut discharges, mut followed, mut dr, mut nr) = (vec![], vec![], vec![], vec![]);
        for (facility, m) in &s.facilities {
            for (window, f) in [("7d", &m.followup_7d), ("30d", &m.followup_30d)] {
                let labels = || vec![label("facility", facility), label("window", window)];
                discharges.push(gauge(labels(), f.discharges as f64));
                followed.push(gauge(labels(), f.followed_up as f64));
            }
            let r = &m.readmission_30d;
            dr.push(gauge(
                vec![label("facility", facility)],
                r.discharges as f64,
            ));
            for (engaged, n) in [
                ("true", r.readmitted_engaged),
                ("false", r.readmitted_not_engaged),
            ] {
                nr.push(gauge(
                    vec![label("engaged", engaged), label("facility", facility)],
                    n as f64,
                ));
            }
        }
        let mut h = Histogram::default();
        h.set_sample_count(s.first_contact_seconds.len() as u64);
        h.set_sample_sum(s.first_contact_seconds.iter().map(|v| *v as f64).sum());
        h.set_bucket(
            FIRST_CONTACT_BUCKETS
                .iter()
                .map(|bound| {
                    let mut b = Bucket::default();
                    b.set_upper_bound(*bound);
                    b.set_cumulative_count(
                        s.first_contact_seconds
                            .iter()
                            .filter(|v| **v as f64 <= *bound)
                            .count() as u64,
                    );
                    b
                })
                .collect(),
        );
        let mut hm = Metric::default();
        hm.set_histogram(h);
        let g = MetricType::GAUGE;
        vec![
            family(
                "careloop_referrals",
                help("careloop_referrals"),
                g,
                by_status,
            ),
            family(
                "careloop_continuity_discharges",
                help("careloop_continuity_discharges"),
                g,
                discharges,
            ),
            family(
                "careloop_continuity_followed_up",
                help("careloop_continuity_followed_up"),
                g,
                followed,
            ),
            family(
                "careloop_readmission_discharges",
                help("careloop_readmission_discharges"),
                g,
                dr,
            ),
            family(
                "careloop_readmissions_30d",
                help("careloop_readmissions_30d"),
                g,
                nr,
            ),
            family(
                "careloop_followups_overdue",
                help("careloop_followups_overdue"),
                g,
                vec![gauge(vec![], s.followups_overdue as f64)],
            ),
            family(
                "careloop_first_contact_seconds",
                help("careloop_first_contact_seconds"),
                MetricType::HISTOGRAM,
                vec![hm],
            ),
        ]
    }
}

/// Recomputes the snapshot from the read model as of now.
pub async fn refresh(pool: &PgPool) -> anyhow::Result<()> {
    let as_of = Utc::now();
    let rows = report::load(
        pool,
        &Scope {
            as_of,
            facility: None,
            from: None,
            to: None,
        },
    )
    .await?;
    let mut all = Tally::default();
    let mut by_facility: BTreeMap<String, Tally> = BTreeMap::new();
    for row in &rows {
        all.add(row, as_of);
        by_facility
            .entry(row.facility.clone())
            .or_default()
            .add(row, as_of);
    }
    let referrals_by_status: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status, count(*) FROM follow_up.measure_discharges
         WHERE status IS NOT NULL AND NOT excluded GROUP BY status ORDER BY status",
    )
    .fetch_all(pool)
    .await?;
    let followups_overdue: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM follow_up.followups WHERE state = 'active' AND overdue",
    )
    .fetch_one(pool)
    .await?;
    let snapshot = Snapshot {
        first_contact_seconds: all.first_contact_seconds().to_vec(),
        facilities: by_facility
            .into_iter()
            .map(|(f, t)| (f, t.finish()))
            .collect(),
        referrals_by_status,
        followups_overdue,
    };
    if let Ok(mut s) = SNAPSHOT.lock() {
        *s = snapshot;
    }
    Ok(())
}

pub async fn run(pool: PgPool, every: Duration, shutdown: Shutdown) {
    register();
    careloop_backbone::shutdown::every("refreshing the continuity metrics", every, shutdown, || {
        refresh(&pool)
    })
    .await
}
