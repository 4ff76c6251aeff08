//! What may be asked of a Referral.

use chrono::{DateTime, Utc};

use super::{DueKind, Received, RejectReason};

#[derive(Debug, Clone, PartialEq)]
pub enum ReferralCommand {
    /// Intake submitted the referral (from ReferralSubmitted). Due times are computed
    /// by the caller from the configured policy.
    Receive(Box<Received>),
    /// A peer took the referral on (from PeerAssigned); for a referral that already
    /// has a peer, the peer changes (reassignment).
    Accept {
        peer_id: String,
        /// Why a coordinator chose this peer (an override), for the timeline.
        reason: Option<String>,
    },
    /// The peer gave the referral back (from PeerUnassigned).
    Unassign {
        peer_id: String,
    },
    /// Nobody fits right now (from AssignmentWaitlisted).
    Waitlist {
        reason: String,
    },
    /// The person was reached (from ContactRecorded with outcome reached).
    StartFollowUp {
        contact_id: String,
        occurred_at: DateTime<Utc>,
    },
    Reject {
        code: RejectReason,
        reason: Option<String>,
    },
    Hold {
        reason: String,
    },
    Resume {
        reason: String,
    },
    Cancel {
        reason: String,
    },
    EnterInError {
        reason: String,
    },
    /// Back to matching after a reject; `allowed` is the configuration's word.
    Reroute {
        reason: String,
        allowed: bool,
    },
    /// Follow-up closed its plan (from FollowUpClosed).
    Complete {
        reason: String,
    },
    Fail {
        reason: String,
    },
    /// The person was readmitted within 30 days (from ReadmissionLinked).
    NoteReadmission {
        admission_id: String,
        admitted_at: DateTime<Utc>,
    },
    /// The hospital cancelled a readmission's admission (from ReadmissionUnlinked).
    CancelReadmission {
        admission_id: String,
    },
    /// The deadline check: marks `kind` overdue if it is due by `now` and still unmet.
    MarkOverdue {
        kind: DueKind,
        now: DateTime<Utc>,
    },
}
