//! The deadline check: a check-in not met by its due time gets one FollowUpOverdue,
//! and a plan past its end closes.
//!
//! Nothing is held in memory: each pass asks the read model which active plans have
//! a check-in past due and unmarked (or are past their end) and sends
//! CheckDeadlines(now), which the aggregate decides against its own events (the query
//! only narrows the plans to ask; the rule is the aggregate's). A restart
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
use crate::metrics::FOLLOWUPS_OVERDUE;
use crate::read_model;

#[derive(Clone)]
pub struct DeadlineCheck {
    pub pool: PgPool,
    pub cqrs: Arc<Cqrs<FollowUpPlan>>,
}

impl DeadlineCheck {
    /// One pass as of `now` (the injectable clock); returns how many plans it checked.
    pub async fn run_once(&self, now: DateTime<Utc>) -> anyhow::Result<usize> {
        let plans = read_model::due_for_check(&self.pool, now, 500).await?;
        let meta = Metadata::new(uuid::Uuid::new_v4().to_string()).actor("deadline check");
        for id in &plans {
            let cmd = FollowUpCommand::CheckDeadlines { now };
            store::tolerate_refusal(store::execute(&self.cqrs, id, cmd, &meta).await)?;
        }
        FOLLOWUPS_OVERDUE.set(read_model::overdue_count(&self.pool).await?);
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
