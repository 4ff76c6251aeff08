//! The published language of careloop: the values every service reads the same way.
//!
//! Each is a plain Rust type (serde, as services store it in their own events) with
//! its conversions to and from the protobuf enums and messages living here, next to
//! the generated code, so no service re-maps another's strings. Readers of fields that
//! gained an enum take the enum and fall back to the older string field when the enum
//! is unspecified (a message from a producer built before it existed).

use serde::{Deserialize, Serialize};

use crate::v1;

/// A referral's status: FHIR Task statuses (SDOH Clinical Care IG) plus `received`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ReferralStatus {
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

impl ReferralStatus {
    pub const ALL: [ReferralStatus; 10] = [
        Self::Requested,
        Self::Received,
        Self::Accepted,
        Self::Rejected,
        Self::Cancelled,
        Self::OnHold,
        Self::InProgress,
        Self::Failed,
        Self::Completed,
        Self::EnteredInError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Requested => "requested",
            Self::Received => "received",
            Self::Accepted => "accepted",
            Self::Rejected => "rejected",
            Self::Cancelled => "cancelled",
            Self::OnHold => "on-hold",
            Self::InProgress => "in-progress",
            Self::Failed => "failed",
            Self::Completed => "completed",
            Self::EnteredInError => "entered-in-error",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// No further change is possible (except correcting an error or a reroute).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::Rejected
                | Self::Cancelled
                | Self::Failed
                | Self::Completed
                | Self::EnteredInError
        )
    }
}

impl From<ReferralStatus> for v1::ReferralStatus {
    fn from(s: ReferralStatus) -> Self {
        use ReferralStatus as S;
        match s {
            S::Requested => Self::Requested,
            S::Received => Self::Received,
            S::Accepted => Self::Accepted,
            S::Rejected => Self::Rejected,
            S::Cancelled => Self::Cancelled,
            S::OnHold => Self::OnHold,
            S::InProgress => Self::InProgress,
            S::Failed => Self::Failed,
            S::Completed => Self::Completed,
            S::EnteredInError => Self::EnteredInError,
        }
    }
}

impl TryFrom<v1::ReferralStatus> for ReferralStatus {
    type Error = ();
    fn try_from(s: v1::ReferralStatus) -> Result<Self, ()> {
        use v1::ReferralStatus as P;
        Ok(match s {
            P::Unspecified => return Err(()),
            P::Requested => Self::Requested,
            P::Received => Self::Received,
            P::Accepted => Self::Accepted,
            P::Rejected => Self::Rejected,
            P::Cancelled => Self::Cancelled,
            P::OnHold => Self::OnHold,
            P::InProgress => Self::InProgress,
            P::Failed => Self::Failed,
            P::Completed => Self::Completed,
            P::EnteredInError => Self::EnteredInError,
        })
    }
}

/// How soon the person should be reached: from the discharge's risk level.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Asap,
    Urgent,
    #[default]
    Routine,
}

impl Priority {
    /// Most urgent first: the order of every queue served by priority.
    pub const ORDER: [Priority; 3] = [Self::Asap, Self::Urgent, Self::Routine];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Asap => "asap",
            Self::Urgent => "urgent",
            Self::Routine => "routine",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ORDER.into_iter().find(|p| p.as_str() == s)
    }

    /// The names in [`Self::ORDER`], to bind into SQL that orders by priority
    /// (`array_position($1::text[], priority)`).
    pub fn order_names() -> Vec<&'static str> {
        Self::ORDER.iter().map(|p| p.as_str()).collect()
    }

    /// A raw protobuf field value; unspecified or unknown reads as routine.
    pub fn from_proto(raw: i32) -> Self {
        match v1::Priority::try_from(raw) {
            Ok(v1::Priority::Asap) => Self::Asap,
            Ok(v1::Priority::Urgent) => Self::Urgent,
            _ => Self::Routine,
        }
    }
}

impl From<Priority> for v1::Priority {
    fn from(p: Priority) -> Self {
        match p {
            Priority::Asap => Self::Asap,
            Priority::Urgent => Self::Urgent,
            Priority::Routine => Self::Routine,
        }
    }
}

/// The channel a referral came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Channel {
    #[default]
    Api,
    Fhir,
    Hl7,
}

impl Channel {
    pub const ALL: [Channel; 3] = [Self::Api, Self::Fhir, Self::Hl7];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Api => "api",
            Self::Fhir => "fhir",
            Self::Hl7 => "hl7",
        }
    }

    /// A raw protobuf field value; unspecified or unknown reads as api.
    pub fn from_proto(raw: i32) -> Self {
        match v1::Channel::try_from(raw) {
            Ok(v1::Channel::Fhir) => Self::Fhir,
            Ok(v1::Channel::Hl7) => Self::Hl7,
            _ => Self::Api,
        }
    }
}

impl From<Channel> for v1::Channel {
    fn from(c: Channel) -> Self {
        match c {
            Channel::Api => Self::Api,
            Channel::Fhir => Self::Fhir,
            Channel::Hl7 => Self::Hl7,
        }
    }
}

