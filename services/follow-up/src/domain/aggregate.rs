//! The FollowUpPlan aggregate: one per referral, from peer assignment on.
//!
//! Check-ins: the first contact (due by the referral's priority) and one per protocol
//! offset (default days 7, 14 and 30 after discharge), each met by a reached contact
//! in its window. Every attempt is kept; contacts entered late count at their
//! `occurred_at`, also after the plan closed. The plan closes as completed (every
//! check-in met, or the plan's end reached after the person was reached), failed
//! (never reached after N attempts over M days, or the plan's end reached without a
//! reach), or cancelled (the referral was).

use chrono::{DateTime, Duration, Utc};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};

use super::{CheckpointPlan, CloseOutcome, FollowUpCommand, FollowUpEvent, Outcome};
use careloop_web::Problem;

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum PlanState {
    #[default]
    NotStarted,
    Active,
    /// The person was readmitted: deadlines wait until the plan resumes.
    Paused,
    Closed,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Checkpoint {
    pub plan: CheckpointPlan,
    pub met_at: Option<DateTime<Utc>>,
    pub overdue: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Attempt {
    contact_id: String,
    occurred_at: DateTime<Utc>,
    reached: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FollowUpPlan {
    pub state: PlanState,
    pub peer_id: String,
    pub discharged_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    pub checkpoints: Vec<Checkpoint>,
    attempts: Vec<Attempt>,
    readmissions: Vec<String>,
    failed_after_attempts: u32,
    failed_after_secs: i64,
    /// The routing attempt the plan serves.
    attempt: u32,
    /// Closed because the referral was rejected: a newer attempt reopens it.
    reopenable: bool,
}

pub const FIRST_CONTACT: &str = "first_contact";

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
    #[error("the plan is {0:?}; it cannot be {1}")]
    NotAllowed(PlanState, &'static str),
}

impl From<FollowUpError> for Problem {
    fn from(e: FollowUpError) -> Problem {
        match &e {
            FollowUpError::NoPlan => Problem::conflict(e.to_string()),
            FollowUpError::ContactBeforeDischarge(_) | FollowUpError::ContactInFuture => {
                Problem::invalid("occurred_at", e.to_string())
            }
            FollowUpError::NotYourReferral => Problem::forbidden(e.to_string()),
            FollowUpError::NotAllowed(state, _) => {
                Problem::conflict(e.to_string()).with_extension("plan_state", state)
            }
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
        use FollowUpCommand as C;
        use FollowUpEvent as E;
        if self.state == PlanState::NotStarted {
            return match command {
                C::Start {
                    peer_id,
                    person_ref,
                    facility,
                    priority,
                    discharged_at,
                    first_contact_due_at,
                    protocol,
                    attempt,
                } => {
                    let e = plan_started(
                        peer_id,
                        person_ref,
                        facility,
                        priority,
                        discharged_at,
                        first_contact_due_at,
                        &protocol,
                        attempt,
                    );
                    sink.write(e, self).await;
                    Ok(())
                }
                // The referral closed before any peer took it (the events came through
                // different consumers): a late assignment must not start a plan.
                C::Cancel { reason, reopenable } => {
                    let e = E::FollowUpClosed {
                        outcome: CloseOutcome::Cancelled,
                        reason,
                        reopenable,
                    };
                    sink.write(e, self).await;
                    Ok(())
                }
                _ => Err(FollowUpError::NoPlan),
            };
        }
        match command {
            C::Start {
                peer_id,
                person_ref,
                facility,
                priority,
                discharged_at,
                first_contact_due_at,
                protocol,
                attempt,
            } => {
                if self.state == PlanState::Closed {
                    // A rejected referral rerouted and assigned again: the plan goes
                    // on (or starts, if it was rejected before any peer took it);
                    // anything else closed stays closed.
                    if self.reopenable && attempt > self.attempt {
                        let e = if self.discharged_at.is_none() {
                            plan_started(
                                peer_id,
                                person_ref,
                                facility,
                                priority,
                                discharged_at,
                                first_contact_due_at,
                                &protocol,
                                attempt,
                            )
                        } else {
                            E::PlanReopened { peer_id, attempt }
                        };
                        sink.write(e, self).await;
                    }
                    return Ok(());
                }
                // Redelivered PeerAssigned: nothing. A new peer: the plan moves with
                // its history.
                if peer_id != self.peer_id {
                    let from_peer = self.peer_id.clone();
                    let e = E::PlanReassigned {
                        from_peer,
                        to_peer: peer_id,
                    };
                    sink.write(e, self).await;
                }
            }
            C::RecordContact {
                contact,
                by_peer,
                now,
            } => {
                if self.discharged_at.is_none() {
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
                if self
                    .attempts
                    .iter()
                    .any(|a| a.contact_id == contact.contact_id)
                {
                    return Ok(());
                }
                let reached = contact.outcome == Outcome::Reached;
                let (contact_id, at) = (contact.contact_id.clone(), contact.occurred_at);
                let peer_id = self.peer_id.clone();
                sink.write(E::ContactRecorded { peer_id, contact }, self)
                    .await;
                if reached {
                    for name in self.checkpoints_met_by(at) {
                        let e = E::CheckpointMet {
                            checkpoint: name,
                            contact_id: contact_id.clone(),
                            occurred_at: at,
                        };
                        sink.write(e, self).await;
                    }
                }
                if self.state == PlanState::Active {
                    if self.checkpoints.iter().all(|c| c.met_at.is_some()) {
                        let e = E::FollowUpClosed {
                            outcome: CloseOutcome::Completed,
                            reason: "every check-in met".into(),
                            reopenable: false,
                        };
                        sink.write(e, self).await;
                    } else if let Some(reason) = self.lost_to_follow_up() {
                        let e = E::FollowUpClosed {
                            outcome: CloseOutcome::Failed,
                            reason,
                            reopenable: false,
                        };
                        sink.write(e, self).await;
                    }
                }
            }
            C::CheckDeadlines { now } => {
                if self.state != PlanState::Active {
                    return Ok(());
                }
                let due: Vec<(String, DateTime<Utc>)> = self
                    .checkpoints
                    .iter()
                    .filter(|c| c.met_at.is_none() && !c.overdue && now > c.plan.due_at)
                    .map(|c| (c.plan.name.clone(), c.plan.due_at))
                    .collect();
                for (checkpoint, due_at) in due {
                    sink.write(E::FollowUpOverdue { checkpoint, due_at }, self)
                        .await;
                }
                if self.ends_at.is_some_and(|end| now >= end) {
                    let reached = self.attempts.iter().any(|a| a.reached);
                    let (outcome, reason) = if reached {
                        (CloseOutcome::Completed, "the plan's time ended")
                    } else {
                        (
                            CloseOutcome::Failed,
                            "the plan's time ended without a reach",
                        )
                    };
                    let e = E::FollowUpClosed {
                        outcome,
                        reason: reason.into(),
                        reopenable: false,
                    };
                    sink.write(e, self).await;
                }
            }
            C::LinkReadmission {
                admission_id,
                admitted_at,
            } => {
                let discharged_at = self.discharged_at.unwrap_or_default();
                let in_window = admitted_at > discharged_at
                    && admitted_at <= discharged_at + Duration::days(30);
                if in_window && !self.readmissions.contains(&admission_id) {
                    let e = E::ReadmissionLinked {
                        admission_id,
                        admitted_at,
                        paused: self.state == PlanState::Active,
                    };
                    sink.write(e, self).await;
                }
            }
            C::UnlinkReadmission { admission_id } => {
                if self.readmissions.contains(&admission_id) {
                    let resumed = self.state == PlanState::Paused && self.readmissions.len() == 1;
                    let e = E::ReadmissionUnlinked {
                        admission_id,
                        resumed,
                    };
                    sink.write(e, self).await;
                }
            }
            C::Resume { reason } => {
                if self.state != PlanState::Paused {
                    return Err(FollowUpError::NotAllowed(self.state, "resumed"));
                }
                sink.write(E::PlanResumed { reason }, self).await;
            }
            C::Close {
                outcome,
                reason,
                by_peer,
            } => {
                if by_peer.as_ref().is_some_and(|p| *p != self.peer_id) {
                    return Err(FollowUpError::NotYourReferral);
                }
                if self.state == PlanState::Closed {
                    return Err(FollowUpError::NotAllowed(self.state, "closed"));
                }
                let e = E::FollowUpClosed {
                    outcome,
                    reason,
                    reopenable: false,
                };
                sink.write(e, self).await;
            }
            C::Cancel { reason, reopenable } => {
                if self.state != PlanState::Closed {
                    let e = E::FollowUpClosed {
                        outcome: CloseOutcome::Cancelled,
                        reason,
                        reopenable,
                    };
                    sink.write(e, self).await;
                }
            }
            C::Unassign { peer_id } => {
                // A closed plan keeps its peer: they may still back-enter contacts.
                let open = self.state != PlanState::Closed;
                if open && self.peer_id == peer_id && !peer_id.is_empty() {
                    sink.write(E::PlanUnassigned { peer_id }, self).await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        use FollowUpEvent as E;
        match event {
            E::PlanStarted {
                peer_id,
                discharged_at,
                ends_at,
                checkpoints,
                failed_after_attempts,
                failed_after_secs,
                attempt,
                ..
            } => {
                self.state = PlanState::Active;
                self.peer_id = peer_id;
                self.discharged_at = Some(discharged_at);
                self.ends_at = Some(ends_at);
                self.checkpoints = checkpoints
                    .into_iter()
                    .map(|plan| Checkpoint {
                        plan,
                        met_at: None,
                        overdue: false,
                    })
                    .collect();
                self.failed_after_attempts = failed_after_attempts;
                self.failed_after_secs = failed_after_secs;
                self.attempt = attempt;
                self.reopenable = false;
            }
            E::PlanReassigned { to_peer, .. } => self.peer_id = to_peer,
            E::ContactRecorded { contact, .. } => self.attempts.push(Attempt {
                contact_id: contact.contact_id,
                occurred_at: contact.occurred_at,
                reached: contact.outcome == Outcome::Reached,
            }),
            E::CheckpointMet {
                checkpoint,
                occurred_at,
                ..
            } => {
                if let Some(c) = self
                    .checkpoints
                    .iter_mut()
                    .find(|c| c.plan.name == checkpoint)
                {
                    c.met_at = Some(occurred_at);
                }
            }
            E::FollowUpOverdue { checkpoint, .. } => {
                if let Some(c) = self
                    .checkpoints
                    .iter_mut()
                    .find(|c| c.plan.name == checkpoint)
                {
                    c.overdue = true;
                }
            }
            E::ReadmissionLinked {
                admission_id,
                paused,
                ..
            } => {
                self.readmissions.push(admission_id);
                if paused {
                    self.state = PlanState::Paused;
                }
            }
            E::PlanResumed { .. } => self.state = PlanState::Active,
            E::ReadmissionUnlinked {
                admission_id,
                resumed,
            } => {
                self.readmissions.retain(|a| *a != admission_id);
                if resumed {
                    self.state = PlanState::Active;
                }
            }
            E::FollowUpClosed { reopenable, .. } => {
                self.state = PlanState::Closed;
                self.reopenable = reopenable;
            }
            E::PlanReopened { peer_id, attempt } => {
                self.state = PlanState::Active;
                self.peer_id = peer_id;
                self.attempt = attempt;
                self.reopenable = false;
            }
            E::PlanUnassigned { .. } => self.peer_id = String::new(),
        }
    }
}

/// The plan a new assignment starts, from the protocol.
#[allow(clippy::too_many_arguments)]
fn plan_started(
    peer_id: String,
    person_ref: String,
    facility: String,
    priority: String,
    discharged_at: DateTime<Utc>,
    first_contact_due_at: DateTime<Utc>,
    protocol: &super::Protocol,
    attempt: u32,
) -> FollowUpEvent {
    let mut checkpoints = vec![CheckpointPlan {
        name: FIRST_CONTACT.into(),
        window_start: discharged_at,
        due_at: first_contact_due_at,
    }];
    let mut window_start = discharged_at;
    for offset in &protocol.checkins {
        let due_at = discharged_at + *offset;
        checkpoints.push(CheckpointPlan {
            name: format!("day_{}", offset.num_days()),
            window_start,
            due_at,
        });
        window_start = due_at;
    }
    FollowUpEvent::PlanStarted {
        peer_id,
        person_ref,
        facility,
        priority,
        discharged_at,
        ends_at: discharged_at + protocol.ends_after,
        checkpoints,
        failed_after_attempts: protocol.failed_after_attempts,
        failed_after_secs: protocol.failed_after.num_seconds(),
        attempt,
    }
}

impl FollowUpPlan {
    /// The check-ins a reach at `at` meets: the first contact if not met yet, and the
    /// unmet check-in whose window `(window_start, due_at]` contains `at`.
    fn checkpoints_met_by(&self, at: DateTime<Utc>) -> Vec<String> {
        self.checkpoints
            .iter()
            .filter(|c| c.met_at.is_none())
            .filter(|c| {
                c.plan.name == FIRST_CONTACT || (c.plan.window_start < at && at <= c.plan.due_at)
            })
            .map(|c| c.plan.name.clone())
            .collect()
    }

    /// Never reached after the protocol's number of attempts over its span of time.
    fn lost_to_follow_up(&self) -> Option<String> {
        if self.attempts.iter().any(|a| a.reached) {
            return None;
        }
        let n = self.attempts.len() as u32;
        let first = self.attempts.iter().map(|a| a.occurred_at).min()?;
        let last = self.attempts.iter().map(|a| a.occurred_at).max()?;
        let span = Duration::seconds(self.failed_after_secs);
        (n >= self.failed_after_attempts && last - first >= span).then(|| {
            format!(
                "not reached after {n} attempts over {} days",
                (last - first).num_days()
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Channel, Contact, Protocol, SupportType};
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<FollowUpPlan>;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    const DISCHARGED: &str = "2026-11-01T12:00:00Z";

    fn protocol() -> Protocol {
        Protocol {
            checkins: vec![Duration::days(7), Duration::days(14), Duration::days(30)],
            ends_after: Duration::days(30),
            failed_after_attempts: 3,
            failed_after: Duration::days(5),
        }
    }

    fn start() -> FollowUpCommand {
        FollowUpCommand::Start {
            peer_id: "peer-1".into(),
            person_ref: "p1".into(),
            facility: "st-marys".into(),
            priority: "asap".into(),
            discharged_at: t(DISCHARGED),
            first_contact_due_at: t("2026-11-02T12:00:00Z"),
            protocol: protocol(),
            attempt: 1,
        }
    }

    /// The events of a started plan, produced by the aggregate itself.
    async fn started() -> Vec<FollowUpEvent> {
        Given::with(())
            .given_no_previous_events()
            .when_async(start())
            .await
            .inspect_result()
            .unwrap()
    }

    fn contact(id: &str, at: &str, outcome: Outcome) -> Contact {
        Contact {
            contact_id: id.into(),
            occurred_at: t(at),
            channel: Channel::Phone,
            outcome,
            support_types: vec![SupportType::Emotional],
            duration_minutes: None,
            notes: None,
        }
    }

    fn record(c: Contact) -> FollowUpCommand {
        FollowUpCommand::RecordContact {
            contact: c,
            by_peer: None,
            now: t("2026-12-31T00:00:00Z"),
        }
    }

    fn names(events: &[FollowUpEvent]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                FollowUpEvent::CheckpointMet { checkpoint, .. } => format!("met {checkpoint}"),
                FollowUpEvent::FollowUpOverdue { checkpoint, .. } => {
                    format!("overdue {checkpoint}")
                }
                FollowUpEvent::FollowUpClosed { outcome, .. } => format!("closed {outcome:?}"),
                other => cqrs_es::DomainEvent::event_type(other),
            })
            .collect()
    }

    async fn when(given: Vec<FollowUpEvent>, cmd: FollowUpCommand) -> Vec<FollowUpEvent> {
        Given::with(())
            .given(given)
            .when_async(cmd)
            .await
            .inspect_result()
            .unwrap()
    }

    #[tokio::test]
    async fn the_plan_follows_the_protocol() {
        let events = started().await;
        let FollowUpEvent::PlanStarted {
            checkpoints,
            ends_at,
            ..
        } = &events[0]
        else {
            panic!("{events:?}")
        };
        let plan: Vec<(&str, &str, &str)> = vec![
            ("first_contact", DISCHARGED, "2026-11-02T12:00:00Z"),
            ("day_7", DISCHARGED, "2026-11-08T12:00:00Z"),
            ("day_14", "2026-11-08T12:00:00Z", "2026-11-15T12:00:00Z"),
            ("day_30", "2026-11-15T12:00:00Z", "2026-12-01T12:00:00Z"),
        ];
        for (c, (name, start, due)) in checkpoints.iter().zip(plan) {
            assert_eq!(
                (c.name.as_str(), c.window_start, c.due_at),
                (name, t(start), t(due))
            );
        }
        assert_eq!(*ends_at, t("2026-12-01T12:00:00Z"));
    }

    /// Windows are (start, due]: a reach exactly at day 7 meets day 7; one second
    /// later it meets day 14.
    #[tokio::test]
    async fn windows_hold_at_their_exact_edges() {
        let given = started().await;
        let at_edge = when(
            given.clone(),
            record(contact("c1", "2026-11-08T12:00:00Z", Outcome::Reached)),
        )
        .await;
        assert_eq!(
            names(&at_edge),
            ["ContactRecorded", "met first_contact", "met day_7"]
        );
        let after = when(
            given,
            record(contact("c1", "2026-11-08T12:00:01Z", Outcome::Reached)),
        )
        .await;
        assert_eq!(
            names(&after),
            ["ContactRecorded", "met first_contact", "met day_14"]
        );
    }

    #[tokio::test]
    async fn an_unreached_attempt_meets_nothing() {
        let given = started().await;
        let e = when(
            given,
            record(contact("c1", "2026-11-02T09:00:00Z", Outcome::NoAnswer)),
        )
        .await;
        assert_eq!(names(&e), ["ContactRecorded"]);
    }

    #[tokio::test]
    async fn overdue_fires_once_just_after_the_due_time() {
        let given = started().await;
        let at_due = FollowUpCommand::CheckDeadlines {
            now: t("2026-11-02T12:00:00Z"),
        };
        assert!(when(given.clone(), at_due).await.is_empty());
        let after = FollowUpCommand::CheckDeadlines {
            now: t("2026-11-02T12:00:01Z"),
        };
        let e = when(given.clone(), after.clone()).await;
        assert_eq!(names(&e), ["overdue first_contact"]);
        let mut again = given;
        again.extend(e);
        assert!(when(again, after).await.is_empty(), "exactly once");
    }

    #[tokio::test]
    async fn meeting_every_check_in_completes_the_plan() {
        let mut given = started().await;
        for (id, at) in [
            ("c1", "2026-11-03T12:00:00Z"),
            ("c2", "2026-11-10T12:00:00Z"),
        ] {
            given.extend(when(given.clone(), record(contact(id, at, Outcome::Reached))).await);
        }
        let e = when(
            given,
            record(contact("c3", "2026-11-20T12:00:00Z", Outcome::Reached)),
        )
        .await;
        assert_eq!(
            names(&e),
            ["ContactRecorded", "met day_30", "closed Completed"]
        );
    }

    #[tokio::test]
    async fn unreachable_after_n_attempts_over_m_days_fails_the_plan() {
        let mut given = started().await;
        for (id, at) in [
            ("a1", "2026-11-02T12:00:00Z"),
            ("a2", "2026-11-04T12:00:00Z"),
        ] {
            given.extend(when(given.clone(), record(contact(id, at, Outcome::NoAnswer))).await);
        }
        // The third attempt, but only 4 days after the first: not yet.
        let early = when(
            given.clone(),
            record(contact("a3", "2026-11-06T11:59:59Z", Outcome::Unreachable)),
        )
        .await;
        assert_eq!(names(&early), ["ContactRecorded"]);
        let on_time = when(
            given,
            record(contact("a3", "2026-11-07T12:00:00Z", Outcome::Unreachable)),
        )
        .await;
        assert_eq!(names(&on_time), ["ContactRecorded", "closed Failed"]);
    }

    /// Back-entry: a contact recorded after the plan closed still counts at its
    /// occurred_at, and does not reopen or close anything.
    #[tokio::test]
    async fn a_contact_entered_after_closing_counts_at_its_time() {
        let mut given = started().await;
        given.extend(
            when(
                given.clone(),
                FollowUpCommand::Cancel {
                    reason: "referral cancelled".into(),
                    reopenable: false,
                },
            )
            .await,
        );
        let e = when(
            given,
            record(contact("late", "2026-11-05T12:00:00Z", Outcome::Reached)),
        )
        .await;
        assert_eq!(
            names(&e),
            ["ContactRecorded", "met first_contact", "met day_7"]
        );
    }

    #[tokio::test]
    async fn a_readmission_pauses_deadlines_until_resumed() {
        let mut given = started().await;
        let link = FollowUpCommand::LinkReadmission {
            admission_id: "adm-1".into(),
            admitted_at: t("2026-11-05T00:00:00Z"),
        };
        let linked = when(given.clone(), link.clone()).await;
        assert_eq!(names(&linked), ["ReadmissionLinked"]);
        given.extend(linked);
        assert!(when(given.clone(), link).await.is_empty(), "linked once");
        let late = FollowUpCommand::CheckDeadlines {
            now: t("2026-11-20T00:00:00Z"),
        };
        assert!(when(given.clone(), late.clone()).await.is_empty(), "paused");
        given.extend(
            when(
                given.clone(),
                FollowUpCommand::Resume {
                    reason: "discharged".into(),
                },
            )
            .await,
        );
        assert_eq!(
            names(&when(given, late).await),
            ["overdue first_contact", "overdue day_7", "overdue day_14"]
        );
    }

    #[tokio::test]
    async fn a_cancelled_admission_unpauses_the_plan() {
        let mut given = started().await;
        given.extend(
            when(
                given.clone(),
                FollowUpCommand::LinkReadmission {
                    admission_id: "adm-1".into(),
                    admitted_at: t("2026-11-05T00:00:00Z"),
                },
            )
            .await,
        );
        let e = when(
            given.clone(),
            FollowUpCommand::UnlinkReadmission {
                admission_id: "adm-1".into(),
            },
        )
        .await;
        assert_eq!(
            e,
            [FollowUpEvent::ReadmissionUnlinked {
                admission_id: "adm-1".into(),
                resumed: true
            }]
        );
        let unknown = FollowUpCommand::UnlinkReadmission {
            admission_id: "other".into(),
        };
        assert!(when(given, unknown).await.is_empty());
    }

    #[tokio::test]
    async fn an_admission_after_thirty_days_is_not_a_readmission() {
        let given = started().await;
        let link = FollowUpCommand::LinkReadmission {
            admission_id: "adm-2".into(),
            admitted_at: t("2026-12-01T12:00:01Z"),
        };
        assert!(when(given, link).await.is_empty());
    }

    #[tokio::test]
    async fn the_plan_ends_at_day_thirty() {
        let mut given = started().await;
        given.extend(
            when(
                given.clone(),
                record(contact("c1", "2026-11-03T12:00:00Z", Outcome::Reached)),
            )
            .await,
        );
        let end = FollowUpCommand::CheckDeadlines {
            now: t("2026-12-01T12:00:00Z"),
        };
        let e = when(given, end).await;
        assert_eq!(names(&e), ["overdue day_14", "closed Completed"]);
    }

    #[tokio::test]
    async fn a_new_peer_takes_the_plan_with_its_history() {
        let given = started().await;
        let mut reassign = start();
        if let FollowUpCommand::Start { peer_id, .. } = &mut reassign {
            *peer_id = "peer-2".into();
        }
        let e = when(given.clone(), reassign).await;
        assert_eq!(
            e,
            [FollowUpEvent::PlanReassigned {
                from_peer: "peer-1".into(),
                to_peer: "peer-2".into()
            }]
        );
        assert!(
            when(given, start()).await.is_empty(),
            "a redelivery changes nothing"
        );
    }

    #[tokio::test]
    async fn a_cancel_before_the_plan_keeps_a_late_assignment_from_starting_it() {
        let closed = when(
            vec![],
            FollowUpCommand::Cancel {
                reason: "referral cancelled".into(),
                reopenable: false,
            },
        )
        .await;
        assert_eq!(names(&closed), ["closed Cancelled"]);
        assert!(when(closed, start()).await.is_empty());
    }

    #[tokio::test]
    async fn a_rerouted_referral_reopens_its_plan_for_the_new_peer() {
        let mut given = started().await;
        given.extend(
            when(
                given.clone(),
                FollowUpCommand::Cancel {
                    reason: "referral rejected".into(),
                    reopenable: true,
                },
            )
            .await,
        );
        let mut again = start();
        if let FollowUpCommand::Start {
            peer_id, attempt, ..
        } = &mut again
        {
            *peer_id = "peer-2".into();
            *attempt = 2;
        }
        let e = when(given.clone(), again).await;
        assert_eq!(
            e,
            [FollowUpEvent::PlanReopened {
                peer_id: "peer-2".into(),
                attempt: 2
            }]
        );
        assert!(
            when(given, start()).await.is_empty(),
            "the same attempt does not"
        );
    }

    #[tokio::test]
    async fn a_peer_who_gave_the_referral_back_cannot_record_on_it() {
        let mut given = started().await;
        given.extend(
            when(
                given.clone(),
                FollowUpCommand::Unassign {
                    peer_id: "peer-1".into(),
                },
            )
            .await,
        );
        Given::with(())
            .given(given)
            .when_async(FollowUpCommand::RecordContact {
                contact: contact("c", "2026-11-02T00:00:00Z", Outcome::Reached),
                by_peer: Some("peer-1".into()),
                now: t("2026-11-03T00:00:00Z"),
            })
            .await
            .then_expect_error(FollowUpError::NotYourReferral);
    }

    #[tokio::test]
    async fn contact_rules() {
        let given = started().await;
        let before = FollowUpCommand::RecordContact {
            contact: contact("c", "2026-11-01T11:59:59Z", Outcome::Reached),
            by_peer: None,
            now: t("2026-11-03T00:00:00Z"),
        };
        Given::with(())
            .given(given.clone())
            .when_async(before)
            .await
            .then_expect_error(FollowUpError::ContactBeforeDischarge(t(DISCHARGED)));
        let future = FollowUpCommand::RecordContact {
            contact: contact("c", "2026-11-04T00:00:00Z", Outcome::Reached),
            by_peer: None,
            now: t("2026-11-03T00:00:00Z"),
        };
        Given::with(())
            .given(given.clone())
            .when_async(future)
            .await
            .then_expect_error(FollowUpError::ContactInFuture);
        let other_peer = FollowUpCommand::RecordContact {
            contact: contact("c", "2026-11-02T00:00:00Z", Outcome::Reached),
            by_peer: Some("peer-2".into()),
            now: t("2026-11-03T00:00:00Z"),
        };
        Given::with(())
            .given(given)
            .when_async(other_peer)
            .await
            .then_expect_error(FollowUpError::NotYourReferral);
        Given::with(())
            .given_no_previous_events()
            .when_async(record(contact(
                "c",
                "2026-11-02T00:00:00Z",
                Outcome::Reached,
            )))
            .await
            .then_expect_error(FollowUpError::NoPlan);
    }
}
