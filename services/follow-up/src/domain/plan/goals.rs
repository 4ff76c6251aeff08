//! The person's recovery goals: named by the person, in their own words ("keep my
//! housing"), with the kinds of support that serve each; contacts say which goals
//! they worked on; reviews record progress, a goal met, changed in new words, or set
//! aside. The words and notes are sealed before they reach the plan.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;

use super::{FollowUpError, FollowUpPlan};
use crate::domain::{FollowUpEvent, GoalReviewKind, SupportType};

/// A review as the command gives it.
pub(super) struct Review {
    pub review_id: String,
    pub kind: GoalReviewKind,
    pub words: Option<String>,
    pub note: Option<String>,
    pub reviewed_by: String,
    pub now: DateTime<Utc>,
}

impl FollowUpPlan {
    pub(super) async fn set_goal(
        &mut self,
        goal_id: String,
        words: String,
        support_types: Vec<SupportType>,
        by_peer: Option<String>,
        now: DateTime<Utc>,
        sink: &EventSink<Self>,
    ) -> Result<(), FollowUpError> {
        self.check_peer(by_peer.as_ref())?;
        if self.goals.iter().any(|g| g.goal_id == goal_id) {
            return Ok(());
        }
        let e = FollowUpEvent::GoalSet {
            goal_id,
            words,
            support_types,
            set_at: now,
        };
        sink.write(e, self).await;
        Ok(())
    }

    pub(super) async fn review_goal(
        &mut self,
        goal_id: String,
        review: Review,
        by_peer: Option<String>,
        sink: &EventSink<Self>,
    ) -> Result<(), FollowUpError> {
        self.check_peer(by_peer.as_ref())?;
        let Some(goal) = self.goals.iter().find(|g| g.goal_id == goal_id) else {
            return Err(FollowUpError::GoalNotFound(goal_id));
        };
        if goal.reviews.contains(&review.review_id) {
            return Ok(());
        }
        match (review.kind, &review.words) {
            (GoalReviewKind::Changed, None) => {
                return Err(FollowUpError::Invalid(
                    "words",
                    "a changed goal needs the person's new words".into(),
                ));
            }
            (GoalReviewKind::Changed, Some(_)) | (_, None) => {}
            (_, Some(_)) => {
                return Err(FollowUpError::Invalid(
                    "words",
                    "new words go with a goal the person changed (kind changed)".into(),
                ));
            }
        }
        let e = FollowUpEvent::GoalReviewed {
            goal_id,
            review_id: review.review_id,
            kind: review.kind,
            words: review.words,
            note: review.note,
            reviewed_by: review.reviewed_by,
            reviewed_at: review.now,
        };
        sink.write(e, self).await;
        Ok(())
    }

    /// Every goal named is one of the plan's.
    pub(super) fn check_goals(&self, goal_ids: &[String]) -> Result<(), FollowUpError> {
        match goal_ids
            .iter()
            .find(|id| !self.goals.iter().any(|g| g.goal_id == **id))
        {
            Some(id) => Err(FollowUpError::UnknownGoal(id.clone())),
            None => Ok(()),
        }
    }
}
