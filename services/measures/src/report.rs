//! Computing the measures: one SQL query gives, per discharge, its first reached
//! contact and its first readmission as of `as_of`; the counting is plain Rust over
//! those rows ([`Tally`]), so the definitions read as they are written.

use std::collections::BTreeMap;

use careloop_events::readmission_window;
use chrono::{DateTime, Datelike, Duration, Utc};
use serde::Serialize;

/// One discharge, as of the report's time.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DischargeRow {
    pub facility: String,
    pub discharged_at: DateTime<Utc>,
    /// The earliest reached contact after discharge, at or before `as_of`.
    pub first_reached: Option<DateTime<Utc>>,
    /// The earliest readmission (within the readmission window), at or before `as_of`.
    pub first_readmission: Option<DateTime<Utc>>,
    /// The earliest reached contact on a calendar day (UTC) after the discharge's,
    /// at or before `as_of`: what the HEDIS-aligned follow-up counts.
    pub first_reached_after_day: Option<DateTime<Utc>>,
}

/// Which discharges a report covers.
#[derive(Debug, Clone)]
pub struct Scope {
    pub as_of: DateTime<Utc>,
    pub facility: Option<String>,
    /// Discharged at or after.
    pub from: Option<DateTime<Utc>>,
    /// Discharged before.
    pub to: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct FollowUp {
    pub discharges: u64,
    pub followed_up: u64,
    pub ratio: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Readmission {
    pub discharges: u64,
    pub readmitted: u64,
    pub readmitted_engaged: u64,
    pub readmitted_not_engaged: u64,
    pub ratio: Option<f64>,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct FirstContact {
    pub count: u64,
    /// The nearest-rank percentiles of the observed seconds (values that occurred).
    pub p50: Option<i64>,
    pub p90: Option<i64>,
}

/// The measures of one group of discharges.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Measures {
    pub followup_7d: FollowUp,
    pub followup_30d: FollowUp,
    /// Engagement: a reached contact within 60 and 90 days of discharge (exact time,
    /// like `followup_30d`, which is 30-day engagement).
    pub engagement_60d: FollowUp,
    pub engagement_90d: FollowUp,
    /// The HEDIS FUH-aligned variant: a reached contact on one of the 7 (30) calendar
    /// days after the discharge's day, the discharge day itself not counting.
    pub fuh_7d: FollowUp,
    pub fuh_30d: FollowUp,
    pub readmission_30d: Readmission,
    pub first_contact_seconds: FirstContact,
}

/// Counts discharges into the measures.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    m: Measures,
    first_contacts: Vec<i64>,
}

/// The follow-up windows after discharge: 7 and 30 days.
pub const FOLLOW_UP_7D: Duration = Duration::days(7);
pub const FOLLOW_UP_30D: Duration = Duration::days(30);
pub const ENGAGEMENT_60D: Duration = Duration::days(60);
pub const ENGAGEMENT_90D: Duration = Duration::days(90);

/// Midnight (UTC) starting the calendar day of `t`.
pub fn day_start(t: DateTime<Utc>) -> DateTime<Utc> {
    t.date_naive()
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc()
}

/// Counts one discharge into a follow-up measure: due once `as_of` reached
/// `complete_at` (the window has passed), met when `reached_by(window end)`.
fn count(f: &mut FollowUp, due: bool, met: bool) {
    if due {
        f.discharges += 1;
        f.followed_up += met as u64;
    }
}

impl Tally {
    pub fn add(&mut self, row: &DischargeRow, as_of: DateTime<Utc>) {
        let d = row.discharged_at;
        let reached_within = |window: Duration| row.first_reached.is_some_and(|r| r <= d + window);
        for (f, window) in [
            (&mut self.m.followup_7d, FOLLOW_UP_7D),
            (&mut self.m.followup_30d, FOLLOW_UP_30D),
            (&mut self.m.engagement_60d, ENGAGEMENT_60D),
            (&mut self.m.engagement_90d, ENGAGEMENT_90D),
        ] {
            count(f, d <= as_of - window, reached_within(window));
        }
        // By calendar day: days 1..=N after the discharge's day; due once day N ended.
        let day0 = day_start(d);
        for (f, days) in [(&mut self.m.fuh_7d, 7), (&mut self.m.fuh_30d, 30)] {
            let after_last_day = day0 + Duration::days(days + 1);
            let met = row
                .first_reached_after_day
                .is_some_and(|r| r < after_last_day);
            count(f, after_last_day <= as_of, met);
        }
        let window = readmission_window();
        if d <= as_of - window {
            let r = &mut self.m.readmission_30d;
            r.discharges += 1;
            if let Some(admitted) = row.first_readmission {
                r.readmitted += 1;
                let until = admitted.min(d + window);
                let engaged = row.first_reached.is_some_and(|c| c < until);
                if engaged {
                    r.readmitted_engaged += 1;
                } else {
                    r.readmitted_not_engaged += 1;
                }
            }
        }
        if let Some(r) = row.first_reached {
            self.first_contacts.push((r - d).num_seconds());
        }
    }

