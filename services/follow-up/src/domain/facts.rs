//! The facts follow-up keeps about referrals and admissions for the continuity-of-care
//! measures, copied from other services' events into follow-up's own event store, so
//! the measures read model rebuilds from follow-up's events alone
//! (`careloop replay measures`).
//!
//! `DischargeFacts` (one per referral): the discharge, the referral's latest status
//! and whether it is assigned or waiting. `AdmissionFacts` (one per admission): a
//! referred person admitted to inpatient care. Noting the same fact twice changes
//! nothing.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DischargeFacts {
    pub discharge: Option<Discharge>,
    pub status: Option<String>,
    pub assignment: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discharge {
    pub person_ref: String,
    pub facility: String,
    pub discharged_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FactsCommand {
    NoteDischarge(Discharge),
    NoteStatus(String),
    /// assigned | waitlisted | unassigned | released
    NoteAssignment(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FactsEvent {
    DischargeNoted(Discharge),
    StatusNoted { status: String },
    AssignmentNoted { state: String },
}

impl DomainEvent for FactsEvent {
    fn event_type(&self) -> String {
        match self {
            FactsEvent::DischargeNoted(_) => "DischargeNoted",
            FactsEvent::StatusNoted { .. } => "StatusNoted",
            FactsEvent::AssignmentNoted { .. } => "AssignmentNoted",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

/// Noting a fact is never refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FactsError {}

impl From<FactsError> for careloop_web::Problem {
    fn from(e: FactsError) -> Self {
        match e {}
    }
}

impl Aggregate for DischargeFacts {
    const TYPE: &'static str = "DischargeFacts";
    type Command = FactsCommand;
    type Event = FactsEvent;
    type Error = FactsError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            FactsCommand::NoteDischarge(d) => {
                if self.discharge.is_none() {
                    sink.write(FactsEvent::DischargeNoted(d), self).await;
                }
            }
            FactsCommand::NoteStatus(status) => {
                // Entered in error is final for the measures: nothing undoes it.
                let locked = self.status.as_deref() == Some("entered-in-error");
                if self.status.as_deref() != Some(status.as_str()) && !locked {
                    sink.write(FactsEvent::StatusNoted { status }, self).await;
                }
            }
            FactsCommand::NoteAssignment(state) => {
                if self.assignment.as_deref() != Some(state.as_str()) {
                    sink.write(FactsEvent::AssignmentNoted { state }, self)
                        .await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            FactsEvent::DischargeNoted(d) => self.discharge = Some(d),
            FactsEvent::StatusNoted { status } => self.status = Some(status),
            FactsEvent::AssignmentNoted { state } => self.assignment = Some(state),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AdmissionFacts {
    pub noted: bool,
    pub withdrawn: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Admission {
    pub person_ref: String,
    pub facility: String,
    pub admitted_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AdmissionEvent {
    AdmissionNoted(Admission),
    /// The hospital cancelled the admission: it no longer counts.
    AdmissionWithdrawn,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AdmissionFactsCommand {
    Note(Admission),
    Withdraw,
}

impl DomainEvent for AdmissionEvent {
    fn event_type(&self) -> String {
        match self {
            AdmissionEvent::AdmissionNoted(_) => "AdmissionNoted",
            AdmissionEvent::AdmissionWithdrawn => "AdmissionWithdrawn",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

impl Aggregate for AdmissionFacts {
    const TYPE: &'static str = "AdmissionFacts";
    type Command = AdmissionFactsCommand;
    type Event = AdmissionEvent;
    type Error = FactsError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            AdmissionFactsCommand::Note(a) => {
                if !self.noted {
                    sink.write(AdmissionEvent::AdmissionNoted(a), self).await;
                }
            }
            AdmissionFactsCommand::Withdraw => {
                if self.noted && !self.withdrawn {
                    sink.write(AdmissionEvent::AdmissionWithdrawn, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            AdmissionEvent::AdmissionNoted(_) => self.noted = true,
            AdmissionEvent::AdmissionWithdrawn => self.withdrawn = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    #[tokio::test]
    async fn entered_in_error_stays_entered_in_error() {
        TestFramework::<DischargeFacts>::with(())
            .given(vec![FactsEvent::StatusNoted {
                status: "entered-in-error".into(),
            }])
            .when_async(FactsCommand::NoteStatus("completed".into()))
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn the_same_fact_twice_is_noted_once() {
        TestFramework::<DischargeFacts>::with(())
            .given(vec![FactsEvent::AssignmentNoted {
                state: "waitlisted".into(),
            }])
            .when_async(FactsCommand::NoteAssignment("waitlisted".into()))
            .await
            .then_expect_events(vec![]);
    }
}
