//! The Referral aggregate: business rules as pure `handle`/`apply`.

mod aggregate;
mod commands;
mod events;
mod status;

pub use aggregate::{Referral, ReferralError};
pub use commands::ReferralCommand;
pub use events::{MatchingInputs, ReferralEvent};
pub use status::{Priority, Status};
