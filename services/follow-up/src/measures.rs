//! Continuity-of-care measures, exactly as defined for administrators:
//!
//! - 7-day follow-up: of the discharges at least 7 days before `as_of` (D7), those
//!   with a reached contact in `(discharged_at, discharged_at + 7d]` (N7); the same
//!   for 30 days.
//! - Time to first contact: the first reached contact's `occurred_at` minus the
//!   discharge, in seconds.
//! - 30-day readmission: of the discharges at least 30 days before `as_of` (DR),
//!   those whose person was admitted in `(discharged_at, discharged_at + 30d]` (NR),
//!   split by engaged: a reached contact in `(discharged_at, min(discharged_at + 30d,
//!   first such admission))`.
//!
//! One referral is one discharge; entered-in-error referrals are excluded
//! everywhere; contacts and admissions count at their own time, so back-entered ones
//! count too, and nothing after `as_of` does.

pub mod api;
pub mod metrics;
pub mod read_model;
pub mod report;
