//! What happened to a Referral (serde JSON in the referral service's event store).

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::{Priority, Status};

pub use careloop_events::MatchingInputs;

/// A referral as received (also what a reroute sends back to matching).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Received {
    pub referral_id: String,
    pub person_ref: String,
    pub facility: String,
    pub discharged_at: DateTime<Utc>,
    pub priority: Priority,
    pub acceptance_due_at: DateTime<Utc>,
    pub first_contact_due_at: DateTime<Utc>,
    pub matching: MatchingInputs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    NoCapacity,
    OutOfArea,
    DeclinedByPerson,
    UnableToReach,
    Other,
}

impl RejectReason {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::NoCapacity => "no_capacity",
            RejectReason::OutOfArea => "out_of_area",
            RejectReason::DeclinedByPerson => "declined_by_person",
            RejectReason::UnableToReach => "unable_to_reach",
            RejectReason::Other => "other",
        }
    }
}

/// Which deadline was missed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DueKind {
    Acceptance,
    FirstContact,
}

impl DueKind {
    pub const ALL: [DueKind; 2] = [DueKind::Acceptance, DueKind::FirstContact];

    /// The statuses in which this deadline is still unmet: acceptance until a peer
    /// accepts, the first contact until the person is reached. The one statement of
    /// the rule; the deadline check and the queue bind it into their queries.
    pub fn open_in(self) -> &'static [Status] {
        match self {
            DueKind::Acceptance => &[Status::Received],
            DueKind::FirstContact => &[Status::Received, Status::Accepted],
        }
    }

    /// [`Self::open_in`] as status names, for SQL (`status = ANY($n)`).
    pub fn open_status_names(self) -> Vec<&'static str> {
        self.open_in().iter().map(|s| s.as_str()).collect()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DueKind::Acceptance => "acceptance",
            DueKind::FirstContact => "first_contact",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ReferralEvent {
    ReferralReceived(Received),
    ReferralWaitlisted {
        reason: String,
    },
    ReferralAccepted {
        peer_id: String,
        facility: String,
    },
    FollowUpStarted {
        contact_id: String,
        occurred_at: DateTime<Utc>,
        facility: String,
    },
    ReferralRejected {
        code: RejectReason,
        reason: Option<String>,
        facility: String,
    },
    ReferralHeld {
        from: Status,
        reason: String,
        facility: String,
    },
    ReferralResumed {
        to: Status,
        reason: String,
        facility: String,
    },
    ReferralCancelled {
        reason: String,
        facility: String,
    },
    ReferralEnteredInError {
        from: Status,
        reason: String,
        facility: String,
    },
    /// Sent back to matching after a reject: attempt 2, 3, ...
    ReferralRerouted {
        attempt: u32,
        reason: String,
        referral: Received,
    },
    ReferralOverdue {
        kind: DueKind,
        due_at: DateTime<Utc>,
        facility: String,
    },
    ReferralCompleted {
        from: Status,
        reason: String,
        facility: String,
    },
    ReferralFailed {
        from: Status,
        reason: String,
        facility: String,
    },
    ReadmissionNoted {
        admission_id: String,
        admitted_at: DateTime<Utc>,
    },
    /// The hospital cancelled that admission (HL7 A11): no longer a readmission.
    ReadmissionCancelled {
        admission_id: String,
    },
    /// The person was reached before the referral was accepted (the contact came
    /// through another consumer first) or while it was on hold: kept, and applied
    /// as soon as the referral is accepted.
    FirstReachNoted {
        contact_id: String,
        occurred_at: DateTime<Utc>,
    },
    /// Another peer took over, or (to = None) the peer gave the referral back.
    ReferralPeerChanged {
        from: Option<String>,
        to: Option<String>,
        /// Why (a coordinator's override); absent in events written before it was kept.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
}

impl DomainEvent for ReferralEvent {
    fn event_type(&self) -> String {
        match self {
            ReferralEvent::ReferralReceived(_) => "ReferralReceived",
            ReferralEvent::ReferralWaitlisted { .. } => "ReferralWaitlisted",
            ReferralEvent::ReferralAccepted { .. } => "ReferralAccepted",
            ReferralEvent::FollowUpStarted { .. } => "FollowUpStarted",
            ReferralEvent::ReferralRejected { .. } => "ReferralRejected",
            ReferralEvent::ReferralHeld { .. } => "ReferralHeld",
            ReferralEvent::ReferralResumed { .. } => "ReferralResumed",
            ReferralEvent::ReferralCancelled { .. } => "ReferralCancelled",
            ReferralEvent::ReferralEnteredInError { .. } => "ReferralEnteredInError",
            ReferralEvent::ReferralRerouted { .. } => "ReferralRerouted",
            ReferralEvent::ReferralOverdue { .. } => "ReferralOverdue",
            ReferralEvent::ReferralCompleted { .. } => "ReferralCompleted",
            ReferralEvent::ReferralFailed { .. } => "ReferralFailed",
            ReferralEvent::ReadmissionNoted { .. } => "ReadmissionNoted",
            ReferralEvent::ReadmissionCancelled { .. } => "ReadmissionCancelled",
            ReferralEvent::ReferralPeerChanged { .. } => "ReferralPeerChanged",
            ReferralEvent::FirstReachNoted { .. } => "FirstReachNoted",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

impl ReferralEvent {
    /// The status the referral has after this event, when it changes it.
    pub fn new_status(&self) -> Option<Status> {
        Some(match self {
            ReferralEvent::ReferralReceived(_) | ReferralEvent::ReferralRerouted { .. } => {
                Status::Received
            }
            ReferralEvent::ReferralAccepted { .. } => Status::Accepted,
            ReferralEvent::FollowUpStarted { .. } => Status::InProgress,
            ReferralEvent::ReferralRejected { .. } => Status::Rejected,
            ReferralEvent::ReferralHeld { .. } => Status::OnHold,
            ReferralEvent::ReferralResumed { to, .. } => *to,
            ReferralEvent::ReferralCancelled { .. } => Status::Cancelled,
            ReferralEvent::ReferralEnteredInError { .. } => Status::EnteredInError,
            ReferralEvent::ReferralCompleted { .. } => Status::Completed,
            ReferralEvent::ReferralFailed { .. } => Status::Failed,
            ReferralEvent::ReferralWaitlisted { .. }
            | ReferralEvent::ReferralOverdue { .. }
            | ReferralEvent::ReadmissionNoted { .. }
            | ReferralEvent::ReadmissionCancelled { .. }
            | ReferralEvent::ReferralPeerChanged { .. }
            | ReferralEvent::FirstReachNoted { .. } => return None,
        })
    }
}
