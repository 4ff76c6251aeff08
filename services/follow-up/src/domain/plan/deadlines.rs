//! Deadlines, as of the check's `now`: a check-in not met by its due time is overdue
//! once, and a plan past its end closes (completed if the person was reached, failed
//! if not). A paused or closed plan has no deadlines.

use careloop_events::PlanOutcome;
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;

use super::{FollowUpPlan, PlanState, closed};
use crate::domain::FollowUpEvent;

impl FollowUpPlan {
    pub(super) async fn check_deadlines(&mut self, now: DateTime<Utc>, sink: &EventSink<Self>) {
        if self.state != PlanState::Active {
            return;
        }
        let due: Vec<(String, DateTime<Utc>)> = self
            .checkpoints
            .iter()
            .filter(|c| c.met_at.is_none() && !c.overdue && now > c.plan.due_at)
            .map(|c| (c.plan.name.clone(), c.plan.due_at))
            .collect();
        for (checkpoint, due_at) in due {
            sink.write(FollowUpEvent::FollowUpOverdue { checkpoint, due_at }, self)
                .await;
        }
        if self.ends_at.is_some_and(|end| now >= end) {
            let e = if self.reached() {
                closed(PlanOutcome::Completed, "the plan's time ended", false)
            } else {
                closed(
                    PlanOutcome::Failed,
                    "the plan's time ended without a reach",
                    false,
                )
            };
            sink.write(e, self).await;
        }
    }
}
