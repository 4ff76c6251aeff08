//! The Assignment of one referral to a peer.
//!
//! Assigning touches two aggregates (this one and the Peer), so the steps are
//! recorded: first the proposed peer, then the peer's slot is reserved, then the
//! assignment is confirmed. If the process dies between steps, the redelivered
//! ReferralReceived resumes with the proposed peer (reserving is idempotent per
//! referral), so no slot is ever taken twice or leaked.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use careloop_web::Problem;

/// What matching needs to know about the referral (no PHI).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentRequest {
    pub person_ref: String,
    pub facility: String,
    pub priority: String,
    pub discharged_at: DateTime<Utc>,
    pub first_contact_due_at: DateTime<Utc>,
    pub language: String,
    pub preferred_peer_gender: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Assignment {
    pub request: Option<AssignmentRequest>,
    /// Which routing of the referral this is (a rerouted referral starts over).
    pub attempt: u32,
    pub proposed: Option<String>,
    pub assigned: Option<String>,
    pub declined_by: Vec<String>,
    pub waitlisted: bool,
    /// The referral is closed (cancelled, rejected, entered in error): no matching.
    pub released: bool,
    /// The peer whose slot the last release or reopening gave back.
    pub released_peer: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AssignmentCommand {
    /// Matching is asked for (attempt 1), or asked again after a reroute (2, 3, ...).
    Request {
        request: AssignmentRequest,
        attempt: u32,
    },
    /// The referral closed: give the peer's slot back and stop matching.
    Release {
        reason: String,
    },
    Propose {
        peer_id: String,
    },
    /// The proposed peer's slot is reserved.
    Confirm {
        peer_id: String,
    },
    /// The proposed peer had no room after all.
    Decline {
        peer_id: String,
        reason: String,
    },
    Waitlist {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AssignmentEvent {
    AssignmentRequested(AssignmentRequest),
    /// A rerouted referral starts matching over; `released_peer` gets its slot back.
    AssignmentReopened {
        attempt: u32,
        released_peer: Option<String>,
    },
    AssignmentReleased {
        peer_id: Option<String>,
        reason: String,
    },
    PeerProposed {
        peer_id: String,
    },
    PeerAssigned {
        peer_id: String,
        request: AssignmentRequest,
    },
    ProposalDeclined {
        peer_id: String,
        reason: String,
    },
    AssignmentWaitlisted {
        reason: String,
    },
}

impl DomainEvent for AssignmentEvent {
    fn event_type(&self) -> String {
        match self {
            AssignmentEvent::AssignmentRequested(_) => "AssignmentRequested",
            AssignmentEvent::AssignmentReopened { .. } => "AssignmentReopened",
            AssignmentEvent::AssignmentReleased { .. } => "AssignmentReleased",
            AssignmentEvent::PeerProposed { .. } => "PeerProposed",
            AssignmentEvent::PeerAssigned { .. } => "PeerAssigned",
            AssignmentEvent::ProposalDeclined { .. } => "ProposalDeclined",
            AssignmentEvent::AssignmentWaitlisted { .. } => "AssignmentWaitlisted",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AssignmentError {
    #[error("no assignment was requested for this referral")]
    NotRequested,
    #[error("peer {0} is not the proposed peer")]
    NotProposed(String),
}

impl From<AssignmentError> for Problem {
    fn from(e: AssignmentError) -> Problem {
        Problem::conflict(e.to_string())
    }
}

impl Aggregate for Assignment {
    const TYPE: &'static str = "Assignment";
    type Command = AssignmentCommand;
    type Event = AssignmentEvent;
    type Error = AssignmentError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        use AssignmentCommand as C;
        use AssignmentEvent as E;
        if let C::Request { request, attempt } = command {
            if self.request.is_none() {
                sink.write(E::AssignmentRequested(request), self).await;
            } else if attempt > self.attempt {
                let released_peer = self.assigned.clone().or(self.proposed.clone());
                let e = E::AssignmentReopened {
                    attempt,
                    released_peer,
                };
                sink.write(e, self).await;
            }
            return Ok(());
        }
        let Some(request) = self.request.clone() else {
            return Err(AssignmentError::NotRequested);
        };
        if let C::Release { reason } = command {
            if !self.released {
                let peer_id = self.assigned.clone().or(self.proposed.clone());
                sink.write(E::AssignmentReleased { peer_id, reason }, self)
                    .await;
            }
            return Ok(());
        }
        if self.assigned.is_some() || self.released {
            return Ok(());
        }
        match command {
            C::Request { .. } | C::Release { .. } => {}
            C::Propose { peer_id } => {
                if self.proposed.is_none() {
                    sink.write(E::PeerProposed { peer_id }, self).await;
                }
            }
            C::Confirm { peer_id } => {
                if self.proposed.as_deref() != Some(peer_id.as_str()) {
                    return Err(AssignmentError::NotProposed(peer_id));
                }
                sink.write(E::PeerAssigned { peer_id, request }, self).await;
            }
            C::Decline { peer_id, reason } => {
                if self.proposed.as_deref() == Some(peer_id.as_str()) {
                    sink.write(E::ProposalDeclined { peer_id, reason }, self)
                        .await;
                }
            }
            C::Waitlist { reason } => {
                if !self.waitlisted && self.proposed.is_none() {
                    sink.write(E::AssignmentWaitlisted { reason }, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        use AssignmentEvent as E;
        match event {
            E::AssignmentRequested(r) => {
                self.request = Some(r);
                self.attempt = 1;
            }
            E::AssignmentReopened {
                attempt,
                released_peer,
            } => {
                *self = Assignment {
                    request: self.request.take(),
                    attempt,
                    released_peer,
                    ..Default::default()
                };
            }
            E::AssignmentReleased { peer_id, .. } => {
                self.released = true;
                self.released_peer = peer_id;
                self.assigned = None;
                self.proposed = None;
            }
            E::PeerProposed { peer_id } => self.proposed = Some(peer_id),
            E::PeerAssigned { peer_id, .. } => {
                self.assigned = Some(peer_id);
                self.waitlisted = false;
            }
            E::ProposalDeclined { peer_id, .. } => {
                self.proposed = None;
                self.declined_by.push(peer_id);
            }
            E::AssignmentWaitlisted { .. } => self.waitlisted = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<Assignment>;

    fn request() -> AssignmentRequest {
        AssignmentRequest {
            person_ref: "p1".into(),
            facility: "st-marys".into(),
            priority: "asap".into(),
            discharged_at: "2026-11-20T15:30:00Z".parse().unwrap(),
            first_contact_due_at: "2026-11-21T15:30:00Z".parse().unwrap(),
            language: "en".into(),
            preferred_peer_gender: None,
        }
    }

    fn assigned(peer: &str) -> Vec<AssignmentEvent> {
        vec![
            AssignmentEvent::AssignmentRequested(request()),
            AssignmentEvent::PeerProposed {
                peer_id: peer.into(),
            },
            AssignmentEvent::PeerAssigned {
                peer_id: peer.into(),
                request: request(),
            },
        ]
    }

    #[tokio::test]
    async fn a_reroute_reopens_matching_and_gives_the_slot_back() {
        Given::with(())
            .given(assigned("a"))
            .when_async(AssignmentCommand::Request {
                request: request(),
                attempt: 2,
            })
            .await
            .then_expect_events(vec![AssignmentEvent::AssignmentReopened {
                attempt: 2,
                released_peer: Some("a".into()),
            }]);
        // The same attempt again (a redelivery) changes nothing.
        let mut reopened = assigned("a");
        reopened.push(AssignmentEvent::AssignmentReopened {
            attempt: 2,
            released_peer: Some("a".into()),
        });
        Given::with(())
            .given(reopened)
            .when_async(AssignmentCommand::Request {
                request: request(),
                attempt: 2,
            })
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn closing_the_referral_releases_the_peer_once() {
        let released = AssignmentEvent::AssignmentReleased {
            peer_id: Some("a".into()),
            reason: "cancelled".into(),
        };
        Given::with(())
            .given(assigned("a"))
            .when_async(AssignmentCommand::Release {
                reason: "cancelled".into(),
            })
            .await
            .then_expect_events(vec![released.clone()]);
        let mut after = assigned("a");
        after.push(released);
        Given::with(())
            .given(after)
            .when_async(AssignmentCommand::Release {
                reason: "cancelled".into(),
            })
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn only_the_proposed_peer_can_be_confirmed() {
        Given::with(())
            .given(vec![
                AssignmentEvent::AssignmentRequested(request()),
                AssignmentEvent::PeerProposed {
                    peer_id: "a".into(),
                },
            ])
            .when_async(AssignmentCommand::Confirm {
                peer_id: "b".into(),
            })
            .await
            .then_expect_error(AssignmentError::NotProposed("b".into()));
    }

    #[tokio::test]
    async fn confirming_the_proposed_peer_assigns_it() {
        Given::with(())
            .given(vec![
                AssignmentEvent::AssignmentRequested(request()),
                AssignmentEvent::PeerProposed {
                    peer_id: "a".into(),
                },
            ])
            .when_async(AssignmentCommand::Confirm {
                peer_id: "a".into(),
            })
            .await
            .then_expect_events(vec![AssignmentEvent::PeerAssigned {
                peer_id: "a".into(),
                request: request(),
            }]);
    }

    #[tokio::test]
    async fn an_assigned_referral_ignores_later_steps() {
        Given::with(())
            .given(vec![
                AssignmentEvent::AssignmentRequested(request()),
                AssignmentEvent::PeerProposed {
                    peer_id: "a".into(),
                },
                AssignmentEvent::PeerAssigned {
                    peer_id: "a".into(),
                    request: request(),
                },
            ])
            .when_async(AssignmentCommand::Waitlist { reason: "x".into() })
            .await
            .then_expect_events(vec![]);
    }
}
