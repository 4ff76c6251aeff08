//! What may be asked of a FollowUpPlan.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use careloop_config::Rounding;
use careloop_events::{ContactOutcome, PlanOutcome, Priority};

use super::{Channel, GoalReviewKind, Place, SupportType};

/// One contact attempt as a peer reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contact {
    pub contact_id: String,
    /// When the contact began.
    pub occurred_at: DateTime<Utc>,
    pub channel: Channel,
    pub outcome: ContactOutcome,
    pub support_types: Vec<SupportType>,
    /// How long it took, where it was and how it is billed: the part a peer may
    /// correct until a supervisor signs the contact.
    #[serde(flatten)]
    pub documentation: Documentation,
    /// Sealed under the person's data key.
    pub notes: Option<String>,
    /// The person's goals this contact worked on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub goal_ids: Vec<String>,
}

/// A contact's documentation for billing and supervision.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Documentation {
    /// Derived from `ended_at` when that is given.
    pub duration_minutes: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<DateTime<Utc>>,
    /// Where an in-person contact took place.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub place: Option<Place>,
    /// Set for a contact billed under a service code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billing: Option<Billing>,
}

/// A contact billed under one of the organisation's service codes
/// (`CARELOOP_SERVICE_CODES`), with the code's unit and rounding as they were when it
/// was documented, so a later change of the table never changes what was billed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Billing {
    pub service_code: String,
    pub modifiers: Vec<String>,
    pub unit_minutes: u32,
    pub rounding: Rounding,
    /// Computed by the plan from the contact's minutes.
    pub units: u32,
    /// The peer's attestation that the service was provided as documented.
    pub attested_by: Option<String>,
    pub attested_at: Option<DateTime<Utc>>,
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
    /// The peer corrects a contact's documentation before it is signed.
    DocumentContact {
        contact_id: String,
        documentation: Documentation,
        by_peer: Option<String>,
        now: DateTime<Utc>,
    },
    /// A supervisor reviews and signs a contact; it is locked from then on.
    SignContact {
        contact_id: String,
        signed_by: String,
        now: DateTime<Utc>,
    },
    /// A later change to a signed contact: kept beside the original.
    AddAddendum {
        contact_id: String,
        addendum_id: String,
        /// Sealed under the person's data key.
        text: String,
        by_peer: Option<String>,
        added_by: String,
        now: DateTime<Utc>,
    },
    /// The person names a goal of their own, in their words (sealed).
    SetGoal {
        goal_id: String,
        words: String,
        support_types: Vec<SupportType>,
        by_peer: Option<String>,
        now: DateTime<Utc>,
    },
    /// The person and their peer review a goal.
    ReviewGoal {
        goal_id: String,
        /// From the request's `Idempotency-Key` when it has one.
        review_id: String,
        kind: GoalReviewKind,
        /// The goal's new words (sealed), for a goal the person changed.
        words: Option<String>,
        /// Sealed.
        note: Option<String>,
        by_peer: Option<String>,
        reviewed_by: String,
        now: DateTime<Utc>,
    },
    /// The person agreed to caring contacts after their completed plan.
    StartCaringContacts {
        every: Duration,
        count: u32,
        by_peer: Option<String>,
        now: DateTime<Utc>,
    },
    /// The series stops: at the person's request, or their consent was revoked.
    StopCaringContacts {
        reason: String,
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
