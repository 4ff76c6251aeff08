//! What may be asked of a FollowUpPlan.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::{Channel, CloseOutcome, Outcome, SupportType};

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

#[derive(Debug, Clone, PartialEq)]
pub enum FollowUpCommand {
    /// A peer was assigned (from PeerAssigned): the plan starts, or moves to the new
    /// peer with its history.
    Start {
        peer_id: String,
        person_ref: String,
        facility: String,
        priority: String,
        discharged_at: DateTime<Utc>,
        first_contact_due_at: DateTime<Utc>,
        protocol: Protocol,
        /// The routing attempt of the assignment (a rerouted referral starts again).
        attempt: u32,
    },
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
        outcome: CloseOutcome,
        reason: String,
        by_peer: Option<String>,
    },
    /// The referral was cancelled, rejected or entered in error. `reopenable`: a
    /// rejected referral may be rerouted, and a newer attempt reopens the plan.
    Cancel { reason: String, reopenable: bool },
}
