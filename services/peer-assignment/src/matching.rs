//! Assigning referrals to peers: the saga over the Assignment and Peer aggregates.
//!
//! The steps are recorded on the Assignment (propose → reserve the peer's slot →
//! confirm), so a crash at any point resumes where it stopped when the event is
//! redelivered. Candidates come from the roster read model, ranked by
//! [`crate::ranking`]; the read model may lag behind the Peer aggregates, which is
//! fine because the Peer aggregate, not the read model, decides whether a slot is
//! free: a refused reservation declines the proposal and the next candidate is tried.

use std::sync::Arc;

use careloop_backbone::store::{self, Cqrs, EventStore, Start};
use careloop_backbone::{EventHandler, Incoming, Metadata};
use careloop_config::MatchWeights;
use careloop_events::{Payload, Priority, ReferralStatus, from_timestamp, v1};
use chrono::Utc;
use cqrs_es::AggregateError;
use sqlx::{PgConnection, PgPool};

use crate::domain::{
    Assignment, AssignmentCommand, AssignmentError, AssignmentRequest, Peer, PeerCommand, PeerError,
};
use crate::ranking::{self, Ranking, RosterPeer};
use crate::read_model;

pub struct Matcher {
    pub pool: PgPool,
    pub peers: Arc<Cqrs<Peer>>,
    pub assignments: Arc<Cqrs<Assignment>>,
    pub assignment_store: Arc<EventStore<Assignment>>,
    pub weights: MatchWeights,
}

/// The consumer of the referral service's events.
pub struct ReferralEvents(pub Arc<Matcher>);

#[async_trait::async_trait]
impl EventHandler for ReferralEvents {
    async fn handle(&self, event: &Incoming, _tx: &mut PgConnection) -> anyhow::Result<()> {
        let meta = event.metadata(crate::SERVICE);
        let (referral_id, reason) = match &event.payload {
            Payload::ReferralReceived(r) => return self.0.received(r, &meta).await,
            Payload::ReferralCancelled(c) => (&c.referral_id, "referral cancelled"),
            Payload::ReferralRejected(r) => (&r.referral_id, "referral rejected"),
            Payload::ReferralStatusChanged(s) => match s.new_status() {
                Some(ReferralStatus::EnteredInError) => {
                    (&s.referral_id, "referral entered in error")
                }
                Some(ReferralStatus::Completed | ReferralStatus::Failed) => {
                    (&s.referral_id, "follow-up closed")
                }
                _ => return Ok(()),
            },
            _ => return Ok(()),
        };
        self.0.release(referral_id, reason, &meta).await
    }
}

impl Matcher {
    async fn received(&self, r: &v1::ReferralReceived, meta: &Metadata) -> anyhow::Result<()> {
        let request = AssignmentRequest {
            person_ref: r.person_ref.clone(),
            facility: r.facility.clone(),
            priority: Priority::from_proto(r.priority),
            discharged_at: from_timestamp(r.discharged_at.as_ref()),
            first_contact_due_at: from_timestamp(r.first_contact_due_at.as_ref()),
            matching: r.matching.clone().unwrap_or_default().into(),
        };
        let attempt = r.attempt.max(1);
        // A first routing ranks before it asks, so the request carries its proposal
        // (one command, not two). A reroute proposes after the previous peer's slot is
        // given back, from the roster read then.
        let mut roster = None;
        let mut propose = None;
        if attempt == 1 {
            let peers = self.roster().await?;
            let ranking = self.rank(&r.referral_id, &request, &peers, &[]).await?;
            propose = ranking.candidates.first().map(|c| c.peer_id.clone());
            roster = Some(peers);
        }
        let ask = AssignmentCommand::Request {
            request: Box::new(request),
            attempt,
            propose,
        };
        // A first routing usually starts the assignment: decided as new, checked by
        // the store.
        let a = self
            .run_from(&r.referral_id, ask, meta, Start::new_when(attempt == 1))
            .await?;
        // A reopened (rerouted) assignment gives the previous peer's slot back first,
        // decided on a fresh load: another step (the waitlist) may hold that peer for
        // the referral again by now.
        if a.released_peer.is_some() {
            self.free_released_slot(&r.referral_id, meta).await?;
        }
        if a.attempt > attempt {
            return Ok(()); // a later routing already took over
        }
        self.settle_from(&r.referral_id, a, roster, meta).await
    }

    /// The referral closed: the assignment is released and the peer's slot freed.
    /// Both steps are idempotent, so a crash between them is finished on redelivery.
    pub async fn release(
        &self,
        referral_id: &str,
        reason: &str,
        meta: &Metadata,
    ) -> anyhow::Result<()> {
        if self.load(referral_id).await?.request.is_none() {
            return Ok(()); // never routed here: nothing to free
        }
        let release = AssignmentCommand::Release {
            reason: reason.to_string(),
        };
        self.run(referral_id, release, meta).await?;
        self.free_released_slot(referral_id, meta).await
    }

