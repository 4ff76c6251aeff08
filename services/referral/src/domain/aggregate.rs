//! The Referral aggregate: one discharge referred to peer support.

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};

use super::transitions::{self, Action};
use super::{DueKind, Priority, Received, ReferralCommand, ReferralEvent, RejectReason, Status};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Referral {
    pub received: Option<Received>,
    pub status: Status,
    pub status_before_hold: Option<Status>,
    pub peer_id: Option<String>,
    pub waitlisted: bool,
    pub attempt: u32,
    pub overdue: Vec<DueKind>,
    pub readmissions: Vec<String>,
    /// A reach that came before acceptance (or during a hold), not yet applied.
    pub pending_reach: Option<(String, DateTime<Utc>)>,
    pub reached: bool,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ReferralError {
    #[error("no such referral")]
    NotFound,
    #[error("cannot {action} a referral in status {current}")]
    NotAllowed {
        current: &'static str,
        action: &'static str,
    },
    #[error("a reject with code `other` needs a reason")]
    ReasonRequired,
    #[error(
        "sending a rejected referral back to matching is turned off (CARELOOP_REROUTE_AFTER_REJECT)"
    )]
    RerouteDisabled,
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
        let Some(received) = self.received.clone() else {
            if let C::Receive(r) = command {
                sink.write(E::ReferralReceived(*r), self).await;
                return Ok(());
            }
            return Err(ReferralError::NotFound);
        };
        let facility = received.facility.clone();
        let command_kind = match &command {
            C::Complete { .. } => Some(true),
            C::Fail { .. } => Some(false),
            _ => None,
        };
        match command {
            // Redelivery of ReferralSubmitted: already received, nothing to do.
            C::Receive(_) => {}
            C::Accept { peer_id, reason } => {
                if self.peer_id.as_deref() == Some(peer_id.as_str()) {
                    return Ok(());
                }
                if self.has_peer_status() {
                    let from = self.peer_id.clone();
                    let e = E::ReferralPeerChanged {
                        from,
                        to: Some(peer_id),
                        reason,
                    };
                    sink.write(e, self).await;
                    return Ok(());
                }
                self.check(Action::Accept)?;
                sink.write(E::ReferralAccepted { peer_id, facility }, self)
                    .await;
                self.start_pending_reach(sink).await;
            }
            C::Unassign { peer_id } => {
                if self.peer_id.as_deref() == Some(peer_id.as_str()) && self.has_peer_status() {
                    let e = E::ReferralPeerChanged {
                        from: Some(peer_id),
                        to: None,
                        reason: None,
                    };
                    sink.write(e, self).await;
                }
            }
            C::Waitlist { reason } => {
                let unassigned = self.status == Status::Received || self.peer_id.is_none();
                if unassigned && !self.status.is_final() && !self.waitlisted {
                    sink.write(E::ReferralWaitlisted { reason }, self).await;
                }
            }
            C::StartFollowUp {
                contact_id,
                occurred_at,
            } => {
                // Only the first reach moves the referral; later ones change nothing.
                // One that comes before acceptance, or during a hold, is kept for then.
                let early = matches!(self.status, Status::Received | Status::OnHold);
                if early && !self.reached && self.pending_reach.is_none() {
                    let e = E::FirstReachNoted {
                        contact_id,
                        occurred_at,
                    };
                    sink.write(e, self).await;
                    return Ok(());
                }
                if self.status == Status::Accepted {
                    let e = E::FollowUpStarted {
                        contact_id,
                        occurred_at,
                        facility,
                    };
                    sink.write(e, self).await;
                }
            }
            C::Reject { code, reason } => {
                self.check(Action::Reject)?;
                let reason = reason.filter(|r| !r.trim().is_empty());
                if code == RejectReason::Other && reason.is_none() {
                    return Err(ReferralError::ReasonRequired);
                }
                let e = E::ReferralRejected {
                    code,
                    reason,
                    facility,
                };
                sink.write(e, self).await;
            }
            C::Hold { reason } => {
                self.check(Action::Hold)?;
                let from = self.status;
                let e = E::ReferralHeld {
                    from,
                    reason,
                    facility,
                };
                sink.write(e, self).await;
            }
            C::Resume { reason } => {
                let to = self.check(Action::Resume)?;
                let e = E::ReferralResumed {
                    to,
                    reason,
                    facility,
                };
                sink.write(e, self).await;
                self.start_pending_reach(sink).await;
            }
            C::Cancel { reason } => {
                self.check(Action::Cancel)?;
                sink.write(E::ReferralCancelled { reason, facility }, self)
                    .await;
            }
            C::EnterInError { reason } => {
                self.check(Action::EnterInError)?;
                let from = self.status;
                let e = E::ReferralEnteredInError {
                    from,
                    reason,
                    facility,
                };
                sink.write(e, self).await;
            }
            C::Reroute { reason, allowed } => {
                self.check(Action::Reroute)?;
                if !allowed {
                    return Err(ReferralError::RerouteDisabled);
                }
                let e = E::ReferralRerouted {
                    attempt: self.attempt + 1,
                    reason,
                    referral: received,
                };
                sink.write(e, self).await;
            }
            C::Complete { reason } | C::Fail { reason } => {
                let complete = matches!(command_kind, Some(true));
                let from = self.status;
                if complete {
                    self.check(Action::Complete)?;
                    let e = E::ReferralCompleted {
                        from,
                        reason,
                        facility,
                    };
                    sink.write(e, self).await;
                } else {
                    self.check(Action::Fail)?;
                    let e = E::ReferralFailed {
                        from,
                        reason,
                        facility,
                    };
                    sink.write(e, self).await;
                }
            }
            C::NoteReadmission {
                admission_id,
                admitted_at,
            } => {
                if !self.readmissions.contains(&admission_id) {
                    let e = E::ReadmissionNoted {
                        admission_id,
                        admitted_at,
                    };
                    sink.write(e, self).await;
                }
            }
            C::CancelReadmission { admission_id } => {
                if self.readmissions.contains(&admission_id) {
                    sink.write(E::ReadmissionCancelled { admission_id }, self)
                        .await;
                }
            }
            C::MarkOverdue { kind, now } => {
                if self.overdue.contains(&kind) {
                    return Ok(());
                }
                let due_at = match kind {
                    DueKind::Acceptance => received.acceptance_due_at,
                    DueKind::FirstContact => received.first_contact_due_at,
                };
                let unmet = kind.open_in().contains(&self.status);
                if unmet && now >= due_at {
                    let e = E::ReferralOverdue {
                        kind,
                        due_at,
                        facility,
                    };
                    sink.write(e, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        use ReferralEvent as E;
        if let Some(status) = event.new_status() {
            self.status = status;
        }
        match event {
            E::ReferralReceived(r) => {
                self.received = Some(r);
                self.attempt = 1;
            }
            E::ReferralWaitlisted { .. } => self.waitlisted = true,
            E::ReferralAccepted { peer_id, .. } => {
                self.peer_id = Some(peer_id);
                self.waitlisted = false;
            }
            E::ReferralHeld { from, .. } => self.status_before_hold = Some(from),
            E::ReferralResumed { .. } => self.status_before_hold = None,
            E::ReferralRerouted { attempt, .. } => {
                self.attempt = attempt;
                self.peer_id = None;
                self.waitlisted = false;
            }
            E::ReferralOverdue { kind, .. } => self.overdue.push(kind),
            E::ReadmissionNoted { admission_id, .. } => self.readmissions.push(admission_id),
            E::ReadmissionCancelled { admission_id } => {
                self.readmissions.retain(|a| *a != admission_id)
            }
            E::FirstReachNoted {
                contact_id,
                occurred_at,
            } => self.pending_reach = Some((contact_id, occurred_at)),
            E::FollowUpStarted { .. } => {
                self.reached = true;
                self.pending_reach = None;
            }
            E::ReferralPeerChanged { to, .. } => {
                self.waitlisted = false;
                self.peer_id = to;
            }
            E::ReferralCompleted { .. }
            | E::ReferralFailed { .. }
            | E::ReferralRejected { .. }
            | E::ReferralCancelled { .. }
            | E::ReferralEnteredInError { .. } => {}
        }
    }
}

impl Referral {
    /// The status `action` leads to, or the refusal naming the current status.
    fn check(&self, action: Action) -> Result<Status, ReferralError> {
        transitions::next(action, self.status, self.status_before_hold).ok_or(
            ReferralError::NotAllowed {
                current: self.status.as_str(),
                action: transitions::transition(action).name,
            },
        )
    }

    /// Applies a reach kept from before acceptance, once the referral is accepted.
    async fn start_pending_reach(&mut self, sink: &EventSink<Self>) {
        if self.status != Status::Accepted {
            return;
        }
        if let Some((contact_id, occurred_at)) = self.pending_reach.clone() {
            let facility = self
                .received
                .as_ref()
                .map(|r| r.facility.clone())
                .unwrap_or_default();
            let e = ReferralEvent::FollowUpStarted {
                contact_id,
                occurred_at,
                facility,
            };
            sink.write(e, self).await;
        }
    }

    /// Statuses in which the referral is held by a peer (so a new peer is a change).
    fn has_peer_status(&self) -> bool {
        matches!(
            self.status,
            Status::Accepted | Status::InProgress | Status::OnHold
        )
    }

    pub fn priority(&self) -> Priority {
        self.received
            .as_ref()
            .map(|r| r.priority)
            .unwrap_or_default()
    }

    pub fn discharged_at(&self) -> Option<DateTime<Utc>> {
        self.received.as_ref().map(|r| r.discharged_at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::MatchingInputs;
    use crate::domain::transitions::TRANSITIONS;
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<Referral>;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn received_data() -> Received {
        Received {
            referral_id: "r1".into(),
            person_ref: "p1".into(),
            facility: "st-marys".into(),
            discharged_at: t("2026-11-20T15:30:00Z"),
            priority: Priority::Asap,
            acceptance_due_at: t("2026-11-20T19:30:00Z"),
            first_contact_due_at: t("2026-11-21T15:30:00Z"),
            matching: MatchingInputs::default(),
        }
    }

    fn received() -> ReferralEvent {
        ReferralEvent::ReferralReceived(received_data())
    }

    fn accepted() -> ReferralEvent {
        ReferralEvent::ReferralAccepted {
            peer_id: "peer-1".into(),
            facility: "st-marys".into(),
        }
    }

    fn started() -> ReferralEvent {
        ReferralEvent::FollowUpStarted {
            contact_id: "c1".into(),
            occurred_at: t("2026-11-21T16:00:00Z"),
            facility: "st-marys".into(),
        }
    }

    fn f() -> String {
        "st-marys".into()
    }

    /// Events that bring a referral to `status` (None: not reachable yet).
    fn history(status: Status) -> Option<Vec<ReferralEvent>> {
        use ReferralEvent as E;
        Some(match status {
            Status::Received => vec![received()],
            Status::Accepted => vec![received(), accepted()],
            Status::InProgress => vec![received(), accepted(), started()],
            Status::OnHold => vec![
                received(),
                accepted(),
                E::ReferralHeld {
                    from: Status::Accepted,
                    reason: "x".into(),
                    facility: f(),
                },
            ],
            Status::Rejected => vec![
                received(),
                E::ReferralRejected {
                    code: RejectReason::OutOfArea,
                    reason: None,
                    facility: f(),
                },
            ],
            Status::Cancelled => vec![
                received(),
                E::ReferralCancelled {
                    reason: "x".into(),
                    facility: f(),
                },
            ],
            Status::EnteredInError => vec![
                received(),
                E::ReferralEnteredInError {
                    from: Status::Received,
                    reason: "x".into(),
                    facility: f(),
                },
            ],
            Status::Completed => vec![
                received(),
                accepted(),
                started(),
                E::ReferralCompleted {
                    from: Status::InProgress,
                    reason: "x".into(),
                    facility: f(),
                },
            ],
            Status::Failed => vec![
                received(),
                accepted(),
                E::ReferralFailed {
                    from: Status::Accepted,
                    reason: "x".into(),
                    facility: f(),
                },
            ],
            Status::Requested => return None,
        })
    }

    fn command(action: Action) -> Option<ReferralCommand> {
        use ReferralCommand as C;
        Some(match action {
            Action::Reject => C::Reject {
                code: RejectReason::NoCapacity,
                reason: None,
            },
            Action::Hold => C::Hold { reason: "r".into() },
            Action::Resume => C::Resume { reason: "r".into() },
            Action::Cancel => C::Cancel { reason: "r".into() },
            Action::EnterInError => C::EnterInError { reason: "r".into() },
            Action::Reroute => C::Reroute {
                reason: "r".into(),
                allowed: true,
            },
            Action::Complete => C::Complete { reason: "r".into() },
            Action::Fail => C::Fail { reason: "r".into() },
            // Receive and StartFollowUp are idempotent no-ops where not allowed; an
            // Accept by another peer of a referral that has one is a reassignment
            // (tested below).
            Action::Receive | Action::StartFollowUp | Action::Accept => return None,
        })
    }

    /// Every allowed transition emits one event leading to the table's status; every
    /// refused one answers NotAllowed naming the current status.
    #[tokio::test]
    async fn every_allowed_and_every_refused_transition() {
        let statuses = [
            Status::Received,
            Status::Accepted,
            Status::InProgress,
            Status::OnHold,
            Status::Rejected,
            Status::Cancelled,
            Status::EnteredInError,
            Status::Completed,
            Status::Failed,
        ];
        let mut checked = 0;
        for status in statuses {
            for t in TRANSITIONS {
                let Some(cmd) = command(t.action) else {
                    continue;
                };
                let given = history(status).unwrap();
                let expected = transitions::next(t.action, status, Some(Status::Accepted));
                let result = Given::with(())
                    .given(given.clone())
                    .when_async(cmd)
                    .await
                    .inspect_result();
                match (expected, result) {
                    (Some(to), Ok(events)) => {
                        assert_eq!(events.len(), 1, "{} from {}", t.name, status.as_str());
                        let mut r = Referral::default();
                        for e in given.into_iter().chain(events) {
                            r.apply(e);
                        }
                        assert_eq!(r.status, to, "{} from {}", t.name, status.as_str());
                    }
                    (None, Err(e)) => assert_eq!(
                        e,
                        ReferralError::NotAllowed {
                            current: status.as_str(),
                            action: t.name,
                        }
                    ),
                    (expected, got) => panic!(
                        "{} from {}: expected {expected:?}, got {got:?}",
                        t.name,
                        status.as_str()
                    ),
                }
                checked += 1;
            }
        }
        assert_eq!(checked, statuses.len() * 8);
    }

    #[tokio::test]
    async fn another_peer_taking_over_changes_the_peer_not_the_status() {
        Given::with(())
            .given(vec![received(), accepted(), started()])
            .when_async(ReferralCommand::Accept {
                peer_id: "peer-2".into(),
                reason: None,
            })
            .await
            .then_expect_events(vec![ReferralEvent::ReferralPeerChanged {
                from: Some("peer-1".into()),
                to: Some("peer-2".into()),
                reason: None,
            }]);
        Given::with(())
            .given(history(Status::Cancelled).unwrap())
            .when_async(ReferralCommand::Accept {
                peer_id: "peer-2".into(),
                reason: None,
            })
            .await
            .then_expect_error(ReferralError::NotAllowed {
                current: "cancelled",
                action: "accept",
            });
    }

    #[tokio::test]
    async fn a_reach_before_acceptance_applies_when_the_referral_is_accepted() {
        let noted = ReferralEvent::FirstReachNoted {
            contact_id: "c1".into(),
            occurred_at: t("2026-11-21T16:00:00Z"),
        };
        Given::with(())
            .given(vec![received()])
            .when_async(ReferralCommand::StartFollowUp {
                contact_id: "c1".into(),
                occurred_at: t("2026-11-21T16:00:00Z"),
            })
            .await
            .then_expect_events(vec![noted.clone()]);
        Given::with(())
            .given(vec![received(), noted])
            .when_async(ReferralCommand::Accept {
                peer_id: "peer-1".into(),
                reason: None,
            })
            .await
            .then_expect_events(vec![accepted(), started()]);
    }

    #[tokio::test]
    async fn resume_returns_to_the_status_before_hold() {
        Given::with(())
            .given(history(Status::OnHold).unwrap())
            .when_async(ReferralCommand::Resume {
                reason: "back".into(),
            })
            .await
            .then_expect_events(vec![ReferralEvent::ReferralResumed {
                to: Status::Accepted,
                reason: "back".into(),
                facility: f(),
            }]);
    }

    #[tokio::test]
    async fn a_reject_with_other_needs_a_reason() {
        Given::with(())
            .given(vec![received()])
            .when_async(ReferralCommand::Reject {
                code: RejectReason::Other,
                reason: Some("  ".into()),
            })
            .await
            .then_expect_error(ReferralError::ReasonRequired);
    }

    #[tokio::test]
    async fn reroute_needs_the_configuration() {
        Given::with(())
            .given(history(Status::Rejected).unwrap())
            .when_async(ReferralCommand::Reroute {
                reason: "r".into(),
                allowed: false,
            })
            .await
            .then_expect_error(ReferralError::RerouteDisabled);
    }

    #[tokio::test]
    async fn a_redelivered_submission_changes_nothing() {
        Given::with(())
            .given(vec![received()])
            .when_async(ReferralCommand::Receive(Box::new(received_data())))
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn the_same_peer_assignment_twice_accepts_once() {
        Given::with(())
            .given(vec![received(), accepted()])
            .when_async(ReferralCommand::Accept {
                peer_id: "peer-1".into(),
                reason: None,
            })
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn the_first_reach_moves_an_accepted_referral_to_in_progress_once() {
        Given::with(())
            .given(vec![received(), accepted()])
            .when_async(ReferralCommand::StartFollowUp {
                contact_id: "c1".into(),
                occurred_at: t("2026-11-21T16:00:00Z"),
            })
            .await
            .then_expect_events(vec![started()]);
        Given::with(())
            .given(vec![received(), accepted(), started()])
            .when_async(ReferralCommand::StartFollowUp {
                contact_id: "c2".into(),
                occurred_at: t("2026-11-22T16:00:00Z"),
            })
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn overdue_is_marked_once_at_its_exact_due_time() {
        let overdue = ReferralEvent::ReferralOverdue {
            kind: DueKind::Acceptance,
            due_at: t("2026-11-20T19:30:00Z"),
            facility: f(),
        };
        Given::with(())
            .given(vec![received()])
            .when_async(ReferralCommand::MarkOverdue {
                kind: DueKind::Acceptance,
                now: t("2026-11-20T19:29:59Z"),
            })
            .await
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![received()])
            .when_async(ReferralCommand::MarkOverdue {
                kind: DueKind::Acceptance,
                now: t("2026-11-20T19:30:00Z"),
            })
            .await
            .then_expect_events(vec![overdue.clone()]);
        Given::with(())
            .given(vec![received(), overdue])
            .when_async(ReferralCommand::MarkOverdue {
                kind: DueKind::Acceptance,
                now: t("2026-11-25T00:00:00Z"),
            })
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn an_accepted_referral_is_not_overdue_for_acceptance() {
        Given::with(())
            .given(vec![received(), accepted()])
            .when_async(ReferralCommand::MarkOverdue {
                kind: DueKind::Acceptance,
                now: t("2026-11-25T00:00:00Z"),
            })
            .await
            .then_expect_events(vec![]);
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
