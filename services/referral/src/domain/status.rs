//! Referral statuses (FHIR Task, SDOH Clinical Care IG) and priorities: the shared
//! contract types of `careloop-events`, which every service reads the same way.

pub use careloop_events::{Priority, ReferralStatus as Status};
