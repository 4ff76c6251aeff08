//! Readmissions: an admission within the readmission window after the discharge
//! links to the plan and pauses an active one; a coordinator resumes it after the
//! next discharge; an admission the hospital cancels is unlinked, and resumes the
//! plan when it was the only thing pausing it.

use careloop_events::is_readmission;
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;

use super::{FollowUpError, FollowUpPlan, PlanState};
use crate::domain::FollowUpEvent;

impl FollowUpPlan {
    pub(super) async fn link_readmission(
        &mut self,
        admission_id: String,
        admitted_at: DateTime<Utc>,
        sink: &EventSink<Self>,
    ) {
        let in_window = self
            .discharged_at
            .is_some_and(|d| is_readmission(d, admitted_at));
        if in_window && !self.readmissions.contains(&admission_id) {
            let e = FollowUpEvent::ReadmissionLinked {
                admission_id,
                admitted_at,
                paused: self.state == PlanState::Active,
            };
            sink.write(e, self).await;
        }
    }

    pub(super) async fn unlink_readmission(
        &mut self,
        admission_id: String,
        sink: &EventSink<Self>,
    ) {
        if self.readmissions.contains(&admission_id) {
            let resumed = self.state == PlanState::Paused && self.readmissions.len() == 1;
            let e = FollowUpEvent::ReadmissionUnlinked {
                admission_id,
                resumed,
            };
            sink.write(e, self).await;
        }
    }

    pub(super) async fn resume(
        &mut self,
        reason: String,
        sink: &EventSink<Self>,
    ) -> Result<(), FollowUpError> {
        if self.state != PlanState::Paused {
            return Err(FollowUpError::NotAllowed(self.state, "resumed"));
        }
        sink.write(FollowUpEvent::PlanResumed { reason }, self)
            .await;
        Ok(())
    }
}