    /// A waitlisted referral gets another chance (capacity freed up).
    pub async fn rematch(&self, referral_id: &str, meta: &Metadata) -> anyhow::Result<()> {
        let a = self
            .run(referral_id, AssignmentCommand::Rematch, meta)
            .await?;
        self.settle_from(referral_id, a, None, meta).await
    }

    /// The assigned peer declined (`exclude`) or went on leave: match again.
    pub async fn hand_back(
        &self,
        referral_id: &str,
        reason: &str,
        exclude: bool,
        meta: &Metadata,
    ) -> Result<(), AggregateError<AssignmentError>> {
        let cmd = AssignmentCommand::HandBack {
            reason: reason.to_string(),
            exclude,
        };
        store::execute(&self.assignments, referral_id, cmd, meta).await?;
        let settled = async {
            self.free_released_slot(referral_id, meta).await?;
            self.settle(referral_id, meta).await
        };
        // The hand-back is recorded; the rest is resumed by the waitlist worker if
        // it fails here.
        if let Err(e) = settled.await {
            tracing::warn!(error = %format!("{e:#}"), "re-matching after a hand-back failed; will resume");
        }
        Ok(())
    }

    /// A coordinator moves the referral to `to_peer`: their slot is taken first, so
    /// the move never exceeds a caseload; then the previous peer's slot is freed.
    pub async fn override_peer(
        &self,
        referral_id: &str,
        to_peer: &str,
        reason: &str,
        meta: &Metadata,
    ) -> Result<(), careloop_web::Problem> {
        let a = self
            .load(referral_id)
            .await
            .map_err(careloop_web::Problem::from)?;
        if a.assigned.is_none() {
            return Err(store::to_problem(AggregateError::UserError(
                AssignmentError::NotAssigned,
            )));
        }
        let reserve = PeerCommand::ReserveSlot {
            referral_id: referral_id.to_string(),
            now: Utc::now(),
        };
        store::execute(&self.peers, to_peer, reserve, meta)
            .await
            .map_err(store::to_problem)?;
        let cmd = AssignmentCommand::Override {
            to_peer: to_peer.to_string(),
            reason: reason.to_string(),
        };
        if let Err(e) = store::execute(&self.assignments, referral_id, cmd, meta).await {
            // Give the slot back: the move did not happen.
            let undo = PeerCommand::ReleaseSlot {
                referral_id: referral_id.to_string(),
            };
            let _ = store::execute(&self.peers, to_peer, undo, meta).await;
            return Err(store::to_problem(e));
        }
        self.free_released_slot(referral_id, meta)
            .await
            .map_err(careloop_web::Problem::from)
    }

    /// Proposes, reserves and confirms until the referral is assigned or waitlisted.
    /// Bounded: each round assigns, waitlists, or declines one more peer.
    pub async fn settle(&self, referral_id: &str, meta: &Metadata) -> anyhow::Result<()> {
        let a = self.load(referral_id).await?;
        self.settle_from(referral_id, a, None, meta).await
    }

