//! Closing: the peer (or a coordinator) closes the plan with an outcome; the plan is
//! cancelled with its referral (and may be reopened when a rejected referral is
//! rerouted).

use careloop_events::PlanOutcome;
use cqrs_es::event_sink::EventSink;

use super::{FollowUpError, FollowUpPlan, PlanState, closed};

impl FollowUpPlan {
    pub(super) async fn close(
        &mut self,
        outcome: PlanOutcome,
        reason: String,
        by_peer: Option<String>,
        sink: &EventSink<Self>,
    ) -> Result<(), FollowUpError> {
        self.check_peer(by_peer.as_ref())?;
        if self.state == PlanState::Closed {
            return Err(FollowUpError::NotAllowed(self.state, "closed"));
        }
        sink.write(closed(outcome, reason, false), self).await;
        Ok(())
    }

    /// The referral was cancelled, rejected (`reopenable`) or entered in error.
    pub(super) async fn cancel(
        &mut self,
        reason: String,
        reopenable: bool,
        sink: &EventSink<Self>,
    ) {
        if self.state != PlanState::Closed {
            sink.write(closed(PlanOutcome::Cancelled, reason, reopenable), self)
                .await;
        }
    }
}
