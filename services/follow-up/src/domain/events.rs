//! What happened to a FollowUpPlan (serde JSON in the follow-up service's store).

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use careloop_events::{PlanOutcome, Priority};

use super::{Contact, Documentation};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Phone,
    InPerson,
    Video,
    Text,
}

/// Where an in-person contact took place: the setting billing asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Place {
    Home,
    Community,
    Clinic,
}

/// What a review found about one of the person's goals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GoalReviewKind {
    /// Still working on it; the note says how it goes.
    Progress,
    Met,
    /// The person put it in new words.
    Changed,
    /// The person no longer wants to work on it.
    SetAside,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SupportType {
    Emotional,
    Informational,
    Instrumental,
    Affiliational,
}

/// The wire name of a serde unit variant (`in_person`).
pub fn wire_name<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// One check-in of the plan: met by a reached contact in `(window_start, due_at]`.
/// The first-contact check-in is met by the first reach, whenever it happens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointPlan {
    pub name: String,
    pub window_start: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FollowUpEvent {
    PlanStarted {
        peer_id: String,
        person_ref: String,
        facility: String,
        priority: Priority,
        discharged_at: DateTime<Utc>,
        ends_at: DateTime<Utc>,
        checkpoints: Vec<CheckpointPlan>,
        failed_after_attempts: u32,
        failed_after_secs: i64,
        #[serde(default)]
        attempt: u32,
    },
    PlanReassigned {
        from_peer: String,
        to_peer: String,
    },
    ContactRecorded {
        peer_id: String,
        contact: Contact,
    },
    /// The peer corrected the documentation of an unsigned contact.
    ContactDocumented {
        contact_id: String,
        documentation: Documentation,
    },
    /// A supervisor signed the contact: locked from now on.
    ContactSigned {
        contact_id: String,
        signed_by: String,
        signed_at: DateTime<Utc>,
    },
    /// A change to a signed contact, kept beside the original.
    ContactAddendumAdded {
        contact_id: String,
        addendum_id: String,
        /// Sealed.
        text: String,
        added_by: String,
        added_at: DateTime<Utc>,
    },
    /// One of the person's own goals, in their words (sealed).
    GoalSet {
        goal_id: String,
        words: String,
        support_types: Vec<SupportType>,
        set_at: DateTime<Utc>,
    },
    GoalReviewed {
        goal_id: String,
        #[serde(default)]
        review_id: String,
        kind: GoalReviewKind,
        /// The new words of a changed goal (sealed).
        words: Option<String>,
        /// Sealed.
        note: Option<String>,
        reviewed_by: String,
        reviewed_at: DateTime<Utc>,
    },
    /// Caring contacts after a completed plan: one due at each time.
    CaringContactsStarted {
        due: Vec<DateTime<Utc>>,
        started_at: DateTime<Utc>,
    },
    /// The `n`th caring contact (from 1) was made by this contact.
    CaringContactMade {
        n: u32,
        contact_id: String,
    },
    CaringContactsStopped {
        reason: String,
        stopped_at: DateTime<Utc>,
    },
    CheckpointMet {
        checkpoint: String,
        contact_id: String,
        occurred_at: DateTime<Utc>,
    },
    FollowUpOverdue {
        checkpoint: String,
        due_at: DateTime<Utc>,
    },
    ReadmissionLinked {
        admission_id: String,
        admitted_at: DateTime<Utc>,
        /// The plan was active and is now paused.
        paused: bool,
    },
    PlanResumed {
        reason: String,
    },
    /// A linked admission was cancelled by the hospital; `resumed` when that was the
    /// only thing pausing the plan.
    ReadmissionUnlinked {
        admission_id: String,
        resumed: bool,
    },
    FollowUpClosed {
        outcome: PlanOutcome,
        reason: String,
        /// A newer routing attempt may reopen the plan (a rejected referral).
        #[serde(default)]
        reopenable: bool,
    },
    /// A rerouted referral was assigned again: the plan goes on with its history.
    PlanReopened {
        peer_id: String,
        attempt: u32,
    },
    /// The peer gave the referral back: nobody holds the plan until a new peer does.
    PlanUnassigned {
        peer_id: String,
    },
}

impl DomainEvent for FollowUpEvent {
    fn event_type(&self) -> String {
        match self {
            FollowUpEvent::PlanStarted { .. } => "PlanStarted",
            FollowUpEvent::PlanReassigned { .. } => "PlanReassigned",
            FollowUpEvent::ContactRecorded { .. } => "ContactRecorded",
            FollowUpEvent::ContactDocumented { .. } => "ContactDocumented",
            FollowUpEvent::ContactSigned { .. } => "ContactSigned",
            FollowUpEvent::ContactAddendumAdded { .. } => "ContactAddendumAdded",
            FollowUpEvent::GoalSet { .. } => "GoalSet",
            FollowUpEvent::GoalReviewed { .. } => "GoalReviewed",
            FollowUpEvent::CaringContactsStarted { .. } => "CaringContactsStarted",
            FollowUpEvent::CaringContactMade { .. } => "CaringContactMade",
            FollowUpEvent::CaringContactsStopped { .. } => "CaringContactsStopped",
            FollowUpEvent::CheckpointMet { .. } => "CheckpointMet",
            FollowUpEvent::FollowUpOverdue { .. } => "FollowUpOverdue",
            FollowUpEvent::ReadmissionLinked { .. } => "ReadmissionLinked",
            FollowUpEvent::PlanResumed { .. } => "PlanResumed",
            FollowUpEvent::ReadmissionUnlinked { .. } => "ReadmissionUnlinked",
            FollowUpEvent::FollowUpClosed { .. } => "FollowUpClosed",
            FollowUpEvent::PlanReopened { .. } => "PlanReopened",
            FollowUpEvent::PlanUnassigned { .. } => "PlanUnassigned",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}
