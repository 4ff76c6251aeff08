//! The deadline check: referrals past their acceptance or first-contact due time are
//! marked overdue, once, with a ReferralOverdue event.
//!
//! Nothing is kept in memory: each pass asks the read model which open referrals are
//! past a due time and not yet marked, and sends MarkOverdue, which the aggregate
//! decides against its own state. So a restart between the due time and the check
//! only delays the mark, and two instances checking at once produce one event (the
//! second finds it marked, or loses the optimistic lock and then finds it marked).

use std::sync::Arc;
use std::time::Duration;

use careloop_backbone::store::{self, Cqrs};
use careloop_backbone::{Metadata, Shutdown};
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::domain::{Referral, ReferralCommand};
use crate::read_model;

#[derive(Clone)]
pub struct OverdueCheck {
    pub pool: PgPool,
    pub cqrs: Arc<Cqrs<Referral>>,
}

impl OverdueCheck {
    /// One pass as of `now` (the injectable clock); returns how many referrals it
    /// asked to mark.
    pub async fn run_once(&self, now: DateTime<Utc>) -> anyhow::Result<usize> {
        let due = read_model::due_for_marking(&self.pool, now, 500).await?;
        let meta = Metadata::new(uuid::Uuid::new_v4().to_string()).actor("deadline check");
        for (id, kind) in &due {
            let cmd = ReferralCommand::MarkOverdue { kind: *kind, now };
            store::tolerate_refusal(store::execute(&self.cqrs, id, cmd, &meta).await)?;
        }
        Ok(due.len())
    }

    /// Checks every `every` until shutdown.
    pub async fn run(self, every: Duration, shutdown: Shutdown) {
        careloop_backbone::shutdown::every("referral deadline check", every, shutdown, || async {
            self.run_once(Utc::now()).await.map(|_| ())
        })
        .await
    }
}
