//! The Encounter aggregate: a referred person's hospital encounter, for the measures
//! of program impact: an inpatient stay (it shares its id with the stay's admission,
//! and is recorded again when its end becomes known) or an outpatient visit.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use super::AdmissionDetails;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncounterClass {
    Inpatient,
    Outpatient,
}

impl EncounterClass {
    pub fn as_str(self) -> &'static str {
        match self {
            EncounterClass::Inpatient => "inpatient",
            EncounterClass::Outpatient => "outpatient",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EncounterDetails {
    pub person_ref: String,
    pub facility: String,
    pub class: EncounterClass,
    pub started_at: DateTime<Utc>,
    /// The end of an inpatient stay, once known; none for a visit.
    pub ended_at: Option<DateTime<Utc>>,
}

impl EncounterDetails {
    /// An inpatient stay is its admission (the same id); a visit is the person's at
    /// that facility and time.
    pub fn encounter_id(&self) -> String {
        match self.class {
            EncounterClass::Inpatient => AdmissionDetails {
                person_ref: self.person_ref.clone(),
                facility: self.facility.clone(),
                admitted_at: self.started_at,
                unit: String::new(),
            }
            .admission_id(),
            EncounterClass::Outpatient => uuid::Uuid::new_v5(
                &uuid::Uuid::NAMESPACE_URL,
                format!(
                    "careloop:visit:{}:{}:{}",
                    self.person_ref,
                    self.facility,
                    self.started_at.timestamp()
                )
                .as_bytes(),
            )
            .to_string(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Encounter {
    pub recorded: Option<EncounterDetails>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EncounterEvent {
    EncounterRecorded(EncounterDetails),
}

impl DomainEvent for EncounterEvent {
    fn event_type(&self) -> String {
        "EncounterRecorded".to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

/// Recording is never refused: the same encounter again records nothing, a stay's
/// newly known end records it again.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum EncounterError {}

impl Aggregate for Encounter {
    const TYPE: &'static str = "Encounter";
    type Command = EncounterDetails;
    type Event = EncounterEvent;
    type Error = EncounterError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        let changed = match &self.recorded {
            None => true,
            // Only an end learnt later changes what was recorded.
            Some(before) => before.ended_at != command.ended_at && command.ended_at.is_some(),
        };
        if changed {
            sink.write(EncounterEvent::EncounterRecorded(command), self)
                .await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        let EncounterEvent::EncounterRecorded(d) = event;
        self.recorded = Some(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn stay(ended: Option<&str>) -> EncounterDetails {
        EncounterDetails {
            person_ref: "p1".into(),
            facility: "st-marys".into(),
            class: EncounterClass::Inpatient,
            started_at: "2026-05-01T10:00:00Z".parse().unwrap(),
            ended_at: ended.map(|e| e.parse().unwrap()),
        }
    }

    #[test]
    fn a_stay_is_its_admission() {
        let s = stay(None);
        let admission = AdmissionDetails {
            person_ref: "p1".into(),
            facility: "st-marys".into(),
            admitted_at: s.started_at,
            unit: "4W".into(),
        };
        assert_eq!(s.encounter_id(), admission.admission_id());
    }

    #[tokio::test]
    async fn a_stay_is_recorded_again_only_when_its_end_becomes_known() {
        let given = vec![EncounterEvent::EncounterRecorded(stay(None))];
        TestFramework::<Encounter>::with(())
            .given(given.clone())
            .when_async(stay(None))
            .await
            .then_expect_events(vec![]);
        let ended = stay(Some("2026-05-09T10:00:00Z"));
        TestFramework::<Encounter>::with(())
            .given(given)
            .when_async(ended.clone())
            .await
            .then_expect_events(vec![EncounterEvent::EncounterRecorded(ended.clone())]);
        TestFramework::<Encounter>::with(())
            .given(vec![EncounterEvent::EncounterRecorded(ended.clone())])
            .when_async(stay(None))
            .await
            .then_expect_events(vec![]);
    }
}
