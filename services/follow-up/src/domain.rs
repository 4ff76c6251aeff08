//! The FollowUpPlan aggregate: business rules as pure `handle`/`apply`.

mod aggregate;
mod commands;
mod events;

pub use aggregate::{FollowUpError, FollowUpPlan};
pub use commands::{Contact, FollowUpCommand};
pub use events::{Channel, FollowUpEvent, Outcome, SupportType, wire_name as events_wire_name};
