//! What may be asked of a FollowUpPlan.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{Channel, Outcome, SupportType};

/// One contact attempt as a peer reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    pub contact_id: String,
    pub occurred_at: DateTime<Utc>,
    pub channel: Channel,
    pub outcome: Outcome,
    pub support_types: Vec<SupportType>,
    pub duration_minutes: Option<u32>,
    pub notes: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FollowUpCommand {
    /// A peer was assigned (from PeerAssigned): the plan starts.
    Start {
        peer_id: String,
        facility: String,
        priority: String,
        discharged_at: DateTime<Utc>,
        first_contact_due_at: DateTime<Utc>,
    },
    /// A peer (or a coordinator on their behalf) logs a contact attempt.
    RecordContact {
        contact: Contact,
        /// The peer recording it; `None` for a coordinator.
        by_peer: Option<String>,
        now: DateTime<Utc>,
    },
}
