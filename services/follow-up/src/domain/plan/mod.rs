//! The FollowUpPlan aggregate: one per referral, from peer assignment on.
//!
//! Check-ins: the first contact (due by the referral's priority) and one per protocol
//! offset (default days 7, 14 and 30 after discharge), each met by a reached contact
//! in its window. Every attempt is kept; contacts entered late count at their
//! `occurred_at`, also after the plan closed. The plan closes as completed (every
//! check-in met, or the plan's end reached after the person was reached), failed
//! (never reached after N attempts over M days, or the plan's end reached without a
//! reach), or cancelled (the referral was).
//!
//! The rules live by concept: [`assignment`] (start, move to another peer, reopen),
//! [`contacts`] (attempts and check-ins met), [`documentation`] (billing, signing,
//! addenda), [`goals`] (the person's recovery goals), [`caring`] (caring contacts
//! after the plan completes), [`deadlines`] (overdue check-ins and the
//! plan's end), [`readmissions`] (pausing and resuming) and [`closing`]; this module
//! holds the state and routes each command to its rule.

mod assignment;
mod caring;
mod closing;
mod contacts;
mod deadlines;
mod documentation;
mod goals;
#[cfg(test)]
mod practice_tests;
mod readmissions;
#[cfg(test)]
mod tests;

pub use documentation::{Missing, missing};

use careloop_events::{ContactOutcome, PlanOutcome};
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};

use super::{
    Channel, CheckpointPlan, Documentation, FollowUpCommand, FollowUpEvent, GoalReviewKind,
};

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
    /// The peer who made the contact: the only one who may attest it.
    peer_id: String,
    channel: Channel,
    documentation: Documentation,
    /// Signed by a supervisor: the documentation is locked.
    signed: bool,
    addenda: Vec<String>,
}

