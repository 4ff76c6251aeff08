//! Contact attempts: every attempt is kept, a reached contact meets the check-ins
//! whose windows hold it (the first contact whenever it happens), and a plan whose
//! check-ins are all met completes, or whose person was never reached after the
//! protocol's attempts fails.

use careloop_events::{ContactOutcome, PlanOutcome};
use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;

use super::{FIRST_CONTACT, FollowUpError, FollowUpPlan, PlanState, closed};
use crate::domain::{Contact, FollowUpEvent};

impl FollowUpPlan {
    pub(super) async fn record_contact(
        &mut self,
        mut contact: Contact,
        by_peer: Option<String>,
        now: DateTime<Utc>,
        sink: &EventSink<Self>,
    ) -> Result<(), FollowUpError> {
        let Some(discharged_at) = self.discharged_at else {
            return Err(FollowUpError::NoPlan);
        };
        self.check_peer(by_peer.as_ref())?;
        if contact.occurred_at > now {
            return Err(FollowUpError::ContactInFuture);
        }
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
        self.check_goals(&contact.goal_ids)?;
        contact.documentation = super::documentation::completed(
            contact.occurred_at,
            contact.channel,
            contact.documentation,
            now,
        )?;
        let reached = contact.outcome == ContactOutcome::Reached;
        let (contact_id, at) = (contact.contact_id.clone(), contact.occurred_at);
        let peer_id = self.peer_id.clone();
        sink.write(FollowUpEvent::ContactRecorded { peer_id, contact }, self)
            .await;
        self.caring_contact_made(&contact_id, at, sink).await;
        if reached {
            for name in self.checkpoints_met_by(at) {
                let e = FollowUpEvent::CheckpointMet {
                    checkpoint: name,
                    contact_id: contact_id.clone(),
                    occurred_at: at,
                };
                sink.write(e, self).await;
            }
        }
        if self.state == PlanState::Active {
            if self.checkpoints.iter().all(|c| c.met_at.is_some()) {
                sink.write(
                    closed(PlanOutcome::Completed, "every check-in met", false),
                    self,
                )
                .await;
            } else if let Some(reason) = self.lost_to_follow_up() {
                sink.write(closed(PlanOutcome::Failed, reason, false), self)
                    .await;
            }
        }
        Ok(())
    }

    /// Whether the person was ever reached.
    pub(super) fn reached(&self) -> bool {
        self.attempts.iter().any(|a| a.reached)
    }

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
        if self.reached() {
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
