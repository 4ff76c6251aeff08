//! How the referral service reacts to other services' events. Every command sent from
//! here is idempotent in the aggregate (a redelivered event finds the work done).

use std::sync::Arc;

use careloop_backbone::store::{self, Cqrs, Start};
use careloop_backbone::{EventHandler, Incoming};
use careloop_config::DueTimes;
use careloop_events::{ContactOutcome, Payload, PlanOutcome, Priority, from_timestamp};
use sqlx::PgConnection;

use crate::consent::ConsentGuard;
use crate::domain::{Received, Referral, ReferralCommand};

pub struct Handlers {
    pub cqrs: Arc<Cqrs<Referral>>,
    pub consent: ConsentGuard,
    pub acceptance_due: DueTimes,
    pub first_contact_due: DueTimes,
}

#[async_trait::async_trait]
impl EventHandler for Handlers {
    async fn handle(&self, event: &Incoming, _tx: &mut PgConnection) -> anyhow::Result<()> {
        let mut meta = event.metadata(crate::SERVICE);
        let (id, command) = match &event.payload {
            Payload::ReferralSubmitted(s) => {
                let priority = Priority::from_proto(s.priority);
                let discharged_at = from_timestamp(s.discharged_at.as_ref());
                let due = |policy: &DueTimes| {
                    discharged_at
                        + chrono::Duration::from_std(policy.for_priority(priority))
                            .unwrap_or_default()
                };
                let received = Received {
                    referral_id: s.referral_id.clone(),
                    person_ref: s.person_ref.clone(),
                    facility: s.facility.clone(),
                    discharged_at,
                    priority,
                    acceptance_due_at: due(&self.acceptance_due),
                    first_contact_due_at: due(&self.first_contact_due),
                    matching: s.matching.clone().unwrap_or_default().into(),
                };
                let receive = ReferralCommand::Receive(Box::new(received));
                store::tolerate_refusal(
                    store::execute_from(&self.cqrs, &s.referral_id, receive, &meta, Start::New)
                        .await,
                )?;
                let submitted_at = from_timestamp(event.envelope.occurred_at.as_ref());
                return self
                    .consent
                    .referral_received(&s.person_ref, &s.referral_id, submitted_at, &meta)
                    .await;
            }
            Payload::ConsentRevoked(c) => {
                let revoked_at = from_timestamp(c.revoked_at.as_ref());
                return self
                    .consent
                    .consent_revoked(&c.person_ref, revoked_at, &c.reason, &meta)
                    .await;
            }
            // An erased person is treated as one who withdrew consent: what is open for
            // them is cancelled, and no later referral under this person_ref proceeds.
            Payload::PersonErased(e) => {
                let erased_at = from_timestamp(e.erased_at.as_ref());
                return self
                    .consent
                    .consent_revoked(
                        &e.person_ref,
                        erased_at,
                        "the person's details were erased",
                        &meta,
                    )
                    .await;
            }
            Payload::ReferralWithdrawn(w) => (
                w.referral_id.clone(),
                ReferralCommand::Cancel {
                    reason: format!("withdrawn by the hospital: {}", w.reason),
                },
            ),
            Payload::PeerAssigned(a) => (
                {
                    // An override: the timeline names the coordinator who made it.
                    if !a.actor.is_empty() {
                        meta = meta.actor(a.actor.clone());
                    }
                    a.referral_id.clone()
                },
                ReferralCommand::Accept {
                    peer_id: a.peer_id.clone(),
                    reason: (!a.reason.is_empty()).then(|| a.reason.clone()),
                },
            ),
            Payload::PeerUnassigned(u) if !u.peer_id.is_empty() => (
                u.referral_id.clone(),
                ReferralCommand::Unassign {
                    peer_id: u.peer_id.clone(),
                },
            ),
            Payload::AssignmentWaitlisted(w) => (
                w.referral_id.clone(),
                ReferralCommand::Waitlist {
                    reason: w.reason.clone(),
                },
            ),
            Payload::FollowUpClosed(c) => {
                let reason = c.reason.clone();
                let command = match c.plan_outcome() {
                    Some(PlanOutcome::Completed) => ReferralCommand::Complete { reason },
                    Some(PlanOutcome::Failed) => ReferralCommand::Fail { reason },
                    // A cancelled plan follows its referral; nothing to do here.
                    Some(PlanOutcome::Cancelled) | None => return Ok(()),
                };
                (c.referral_id.clone(), command)
            }
            Payload::ReadmissionLinked(r) => (
                r.referral_id.clone(),
                ReferralCommand::NoteReadmission {
                    admission_id: r.admission_id.clone(),
                    admitted_at: from_timestamp(r.admitted_at.as_ref()),
                },
            ),
            Payload::ReadmissionUnlinked(r) => (
                r.referral_id.clone(),
                ReferralCommand::CancelReadmission {
                    admission_id: r.admission_id.clone(),
                },
            ),
            Payload::ContactRecorded(c) if c.contact_outcome() == Some(ContactOutcome::Reached) => {
                (
                    c.referral_id.clone(),
                    ReferralCommand::StartFollowUp {
                        contact_id: c.contact_id.clone(),
                        occurred_at: from_timestamp(c.occurred_at.as_ref()),
                    },
                )
            }
            _ => return Ok(()),
        };
        store::tolerate_refusal(store::execute(&self.cqrs, &id, command, &meta).await)
    }
}
