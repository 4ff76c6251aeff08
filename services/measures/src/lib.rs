//! Continuity-of-care measures, exactly as defined for administrators:
//!
//! - 7-day follow-up: of the discharges at least 7 days before `as_of` (D7), those
//!   with a reached contact in `(discharged_at, discharged_at + 7d]` (N7); the same
//!   for 30 days.
//! - Time to first contact: the first reached contact's `occurred_at` minus the
//!   discharge, in seconds.
//! - 30-day readmission: of the discharges at least 30 days before `as_of` (DR),
//!   those whose person was admitted within the readmission window (NR,
//!   [`careloop_events::is_readmission`]), split by engaged: a reached contact in
//!   `(discharged_at, min(discharged_at + 30d, first such admission))`.
//!
//! - Engagement within 60 and 90 days (30 is the 30-day follow-up), and the HEDIS
//!   FUH-aligned 7- and 30-day follow-up by calendar day ([`report`]).
//! - Program impact ([`impact`]): inpatient admissions, inpatient days and outpatient
//!   visits in the 180 days before and after each person's index discharge, split
//!   by engagement, as rates per person-year with 95% confidence intervals.
//!
//! Every definition, with worked examples, is in `docs/measures.md`.
//!
//! One referral is one discharge; entered-in-error referrals are excluded
//! everywhere; contacts and admissions count at their own time, so back-entered ones
//! count too, and nothing after `as_of` does.
//!
//! The measures have a crate of their own but no service: the follow-up service hosts
//! them in its process and schema. [`recorder`] keeps the facts they count as
//! follow-up's own events ([`records`]), so the [`read_model`] rebuilds from that
//! event store alone (`careloop replay measures`); [`report`] computes the measures,
//! [`api`] serves them and [`metrics`] exports them to Prometheus.

pub mod api;
pub mod impact;
pub mod metrics;
pub mod read_model;
pub mod recorder;
pub mod records;
pub mod report;

use careloop_backbone::db::Migration;

/// The measures' migrations, applied in the hosting service's schema after its own
/// (their first tables came with follow-up's `0002_measures`).
pub const MIGRATIONS: [Migration; 2] = [
    Migration {
        name: "measures_0001_records",
        sql: include_str!("../migrations/0001_records.sql"),
    },
    Migration {
        name: "measures_0002_encounters",
        sql: include_str!("../migrations/0002_encounters.sql"),
    },
];
