//! The Referral aggregate: business rules as pure `handle`/`apply`.

mod aggregate;
mod commands;
mod events;
mod status;
pub mod transitions;

pub use aggregate::{Referral, ReferralError};
pub use commands::ReferralCommand;
pub use events::{DueKind, MatchingInputs, Received, ReferralEvent, RejectReason};
pub use status::{Priority, Status};
pub use transitions::Action;