/// What came of one attempt to contact the person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactOutcome {
    Reached,
    NoAnswer,
    LeftMessage,
    Declined,
    Unreachable,
}

impl ContactOutcome {
    pub const ALL: [ContactOutcome; 5] = [
        Self::Reached,
        Self::NoAnswer,
        Self::LeftMessage,
        Self::Declined,
        Self::Unreachable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reached => "reached",
            Self::NoAnswer => "no_answer",
            Self::LeftMessage => "left_message",
            Self::Declined => "declined",
            Self::Unreachable => "unreachable",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

impl From<ContactOutcome> for v1::ContactOutcome {
    fn from(o: ContactOutcome) -> Self {
        match o {
            ContactOutcome::Reached => Self::Reached,
            ContactOutcome::NoAnswer => Self::NoAnswer,
            ContactOutcome::LeftMessage => Self::LeftMessage,
            ContactOutcome::Declined => Self::Declined,
            ContactOutcome::Unreachable => Self::Unreachable,
        }
    }
}

impl TryFrom<v1::ContactOutcome> for ContactOutcome {
    type Error = ();
    fn try_from(o: v1::ContactOutcome) -> Result<Self, ()> {
        Ok(match o {
            v1::ContactOutcome::Unspecified => return Err(()),
            v1::ContactOutcome::Reached => Self::Reached,
            v1::ContactOutcome::NoAnswer => Self::NoAnswer,
            v1::ContactOutcome::LeftMessage => Self::LeftMessage,
            v1::ContactOutcome::Declined => Self::Declined,
            v1::ContactOutcome::Unreachable => Self::Unreachable,
        })
    }
}

/// How a follow-up plan ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanOutcome {
    Completed,
    Failed,
    Cancelled,
}

impl PlanOutcome {
    pub const ALL: [PlanOutcome; 3] = [Self::Completed, Self::Failed, Self::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

impl From<PlanOutcome> for v1::PlanOutcome {
    fn from(o: PlanOutcome) -> Self {
        match o {
            PlanOutcome::Completed => Self::Completed,
            PlanOutcome::Failed => Self::Failed,
            PlanOutcome::Cancelled => Self::Cancelled,
        }
    }
}

impl TryFrom<v1::PlanOutcome> for PlanOutcome {
    type Error = ();
    fn try_from(o: v1::PlanOutcome) -> Result<Self, ()> {
        Ok(match o {
            v1::PlanOutcome::Unspecified => return Err(()),
            v1::PlanOutcome::Completed => Self::Completed,
            v1::PlanOutcome::Failed => Self::Failed,
            v1::PlanOutcome::Cancelled => Self::Cancelled,
        })
    }
}

/// How long after a discharge an inpatient admission counts as a readmission: the
/// readmission measure's window, and the window in which an admission pauses the
/// person's follow-up plan. The one statement of the rule.
pub const READMISSION_WINDOW_DAYS: i64 = 30;

pub fn readmission_window() -> chrono::Duration {
    chrono::Duration::days(READMISSION_WINDOW_DAYS)
}

/// Whether an admission at `admitted_at` is a readmission after the discharge at
/// `discharged_at`: in `(discharged_at, discharged_at + 30 days]`.
pub fn is_readmission(
    discharged_at: chrono::DateTime<chrono::Utc>,
    admitted_at: chrono::DateTime<chrono::Utc>,
) -> bool {
    admitted_at > discharged_at && admitted_at <= discharged_at + readmission_window()
}

/// What peer matching may know about the person: nothing that identifies them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MatchingInputs {
    pub language: String,
    #[serde(default)]
    pub preferred_peer_gender: Option<String>,
    #[serde(default)]
    pub lived_experience: Vec<String>,
    #[serde(default)]
    pub contact_modes: Vec<String>,
    /// The first three characters of the postcode, never the whole postcode.
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub needs: Vec<String>,
}

fn some_if_set(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

impl From<v1::MatchingInputs> for MatchingInputs {
    fn from(m: v1::MatchingInputs) -> Self {
        MatchingInputs {
            language: m.language,
            preferred_peer_gender: some_if_set(m.preferred_peer_gender),
            lived_experience: m.lived_experience,
            contact_modes: m.contact_modes,
            region: some_if_set(m.region),
            needs: m.needs,
        }
    }
}

impl From<MatchingInputs> for v1::MatchingInputs {
    fn from(m: MatchingInputs) -> Self {
        v1::MatchingInputs {
            language: m.language,
            preferred_peer_gender: m.preferred_peer_gender.unwrap_or_default(),
            lived_experience: m.lived_experience,
            contact_modes: m.contact_modes,
            region: m.region.unwrap_or_default(),
            needs: m.needs,
        }
    }
}

impl v1::ReferralStatusChanged {
    /// The status the referral moved to (the enum, else the older string field).
    pub fn new_status(&self) -> Option<ReferralStatus> {
        v1::ReferralStatus::try_from(self.to)
            .ok()
            .and_then(|s| ReferralStatus::try_from(s).ok())
            .or_else(|| ReferralStatus::parse(&self.to_status))
    }

    /// The status the referral moved from (the enum, else the older string field).
    pub fn old_status(&self) -> Option<ReferralStatus> {
        v1::ReferralStatus::try_from(self.from)
            .ok()
            .and_then(|s| ReferralStatus::try_from(s).ok())
            .or_else(|| ReferralStatus::parse(&self.from_status))
    }

    pub fn new(
        referral_id: String,
        facility: String,
        from: ReferralStatus,
        to: ReferralStatus,
        reason: String,
    ) -> Self {
        v1::ReferralStatusChanged {
            referral_id,
            facility,
            from_status: from.as_str().into(),
            to_status: to.as_str().into(),
            reason,
            from: v1::ReferralStatus::from(from) as i32,
            to: v1::ReferralStatus::from(to) as i32,
        }
    }
}

impl v1::ContactRecorded {
    /// The contact's outcome (the enum, else the older string field).
    pub fn contact_outcome(&self) -> Option<ContactOutcome> {
        v1::ContactOutcome::try_from(self.outcome_code)
            .ok()
            .and_then(|o| ContactOutcome::try_from(o).ok())
            .or_else(|| ContactOutcome::parse(&self.outcome))
    }
}

impl v1::FollowUpClosed {
    /// How the plan ended (the enum, else the older string field).
    pub fn plan_outcome(&self) -> Option<PlanOutcome> {
        v1::PlanOutcome::try_from(self.outcome_code)
            .ok()
            .and_then(|o| PlanOutcome::try_from(o).ok())
            .or_else(|| PlanOutcome::parse(&self.outcome))
    }

    pub fn new(referral_id: String, outcome: PlanOutcome, reason: String) -> Self {
        v1::FollowUpClosed {
            referral_id,
            outcome: outcome.as_str().into(),
            reason,
            outcome_code: v1::PlanOutcome::from(outcome) as i32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_round_trips_through_proto_and_serde() {
        for s in ReferralStatus::ALL {
            let p = v1::ReferralStatus::from(s);
            assert_eq!(ReferralStatus::try_from(p), Ok(s));
            let json = serde_json::to_value(s).unwrap();
            assert_eq!(json, s.as_str(), "stored events keep the kebab-case names");
            assert_eq!(ReferralStatus::parse(s.as_str()), Some(s));
        }
    }

    #[test]
    fn readers_fall_back_to_the_string_of_an_older_producer() {
        let old = v1::ReferralStatusChanged {
            to_status: "entered-in-error".into(),
            ..Default::default()
        };
        assert_eq!(old.new_status(), Some(ReferralStatus::EnteredInError));
        let new = v1::ReferralStatusChanged::new(
            "r".into(),
            "f".into(),
            ReferralStatus::Accepted,
            ReferralStatus::InProgress,
            String::new(),
        );
        assert_eq!(new.old_status(), Some(ReferralStatus::Accepted));
        assert_eq!(new.new_status(), Some(ReferralStatus::InProgress));
        let contact = v1::ContactRecorded {
            outcome: "reached".into(),
            ..Default::default()
        };
        assert_eq!(contact.contact_outcome(), Some(ContactOutcome::Reached));
        let closed = v1::FollowUpClosed {
            outcome: "failed".into(),
            ..Default::default()
        };
        assert_eq!(closed.plan_outcome(), Some(PlanOutcome::Failed));
    }

    #[test]
    fn priority_orders_most_urgent_first_and_reads_unknown_as_routine() {
        assert!(Priority::Asap < Priority::Urgent && Priority::Urgent < Priority::Routine);
        assert_eq!(Priority::order_names(), ["asap", "urgent", "routine"]);
        assert_eq!(Priority::from_proto(0), Priority::Routine);
        assert_eq!(Priority::from_proto(99), Priority::Routine);
        assert_eq!(
            Priority::from_proto(v1::Priority::Asap as i32),
            Priority::Asap
        );
    }

    #[test]
    fn the_readmission_window_is_open_after_the_discharge_and_closed_at_thirty_days() {
        let d: chrono::DateTime<chrono::Utc> = "2026-11-01T12:00:00Z".parse().unwrap();
        assert!(!is_readmission(d, d));
        assert!(is_readmission(d, d + chrono::Duration::seconds(1)));
        assert!(is_readmission(d, d + chrono::Duration::days(30)));
        assert!(!is_readmission(
            d,
            d + chrono::Duration::days(30) + chrono::Duration::seconds(1)
        ));
    }

    #[test]
    fn matching_inputs_keep_empty_as_none_across_the_wire() {
        let m = MatchingInputs {
            language: "en".into(),
            region: Some("681".into()),
            ..Default::default()
        };
        let wire = v1::MatchingInputs::from(m.clone());
        assert_eq!(wire.preferred_peer_gender, "");
        assert_eq!(MatchingInputs::from(wire), m);
    }
}
