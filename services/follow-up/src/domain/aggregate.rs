//! The FollowUpPlan aggregate: one per referral, from peer assignment on.

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};

use super::{FollowUpCommand, FollowUpEvent};
use careloop_web::Problem;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FollowUpPlan {
    pub started: bool,
    pub peer_id: String,
    pub discharged_at: Option<DateTime<Utc>>,
    pub contact_ids: Vec<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FollowUpError {
    #[error("no follow-up plan yet: the referral has no assigned peer")]
    NoPlan,
    #[error("occurred_at is before the discharge ({0})")]
    ContactBeforeDischarge(DateTime<Utc>),
    #[error("occurred_at is in the future")]
    ContactInFuture,
    #[error("this referral is assigned to another peer")]
    NotYourReferral,
}

impl From<FollowUpError> for Problem {
    fn from(e: FollowUpError) -> Problem {
        match &e {
            FollowUpError::NoPlan => Problem::conflict(e.to_string()),
            FollowUpError::ContactBeforeDischarge(_) | FollowUpError::ContactInFuture => {
                Problem::invalid("occurred_at", e.to_string())
            }
            FollowUpError::NotYourReferral => Problem::forbidden(e.to_string()),
        }
    }
}

impl Aggregate for FollowUpPlan {
    const TYPE: &'static str = "FollowUpPlan";
    type Command = FollowUpCommand;
    type Event = FollowUpEvent;
    type Error = FollowUpError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            FollowUpCommand::Start {
                peer_id,
                facility,
                priority,
                discharged_at,
                first_contact_due_at,
            } => {
                // Redelivered PeerAssigned: the plan exists already.
                if self.started {
                    return Ok(());
                }
                sink.write(
                    FollowUpEvent::PlanStarted {
                        peer_id,
                        facility,
                        priority,
                        discharged_at,
                        first_contact_due_at,
                    },
                    self,
                )
                .await;
            }
            FollowUpCommand::RecordContact {
                contact,
                by_peer,
                now,
            } => {
                if !self.started {
                    return Err(FollowUpError::NoPlan);
                }
                if by_peer.as_ref().is_some_and(|p| *p != self.peer_id) {
                    return Err(FollowUpError::NotYourReferral);
                }
                if contact.occurred_at > now {
                    return Err(FollowUpError::ContactInFuture);
                }
                let discharged_at = self.discharged_at.unwrap_or_default();
                if contact.occurred_at < discharged_at {
                    return Err(FollowUpError::ContactBeforeDischarge(discharged_at));
                }
                if self.contact_ids.contains(&contact.contact_id) {
                    return Ok(());
                }
                let peer_id = self.peer_id.clone();
                sink.write(FollowUpEvent::ContactRecorded { peer_id, contact }, self)
                    .await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            FollowUpEvent::PlanStarted {
                peer_id,
                discharged_at,
                ..
            } => {
                self.started = true;
                self.peer_id = peer_id;
                self.discharged_at = Some(discharged_at);
            }
            FollowUpEvent::ContactRecorded { contact, .. } => {
                self.contact_ids.push(contact.contact_id)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Channel, Contact, Outcome, SupportType};
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<FollowUpPlan>;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn started() -> FollowUpEvent {
        FollowUpEvent::PlanStarted {
            peer_id: "peer-1".into(),
            facility: "st-marys".into(),
            priority: "asap".into(),
            discharged_at: t("2026-11-20T15:30:00Z"),
            first_contact_due_at: t("2026-11-21T15:30:00Z"),
        }
    }

    fn contact(at: &str) -> Contact {
        Contact {
            contact_id: "c1".into(),
            occurred_at: t(at),
            channel: Channel::Phone,
            outcome: Outcome::Reached,
            support_types: vec![SupportType::Emotional],
            duration_minutes: Some(25),
            notes: None,
        }
    }

    fn record(at: &str, by_peer: Option<&str>) -> FollowUpCommand {
        FollowUpCommand::RecordContact {
            contact: contact(at),
            by_peer: by_peer.map(str::to_string),
            now: t("2026-11-22T00:00:00Z"),
        }
    }

    #[tokio::test]
    async fn the_assigned_peer_records_a_contact() {
        Given::with(())
            .given(vec![started()])
            .when_async(record("2026-11-21T16:00:00Z", Some("peer-1")))
            .await
            .then_expect_events(vec![FollowUpEvent::ContactRecorded {
                peer_id: "peer-1".into(),
                contact: contact("2026-11-21T16:00:00Z"),
            }]);
    }

    #[tokio::test]
    async fn a_contact_before_discharge_is_refused() {
        Given::with(())
            .given(vec![started()])
            .when_async(record("2026-11-20T15:29:59Z", None))
            .await
            .then_expect_error(FollowUpError::ContactBeforeDischarge(t(
                "2026-11-20T15:30:00Z",
            )));
    }

    #[tokio::test]
    async fn a_contact_in_the_future_is_refused() {
        Given::with(())
            .given(vec![started()])
            .when_async(record("2026-11-23T00:00:00Z", None))
            .await
            .then_expect_error(FollowUpError::ContactInFuture);
    }

    #[tokio::test]
    async fn another_peer_may_not_record() {
        Given::with(())
            .given(vec![started()])
            .when_async(record("2026-11-21T16:00:00Z", Some("peer-2")))
            .await
            .then_expect_error(FollowUpError::NotYourReferral);
    }

    #[tokio::test]
    async fn no_contact_before_a_plan_exists() {
        Given::with(())
            .given_no_previous_events()
            .when_async(record("2026-11-21T16:00:00Z", None))
            .await
            .then_expect_error(FollowUpError::NoPlan);
    }

    #[tokio::test]
    async fn a_redelivered_assignment_does_not_start_a_second_plan() {
        Given::with(())
            .given(vec![started()])
            .when_async(FollowUpCommand::Start {
                peer_id: "peer-1".into(),
                facility: "st-marys".into(),
                priority: "asap".into(),
                discharged_at: t("2026-11-20T15:30:00Z"),
                first_contact_due_at: t("2026-11-21T15:30:00Z"),
            })
            .await
            .then_expect_events(vec![]);
    }
}
