//! The Referral aggregate: one discharge referred to peer support.

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};

use super::{Priority, ReferralCommand, ReferralEvent, Status};
use careloop_web::Problem;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Referral {
    pub referral_id: Option<String>,
    pub status: Status,
    pub facility: String,
    pub priority: Priority,
    pub discharged_at: Option<DateTime<Utc>>,
    pub peer_id: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ReferralError {
    #[error("no such referral")]
    NotFound,
    #[error("a referral in status {current} cannot be {wanted}")]
    NotAllowed {
        current: &'static str,
        wanted: &'static str,
    },
}

impl From<ReferralError> for Problem {
    fn from(e: ReferralError) -> Problem {
        match &e {
            ReferralError::NotFound => Problem::not_found(e.to_string()),
            ReferralError::NotAllowed { current, .. } => {
                Problem::conflict(e.to_string()).with_extension("current_status", current)
            }
        }
    }
}

impl Aggregate for Referral {
    const TYPE: &'static str = "Referral";
    type Command = ReferralCommand;
    type Event = ReferralEvent;
    type Error = ReferralError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        use ReferralCommand as C;
        use ReferralEvent as E;
        if self.referral_id.is_none() && !matches!(command, C::Receive { .. }) {
            return Err(ReferralError::NotFound);
        }
        match command {
            C::Receive {
                referral_id,
                person_ref,
                facility,
                discharged_at,
                priority,
                matching,
            } => {
                // Redelivery of ReferralSubmitted: already received, nothing to do.
                if self.referral_id.is_some() {
                    return Ok(());
                }
                let event = E::ReferralReceived {
                    first_contact_due_at: priority.first_contact_due(discharged_at),
                    referral_id,
                    person_ref,
                    facility,
                    discharged_at,
                    priority,
                    matching,
                };
                sink.write(event, self).await;
            }
            C::Accept { peer_id } => {
                if self.peer_id.as_deref() == Some(peer_id.as_str()) {
                    return Ok(());
                }
                self.allow(
                    &[Status::Received, Status::Accepted, Status::OnHold],
                    "accepted",
                )?;
                let facility = self.facility.clone();
                sink.write(E::ReferralAccepted { peer_id, facility }, self)
                    .await;
            }
            C::Waitlist { reason } => {
                if self.status == Status::Received {
                    sink.write(E::ReferralWaitlisted { reason }, self).await;
                }
            }
            C::StartFollowUp {
                contact_id,
                occurred_at,
            } => {
                // Only the first reach moves the referral; later ones change nothing here.
                if self.status == Status::Accepted {
                    let facility = self.facility.clone();
                    sink.write(
                        E::FollowUpStarted {
                            contact_id,
                            occurred_at,
                            facility,
                        },
                        self,
                    )
                    .await;
                }
            }
            C::Cancel { reason } => {
                if self.status == Status::Cancelled {
                    return Ok(());
                }
                if self.status.is_final() {
                    return Err(self.refuse("cancelled"));
                }
                let facility = self.facility.clone();
                sink.write(E::ReferralCancelled { reason, facility }, self)
                    .await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        use ReferralEvent as E;
        match event {
            E::ReferralReceived {
                referral_id,
                facility,
                discharged_at,
                priority,
                ..
            } => {
                self.referral_id = Some(referral_id);
                self.facility = facility;
                self.discharged_at = Some(discharged_at);
                self.priority = priority;
                self.status = Status::Received;
            }
            E::ReferralWaitlisted { .. } => {}
            E::ReferralAccepted { peer_id, .. } => {
                self.peer_id = Some(peer_id);
                self.status = Status::Accepted;
            }
            E::FollowUpStarted { .. } => self.status = Status::InProgress,
            E::ReferralCancelled { .. } => self.status = Status::Cancelled,
        }
    }
}

impl Referral {
    fn allow(&self, from: &[Status], wanted: &'static str) -> Result<(), ReferralError> {
        if from.contains(&self.status) {
            Ok(())
        } else {
            Err(self.refuse(wanted))
        }
    }

    fn refuse(&self, wanted: &'static str) -> ReferralError {
        ReferralError::NotAllowed {
            current: self.status.as_str(),
            wanted,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MatchingInputs;
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<Referral>;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn received() -> ReferralEvent {
        ReferralEvent::ReferralReceived {
            referral_id: "r1".into(),
            person_ref: "p1".into(),
            facility: "st-marys".into(),
            discharged_at: t("2026-11-20T15:30:00Z"),
            priority: Priority::Asap,
            first_contact_due_at: t("2026-11-21T15:30:00Z"),
            matching: MatchingInputs::default(),
        }
    }

    fn accepted() -> ReferralEvent {
        ReferralEvent::ReferralAccepted {
            peer_id: "peer-1".into(),
            facility: "st-marys".into(),
        }
    }

    #[tokio::test]
    async fn receiving_sets_the_first_contact_due_time_from_priority() {
        Given::with(())
            .given_no_previous_events()
            .when_async(ReferralCommand::Receive {
                referral_id: "r1".into(),
                person_ref: "p1".into(),
                facility: "st-marys".into(),
                discharged_at: t("2026-11-20T15:30:00Z"),
                priority: Priority::Asap,
                matching: MatchingInputs::default(),
            })
            .await
            .then_expect_events(vec![received()]);
    }

    #[tokio::test]
    async fn a_redelivered_submission_changes_nothing() {
        Given::with(())
            .given(vec![received()])
            .when_async(ReferralCommand::Receive {
                referral_id: "r1".into(),
                person_ref: "p1".into(),
                facility: "st-marys".into(),
                discharged_at: t("2026-11-20T15:30:00Z"),
                priority: Priority::Asap,
                matching: MatchingInputs::default(),
            })
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn a_peer_assignment_accepts_the_referral_once() {
        Given::with(())
            .given(vec![received()])
            .when_async(ReferralCommand::Accept {
                peer_id: "peer-1".into(),
            })
            .await
            .then_expect_events(vec![accepted()]);
        Given::with(())
            .given(vec![received(), accepted()])
            .when_async(ReferralCommand::Accept {
                peer_id: "peer-1".into(),
            })
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn the_first_reach_moves_an_accepted_referral_to_in_progress() {
        let started = ReferralEvent::FollowUpStarted {
            contact_id: "c1".into(),
            occurred_at: t("2026-11-21T16:00:00Z"),
            facility: "st-marys".into(),
        };
        Given::with(())
            .given(vec![received(), accepted()])
            .when_async(ReferralCommand::StartFollowUp {
                contact_id: "c1".into(),
                occurred_at: t("2026-11-21T16:00:00Z"),
            })
            .await
            .then_expect_events(vec![started.clone()]);
        Given::with(())
            .given(vec![received(), accepted(), started])
            .when_async(ReferralCommand::StartFollowUp {
                contact_id: "c2".into(),
                occurred_at: t("2026-11-22T16:00:00Z"),
            })
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn a_cancelled_referral_cannot_be_accepted() {
        Given::with(())
            .given(vec![
                received(),
                ReferralEvent::ReferralCancelled {
                    reason: "duplicate".into(),
                    facility: "st-marys".into(),
                },
            ])
            .when_async(ReferralCommand::Accept {
                peer_id: "peer-1".into(),
            })
            .await
            .then_expect_error(ReferralError::NotAllowed {
                current: "cancelled",
                wanted: "accepted",
            });
    }

    #[tokio::test]
    async fn commands_on_an_unknown_referral_are_refused() {
        Given::with(())
            .given_no_previous_events()
            .when_async(ReferralCommand::Cancel { reason: "x".into() })
            .await
            .then_expect_error(ReferralError::NotFound);
    }
}
