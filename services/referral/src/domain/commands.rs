//! What may be asked of a Referral.

use chrono::{DateTime, Utc};

use super::{MatchingInputs, Priority};

#[derive(Debug, Clone, PartialEq)]
pub enum ReferralCommand {
    /// Intake submitted the referral (from ReferralSubmitted).
    Receive {
        referral_id: String,
        person_ref: String,
        facility: String,
        discharged_at: DateTime<Utc>,
        priority: Priority,
        matching: MatchingInputs,
    },
    /// A peer took the referral on (from PeerAssigned).
    Accept { peer_id: String },
    /// Nobody fits right now (from AssignmentWaitlisted).
    Waitlist { reason: String },
    /// The person was reached (from ContactRecorded with outcome reached).
    StartFollowUp {
        contact_id: String,
        occurred_at: DateTime<Utc>,
    },
    /// A coordinator or the referring hospital withdrew the referral.
    Cancel { reason: String },
}
