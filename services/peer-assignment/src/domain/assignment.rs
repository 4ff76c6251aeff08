//! The Assignment of one referral to a peer.
//!
//! Assigning touches two aggregates (this one and the Peer), so the steps are
//! recorded: first the proposed peer, then the peer's slot is reserved, then the
//! assignment is confirmed. If the process dies between steps, the redelivered event
//! resumes with the proposed peer (reserving is idempotent per referral), so no slot
//! is ever taken twice or leaked. Every peer who held the referral stays in the
//! history (continuity: the next referral of the same person prefers them).

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use careloop_events::{MatchingInputs, Priority};

/// What matching needs to know about the referral (no PHI).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentRequest {
    pub person_ref: String,
    pub facility: String,
    pub priority: Priority,
    pub discharged_at: DateTime<Utc>,
    pub first_contact_due_at: DateTime<Utc>,
    /// Stored flat in the event, as before the inputs had a type of their own.
    #[serde(flatten)]
    pub matching: MatchingInputs,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Assignment {
    pub request: Option<AssignmentRequest>,
    /// Which routing of the referral this is (a rerouted referral starts over).
    pub attempt: u32,
    pub proposed: Option<String>,
    pub assigned: Option<String>,
    /// Peers who had no room when proposed (tried again after a rematch).
    pub declined_by: Vec<String>,
    /// Peers who gave the referral back themselves: not proposed again in this
    /// attempt, even after a rematch.
    #[serde(default)]
    pub refused_by: Vec<String>,
    pub waitlisted: bool,
    /// The referral is closed (cancelled, rejected, entered in error): no matching.
    pub released: bool,
    /// The peer whose slot the last release, hand-back or reassignment gave back.
    pub released_peer: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AssignmentCommand {
    /// Matching is asked for (attempt 1), or asked again after a reroute (2, 3, ...).
    /// `propose`: the best candidate, ranked before the request, proposed with it
    /// when matching starts (a first request), so the proposal costs no command of
    /// its own. A reopened attempt ignores it: the previous peer's slot is given back
    /// before anyone is proposed.
    Request {
        request: Box<AssignmentRequest>,
        attempt: u32,
        propose: Option<String>,
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
    /// Capacity freed up: a waitlisted referral is matched again.
    Rematch,
    /// The assigned peer declined (`exclude`: not to be proposed again) or went on
    /// leave (proposed again once back): back to matching.
    HandBack {
        reason: String,
        exclude: bool,
    },
    /// A coordinator moves the referral to `to_peer` (whose slot is already held).
    Override {
        to_peer: String,
        reason: String,
    },
    /// The referral closed: give the peer's slot back and stop matching.
    Release {
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
        #[serde(default)]
        attempt: u32,
    },
    ProposalDeclined {
        peer_id: String,
        reason: String,
    },
    AssignmentWaitlisted {
        reason: String,
    },
    AssignmentRematching,
    AssignmentHandedBack {
        peer_id: String,
        reason: String,
        #[serde(default)]
        excluded: bool,
    },
    PeerReassigned {
        from_peer: String,
        to_peer: String,
        reason: String,
        request: AssignmentRequest,
        #[serde(default)]
        attempt: u32,
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
            AssignmentEvent::AssignmentRematching => "AssignmentRematching",
            AssignmentEvent::AssignmentHandedBack { .. } => "AssignmentHandedBack",
            AssignmentEvent::PeerReassigned { .. } => "PeerReassigned",
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
    #[error("the referral has no assigned peer")]
    NotAssigned,
    #[error("the referral is closed")]
    Closed,
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
        if let C::Request {
            request,
            attempt,
            propose,
        } = command
        {
            if self.request.is_none() {
                sink.write(E::AssignmentRequested(*request), self).await;
                if let Some(peer_id) = propose {
                    sink.write(E::PeerProposed { peer_id }, self).await;
                }
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
        if self.released {
            return match command {
                C::Override { .. } | C::HandBack { .. } => Err(AssignmentError::Closed),
                _ => Ok(()),
            };
        }
        match command {
            C::Request { .. } | C::Release { .. } => {}
            C::HandBack { reason, exclude } => {
                let Some(peer_id) = self.assigned.clone() else {
                    return Err(AssignmentError::NotAssigned);
                };
                let e = E::AssignmentHandedBack {
                    peer_id,
                    reason,
                    excluded: exclude,
                };
                sink.write(e, self).await;
            }
            C::Override { to_peer, reason } => {
                let Some(from_peer) = self.assigned.clone() else {
                    return Err(AssignmentError::NotAssigned);
                };
                if from_peer != to_peer {
                    let e = E::PeerReassigned {
                        from_peer,
                        to_peer,
                        reason,
                        request,
                        attempt: self.attempt,
                    };
                    sink.write(e, self).await;
                }
            }
            _ if self.assigned.is_some() => {}
            C::Propose { peer_id } => {
                if self.proposed.is_none() {
                    sink.write(E::PeerProposed { peer_id }, self).await;
                }
            }
            C::Confirm { peer_id } => {
                if self.proposed.as_deref() != Some(peer_id.as_str()) {
                    return Err(AssignmentError::NotProposed(peer_id));
                }
                let attempt = self.attempt;
                let e = E::PeerAssigned {
                    peer_id,
                    request,
                    attempt,
                };
                sink.write(e, self).await;
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
            C::Rematch => {
                if self.waitlisted {
                    sink.write(E::AssignmentRematching, self).await;
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
                self.proposed = None;
                self.waitlisted = false;
            }
            E::ProposalDeclined { peer_id, .. } => {
                self.proposed = None;
                self.declined_by.push(peer_id);
            }
            E::AssignmentWaitlisted { .. } => self.waitlisted = true,
            E::AssignmentRematching => {
                self.waitlisted = false;
                self.declined_by.clear();
            }
            E::AssignmentHandedBack {
                peer_id, excluded, ..
            } => {
                self.assigned = None;
                self.proposed = None;
                if excluded {
                    self.refused_by.push(peer_id.clone());
                }
                self.released_peer = Some(peer_id);
            }
            E::PeerReassigned {
                from_peer, to_peer, ..
            } => {
                self.assigned = Some(to_peer);
                self.released_peer = Some(from_peer);
            }
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
            priority: Priority::Asap,
            discharged_at: "2026-11-20T15:30:00Z".parse().unwrap(),
            first_contact_due_at: "2026-11-21T15:30:00Z".parse().unwrap(),
            matching: MatchingInputs {
                language: "en".into(),
                ..Default::default()
            },
        }
    }

    /// Requests stored before the matching inputs had a type of their own (flat, with
    /// the priority as a string) still read the same.
    #[test]
    fn a_request_stored_flat_reads_into_the_typed_request() {
        let stored = serde_json::json!({
            "person_ref": "p1", "facility": "st-marys", "priority": "asap",
            "discharged_at": "2026-11-20T15:30:00Z",
            "first_contact_due_at": "2026-11-21T15:30:00Z",
            "language": "en", "preferred_peer_gender": null,
            "lived_experience": [], "needs": [], "contact_modes": [], "region": null
        });
        let read: AssignmentRequest = serde_json::from_value(stored.clone()).unwrap();
        assert_eq!(read, request());
        assert_eq!(serde_json::to_value(&read).unwrap(), stored);
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
                attempt: 1,
            },
        ]
    }

    /// A first request carries the best candidate: requested and proposed in one
    /// command (one commit), ready for the slot reservation.
    #[tokio::test]
    async fn a_first_request_proposes_its_best_candidate() {
        let ask = AssignmentCommand::Request {
            request: Box::new(request()),
            attempt: 1,
            propose: Some("a".into()),
        };
        Given::with(())
            .given_no_previous_events()
            .when_async(ask.clone())
            .await
            .then_expect_events(assigned("a")[..2].to_vec());
        // Redelivered once matching went on: nothing is requested or proposed again.
        Given::with(())
            .given(assigned("a"))
            .when_async(ask)
            .await
            .then_expect_events(vec![]);
    }

    /// Nobody to propose: only the request is recorded (the saga then waitlists).
    #[tokio::test]
    async fn a_first_request_without_a_candidate_only_requests() {
        Given::with(())
            .given_no_previous_events()
            .when_async(AssignmentCommand::Request {
                request: Box::new(request()),
                attempt: 1,
                propose: None,
            })
            .await
            .then_expect_events(vec![AssignmentEvent::AssignmentRequested(request())]);
    }

    #[tokio::test]
    async fn only_the_proposed_peer_can_be_confirmed() {
        Given::with(())
            .given(assigned("a")[..2].to_vec())
            .when_async(AssignmentCommand::Confirm {
                peer_id: "b".into(),
            })
            .await
            .then_expect_error(AssignmentError::NotProposed("b".into()));
    }

    #[tokio::test]
    async fn confirming_the_proposed_peer_assigns_it() {
        Given::with(())
            .given(assigned("a")[..2].to_vec())
            .when_async(AssignmentCommand::Confirm {
                peer_id: "a".into(),
            })
            .await
            .then_expect_events(vec![assigned("a")[2].clone()]);
    }

    #[tokio::test]
    async fn an_assigned_referral_ignores_later_matching_steps() {
        Given::with(())
            .given(assigned("a"))
            .when_async(AssignmentCommand::Waitlist { reason: "x".into() })
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn a_reroute_reopens_matching_and_gives_the_slot_back() {
        let reopened = AssignmentEvent::AssignmentReopened {
            attempt: 2,
            released_peer: Some("a".into()),
        };
        // A reopened attempt proposes nobody yet, whatever was ranked: the previous
        // peer's slot is given back first.
        let again = AssignmentCommand::Request {
            request: Box::new(request()),
            attempt: 2,
            propose: Some("b".into()),
        };
        Given::with(())
            .given(assigned("a"))
            .when_async(again.clone())
            .await
            .then_expect_events(vec![reopened.clone()]);
        let mut after = assigned("a");
        after.push(reopened);
        Given::with(())
            .given(after)
            .when_async(again)
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
    async fn a_hand_back_excludes_the_peer_from_the_next_match() {
        let mut given = assigned("a");
        given.push(AssignmentEvent::AssignmentHandedBack {
            peer_id: "a".into(),
            reason: "conflict of interest".into(),
            excluded: true,
        });
        let mut a = Assignment::default();
        for e in given.clone() {
            a.apply(e);
        }
        assert_eq!(a.assigned, None);
        assert_eq!(a.refused_by, ["a"]);
        assert_eq!(a.released_peer.as_deref(), Some("a"));
        Given::with(())
            .given(given)
            .when_async(AssignmentCommand::Propose {
                peer_id: "b".into(),
            })
            .await
            .then_expect_events(vec![AssignmentEvent::PeerProposed {
                peer_id: "b".into(),
            }]);
    }

    #[tokio::test]
    async fn only_a_waitlisted_referral_is_rematched() {
        let mut waiting = assigned("a")[..1].to_vec();
        waiting.push(AssignmentEvent::AssignmentWaitlisted {
            reason: "full".into(),
        });
        Given::with(())
            .given(waiting)
            .when_async(AssignmentCommand::Rematch)
            .await
            .then_expect_events(vec![AssignmentEvent::AssignmentRematching]);
        Given::with(())
            .given(assigned("a"))
            .when_async(AssignmentCommand::Rematch)
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn an_override_moves_the_referral_and_frees_the_old_peer() {
        Given::with(())
            .given(assigned("a"))
            .when_async(AssignmentCommand::Override {
                to_peer: "b".into(),
                reason: "continuity".into(),
            })
            .await
            .then_expect_events(vec![AssignmentEvent::PeerReassigned {
                from_peer: "a".into(),
                to_peer: "b".into(),
                reason: "continuity".into(),
                request: request(),
                attempt: 1,
            }]);
    }
}
