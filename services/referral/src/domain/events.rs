//! What happened to a Referral (serde JSON in the referral service's event store).

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::Priority;

/// The non-identifying inputs peer matching may use.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MatchingInputs {
    pub language: String,
    #[serde(default)]
    pub preferred_peer_gender: Option<String>,
    #[serde(default)]
    pub lived_experience: Vec<String>,
    #[serde(default)]
    pub contact_modes: Vec<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub needs: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ReferralEvent {
    ReferralReceived {
        referral_id: String,
        person_ref: String,
        facility: String,
        discharged_at: DateTime<Utc>,
        priority: Priority,
        first_contact_due_at: DateTime<Utc>,
        matching: MatchingInputs,
    },
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
    ReferralCancelled {
        reason: String,
        facility: String,
    },
}

impl DomainEvent for ReferralEvent {
    fn event_type(&self) -> String {
        match self {
            ReferralEvent::ReferralReceived { .. } => "ReferralReceived",
            ReferralEvent::ReferralWaitlisted { .. } => "ReferralWaitlisted",
            ReferralEvent::ReferralAccepted { .. } => "ReferralAccepted",
            ReferralEvent::FollowUpStarted { .. } => "FollowUpStarted",
            ReferralEvent::ReferralCancelled { .. } => "ReferralCancelled",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}
