//! Caring contacts: after a plan completes, the person may agree to a series of
//! brief, non-demanding contacts (by default monthly for a year). Each falls due on
//! the peer's worklist and is met by the next contact logged, like any contact; the
//! series stops at the person's request or when their consent is revoked (or they
//! are erased), and never starts again. A stop is recorded even before a series
//! started, so a plan whose person withdrew never starts one.

use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use serde::{Deserialize, Serialize};

use super::{FollowUpError, FollowUpPlan, PlanState};
use crate::domain::FollowUpEvent;
use careloop_events::PlanOutcome;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(super) struct Series {
    pub due: Vec<DateTime<Utc>>,
    pub made: Vec<bool>,
    pub started_at: DateTime<Utc>,
    pub stopped: bool,
}

impl Series {
    /// The next caring contact to make (from 1), while the series runs.
    pub fn next_open(&self) -> Option<u32> {
        if self.stopped {
            return None;
        }
        self.made.iter().position(|m| !m).map(|i| i as u32 + 1)
    }
}

impl FollowUpPlan {
    pub(super) async fn start_caring(
        &mut self,
        every: Duration,
        count: u32,
        by_peer: Option<String>,
        now: DateTime<Utc>,
        sink: &EventSink<Self>,
    ) -> Result<(), FollowUpError> {
        self.check_peer(by_peer.as_ref())?;
        match &self.caring {
            Some(s) if s.stopped => {
                return Err(FollowUpError::Caring(
                    "the caring contacts of this plan were stopped; they do not start again",
                ));
            }
            Some(_) => return Ok(()),
            None => {}
        }
        if self.state != PlanState::Closed || self.outcome != Some(PlanOutcome::Completed) {
            return Err(FollowUpError::Caring(
                "caring contacts follow a completed plan",
            ));
        }
        let due = (1..=count as i32).map(|k| now + every * k).collect();
        sink.write(
            FollowUpEvent::CaringContactsStarted {
                due,
                started_at: now,
            },
            self,
        )
        .await;
        Ok(())
    }

    pub(super) async fn stop_caring(
        &mut self,
        reason: String,
        by_peer: Option<String>,
        now: DateTime<Utc>,
        sink: &EventSink<Self>,
    ) -> Result<(), FollowUpError> {
        self.check_peer(by_peer.as_ref())?;
        match &self.caring {
            Some(s) if s.stopped => return Ok(()),
            // Every caring contact was made: nothing left to stop.
            Some(s) if s.next_open().is_none() => return Ok(()),
            _ => {}
        }
        let e = FollowUpEvent::CaringContactsStopped {
            reason,
            stopped_at: now,
        };
        sink.write(e, self).await;
        Ok(())
    }

    /// A contact logged at `at` makes the next caring contact of a running series.
    pub(super) async fn caring_contact_made(
        &mut self,
        contact_id: &str,
        at: DateTime<Utc>,
        sink: &EventSink<Self>,
    ) {
        let Some(series) = &self.caring else {
            return;
        };
        if at < series.started_at {
            return;
        }
        if let Some(n) = series.next_open() {
            let e = FollowUpEvent::CaringContactMade {
                n,
                contact_id: contact_id.to_string(),
            };
            sink.write(e, self).await;
        }
    }
}
