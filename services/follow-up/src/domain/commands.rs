//! What may be asked of a FollowUpPlan.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use careloop_events::{ContactOutcome, PlanOutcome, Priority};

use super::{Channel, SupportType};

/// One contact attempt as a peer reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    pub contact_id: String,
    pub occurred_at: DateTime<Utc>,
    pub channel: Channel,
    pub outcome: ContactOutcome,
    pub support_types: Vec<SupportType>,
    pub duration_minutes: Option<u32>,
    pub notes: Option<String>,
}

/// The protocol a new plan follows (from configuration).
#[derive(Debug, Clone, PartialEq)]
pub struct Protocol {
    pub checkins: Vec<Duration>,
    pub ends_after: Duration,
    pub failed_after_attempts: u32,
    pub failed_after: Duration,
}

impl From<&careloop_config::FollowUpProtocol> for Protocol {
    fn from(p: &careloop_config::FollowUpProtocol) -> Self {
        let d = |s: std::time::Duration| Duration::from_std(s).unwrap_or_default();
        Protocol {
            checkins: p.checkins.iter().copied().map(d).collect(),
            ends_after: d(p.ends_after),
            failed_after_attempts: p.failed_after_attempts,
            failed_after: d(p.failed_after),
        }
    }
}

/// What a plan starts from: the assignment (PeerAssigned) and the protocol.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanStart {
    pub peer_id: String,
    pub person_ref: String,
    pub facility: String,
    pub priority: Priority,
    pub discharged_at: DateTime<Utc>,
    pub first_contact_due_at: DateTime<Utc>,
    pub protocol: Protocol,
    /// The routing attempt of the assignment (a rerouted referral starts again).
    pub attempt: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FollowUpCommand {
    /// A peer was assigned (from PeerAssigned): the plan starts, or moves to the new
    /// peer with its history.
    Start(Box<PlanStart>),
    /// The peer gave the referral back (from PeerUnassigned).
    Unassign { peer_id: String },
    /// A peer (or a coordinator on their behalf) logs a contact attempt.
    RecordContact {
        contact: Contact,
        /// The peer recording it; `None` for a coordinator.
        by_peer: Option<String>,
        now: DateTime<Utc>,
    },
    /// The deadline check as of `now`: overdue check-ins, and the plan's end.
    CheckDeadlines { now: DateTime<Utc> },
    /// The person was admitted again (from AdmissionRecorded).
    LinkReadmission {
        admission_id: String,
        admitted_at: DateTime<Utc>,
    },
    /// The hospital cancelled an admission (HL7 A11): it is no readmission after all.
    UnlinkReadmission { admission_id: String },
    /// After the next discharge, a coordinator resumes a paused plan.
    Resume { reason: String },
    /// The peer (or a coordinator) closes the plan with an outcome.
    Close {
        outcome: PlanOutcome,
        reason: String,
        by_peer: Option<String>,
    },
    /// The referral was cancelled, rejected or entered in error. `reopenable`: a
    /// rejected referral may be rerouted, and a newer attempt reopens the plan.
    Cancel { reason: String, reopenable: bool },
}
