//! How the referral service reacts to other services' events. Every command sent from
//! here is idempotent in the aggregate (a redelivered event finds the work done).

use std::sync::Arc;

use careloop_backbone::store::{self, Cqrs};
use careloop_backbone::{EventHandler, Incoming};
use careloop_config::DueTimes;
use careloop_events::{Payload, from_timestamp};
use sqlx::PgConnection;

use crate::domain::{MatchingInputs, Priority, Received, Referral, ReferralCommand, ReferralError};

pub struct Handlers {
    pub pool: sqlx::PgPool,
    pub cqrs: Arc<Cqrs<Referral>>,
    pub acceptance_due: DueTimes,
    pub first_contact_due: DueTimes,
}

#[async_trait::async_trait]
impl EventHandler for Handlers {
    async fn handle(&self, event: &Incoming, _tx: &mut PgConnection) -> anyhow::Result<()> {
        let meta = event.metadata(crate::SERVICE);
        let (id, command) = match &event.payload {
            Payload::ReferralSubmitted(s) => {
                let m = s.matching.clone().unwrap_or_default();
                let none_if_empty = |s: String| (!s.is_empty()).then_some(s);
                let priority = Priority::from_proto(s.priority);
                let discharged_at = from_timestamp(s.discharged_at.as_ref());
                let due = |policy: &DueTimes| {
                    discharged_at
                        + chrono::Duration::from_std(policy.for_priority(priority.as_str()))
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
                    matching: MatchingInputs {
                        language: m.language,
                        preferred_peer_gender: none_if_empty(m.preferred_peer_gender),
                        lived_experience: m.lived_experience,
                        contact_modes: m.contact_modes,
                        region: none_if_empty(m.region),
                        needs: m.needs,
                    },
                };
                (
                    s.referral_id.clone(),
                    ReferralCommand::Receive(Box::new(received)),
                )
            }
            Payload::ReferralWithdrawn(w) => (
                w.referral_id.clone(),
                ReferralCommand::Cancel {
                    reason: format!("withdrawn by the hospital: {}", w.reason),
                },
            ),
            Payload::ConsentRevoked(c) => {
                // Every open referral of the person is cancelled, with the reason.
                let open: Vec<String> = sqlx::query_scalar(
                    "SELECT referral_id FROM referral.referrals
                     WHERE person_ref = $1
                       AND status NOT IN ('rejected', 'cancelled', 'failed', 'completed', 'entered-in-error')",
                )
                .bind(&c.person_ref)
                .fetch_all(&self.pool)
                .await?;
                for id in open {
                    let cmd = ReferralCommand::Cancel {
                        reason: c.reason.clone(),
                    };
                    store::tolerate_refusal(store::execute(&self.cqrs, &id, cmd, &meta).await)?;
                }
                return Ok(());
            }
            Payload::PeerAssigned(a) => (
                a.referral_id.clone(),
                ReferralCommand::Accept {
                    peer_id: a.peer_id.clone(),
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
            Payload::FollowUpClosed(c) if c.outcome == "completed" => (
                c.referral_id.clone(),
                ReferralCommand::Complete {
                    reason: c.reason.clone(),
                },
            ),
            Payload::FollowUpClosed(c) if c.outcome == "failed" => (
                c.referral_id.clone(),
                ReferralCommand::Fail {
                    reason: c.reason.clone(),
                },
            ),
            Payload::ReadmissionLinked(r) => (
                r.referral_id.clone(),
                ReferralCommand::NoteReadmission {
                    admission_id: r.admission_id.clone(),
                    admitted_at: from_timestamp(r.admitted_at.as_ref()),
                },
            ),
            Payload::ContactRecorded(c) if c.outcome == "reached" => (
                c.referral_id.clone(),
                ReferralCommand::StartFollowUp {
                    contact_id: c.contact_id.clone(),
                    occurred_at: from_timestamp(c.occurred_at.as_ref()),
                },
            ),
            _ => return Ok(()),
        };
        let result = store::execute(&self.cqrs, &id, command, &meta).await;
        if let Err(cqrs_es::AggregateError::UserError(ReferralError::NotAcceptedYet)) = &result {
            // PeerAssigned is on its way through the other consumer: try again.
            anyhow::bail!("referral {id} reached before its assignment arrived");
        }
        store::tolerate_refusal(result)
    }
}
