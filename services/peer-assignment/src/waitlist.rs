//! The waitlist and hand-backs, worked from state rather than from events, so a
//! restart loses nothing:
//!
//! - referrals held by a peer who is no longer available (on leave, inactive) go back
//!   to matching without that peer;
//! - when any peer has room (freed capacity, a returning or new peer, a larger
//!   caseload), waitlisted referrals are matched again in priority order (asap,
//!   urgent, routine), then by how long they have waited.
//!
//! One pass at a time across instances (an advisory lock), so the order holds. A
//! referral no peer fits stays put without new events; only those with a candidate
//! are re-matched. A referral that had a candidate and still did not get a slot ends
//! the pass, so no referral behind it takes a slot freed meanwhile. A re-match an
//! earlier pass began and did not finish is finished in its turn, never skipped.

use std::sync::Arc;
use std::time::Duration;

use careloop_backbone::outbox::Wakeup;
use careloop_backbone::{Metadata, Shutdown};
use sqlx::PgPool;

use crate::matching::Matcher;
use crate::read_model;

#[derive(Clone)]
pub struct WaitlistWorker {
    pub pool: PgPool,
    pub matcher: Arc<Matcher>,
}

impl WaitlistWorker {
    /// One pass; returns how many referrals it assigned or handed back.
    pub async fn run_once(&self) -> anyhow::Result<usize> {
        let mut lock = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('careloop.waitlist', 0))")
            .execute(&mut *lock)
            .await?;
        let meta = Metadata::new(uuid::Uuid::new_v4().to_string()).actor("waitlist");
        let mut moved = 0;

        let handed = read_model::held_by_unavailable_peers(&self.pool).await?;
        for id in &handed {
            match self
                .matcher
                .hand_back(id, "the peer is not available", false, &meta)
                .await
            {
                Ok(()) => moved += 1,
                Err(e) => tracing::debug!(referral = %id, error = %e, "hand-back skipped"),
            }
        }

        // By the queue's own keys: a referral whose last try this read model has not
        // caught up with yet keeps its place (and is checked against the event store
        // below), so a later one never takes the slot ahead of it.
        let waiting: Vec<String> = read_model::queue(&self.pool, 1000).await?;
        if waiting.is_empty() {
            lock.commit().await?;
            return Ok(moved);
        }
        // The roster is read once per pass and kept current locally: the read model
        // may not have applied the reservations this pass just made.
        let mut roster = self.matcher.roster().await?;
        for id in &waiting {
            if !roster
                .iter()
                .any(|p| p.available && p.active_count < p.max_caseload)
            {
                break;
            }
            let a = self.matcher.load(id).await?;
            let Some(request) = a.request.clone() else {
                continue;
            };
            if a.assigned.is_some() || a.released {
                continue; // placed since the read model was written
            }
            // Whether a peer with room on this pass's roster fits the referral.
            let fits = !self
                .matcher
                .rank(id, &request, &roster, &a.refused_by)
                .await?
                .candidates
                .is_empty();
            if a.waitlisted {
                if !fits {
                    continue; // no peer with room fits it: it keeps its place
                }
                self.matcher.rematch(id, &meta).await?;
            } else {
                // A match begun and not finished: an earlier pass re-opened it and
                // failed part-way (a reservation that lost its race too often, the
                // database gone), or a hand-back is settling it now. It is finished
                // here, in its turn: skipping it would hand its slot to a referral
                // that has waited less. Two settles of one referral at once converge:
                // each step is idempotent, and a confirmation refused because the
                // other moved on gives back the slot it reserved (`Matcher::settle`).
                self.matcher.settle(id, &meta).await?;
            }
            match self.matcher.load(id).await?.assigned {
                Some(peer) => {
                    moved += 1;
                    if let Some(p) = roster.iter_mut().find(|p| p.peer_id == peer) {
                        p.active_count += 1;
                    }
                }
                // The roster showed room for it that it did not get (taken meanwhile,
                // or the read model behind): the pass stops here. Going on down the
                // queue with that roster would give a slot freed meanwhile to a
                // referral that has waited less; the next pass (woken by this one's
                // events) starts again from the top with a fresh roster.
                None if fits => break,
                None => {}
            }
        }
        lock.commit().await?;
        Ok(moved)
    }

    pub async fn run(self, mut shutdown: Shutdown) {
        // A background reader: a slot freed is offered within a tenth of a second.
        let mut wakeup = Wakeup::new(self.pool.clone(), crate::SCHEMA, Duration::from_secs(2))
            .paced(careloop_backbone::outbox::BACKGROUND_PACE);
        while !shutdown.is_triggered() {
            if let Err(e) = self.run_once().await {
                tracing::warn!(error = %format!("{e:#}"), "waitlist pass failed; will retry");
            }
            if let Err(e) = crate::metrics::refresh(&self.pool).await {
                tracing::warn!(error = %e, "refreshing roster metrics failed");
            }
            tokio::select! {
                _ = wakeup.wait(false) => {}
                _ = shutdown.wait() => {}
            }
        }
    }
}
