//! Referral statuses (FHIR Task, SDOH Clinical Care IG) and priorities.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    #[default]
    Requested,
    Received,
    Accepted,
    Rejected,
    Cancelled,
    OnHold,
    InProgress,
    Failed,
    Completed,
    EnteredInError,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Requested => "requested",
            Status::Received => "received",
            Status::Accepted => "accepted",
            Status::Rejected => "rejected",
            Status::Cancelled => "cancelled",
            Status::OnHold => "on-hold",
            Status::InProgress => "in-progress",
            Status::Failed => "failed",
            Status::Completed => "completed",
            Status::EnteredInError => "entered-in-error",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        serde_json::from_value(serde_json::Value::String(s.to_string())).ok()
    }

    /// No further change is possible.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Rejected
                | Status::Cancelled
                | Status::Failed
                | Status::Completed
                | Status::EnteredInError
        )
    }
}

/// From the discharge's risk level: high → asap, moderate → urgent, low → routine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Asap,
    Urgent,
    #[default]
    Routine,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Asap => "asap",
            Priority::Urgent => "urgent",
            Priority::Routine => "routine",
        }
    }

    pub fn to_proto(self) -> careloop_events::v1::Priority {
        use careloop_events::v1::Priority as P;
        match self {
            Priority::Asap => P::Asap,
            Priority::Urgent => P::Urgent,
            Priority::Routine => P::Routine,
        }
    }

    pub fn from_proto(p: i32) -> Priority {
        use careloop_events::v1::Priority as P;
        match P::of(p) {
            P::Asap => Priority::Asap,
            P::Urgent => Priority::Urgent,
            P::Routine | P::Unspecified => Priority::Routine,
        }
    }
}
