//! Program impact: for each person referred, inpatient admissions, inpatient days and
//! outpatient visits in the 180 days before their index discharge and the 180 days
//! after it, split by whether peer support engaged them, as counts, rates per
//! person-year and 95% confidence intervals. Definitions (docs/measures.md):
//!
//! - The **index discharge** is the person's earliest discharge in the report's scope
//!   (a referral; entered in error left out). **Engaged**: a reached contact within
//!   30 days after it, `(index, index + 30d]`, as of the report.
//! - **Before** is `[index − 180d, index)`, **after** is `[index, index + 180d]`. A
//!   person counts once the whole after-window has passed (`index + 180d ≤ as_of`);
//!   the others are `pending`.
//! - **Inpatient admissions**: stays admitted within a window. **Inpatient days**: the
//!   part of each stay inside a window, in days (a stay spanning the index is split
//!   there). The **index stay** (admitted before the index discharge and ending
//!   within 24 hours of it, the nearest) is neither.
//!   A stay ends when the hospital said, or else at the person's next discharge; a
//!   stay with no known end counts as an admission but adds no days
//!   (`stays_without_end`).
//! - **Outpatient visits**: visits within a window.
//! - **Rate per person-year**: the count over `people × 180 / 365.25`. Its 95%
//!   interval: exact (Garwood, Poisson) for admissions and visits; for days, the
//!   mean per person ± 1.96 standard errors (normal), scaled the same way.

use std::collections::HashMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

pub const WINDOW_DAYS: i64 = 180;
pub const ENGAGED_WITHIN_DAYS: i64 = 30;
const DAYS_PER_YEAR: f64 = 365.25;

/// A person's index discharge.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct IndexDischarge {
    pub person_ref: String,
    pub facility: String,
    pub discharged_at: DateTime<Utc>,
    pub engaged: bool,
}

/// An inpatient stay (its end, when known).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Stay {
    pub person_ref: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

/// One person's counts before (`[0]`) and after (`[1]`) their index discharge.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PersonCounts {
    pub admissions: [u64; 2],
    pub days: [f64; 2],
    pub visits: [u64; 2],
    pub stays_without_end: u64,
}

/// Which window `t` falls in: 0 before, 1 after, none outside both.
fn window_of(index: DateTime<Utc>, t: DateTime<Utc>) -> Option<usize> {
    let w = Duration::days(WINDOW_DAYS);
    if index - w <= t && t < index {
        Some(0)
    } else if index <= t && t <= index + w {
        Some(1)
    } else {
        None
    }
}

fn days_between(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    ((to - from).num_seconds().max(0)) as f64 / 86_400.0
}

/// How far a stay's end may be from the index discharge and still be the index stay
/// (the hospital's times for one discharge may differ, e.g. PV1-45 against MSH-7).
pub const INDEX_STAY_TOLERANCE_HOURS: i64 = 24;

/// The stay the index discharge ended: admitted before it, ending within the
/// tolerance of it, the nearest such end.
fn index_stay(index: DateTime<Utc>, stays: &[&Stay]) -> Option<usize> {
    let tolerance = Duration::hours(INDEX_STAY_TOLERANCE_HOURS);
    stays
        .iter()
        .enumerate()
        .filter(|(_, s)| s.started_at < index)
        .filter_map(|(n, s)| {
            let off = (s.ended_at? - index).abs();
            (off <= tolerance).then_some((off, n))
        })
        .min()
        .map(|(_, n)| n)
}

/// A person's counts around `index` from their stays and visit times.
pub fn person_counts(
    index: DateTime<Utc>,
    stays: &[&Stay],
    visits: &[DateTime<Utc>],
) -> PersonCounts {
    let w = Duration::days(WINDOW_DAYS);
    let mut c = PersonCounts::default();
    let index_stay = index_stay(index, stays);
    for (n, stay) in stays.iter().enumerate() {
        if Some(n) == index_stay {
            continue;
        }
        if let Some(i) = window_of(index, stay.started_at) {
            c.admissions[i] += 1;
        }
        let Some(end) = stay.ended_at else {
            c.stays_without_end += 1;
            continue;
        };
        let s = stay.started_at;
        c.days[0] += days_between(s.max(index - w), end.min(index));
        c.days[1] += days_between(s.max(index), end.min(index + w));
    }
    for v in visits {
        if let Some(i) = window_of(index, *v) {
            c.visits[i] += 1;
        }
    }
    c
}

