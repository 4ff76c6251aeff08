//! The FollowUpPlan aggregate: business rules as pure `handle`/`apply`.

mod aggregate;
mod commands;
mod events;
pub mod facts;

pub use aggregate::{Checkpoint, FollowUpError, FollowUpPlan, PlanState};
pub use commands::{Contact, FollowUpCommand, Protocol};
pub use events::{
    Channel, CheckpointPlan, CloseOutcome, FollowUpEvent, Outcome, SupportType,
    wire_name as events_wire_name,
};