/// One of the person's goals, as far as the rules need it (its words are sealed and
/// live in the events and the read model).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct Goal {
    goal_id: String,
    status: GoalReviewKind,
    /// The reviews recorded, so a retried one is recorded once.
    reviews: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct FollowUpPlan {
    pub state: PlanState,
    pub peer_id: String,
    pub discharged_at: Option<DateTime<Utc>>,
    pub ends_at: Option<DateTime<Utc>>,
    pub checkpoints: Vec<Checkpoint>,
    attempts: Vec<Attempt>,
    goals: Vec<Goal>,
    /// How the plan closed, while it is closed.
    outcome: Option<PlanOutcome>,
    caring: Option<caring::Series>,
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
    #[error("no contact {0} on this plan")]
    UnknownContact(String),
    #[error("the plan has no goal {0}")]
    UnknownGoal(String),
    /// The goal a review names (in its path) is not the plan's.
    #[error("the plan has no goal {0}")]
    GoalNotFound(String),
    #[error("{1}")]
    Invalid(&'static str, String),
    #[error("this contact is signed and locked: add an addendum instead")]
    ContactLocked,
    #[error("only a signed contact takes addenda: correct the contact itself until it is signed")]
    ContactNotSigned,
    #[error("the contact's billing documentation is incomplete")]
    Incomplete(Vec<Missing>),
    #[error("{0}")]
    Caring(&'static str),
}

/// Writes a plan's closing (used by the rules that close it).
fn closed(outcome: PlanOutcome, reason: impl Into<String>, reopenable: bool) -> FollowUpEvent {
    FollowUpEvent::FollowUpClosed {
        outcome,
        reason: reason.into(),
        reopenable,
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
        if self.state == PlanState::NotStarted {
            return self.before_start(command, sink).await;
        }
        match command {
            C::Start(start) => self.start_again(*start, sink).await,
            C::Unassign { peer_id } => self.unassign(peer_id, sink).await,
            C::RecordContact {
                contact,
                by_peer,
                now,
            } => self.record_contact(contact, by_peer, now, sink).await?,
            C::DocumentContact {
                contact_id,
                documentation,
                by_peer,
                now,
            } => {
                self.document_contact(contact_id, documentation, by_peer, now, sink)
                    .await?
            }
            C::SignContact {
                contact_id,
                signed_by,
                now,
            } => self.sign_contact(contact_id, signed_by, now, sink).await?,
            C::AddAddendum {
                contact_id,
                addendum_id,
                text,
                by_peer,
                added_by,
                now,
            } => {
                let addendum = documentation::Addendum {
                    addendum_id,
                    text,
                    added_by,
                    now,
                };
                self.add_addendum(contact_id, addendum, by_peer, sink)
                    .await?
            }
            C::SetGoal {
                goal_id,
                words,
                support_types,
                by_peer,
                now,
            } => {
                self.set_goal(goal_id, words, support_types, by_peer, now, sink)
                    .await?
            }
            C::ReviewGoal {
                goal_id,
                review_id,
                kind,
                words,
                note,
                by_peer,
                reviewed_by,
                now,
            } => {
                let review = goals::Review {
                    review_id,
                    kind,
                    words,
                    note,
                    reviewed_by,
                    now,
                };
                self.review_goal(goal_id, review, by_peer, sink).await?
            }
            C::StartCaringContacts {
                every,
                count,
                by_peer,
                now,
            } => self.start_caring(every, count, by_peer, now, sink).await?,
            C::StopCaringContacts {
                reason,
                by_peer,
                now,
            } => self.stop_caring(reason, by_peer, now, sink).await?,
            C::CheckDeadlines { now } => self.check_deadlines(now, sink).await,
            C::LinkReadmission {
                admission_id,
                admitted_at,
            } => self.link_readmission(admission_id, admitted_at, sink).await,
            C::UnlinkReadmission { admission_id } => {
                self.unlink_readmission(admission_id, sink).await
            }
            C::Resume { reason } => self.resume(reason, sink).await?,
            C::Close {
                outcome,
                reason,
                by_peer,
            } => self.close(outcome, reason, by_peer, sink).await?,
            C::Cancel { reason, reopenable } => self.cancel(reason, reopenable, sink).await,
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
            E::ContactRecorded { contact, peer_id } => self.attempts.push(Attempt {
                contact_id: contact.contact_id,
                occurred_at: contact.occurred_at,
                reached: contact.outcome == ContactOutcome::Reached,
                peer_id,
                channel: contact.channel,
                documentation: contact.documentation,
                signed: false,
                addenda: Vec::new(),
            }),
            E::ContactDocumented {
                contact_id,
                documentation,
            } => {
                if let Some(a) = self.attempt_mut(&contact_id) {
                    a.documentation = documentation;
                }
            }
            E::ContactSigned { contact_id, .. } => {
                if let Some(a) = self.attempt_mut(&contact_id) {
                    a.signed = true;
                }
            }
            E::ContactAddendumAdded {
                contact_id,
                addendum_id,
                ..
            } => {
                if let Some(a) = self.attempt_mut(&contact_id) {
                    a.addenda.push(addendum_id);
                }
            }
            E::GoalSet { goal_id, .. } => self.goals.push(Goal {
                goal_id,
                status: GoalReviewKind::Progress,
                reviews: Vec::new(),
            }),
            E::GoalReviewed {
                goal_id,
                kind,
                review_id,
                ..
            } => {
                if let Some(g) = self.goals.iter_mut().find(|g| g.goal_id == goal_id) {
                    g.reviews.push(review_id);
                    // A changed goal is worked on in its new words.
                    g.status = match kind {
                        GoalReviewKind::Changed => GoalReviewKind::Progress,
                        other => other,
                    };
                }
            }
            E::CheckpointMet {
                checkpoint,
                occurred_at,
                ..
            } => {
                if let Some(c) = self.checkpoint_mut(&checkpoint) {
                    c.met_at = Some(occurred_at);
                }
            }
            E::FollowUpOverdue { checkpoint, .. } => {
                if let Some(c) = self.checkpoint_mut(&checkpoint) {
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
            E::FollowUpClosed {
                reopenable,
                outcome,
                ..
            } => {
                self.state = PlanState::Closed;
                self.reopenable = reopenable;
                self.outcome = Some(outcome);
            }
            E::CaringContactsStarted { due, started_at } => {
                self.caring = Some(caring::Series {
                    made: vec![false; due.len()],
                    due,
                    started_at,
                    stopped: false,
                })
            }
            E::CaringContactMade { n, .. } => {
                if let Some(made) = self
                    .caring
                    .as_mut()
                    .and_then(|c| c.made.get_mut(n as usize - 1))
                {
                    *made = true;
                }
            }
            E::CaringContactsStopped { stopped_at, .. } => {
                // Stopped before any started: none ever will.
                let series = self.caring.get_or_insert_with(|| caring::Series {
                    due: Vec::new(),
                    made: Vec::new(),
                    started_at: stopped_at,
                    stopped: false,
                });
                series.stopped = true;
            }
            E::PlanReopened { peer_id, attempt } => {
                self.state = PlanState::Active;
                self.outcome = None;
                self.peer_id = peer_id;
                self.attempt = attempt;
                self.reopenable = false;
            }
            E::PlanUnassigned { .. } => self.peer_id = String::new(),
        }
    }
}

impl FollowUpPlan {
    fn attempt_mut(&mut self, contact_id: &str) -> Option<&mut Attempt> {
        self.attempts
            .iter_mut()
            .find(|a| a.contact_id == contact_id)
    }

    fn checkpoint_mut(&mut self, name: &str) -> Option<&mut Checkpoint> {
        self.checkpoints.iter_mut().find(|c| c.plan.name == name)
    }

    /// A peer acting on the plan must be the one holding it (`None`: a coordinator).
    fn check_peer(&self, by_peer: Option<&String>) -> Result<(), FollowUpError> {
        match by_peer {
            Some(p) if *p != self.peer_id => Err(FollowUpError::NotYourReferral),
            _ => Ok(()),
        }
    }
}
