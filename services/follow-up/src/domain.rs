//! The FollowUpPlan aggregate (business rules as pure `handle`/`apply`, split by
//! concept under [`plan`]) and the PersonCare state of the readmission process
//! manager.

mod commands;
mod events;
mod person_care;
pub mod plan;

pub use commands::{Billing, Contact, Documentation, FollowUpCommand, PlanStart, Protocol};
pub use events::{
    Channel, CheckpointPlan, FollowUpEvent, GoalReviewKind, Place, SupportType,
    wire_name as events_wire_name,
};
pub use person_care::{PersonCare, PersonCareCommand, PersonCareError, PersonCareEvent};
pub use plan::{Checkpoint, FollowUpError, FollowUpPlan, Missing, PlanState, missing};
