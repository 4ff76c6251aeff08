//! How the follow-up service reacts to other services' events: a peer assignment
//! starts (or moves) a plan, a closed referral cancels it, an admission may be a
//! readmission ([`crate::readmissions`]), a revoked consent or an erasure stops the
//! person's caring contacts. Every command is idempotent in the
//! aggregate.

use std::sync::Arc;

use careloop_backbone::store::{self, Cqrs, Start};
use careloop_backbone::{EventHandler, Incoming};
use careloop_events::{Payload, Priority, ReferralStatus, from_timestamp};
use sqlx::PgConnection;

use crate::domain::{FollowUpCommand, FollowUpPlan, PlanStart, Protocol};
use crate::readmissions::ReadmissionLinker;

pub struct Handlers {
    pub cqrs: Arc<Cqrs<FollowUpPlan>>,
    pub readmissions: ReadmissionLinker,
    pub protocol: Protocol,
}

#[async_trait::async_trait]
impl EventHandler for Handlers {
    async fn handle(&self, event: &Incoming, _tx: &mut PgConnection) -> anyhow::Result<()> {
        let meta = event.metadata(crate::SERVICE);
        let run_from = |id: &str, command, start| {
            let (id, meta) = (id.to_string(), meta.clone());
            async move {
                store::tolerate_refusal(
                    store::execute_from(&self.cqrs, &id, command, &meta, start).await,
                )
            }
        };
        let run = |id: &str, command| run_from(id, command, Start::Latest);
        match &event.payload {
            Payload::PeerAssigned(a) => {
                let discharged_at = from_timestamp(a.discharged_at.as_ref());
                let start = PlanStart {
                    peer_id: a.peer_id.clone(),
                    person_ref: a.person_ref.clone(),
                    facility: a.facility.clone(),
                    priority: Priority::from_proto(a.priority),
                    discharged_at,
                    first_contact_due_at: from_timestamp(a.first_contact_due_at.as_ref()),
                    protocol: self.protocol.clone(),
                    attempt: a.attempt.max(1),
                };
                // Usually the plan's first event (a reassignment moves a plan).
                let command = FollowUpCommand::Start(Box::new(start));
                run_from(&a.referral_id, command, Start::New).await?;
                self.readmissions
                    .plan_started(&a.person_ref, &a.referral_id, discharged_at, &meta)
                    .await
            }
            Payload::PeerUnassigned(u) if !u.peer_id.is_empty() => {
                let command = FollowUpCommand::Unassign {
                    peer_id: u.peer_id.clone(),
                };
                run(&u.referral_id, command).await
            }
            Payload::ReferralCancelled(c) => {
                run(&c.referral_id, cancel("referral cancelled", false)).await
            }
            // A rejected referral may be rerouted: a newer assignment reopens the plan.
            Payload::ReferralRejected(r) => {
                run(&r.referral_id, cancel("referral rejected", true)).await
            }
            Payload::ReferralStatusChanged(s)
                if s.new_status() == Some(ReferralStatus::EnteredInError) =>
            {
                run(&s.referral_id, cancel("referral entered in error", false)).await
            }
            Payload::AdmissionRecorded(a) => {
                let admitted_at = from_timestamp(a.admitted_at.as_ref());
                self.readmissions
                    .admitted(&a.person_ref, &a.admission_id, admitted_at, &meta)
                    .await
            }
            Payload::AdmissionCancelled(a) => {
                self.readmissions
                    .admission_cancelled(&a.person_ref, &a.admission_id, &meta)
                    .await
            }
            // Caring contacts stop when consent goes, or the person's details do.
            Payload::ConsentRevoked(c) => {
                self.readmissions
                    .stop_caring_contacts(&c.person_ref, "the person's consent was revoked", &meta)
                    .await
            }
            Payload::PersonErased(e) => {
                self.readmissions
                    .stop_caring_contacts(&e.person_ref, "the person's details were erased", &meta)
                    .await
            }
            _ => Ok(()),
        }
    }
}

fn cancel(reason: &str, reopenable: bool) -> FollowUpCommand {
    FollowUpCommand::Cancel {
        reason: reason.to_string(),
        reopenable,
    }
}
