//! The continuity metrics on `/metrics`, refreshed from the measures read model.
//!
//! Every metric here is a snapshot the refresher recomputes from the read model
//! (every 15 s in the service), so it is right after a restart and never counts an
//! event twice: the gauges, the first-contact histogram, and the counter
//! `careloop_referrals_received_total` (the discharges recorded per facility and
//! channel, which only grows). Labels are facility ids, windows, statuses and
//! channels: never a person, referral or peer id.

use std::collections::BTreeMap;
use std::sync::{LazyLock, Mutex, Once};
use std::time::Duration;

use careloop_backbone::Shutdown;
use chrono::Utc;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{Bucket, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType};
use sqlx::PgPool;

use crate::read_model;
use crate::report::{self, Scope, Tally};

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
    referrals_received: Vec<(String, String, i64)>,
    impact: Option<crate::impact::Impact>,
}

static SNAPSHOT: LazyLock<Mutex<Snapshot>> = LazyLock::new(Default::default);

const FAMILIES: [(&str, &str); 11] = [
    (
        "careloop_referrals_received_total",
        "Referrals received from hospitals, by facility and channel",
    ),
    (
        "careloop_referrals",
        "Referrals by status (entered-in-error excluded)",
    ),
    (
        "careloop_continuity_discharges",
        "Discharges at least 7, 30, 60 or 90 days ago (D7, D30; engagement D60, D90)",
    ),
    (
        "careloop_continuity_followed_up",
        "Of those, reached within 7, 30, 60 or 90 days (N7, N30; engagement N60, N90)",
    ),
    (
        "careloop_continuity_fuh_discharges",
        "Discharges whose 7 or 30 calendar days after the discharge day have passed (HEDIS FUH-aligned)",
    ),
    (
        "careloop_continuity_fuh_followed_up",
        "Of those, reached on one of those calendar days (HEDIS FUH-aligned)",
    ),
    (
        "careloop_impact_people",
        "People whose 180 days after the index discharge have passed, by engagement",
    ),
    (
        "careloop_impact_rate_per_person_year",
        "Inpatient admissions, inpatient days and outpatient visits per person-year, 180 days before and after the index discharge, by engagement",
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
        let descs = FAMILIES
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
        let help = |n: &str| {
            FAMILIES
                .iter()
                .find(|g| g.0 == n)
                .map(|g| g.1)
                .unwrap_or("")
        };
        let received = s
            .referrals_received
            .iter()
            .map(|(facility, channel, n)| {
                let mut c = prometheus::proto::Counter::default();
                c.set_value(*n as f64);
                let mut m = Metric::default();
                m.set_counter(c);
                m.set_label(vec![label("channel", channel), label("facility", facility)]);
                m
            })
            .collect();
        let mut by_status = Vec::new();
        for (status, n) in &s.referrals_by_status {
            by_status.push(gauge(vec![label("status", status)], *n as f64));
        }
        let (mut discharges, mut followed, mut dr, mut nr) = (vec![], vec![], vec![], vec![]);
        let (mut fuh_d, mut fuh_n) = (vec![], vec![]);
        for (facility, m) in &s.facilities {
            for (window, f) in [
                ("7d", &m.followup_7d),
                ("30d", &m.followup_30d),
                ("60d", &m.engagement_60d),
                ("90d", &m.engagement_90d),
            ] {
                let labels = || vec![label("facility", facility), label("window", window)];
                discharges.push(gauge(labels(), f.discharges as f64));
                followed.push(gauge(labels(), f.followed_up as f64));
            }
            for (window, f) in [("7d", &m.fuh_7d), ("30d", &m.fuh_30d)] {
                let labels = || vec![label("facility", facility), label("window", window)];
                fuh_d.push(gauge(labels(), f.discharges as f64));
                fuh_n.push(gauge(labels(), f.followed_up as f64));
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
        let (mut people, mut rates) = (vec![], vec![]);
        if let Some(i) = &s.impact {
            for (name, g) in [("engaged", &i.engaged), ("not_engaged", &i.not_engaged)] {
                people.push(gauge(vec![label("group", name)], g.people as f64));
                for (measure, pair) in [
                    ("inpatient_admissions", &g.inpatient_admissions),
                    ("inpatient_days", &g.inpatient_days),
                    ("outpatient_visits", &g.outpatient_visits),
                ] {
                    for (period, r) in [("before", &pair.before), ("after", &pair.after)] {
                        if let Some(v) = r.per_person_year {
                            let labels = vec![
                                label("group", name),
                                label("measure", measure),
                                label("period", period),
                            ];
                            rates.push(gauge(labels, v));
                        }
                    }
                }
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
                "careloop_referrals_received_total",
                help("careloop_referrals_received_total"),
                MetricType::COUNTER,
                received,
            ),
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
                "careloop_continuity_fuh_discharges",
                help("careloop_continuity_fuh_discharges"),
                g,
                fuh_d,
            ),
            family(
                "careloop_continuity_fuh_followed_up",
                help("careloop_continuity_fuh_followed_up"),
                g,
                fuh_n,
            ),
            family(
                "careloop_impact_people",
                help("careloop_impact_people"),
                g,
                people,
            ),
            family(
                "careloop_impact_rate_per_person_year",
                help("careloop_impact_rate_per_person_year"),
                g,
                rates,
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
    let everyone = Scope {
        as_of,
        facility: None,
        from: None,
        to: None,
    };
    let rows = read_model::discharges(pool, &everyone).await?;
    let impact = crate::api::impact_of(pool, &everyone).await?;
    let mut all = Tally::default();
    let mut by_facility: BTreeMap<String, Tally> = BTreeMap::new();
    for row in &rows {
        all.add(row, as_of);
        by_facility
            .entry(row.facility.clone())
            .or_default()
            .add(row, as_of);
    }
    let referrals_by_status = read_model::referrals_by_status(pool).await?;
    let referrals_received = read_model::referrals_received(pool).await?;
    let snapshot = Snapshot {
        first_contact_seconds: all.first_contact_seconds().to_vec(),
        facilities: by_facility
            .into_iter()
            .map(|(f, t)| (f, t.finish()))
            .collect(),
        referrals_by_status,
        referrals_received,
        impact: Some(impact),
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