    pub fn first_contact_seconds(&self) -> &[i64] {
        &self.first_contacts
    }

    pub fn finish(mut self) -> Measures {
        let ratio = |n: u64, d: u64| (d > 0).then(|| n as f64 / d as f64);
        let f = &mut self.m;
        f.followup_7d.ratio = ratio(f.followup_7d.followed_up, f.followup_7d.discharges);
        for m in [
            &mut f.followup_30d,
            &mut f.engagement_60d,
            &mut f.engagement_90d,
            &mut f.fuh_7d,
            &mut f.fuh_30d,
        ] {
            m.ratio = ratio(m.followed_up, m.discharges);
        }
        f.readmission_30d.ratio = ratio(f.readmission_30d.readmitted, f.readmission_30d.discharges);
        self.first_contacts.sort_unstable();
        let n = self.first_contacts.len();
        let rank = |p: f64| {
            (n > 0).then(|| self.first_contacts[((p * n as f64).ceil() as usize).clamp(1, n) - 1])
        };
        self.m.first_contact_seconds = FirstContact {
            count: n as u64,
            p50: rank(0.5),
            p90: rank(0.9),
        };
        self.m
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct FacilityMeasures {
    pub facility: String,
    #[serde(flatten)]
    pub measures: Measures,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cohort {
    /// Monday 00:00 UTC of the discharge week.
    pub week_start: DateTime<Utc>,
    #[serde(flatten)]
    pub measures: Measures,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub as_of: DateTime<Utc>,
    pub total: Measures,
    pub facilities: Vec<FacilityMeasures>,
    pub cohorts: Vec<Cohort>,
}

pub fn week_start(t: DateTime<Utc>) -> DateTime<Utc> {
    let day = t.date_naive() - Duration::days(t.weekday().num_days_from_monday() as i64);
    day.and_hms_opt(0, 0, 0).expect("midnight").and_utc()
}

/// The report over `rows` (already limited to the scope).
pub fn compute(rows: &[DischargeRow], as_of: DateTime<Utc>) -> Report {
    let mut total = Tally::default();
    let mut by_facility: BTreeMap<&str, Tally> = BTreeMap::new();
    let mut by_week: BTreeMap<DateTime<Utc>, Tally> = BTreeMap::new();
    for row in rows {
        total.add(row, as_of);
        by_facility
            .entry(&row.facility)
            .or_default()
            .add(row, as_of);
        by_week
            .entry(week_start(row.discharged_at))
            .or_default()
            .add(row, as_of);
    }
    Report {
        as_of,
        total: total.finish(),
        facilities: by_facility
            .into_iter()
            .map(|(f, t)| FacilityMeasures {
                facility: f.to_string(),
                measures: t.finish(),
            })
            .collect(),
        cohorts: by_week
            .into_iter()
            .map(|(w, t)| Cohort {
                week_start: w,
                measures: t.finish(),
            })
            .collect(),
    }
}

/// The report as CSV: one line for the total, each facility and each weekly cohort.
pub fn to_csv(report: &Report) -> String {
    let mut out = String::from(
        "scope,facility,week_start,followup_7d_discharges,followup_7d_followed_up,followup_7d_ratio,\
         followup_30d_discharges,followup_30d_followed_up,followup_30d_ratio,\
         readmission_30d_discharges,readmitted,readmitted_engaged,readmitted_not_engaged,readmission_30d_ratio,\
         first_contact_count,first_contact_p50_seconds,first_contact_p90_seconds,\
         engagement_60d_discharges,engagement_60d_followed_up,engagement_60d_ratio,\
         engagement_90d_discharges,engagement_90d_followed_up,engagement_90d_ratio,\
         fuh_7d_discharges,fuh_7d_followed_up,fuh_7d_ratio,\
         fuh_30d_discharges,fuh_30d_followed_up,fuh_30d_ratio\n",
    );
    let opt = |v: Option<f64>| v.map(|v| format!("{v:.6}")).unwrap_or_default();
    let opti = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
    let mut line = |scope: &str, facility: &str, week: &str, m: &Measures| {
        let (f7, f30, r, fc) = (
            &m.followup_7d,
            &m.followup_30d,
            &m.readmission_30d,
            &m.first_contact_seconds,
        );
        let more: Vec<String> = [&m.engagement_60d, &m.engagement_90d, &m.fuh_7d, &m.fuh_30d]
            .iter()
            .flat_map(|f| {
                [
                    f.discharges.to_string(),
                    f.followed_up.to_string(),
                    opt(f.ratio),
                ]
            })
            .collect();
        out.push_str(&format!(
            "{scope},{},{week},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
            careloop_web::csv::field(facility),
            f7.discharges,
            f7.followed_up,
            opt(f7.ratio),
            f30.discharges,
            f30.followed_up,
            opt(f30.ratio),
            r.discharges,
            r.readmitted,
            r.readmitted_engaged,
            r.readmitted_not_engaged,
            opt(r.ratio),
            fc.count,
            opti(fc.p50),
            opti(fc.p90),
            more.join(","),
        ));
    };
    line("total", "", "", &report.total);
    for f in &report.facilities {
        line("facility", &f.facility, "", &f.measures);
    }
    for c in &report.cohorts {
        line("week", "", &c.week_start.to_rfc3339(), &c.measures);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    const AS_OF: &str = "2026-12-31T00:00:00Z";

    fn row(d: &str, reached: Option<&str>, readmitted: Option<&str>) -> DischargeRow {
        DischargeRow {
            facility: "st-marys".into(),
            discharged_at: t(d),
            first_reached: reached.map(t),
            first_readmission: readmitted.map(t),
            // As the query finds it: the first reach on a later calendar day.
            first_reached_after_day: reached.map(t).filter(|r| day_start(*r) > day_start(t(d))),
        }
    }

    #[test]
    fn engagement_counts_60_and_90_days_and_fuh_counts_calendar_days_after_the_discharge_day() {
        let rows = [
            // Reached on the discharge day only: 7-day follow-up (exact) but not FUH.
            row("2026-09-01T08:00:00Z", Some("2026-09-01T20:00:00Z"), None),
            // Discharged late in the day, reached at 23:59 on day 7 after it: FUH 7
            // (calendar), though more than 7 × 24 hours later: not the exact 7-day.
            row("2026-09-01T23:00:00Z", Some("2026-09-08T23:59:00Z"), None),
            // Reached on day 8: neither 7-day measure; FUH 30 and engagement.
            row("2026-09-01T10:00:00Z", Some("2026-09-09T00:00:00Z"), None),
            // Reached after 61 days: 90-day engagement only.
            row("2026-09-01T10:00:00Z", Some("2026-11-01T11:00:00Z"), None),
        ];
        let m = compute(&rows, t(AS_OF)).total;
        let pair = |f: &FollowUp| (f.discharges, f.followed_up);
        assert_eq!(pair(&m.followup_7d), (4, 1));
        assert_eq!(pair(&m.fuh_7d), (4, 1));
        assert_eq!(pair(&m.fuh_30d), (4, 2));
        assert_eq!(pair(&m.followup_30d), (4, 3));
        assert_eq!(pair(&m.engagement_60d), (4, 3));
        assert_eq!(pair(&m.engagement_90d), (4, 4));
        // FUH 7 is due once the 7th calendar day after the discharge's has ended.
        let late = [row("2026-12-23T23:00:00Z", None, None)];
        assert_eq!(
            pair(&compute(&late, t("2026-12-30T23:59:59Z")).total.fuh_7d),
            (0, 0)
        );
        assert_eq!(
            pair(&compute(&late, t("2026-12-31T00:00:00Z")).total.fuh_7d),
            (1, 0)
        );
    }

    #[test]
    fn seven_and_thirty_day_windows_hold_at_their_edges() {
        let rows = [
            // Discharged exactly 7 days before as_of: in D7. Reached exactly at +7d: N7.
            row("2026-12-24T00:00:00Z", Some("2026-12-31T00:00:00Z"), None),
            // One second later: not in D7 yet.
            row("2026-12-24T00:00:01Z", Some("2026-12-24T01:00:00Z"), None),
            // Reached one second after +7d: not N7, but N30.
            row("2026-11-01T00:00:00Z", Some("2026-11-08T00:00:01Z"), None),
        ];
        let m = compute(&rows, t(AS_OF)).total;
        assert_eq!(
            (m.followup_7d.discharges, m.followup_7d.followed_up),
            (2, 1)
        );
        assert_eq!(
            (m.followup_30d.discharges, m.followup_30d.followed_up),
            (1, 1)
        );
        assert_eq!(m.first_contact_seconds.count, 3);
    }

    #[test]
    fn readmissions_split_by_engagement() {
        let rows = [
            // Reached before the readmission: engaged.
            row(
                "2026-10-01T00:00:00Z",
                Some("2026-10-03T00:00:00Z"),
                Some("2026-10-31T00:00:00Z"),
            ),
            // Reached only at the readmission's own moment: not engaged (open interval).
            row(
                "2026-10-01T00:00:00Z",
                Some("2026-10-10T00:00:00Z"),
                Some("2026-10-10T00:00:00Z"),
            ),
            // Not readmitted.
            row("2026-10-01T00:00:00Z", None, None),
        ];
        let r = compute(&rows, t(AS_OF)).total.readmission_30d;
        assert_eq!(
            (
                r.discharges,
                r.readmitted,
                r.readmitted_engaged,
                r.readmitted_not_engaged
            ),
            (3, 2, 1, 1)
        );
        assert_eq!(r.ratio, Some(2.0 / 3.0));
    }

    #[test]
    fn percentiles_are_nearest_rank_and_empty_ratios_are_null() {
        let rows: Vec<DischargeRow> = [3600, 7199, 604_800, 604_801, 1_036_800]
            .iter()
            .map(|s| {
                let d = t("2026-10-01T00:00:00Z");
                DischargeRow {
                    facility: "x".into(),
                    discharged_at: d,
                    first_reached: Some(d + Duration::seconds(*s)),
                    first_readmission: None,
                    first_reached_after_day: None,
                }
            })
            .collect();
        let fc = compute(&rows, t(AS_OF)).total.first_contact_seconds;
        assert_eq!(
            (fc.count, fc.p50, fc.p90),
            (5, Some(604_800), Some(1_036_800))
        );
        let empty = compute(&[], t(AS_OF)).total;
        assert_eq!(empty.followup_7d.ratio, None);
        assert_eq!(empty.first_contact_seconds.p50, None);
    }

    #[test]
    fn cohorts_are_discharge_weeks_starting_monday() {
        assert_eq!(
            week_start(t("2026-11-22T15:00:00Z")),
            t("2026-11-16T00:00:00Z")
        );
        assert_eq!(
            week_start(t("2026-11-16T00:00:00Z")),
            t("2026-11-16T00:00:00Z")
        );
    }
}
