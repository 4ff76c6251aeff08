//! The Admission aggregate: a referred person was admitted to inpatient care. Its id
//! is derived from the person, facility and admission time, so the same admission
//! reported twice (by two channels, or a retry) is one admission.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdmissionFacts {
    pub person_ref: String,
    pub facility: String,
    pub admitted_at: DateTime<Utc>,
    pub unit: String,
}

impl AdmissionFacts {
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
}

#[derive(Debug, Clone, PartialEq)]
pub enum AdmissionCommand {
    Record(AdmissionFacts),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AdmissionEvent {
    AdmissionRecorded(AdmissionFacts),
}

impl DomainEvent for AdmissionEvent {
    fn event_type(&self) -> String {
        "AdmissionRecorded".to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

/// Recording an admission is never refused; the same one twice records it once.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AdmissionError {}

impl From<AdmissionError> for careloop_web::Problem {
    fn from(e: AdmissionError) -> Self {
        match e {}
    }
}

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
        let AdmissionCommand::Record(facts) = command;
        if !self.recorded {
            sink.write(AdmissionEvent::AdmissionRecorded(facts), self)
                .await;
        }
        Ok(())
    }

    fn apply(&mut self, _: Self::Event) {
        self.recorded = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn facts() -> AdmissionFacts {
        AdmissionFacts {
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
