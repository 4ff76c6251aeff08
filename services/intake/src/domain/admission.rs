//! The Admission aggregate: a referred person was admitted to inpatient care. Its id
//! is derived from the person, facility and admission time, so the same admission
//! reported twice (by two channels, or a retry) is one admission.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionDetails {
    pub person_ref: String,
    pub facility: String,
    pub admitted_at: DateTime<Utc>,
    pub unit: String,
}

impl AdmissionDetails {
    pub fn admission_id(&self) -> String {
        uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_URL,
            format!(
                "careloop:admission:{}:{}:{}",
                self.person_ref,
                self.facility,
                self.admitted_at.timestamp()
            )
            .as_bytes(),
        )
        .to_string()
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Admission {
    pub recorded: bool,
    pub person_ref: String,
    pub cancelled: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AdmissionCommand {
    Record(AdmissionDetails),
    /// The hospital cancelled the admission (HL7 A11).
    Cancel {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AdmissionEvent {
    AdmissionRecorded(AdmissionDetails),
    AdmissionCancelled { reason: String, person_ref: String },
}

impl DomainEvent for AdmissionEvent {
    fn event_type(&self) -> String {
        match self {
            AdmissionEvent::AdmissionRecorded(_) => "AdmissionRecorded",
            AdmissionEvent::AdmissionCancelled { .. } => "AdmissionCancelled",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

/// Recording an admission is never refused; the same one twice records it once.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AdmissionError {}

impl Aggregate for Admission {
    const TYPE: &'static str = "Admission";
    type Command = AdmissionCommand;
    type Event = AdmissionEvent;
    type Error = AdmissionError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            AdmissionCommand::Record(facts) => {
                if !self.recorded {
                    sink.write(AdmissionEvent::AdmissionRecorded(facts), self)
                        .await;
                }
            }
            AdmissionCommand::Cancel { reason } => {
                if self.recorded && !self.cancelled {
                    let person_ref = self.person_ref.clone();
                    let e = AdmissionEvent::AdmissionCancelled { reason, person_ref };
                    sink.write(e, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            AdmissionEvent::AdmissionRecorded(f) => {
                self.recorded = true;
                self.person_ref = f.person_ref;
            }
            AdmissionEvent::AdmissionCancelled { .. } => self.cancelled = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn facts() -> AdmissionDetails {
        AdmissionDetails {
            person_ref: "p1".into(),
            facility: "st-marys".into(),
            admitted_at: "2026-12-01T09:00:00Z".parse().unwrap(),
            unit: "inpatient-psychiatry".into(),
        }
    }

    #[tokio::test]
    async fn the_same_admission_twice_is_recorded_once() {
        TestFramework::<Admission>::with(())
            .given(vec![AdmissionEvent::AdmissionRecorded(facts())])
            .when_async(AdmissionCommand::Record(facts()))
            .await
            .then_expect_events(vec![]);
        let mut other = facts();
        other.admitted_at = "2026-12-02T09:00:00Z".parse().unwrap();
        assert_ne!(facts().admission_id(), other.admission_id());
    }
}
