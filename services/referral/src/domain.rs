//! The Referral aggregate (business rules as pure `handle`/`apply`) and the
//! PersonReferrals state of the consent process manager.

mod aggregate;
mod commands;
mod events;
mod person_referrals;
mod status;
pub mod transitions;

pub use aggregate::{Referral, ReferralError};
pub use commands::ReferralCommand;
pub use events::{DueKind, MatchingInputs, Received, ReferralEvent, RejectReason};
pub use person_referrals::{
    PersonReferrals, PersonReferralsCommand, PersonReferralsError, PersonReferralsEvent,
};
pub use status::{Priority, Status};
pub use transitions::Action;
