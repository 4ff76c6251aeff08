//! The deadline check: a check-in not met by its due time gets one FollowUpOverdue,
//! and a plan past its end closes.
//!
//! Nothing is held in memory: each pass asks the read model which active plans have
//! a check-in past due and unmarked (or are past their end) and sends
//! CheckDeadlines(now), which the aggregate decides against its own events. A restart
//! between a due time and its check only delays the event; two instances checking
//! at once produce it once (the optimistic lock makes the second re-decide on the
//! first one's events).

use std::sync::Arc;
use std::time::Duration;

use careloop_backbone::store::{self, Cqrs};
use careloop_backbone::{Metadata, Shutdown};
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::domain::{FollowUpCommand, FollowUpPlan};

#[derive(Clone)]
pub struct DeadlineCheck {
    pub pool: PgPool,
    pub cqrs: Arc<Cqrs<FollowUpPlan>>,
}

impl DeadlineCheck {
    /// One pass as of `now` (the injectable clock); returns how many plans it checked.
    pub async fn run_once(&self, now: DateTime<Utc>) -> anyhow::Result<usize> {
        let plans: Vec<String> = sqlx::query_scalar(
            "SELECT f.referral_id FROM follow_up.followups f
             WHERE f.state = 'active' AND (f.ends_at <= $1 OR EXISTS (
                 SELECT 1 FROM follow_up.checkpoints c
                 WHERE c.referral_id = f.referral_id AND c.met_at IS NULL
                   AND NOT c.overdue AND c.due_at < $1))
             LIMIT 500",
        )
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        let meta = Metadata::new(uuid::Uuid::new_v4().to_string()).actor("deadline check");
        for id in &plans {
            let cmd = FollowUpCommand::CheckDeadlines { now };
            store::tolerate_refusal(store::execute(&self.cqrs, id, cmd, &meta).await)?;
        }
        Ok(plans.len())
    }

    /// Checks every `every` until shutdown.
    pub async fn run(self, every: Duration, shutdown: Shutdown) {
        careloop_backbone::shutdown::every("follow-up deadline check", every, shutdown, || async {
            self.run_once(Utc::now()).await.map(|_| ())
        })
        .await
    }
}
