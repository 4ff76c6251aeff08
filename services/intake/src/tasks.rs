//! The ReferralTask process manager: intake's copy of where each referral stands,
//! for the hospital (the FHIR Task, the closed loop's webhook) and for the contact
//! card (which peer holds the referral).
//!
//! - [`mirror`]: the consumer of the referral and peer-assignment services' events;
//!   it records each status change and each change of holder on the referral's
//!   [`ReferralTask`](crate::domain::ReferralTask), as intake's own events;
//! - [`read_model`]: the `tasks` projection of those events (`referral_tasks`), and
//!   the queries on it.

pub mod mirror;
pub mod read_model;
