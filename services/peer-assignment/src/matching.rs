//! Matching a received referral to a peer (a simple rule for now: a shared language,
//! the preferred peer gender when given, free capacity; least loaded first).
//!
//! The steps are recorded on the Assignment (propose → reserve the peer's slot →
//! confirm), so a crash at any point resumes where it stopped when the event is
//! redelivered. The roster read model may lag behind the Peer aggregates; that is
//! fine because the Peer aggregate, not the read model, decides whether a slot is
//! free: a refused reservation declines the proposal and the next candidate is tried.

use std::sync::Arc;

use careloop_backbone::store::{self, Cqrs, EventStore};
use careloop_backbone::{EventHandler, Incoming, Metadata};
use careloop_events::{Payload, from_timestamp, v1};
use cqrs_es::AggregateError;
use sqlx::{PgConnection, PgPool};

use crate::domain::{
    Assignment, AssignmentCommand, AssignmentRequest, Peer, PeerCommand, PeerError,
};

pub struct Matcher {
    pub pool: PgPool,
    pub peers: Arc<Cqrs<Peer>>,
    pub assignments: Arc<Cqrs<Assignment>>,
    pub assignment_store: Arc<EventStore<Assignment>>,
}

#[async_trait::async_trait]
impl EventHandler for Matcher {
    async fn handle(&self, event: &Incoming, _tx: &mut PgConnection) -> anyhow::Result<()> {
        let meta = event.metadata(crate::SERVICE);
        let (referral_id, reason) = match &event.payload {
            Payload::ReferralReceived(r) => return self.received(r, &meta).await,
            Payload::ReferralCancelled(c) => (&c.referral_id, "referral cancelled"),
            Payload::ReferralRejected(r) => (&r.referral_id, "referral rejected"),
            Payload::ReferralStatusChanged(s) if s.to_status == "entered-in-error" => {
                (&s.referral_id, "referral entered in error")
            }
            _ => return Ok(()),
        };
        self.release(referral_id, reason, &meta).await
    }
}

impl Matcher {
    async fn received(&self, r: &v1::ReferralReceived, meta: &Metadata) -> anyhow::Result<()> {
        let matching = r.matching.clone().unwrap_or_default();
        let priority = match v1::Priority::try_from(r.priority) {
            Ok(v1::Priority::Asap) => "asap",
            Ok(v1::Priority::Urgent) => "urgent",
            _ => "routine",
        };
        let request = AssignmentRequest {
            person_ref: r.person_ref.clone(),
            facility: r.facility.clone(),
            priority: priority.into(),
            discharged_at: from_timestamp(r.discharged_at.as_ref()),
            first_contact_due_at: from_timestamp(r.first_contact_due_at.as_ref()),
            language: matching.language,
            preferred_peer_gender: (!matching.preferred_peer_gender.is_empty())
                .then_some(matching.preferred_peer_gender),
        };
        self.assign(&r.referral_id, request, r.attempt.max(1), meta)
            .await
    }

    /// The referral closed: the assignment is released and the peer's slot freed.
    /// Both steps are idempotent, so a crash between them is finished on redelivery.
    pub async fn release(
        &self,
        referral_id: &str,
        reason: &str,
        meta: &Metadata,
    ) -> anyhow::Result<()> {
        let release = AssignmentCommand::Release {
            reason: reason.to_string(),
        };
        let a = store::load(&self.assignment_store, referral_id)
            .await
            .map_err(err)?;
        if a.request.is_none() {
            return Ok(()); // never routed here: nothing to free
        }
        store::execute(&self.assignments, referral_id, release, meta)
            .await
            .map_err(err)?;
        self.free_released_slot(referral_id, meta).await
    }

    async fn free_released_slot(&self, referral_id: &str, meta: &Metadata) -> anyhow::Result<()> {
        let a = store::load(&self.assignment_store, referral_id)
            .await
            .map_err(err)?;
        // Never free a slot the current attempt holds with the same peer again.
        let current = [a.proposed.as_ref(), a.assigned.as_ref()];
        if let Some(peer) = a.released_peer.filter(|p| !current.contains(&Some(p))) {
            let cmd = PeerCommand::ReleaseSlot {
                referral_id: referral_id.to_string(),
            };
            store::tolerate_refusal(store::execute(&self.peers, &peer, cmd, meta).await)?;
        }
        Ok(())
    }

    /// Assigns `referral_id` to a peer with room, or waitlists it.
    pub async fn assign(
        &self,
        referral_id: &str,
        request: AssignmentRequest,
        attempt: u32,
        meta: &Metadata,
    ) -> anyhow::Result<()> {
        let run = |c| store::execute(&self.assignments, referral_id, c, meta);
        let ask = AssignmentCommand::Request {
            request: request.clone(),
            attempt,
        };
        run(ask).await.map_err(err)?;
        // A reopened (rerouted) assignment gives the previous peer's slot back first.
        self.free_released_slot(referral_id, meta).await?;
        // Bounded: each round either assigns, waitlists, or declines one more peer.
        for _ in 0..1000 {
            let a = store::load(&self.assignment_store, referral_id)
                .await
                .map_err(err)?;
            if a.assigned.is_some() || a.waitlisted || a.released || a.attempt > attempt {
                return Ok(());
            }
            let peer_id = match a.proposed {
                Some(p) => p,
                None => match self.candidate(&request, &a.declined_by).await? {
                    Some(p) => {
                        run(AssignmentCommand::Propose { peer_id: p.clone() })
                            .await
                            .map_err(err)?;
                        p
                    }
                    None => {
                        let reason = "no peer with a shared language and free capacity".into();
                        run(AssignmentCommand::Waitlist { reason })
                            .await
                            .map_err(err)?;
                        return Ok(());
                    }
                },
            };
            let reserve = PeerCommand::ReserveSlot {
                referral_id: referral_id.to_string(),
            };
            match store::execute(&self.peers, &peer_id, reserve, meta).await {
                Ok(()) => {
                    run(AssignmentCommand::Confirm { peer_id })
                        .await
                        .map_err(err)?;
                }
                Err(AggregateError::UserError(
                    e @ (PeerError::CaseloadFull(_) | PeerError::NotFound),
                )) => {
                    let reason = e.to_string();
                    run(AssignmentCommand::Decline { peer_id, reason })
                        .await
                        .map_err(err)?;
                }
                Err(e) => return Err(err(e)),
            }
        }
        anyhow::bail!("matching did not settle for referral {referral_id}")
    }

    /// The best peer the roster read model offers, skipping those who declined.
    async fn candidate(
        &self,
        request: &AssignmentRequest,
        declined: &[String],
    ) -> anyhow::Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT peer_id FROM peer_assignment.peers
             WHERE availability = 'active'
               AND active_count < max_caseload
               AND $1 = ANY(languages)
               AND ($2::text IS NULL OR gender = $2)
               AND NOT (peer_id = ANY($3))
             ORDER BY active_count::float8 / max_caseload, peer_id
             LIMIT 1",
        )
        .bind(&request.language)
        .bind(&request.preferred_peer_gender)
        .bind(declined)
        .fetch_optional(&self.pool)
        .await?)
    }
}

fn err<E: std::error::Error>(e: AggregateError<E>) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}
