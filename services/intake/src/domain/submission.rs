//! The ReferralSubmission aggregate: one discharge a hospital referred, with consent.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RiskLevel {
    High,
    Moderate,
    Low,
}

impl RiskLevel {
    /// high → asap, moderate → urgent, low → routine.
    pub fn priority(self) -> careloop_events::Priority {
        use careloop_events::Priority as P;
        match self {
            RiskLevel::High => P::Asap,
            RiskLevel::Moderate => P::Urgent,
            RiskLevel::Low => P::Routine,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            RiskLevel::High => "high",
            RiskLevel::Moderate => "moderate",
            RiskLevel::Low => "low",
        }
    }
}

/// A consent to peer-support referral: given with a referral, and kept on the
/// person while in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Consent {
    pub granted_at: DateTime<Utc>,
    pub scope: String,
    pub recorded_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Preferences {
    pub peer_gender: Option<String>,
    #[serde(default)]
    pub lived_experience: Vec<String>,
    #[serde(default)]
    pub contact_modes: Vec<String>,
}

/// A submitted referral as intake stores it (the ReferralSubmitted event), made by
/// [`super::NewReferral::submitted_for`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SubmittedReferral {
    pub referral_id: String,
    pub person_ref: String,
    pub facility: String,
    pub channel: careloop_events::Channel,
    pub discharged_at: DateTime<Utc>,
    pub unit: String,
    pub risk_level: RiskLevel,
    pub consent: Consent,
    pub needs: Vec<String>,
    pub language: String,
    pub preferences: Preferences,
    /// The first three characters of the postcode (not identifying).
    pub region: Option<String>,
    pub notes: Option<String>,
}

impl SubmittedReferral {
    /// What peer matching may know: nothing that identifies the person.
    pub fn matching(&self) -> careloop_events::MatchingInputs {
        careloop_events::MatchingInputs {
            language: self.language.clone(),
            preferred_peer_gender: self.preferences.peer_gender.clone(),
            lived_experience: self.preferences.lived_experience.clone(),
            contact_modes: self.preferences.contact_modes.clone(),
            region: self.region.clone(),
            needs: self.needs.clone(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ReferralSubmission {
    pub submitted: bool,
    pub facility: String,
    pub withdrawn: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SubmissionCommand {
    Submit(Box<SubmittedReferral>),
    /// The hospital takes the referral back (HL7 A13: the discharge was cancelled).
    Withdraw {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SubmissionEvent {
    ReferralSubmitted(Box<SubmittedReferral>),
    ReferralWithdrawn { reason: String, facility: String },
}

impl DomainEvent for SubmissionEvent {
    fn event_type(&self) -> String {
        match self {
            SubmissionEvent::ReferralSubmitted(_) => "ReferralSubmitted",
            SubmissionEvent::ReferralWithdrawn { .. } => "ReferralWithdrawn",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SubmissionError {
    #[error("this referral was submitted already")]
    AlreadySubmitted,
}

impl Aggregate for ReferralSubmission {
    const TYPE: &'static str = "ReferralSubmission";
    type Command = SubmissionCommand;
    type Event = SubmissionEvent;
    type Error = SubmissionError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            SubmissionCommand::Submit(s) => {
                if self.submitted {
                    return Err(SubmissionError::AlreadySubmitted);
                }
                sink.write(SubmissionEvent::ReferralSubmitted(s), self)
                    .await;
            }
            SubmissionCommand::Withdraw { reason } => {
                if self.submitted && !self.withdrawn {
                    let facility = self.facility.clone();
                    let e = SubmissionEvent::ReferralWithdrawn { reason, facility };
                    sink.write(e, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            SubmissionEvent::ReferralSubmitted(s) => {
                self.submitted = true;
                self.facility = s.facility;
            }
            SubmissionEvent::ReferralWithdrawn { .. } => self.withdrawn = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<ReferralSubmission>;

    fn submitted() -> SubmittedReferral {
        SubmittedReferral {
            referral_id: "r1".into(),
            person_ref: "p1".into(),
            facility: "st-marys".into(),
            channel: careloop_events::Channel::Api,
            discharged_at: "2026-11-20T15:30:00Z".parse().unwrap(),
            unit: "inpatient-psychiatry".into(),
            risk_level: RiskLevel::High,
            consent: Consent {
                granted_at: "2026-11-20T14:00:00Z".parse().unwrap(),
                scope: "peer-support-referral".into(),
                recorded_by: "discharge planner".into(),
            },
            needs: vec!["emotional".into()],
            language: "en".into(),
            preferences: Preferences::default(),
            region: Some("681".into()),
            notes: None,
        }
    }

    #[tokio::test]
    async fn a_referral_is_submitted_once() {
        Given::with(())
            .given_no_previous_events()
            .when_async(SubmissionCommand::Submit(Box::new(submitted())))
            .await
            .then_expect_events(vec![SubmissionEvent::ReferralSubmitted(Box::new(
                submitted(),
            ))]);
        Given::with(())
            .given(vec![SubmissionEvent::ReferralSubmitted(Box::new(
                submitted(),
            ))])
            .when_async(SubmissionCommand::Submit(Box::new(submitted())))
            .await
            .then_expect_error(SubmissionError::AlreadySubmitted);
    }

    #[test]
    fn risk_level_sets_priority() {
        use careloop_events::Priority;
        assert_eq!(RiskLevel::High.priority(), Priority::Asap);
        assert_eq!(RiskLevel::Moderate.priority(), Priority::Urgent);
        assert_eq!(RiskLevel::Low.priority(), Priority::Routine);
    }
}
