//! The facts the measures count, copied from other services' events into the hosting
//! service's own event store, so the measures read model rebuilds from that store
//! alone (`careloop replay measures`).
//!
//! `DischargeRecord` (one per referral): the discharge, the channel it came through,
//! the referral's latest status and whether it is assigned or waiting.
//! `AdmissionRecord` (one per admission): a referred person admitted to inpatient
//! care. Noting the same fact twice changes nothing.

use careloop_events::Channel;
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct DischargeRecord {
    pub discharge: Option<Discharge>,
    pub channel: Option<Channel>,
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
pub enum DischargeRecordCommand {
    /// The referral service took the referral in: the discharge and the status
    /// `received`, in one command (one load and one commit for both).
    NoteReceived(Discharge),
    NoteChannel(Channel),
    NoteStatus(String),
    /// assigned | waitlisted | unassigned | released
    NoteAssignment(String),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DischargeRecordEvent {
    DischargeNoted(Discharge),
    ChannelNoted { channel: Channel },
    StatusNoted { status: String },
    AssignmentNoted { state: String },
}

impl DomainEvent for DischargeRecordEvent {
    fn event_type(&self) -> String {
        match self {
            DischargeRecordEvent::DischargeNoted(_) => "DischargeNoted",
            DischargeRecordEvent::ChannelNoted { .. } => "ChannelNoted",
            DischargeRecordEvent::StatusNoted { .. } => "StatusNoted",
            DischargeRecordEvent::AssignmentNoted { .. } => "AssignmentNoted",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

/// Noting a fact is never refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum RecordError {}

impl DischargeRecord {
    async fn note_status(&mut self, status: String, sink: &EventSink<Self>) {
        // Entered in error is final for the measures: nothing undoes it.
        let locked = self.status.as_deref() == Some("entered-in-error");
        if self.status.as_deref() != Some(status.as_str()) && !locked {
            sink.write(DischargeRecordEvent::StatusNoted { status }, self)
                .await;
        }
    }
}

impl Aggregate for DischargeRecord {
    const TYPE: &'static str = "DischargeRecord";
    type Command = DischargeRecordCommand;
    type Event = DischargeRecordEvent;
    type Error = RecordError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            DischargeRecordCommand::NoteReceived(d) => {
                if self.discharge.is_none() {
                    sink.write(DischargeRecordEvent::DischargeNoted(d), self)
                        .await;
                }
                self.note_status("received".into(), sink).await;
            }
            DischargeRecordCommand::NoteChannel(channel) => {
                if self.channel.is_none() {
                    sink.write(DischargeRecordEvent::ChannelNoted { channel }, self)
                        .await;
                }
            }
            DischargeRecordCommand::NoteStatus(status) => self.note_status(status, sink).await,
            DischargeRecordCommand::NoteAssignment(state) => {
                if self.assignment.as_deref() != Some(state.as_str()) {
                    sink.write(DischargeRecordEvent::AssignmentNoted { state }, self)
                        .await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            DischargeRecordEvent::DischargeNoted(d) => self.discharge = Some(d),
            DischargeRecordEvent::ChannelNoted { channel } => self.channel = Some(channel),
            DischargeRecordEvent::StatusNoted { status } => self.status = Some(status),
            DischargeRecordEvent::AssignmentNoted { state } => self.assignment = Some(state),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct AdmissionRecord {
    pub noted: bool,
    pub withdrawn: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedAdmission {
    pub person_ref: String,
    pub facility: String,
    pub admitted_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AdmissionRecordEvent {
    AdmissionNoted(ReportedAdmission),
    /// The hospital cancelled the admission: it no longer counts.
    AdmissionWithdrawn,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AdmissionRecordCommand {
    Note(ReportedAdmission),
    Withdraw,
}

impl DomainEvent for AdmissionRecordEvent {
    fn event_type(&self) -> String {
        match self {
            AdmissionRecordEvent::AdmissionNoted(_) => "AdmissionNoted",
            AdmissionRecordEvent::AdmissionWithdrawn => "AdmissionWithdrawn",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

impl Aggregate for AdmissionRecord {
    const TYPE: &'static str = "AdmissionRecord";
    type Command = AdmissionRecordCommand;
    type Event = AdmissionRecordEvent;
    type Error = RecordError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            AdmissionRecordCommand::Note(a) => {
                if !self.noted {
                    sink.write(AdmissionRecordEvent::AdmissionNoted(a), self)
                        .await;
                }
            }
            AdmissionRecordCommand::Withdraw => {
                if self.noted && !self.withdrawn {
                    sink.write(AdmissionRecordEvent::AdmissionWithdrawn, self)
                        .await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            AdmissionRecordEvent::AdmissionNoted(_) => self.noted = true,
            AdmissionRecordEvent::AdmissionWithdrawn => self.withdrawn = true,
        }
    }
}

/// A referred person's encounter (`EncounterRecord`, one per encounter): an inpatient
/// stay, noted again when its end becomes known, or an outpatient visit.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct EncounterRecord {
    pub noted: Option<ReportedEncounter>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedEncounter {
    pub person_ref: String,
    pub facility: String,
    /// inpatient | outpatient
    pub class: String,
    pub started_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EncounterRecordEvent {
    EncounterNoted(ReportedEncounter),
}

impl DomainEvent for EncounterRecordEvent {
    fn event_type(&self) -> String {
        "EncounterNoted".to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

impl Aggregate for EncounterRecord {
    const TYPE: &'static str = "EncounterRecord";
    type Command = ReportedEncounter;
    type Event = EncounterRecordEvent;
    type Error = RecordError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        if self.noted.as_ref() != Some(&command) {
            sink.write(EncounterRecordEvent::EncounterNoted(command), self)
                .await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        let EncounterRecordEvent::EncounterNoted(e) = event;
        self.noted = Some(e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    #[tokio::test]
    async fn entered_in_error_stays_entered_in_error() {
        TestFramework::<DischargeRecord>::with(())
            .given(vec![DischargeRecordEvent::StatusNoted {
                status: "entered-in-error".into(),
            }])
            .when_async(DischargeRecordCommand::NoteStatus("completed".into()))
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn a_received_referral_notes_its_discharge_and_status_once() {
        let discharge = Discharge {
            person_ref: "p1".into(),
            facility: "st-marys".into(),
            discharged_at: chrono::DateTime::UNIX_EPOCH,
        };
        let received = vec![
            DischargeRecordEvent::DischargeNoted(discharge.clone()),
            DischargeRecordEvent::StatusNoted {
                status: "received".into(),
            },
        ];
        TestFramework::<DischargeRecord>::with(())
            .given_no_previous_events()
            .when_async(DischargeRecordCommand::NoteReceived(discharge.clone()))
            .await
            .then_expect_events(received.clone());
        TestFramework::<DischargeRecord>::with(())
            .given(received)
            .when_async(DischargeRecordCommand::NoteReceived(discharge))
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn the_same_fact_twice_is_noted_once() {
        TestFramework::<DischargeRecord>::with(())
            .given(vec![DischargeRecordEvent::AssignmentNoted {
                state: "waitlisted".into(),
            }])
            .when_async(DischargeRecordCommand::NoteAssignment("waitlisted".into()))
            .await
            .then_expect_events(vec![]);
    }
}
