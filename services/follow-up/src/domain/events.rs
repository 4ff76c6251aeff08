//! What happened to a FollowUpPlan (serde JSON in the follow-up service's store).

use chrono::{DateTime, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::Contact;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    Phone,
    InPerson,
    Video,
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Reached,
    NoAnswer,
    LeftMessage,
    Declined,
    Unreachable,
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

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FollowUpEvent {
    PlanStarted {
        peer_id: String,
        facility: String,
        priority: String,
        discharged_at: DateTime<Utc>,
        first_contact_due_at: DateTime<Utc>,
    },
    ContactRecorded {
        peer_id: String,
        contact: Contact,
    },
}

impl DomainEvent for FollowUpEvent {
    fn event_type(&self) -> String {
        match self {
            FollowUpEvent::PlanStarted { .. } => "PlanStarted",
            FollowUpEvent::ContactRecorded { .. } => "ContactRecorded",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}