    /// [`Matcher::settle`] from the assignment `a` as it stands now. Each step's
    /// command returns the assignment it left, so the saga never loads it again;
    /// `roster`, when the caller has just read it, is not read again.
    async fn settle_from(
        &self,
        referral_id: &str,
        mut a: Assignment,
        mut roster: Option<Vec<RosterPeer>>,
        meta: &Metadata,
    ) -> anyhow::Result<()> {
        for _ in 0..10_000 {
            let Some(request) = a.request.clone() else {
                return Ok(());
            };
            if a.assigned.is_some() || a.waitlisted || a.released {
                return Ok(());
            }
            let peer_id = match a.proposed.clone() {
                Some(p) => p,
                None => {
                    if roster.is_none() {
                        roster = Some(self.roster().await?);
                    }
                    let skip: Vec<String> =
                        a.declined_by.iter().chain(&a.refused_by).cloned().collect();
                    let ranking = self
                        .rank(
                            referral_id,
                            &request,
                            roster.as_deref().unwrap_or(&[]),
                            &skip,
                        )
                        .await?;
                    match ranking.candidates.first() {
                        Some(best) => {
                            let p = best.peer_id.clone();
                            let propose = AssignmentCommand::Propose { peer_id: p.clone() };
                            a = self.run(referral_id, propose, meta).await?;
                            if a.proposed.as_deref() != Some(p.as_str()) {
                                continue; // another step moved the assignment on
                            }
                            p
                        }
                        None => {
                            let reason = waitlist_reason(&ranking);
                            self.run(referral_id, AssignmentCommand::Waitlist { reason }, meta)
                                .await?;
                            return Ok(());
                        }
                    }
                }
            };
            let reserve = PeerCommand::ReserveSlot {
                referral_id: referral_id.to_string(),
                now: Utc::now(),
            };
            match store::execute(&self.peers, &peer_id, reserve, meta).await {
                Ok(()) => {
                    let confirm = AssignmentCommand::Confirm {
                        peer_id: peer_id.clone(),
                    };
                    let confirmed = store::execute_and_get(
                        &self.assignment_store,
                        &(),
                        referral_id,
                        confirm,
                        meta,
                        Start::Latest,
                    )
                    .await;
                    a = match confirmed {
                        Ok(after) => after,
                        // Refused: another settle of this referral (a hand-back's and
                        // the waitlist's at once) moved it on to another peer. The
                        // slot just reserved is given back below, and the saga goes on
                        // from where the other left it.
                        Err(AggregateError::UserError(_)) => self.load(referral_id).await?,
                        Err(e) => return Err(err(e)),
                    };
                    // If the referral closed (or another step won) meanwhile, the
                    // confirmation did nothing: give the slot back rather than leak it.
                    if a.assigned.as_deref() != Some(peer_id.as_str())
                        && a.proposed.as_deref() != Some(peer_id.as_str())
                    {
                        let release = PeerCommand::ReleaseSlot {
                            referral_id: referral_id.to_string(),
                        };
                        store::tolerate_refusal(
                            store::execute(&self.peers, &peer_id, release, meta).await,
                        )?;
                        return Ok(());
                    }
                }
                Err(AggregateError::UserError(
                    e @ (PeerError::CaseloadFull(_)
                    | PeerError::NotFound
                    | PeerError::Unavailable(_)),
                )) => {
                    let reason = e.to_string();
                    a = self
                        .run(
                            referral_id,
                            AssignmentCommand::Decline { peer_id, reason },
                            meta,
                        )
                        .await?;
                }
                Err(e) => anyhow::bail!("reserving a slot: {e}"),
            }
        }
        anyhow::bail!("matching did not settle for referral {referral_id}")
    }

    /// Ranks the roster for the referral's `request`, leaving out `skip`.
    /// Continuity counts the peers who supported the person on earlier referrals,
    /// never this referral's own assignment.
    pub async fn rank(
        &self,
        referral_id: &str,
        request: &AssignmentRequest,
        roster: &[RosterPeer],
        skip: &[String],
    ) -> anyhow::Result<Ranking> {
        let history =
            read_model::earlier_peers(&self.pool, &request.person_ref, referral_id).await?;
        Ok(ranking::rank(
            &request.matching,
            roster,
            &history,
            skip,
            &self.weights,
        ))
    }

    /// The whole roster as matching sees it.
    pub async fn roster(&self) -> sqlx::Result<Vec<RosterPeer>> {
        read_model::roster(&self.pool).await
    }

    pub async fn load(&self, referral_id: &str) -> anyhow::Result<Assignment> {
        store::load(&self.assignment_store, referral_id)
            .await
            .map_err(err)
    }

    /// Runs `cmd` on the referral's assignment; returns the assignment it left.
    async fn run(
        &self,
        referral_id: &str,
        cmd: AssignmentCommand,
        meta: &Metadata,
    ) -> anyhow::Result<Assignment> {
        self.run_from(referral_id, cmd, meta, Start::Latest).await
    }

    /// Runs `cmd` like [`Self::run`], first decided on what `start` says.
    async fn run_from(
        &self,
        referral_id: &str,
        cmd: AssignmentCommand,
        meta: &Metadata,
        start: Start,
    ) -> anyhow::Result<Assignment> {
        store::execute_and_get(&self.assignment_store, &(), referral_id, cmd, meta, start)
            .await
            .map_err(err)
    }

    /// Frees the slot the assignment released, if any, decided on a fresh load.
    async fn free_released_slot(&self, referral_id: &str, meta: &Metadata) -> anyhow::Result<()> {
        let a = self.load(referral_id).await?;
        // Never free a slot the current attempt holds with the same peer again.
        let current = [a.proposed.as_ref(), a.assigned.as_ref()];
        if let Some(peer) = a
            .released_peer
            .as_ref()
            .filter(|p| !current.contains(&Some(*p)))
        {
            let cmd = PeerCommand::ReleaseSlot {
                referral_id: referral_id.to_string(),
            };
            store::tolerate_refusal(store::execute(&self.peers, peer, cmd, meta).await)?;
        }
        Ok(())
    }
}

fn waitlist_reason(r: &Ranking) -> String {
    if r.excluded.is_empty() {
        return "no peers on the roster".into();
    }
    let parts: Vec<String> = r
        .excluded
        .iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    format!("no peer fits right now (excluded by {})", parts.join(", "))
}

fn err<E: std::error::Error>(e: AggregateError<E>) -> anyhow::Error {
    store::into_anyhow(e)
}