/// A count over a group's person-years.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Rate {
    pub count: f64,
    pub per_person_year: Option<f64>,
    /// The 95% confidence interval of the rate.
    pub ci95: Option<[f64; 2]>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BeforeAfter {
    pub before: Rate,
    pub after: Rate,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Group {
    pub people: u64,
    pub person_years: f64,
    pub inpatient_admissions: BeforeAfter,
    pub inpatient_days: BeforeAfter,
    pub outpatient_visits: BeforeAfter,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Impact {
    pub as_of: DateTime<Utc>,
    pub window_days: i64,
    /// People whose after-window has not passed yet (not counted).
    pub pending: u64,
    /// Stays counted as admissions whose end is unknown (no days).
    pub stays_without_end: u64,
    pub engaged: Group,
    pub not_engaged: Group,
    pub all: Group,
}

/// The exact (Garwood) 95% interval of a Poisson count `x`.
pub fn poisson_ci95(x: u64) -> [f64; 2] {
    // P(X ≤ k) for X ~ Poisson(mu), summed in log space.
    let cdf = |k: u64, mu: f64| -> f64 {
        if mu <= 0.0 {
            return 1.0;
        }
        let mut term = (-mu).exp();
        let mut log_term = -mu;
        let mut sum = 0.0;
        for i in 0..=k {
            if i > 0 {
                log_term += mu.ln() - (i as f64).ln();
                term = log_term.exp();
            }
            sum += term;
        }
        sum.min(1.0)
    };
    // The mu where `f(mu)` (decreasing in mu) crosses `target`, by bisection.
    let solve = |f: &dyn Fn(f64) -> f64, target: f64| {
        let (mut lo, mut hi) = (0.0_f64, 10.0 + 10.0 * x as f64);
        for _ in 0..200 {
            let mid = (lo + hi) / 2.0;
            if f(mid) > target {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        (lo + hi) / 2.0
    };
    let lower = if x == 0 {
        0.0
    } else {
        // P(X ≥ x | mu) = 0.025  ⇔  P(X ≤ x − 1 | mu) = 0.975
        solve(&|mu| cdf(x - 1, mu), 0.975)
    };
    let upper = solve(&|mu| cdf(x, mu), 0.025);
    [lower, upper]
}

fn rate_of_counts(x: u64, person_years: f64) -> Rate {
    let per = (person_years > 0.0).then(|| x as f64 / person_years);
    let ci = (person_years > 0.0).then(|| poisson_ci95(x).map(|b| b / person_years));
    Rate {
        count: x as f64,
        per_person_year: per,
        ci95: ci,
    }
}

/// Days: the mean per person ± 1.96 standard errors, per person-year.
fn rate_of_days(values: &[f64], person_years: f64) -> Rate {
    let n = values.len() as f64;
    // (A float sum of nothing is -0.0, which reads as "-0".)
    let total: f64 = values.iter().fold(0.0, |a, b| a + b);
    let scale = DAYS_PER_YEAR / WINDOW_DAYS as f64;
    let ci = (values.len() >= 2).then(|| {
        let mean = total / n;
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
        let half = 1.959_963_984_540_054 * (var / n).sqrt();
        [((mean - half) * scale).max(0.0), (mean + half) * scale]
    });
    Rate {
        count: (total * 100.0).round() / 100.0,
        per_person_year: (person_years > 0.0).then(|| total / person_years),
        ci95: ci,
    }
}

fn group(counts: &[&PersonCounts]) -> Group {
    let people = counts.len() as u64;
    let person_years = people as f64 * WINDOW_DAYS as f64 / DAYS_PER_YEAR;
    let pair = |f: &dyn Fn(&PersonCounts, usize) -> u64| BeforeAfter {
        before: rate_of_counts(counts.iter().map(|c| f(c, 0)).sum(), person_years),
        after: rate_of_counts(counts.iter().map(|c| f(c, 1)).sum(), person_years),
    };
    let days = |i: usize| {
        let v: Vec<f64> = counts.iter().map(|c| c.days[i]).collect();
        rate_of_days(&v, person_years)
    };
    Group {
        people,
        person_years: (person_years * 1000.0).round() / 1000.0,
        inpatient_admissions: pair(&|c, i| c.admissions[i]),
        inpatient_days: BeforeAfter {
            before: days(0),
            after: days(1),
        },
        outpatient_visits: pair(&|c, i| c.visits[i]),
    }
}

/// The impact over `index` discharges, with every person's stays and visits.
pub fn compute(
    index: &[IndexDischarge],
    stays: &[Stay],
    visits: &[(String, DateTime<Utc>)],
    as_of: DateTime<Utc>,
) -> Impact {
    let mut pending = 0;
    let mut stays_without_end = 0;
    let mut engaged = Vec::new();
    let mut not_engaged = Vec::new();
    let mut stays_of: HashMap<&str, Vec<&Stay>> = HashMap::new();
    for s in stays {
        stays_of.entry(s.person_ref.as_str()).or_default().push(s);
    }
    let mut visits_of: HashMap<&str, Vec<DateTime<Utc>>> = HashMap::new();
    for (p, t) in visits {
        visits_of.entry(p.as_str()).or_default().push(*t);
    }
    for d in index {
        if d.discharged_at + Duration::days(WINDOW_DAYS) > as_of {
            pending += 1;
            continue;
        }
        let own: Vec<&Stay> = stays
            .iter()
            .filter(|s| s.person_ref == d.person_ref)
            .collect();
        let seen: Vec<DateTime<Utc>> = visits
            .iter()
            .filter(|(p, _)| *p == d.person_ref)
            .map(|(_, t)| *t)
            .collect();
        let c = person_counts(d.discharged_at, &own, &seen);
        stays_without_end += c.stays_without_end;
        if d.engaged {
            engaged.push(c);
        } else {
            not_engaged.push(c);
        }
    }
    let all: Vec<&PersonCounts> = engaged.iter().chain(not_engaged.iter()).collect();
    Impact {
        as_of,
        window_days: WINDOW_DAYS,
        pending,
        stays_without_end,
        engaged: group(&engaged.iter().collect::<Vec<_>>()),
        not_engaged: group(&not_engaged.iter().collect::<Vec<_>>()),
        all: group(&all),
    }
}

/// The impact as CSV: one line per group, measure and period.
pub fn to_csv(i: &Impact) -> String {
    let mut out = careloop_web::csv::line(&[
        "group",
        "people",
        "person_years",
        "measure",
        "period",
        "count",
        "per_person_year",
        "ci95_lower",
        "ci95_upper",
    ]);
    let num = |v: Option<f64>| v.map(|v| format!("{v:.6}")).unwrap_or_default();
    for (name, g) in [
        ("engaged", &i.engaged),
        ("not_engaged", &i.not_engaged),
        ("all", &i.all),
    ] {
        for (measure, pair) in [
            ("inpatient_admissions", &g.inpatient_admissions),
            ("inpatient_days", &g.inpatient_days),
            ("outpatient_visits", &g.outpatient_visits),
        ] {
            for (period, r) in [("before", &pair.before), ("after", &pair.after)] {
                out.push_str(&careloop_web::csv::line(&[
                    name.to_string(),
                    g.people.to_string(),
                    format!("{:.3}", g.person_years),
                    measure.to_string(),
                    period.to_string(),
                    r.count.to_string(),
                    num(r.per_person_year),
                    num(r.ci95.map(|c| c[0])),
                    num(r.ci95.map(|c| c[1])),
                ]));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    const INDEX: &str = "2026-01-01T12:00:00Z";

    fn stay(from: &str, to: Option<&str>) -> Stay {
        Stay {
            person_ref: "p".into(),
            started_at: t(from),
            ended_at: to.map(t),
        }
    }

    #[test]
    fn the_exact_poisson_interval_matches_published_values() {
        // Garwood intervals from the tables (e.g. Ulm 1990): 0 → [0, 3.689],
        // 1 → [0.0253, 5.572], 10 → [4.795, 18.390].
        let close =
            |a: [f64; 2], b: [f64; 2]| (a[0] - b[0]).abs() < 5e-4 && (a[1] - b[1]).abs() < 5e-4;
        assert!(
            close(poisson_ci95(0), [0.0, 3.6889]),
            "{:?}",
            poisson_ci95(0)
        );
        assert!(
            close(poisson_ci95(1), [0.0253, 5.5716]),
            "{:?}",
            poisson_ci95(1)
        );
        assert!(
            close(poisson_ci95(10), [4.7954, 18.3904]),
            "{:?}",
            poisson_ci95(10)
        );
    }

    #[test]
    fn windows_hold_at_day_180_and_a_stay_spanning_the_index_is_split() {
        let index = t(INDEX);
        let stays = [
            // Admitted exactly 180 days before: before. The index stay: neither.
            stay("2025-07-05T12:00:00Z", Some("2025-07-07T12:00:00Z")),
            // The index stay, its end a few minutes off the referral's discharge time.
            stay("2025-12-20T12:00:00Z", Some("2026-01-01T12:05:00Z")),
            // Admitted exactly 180 days after: after (its day ends past the window:
            // only the part inside counts, here none).
            stay("2026-06-30T12:00:00Z", Some("2026-07-02T12:00:00Z")),
            // One second past day 180: nothing.
            stay("2026-06-30T12:00:01Z", Some("2026-07-01T12:00:00Z")),
            // Spans the index (another facility's stay): 1 day before, 2 after; its
            // admission counts before.
            stay("2025-12-31T12:00:00Z", Some("2026-01-03T12:00:00Z")),
            // No known end: an admission, no days.
            stay("2026-03-01T00:00:00Z", None),
        ];
        let refs: Vec<&Stay> = stays.iter().collect();
        let visits = [
            t("2025-07-05T12:00:00Z"),
            t(INDEX),
            t("2026-06-30T12:00:00Z"),
        ];
        let c = person_counts(index, &refs, &visits);
        assert_eq!(c.admissions, [2, 2]);
        assert_eq!(c.days, [3.0, 2.0]);
        assert_eq!(c.visits, [1, 2], "the index moment itself is after");
        assert_eq!(c.stays_without_end, 1);
    }

    #[test]
    fn groups_give_rates_per_person_year_with_intervals() {
        let index = |p: &str, engaged: bool| IndexDischarge {
            person_ref: p.into(),
            facility: "st-marys".into(),
            discharged_at: t(INDEX),
            engaged,
        };
        let stays = vec![
            Stay {
                person_ref: "a".into(),
                started_at: t("2025-10-01T12:00:00Z"),
                ended_at: Some(t("2025-10-11T12:00:00Z")),
            },
            Stay {
                person_ref: "b".into(),
                started_at: t("2026-02-01T12:00:00Z"),
                ended_at: Some(t("2026-02-05T12:00:00Z")),
            },
        ];
        let visits = vec![
            ("a".to_string(), t("2026-02-01T00:00:00Z")),
            ("a".to_string(), t("2026-03-01T00:00:00Z")),
        ];
        let people = [index("a", true), index("b", false), index("c", true)];
        // As of day 179: everyone pending.
        let early = compute(&people, &stays, &visits, t("2026-06-29T12:00:00Z"));
        assert_eq!((early.pending, early.all.people), (3, 0));
        let i = compute(&people, &stays, &visits, t("2026-07-01T00:00:00Z"));
        assert_eq!(
            (i.pending, i.engaged.people, i.not_engaged.people),
            (0, 2, 1)
        );
        let py = 2.0 * 180.0 / 365.25;
        let e = &i.engaged;
        assert_eq!(e.inpatient_admissions.before.count, 1.0);
        assert_eq!(
            e.inpatient_admissions.before.per_person_year,
            Some(1.0 / py)
        );
        assert_eq!(e.inpatient_days.before.count, 10.0);
        assert_eq!(e.outpatient_visits.after.count, 2.0);
        assert_eq!(
            e.outpatient_visits.after.ci95,
            Some(poisson_ci95(2).map(|b| b / py))
        );
        // Days: a had 10, c had 0: mean 5, sd 7.07, se 5; 5 ± 9.8 → [0, 14.8] per
        // 180 days.
        let [lo, hi] = e.inpatient_days.before.ci95.unwrap();
        let scale = 365.25 / 180.0;
        assert_eq!(lo, 0.0);
        assert!((hi - (5.0 + 1.959_963_984_540_054 * 5.0) * scale).abs() < 1e-9);
        assert_eq!(i.not_engaged.inpatient_admissions.after.count, 1.0);
        assert_eq!(i.not_engaged.inpatient_days.after.count, 4.0);
        assert_eq!(i.all.people, 3);
        assert!(to_csv(&i).lines().count() == 1 + 3 * 3 * 2);
    }
}
