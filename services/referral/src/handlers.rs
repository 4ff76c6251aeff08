//! How the referral service reacts to other services' events. Every command sent from
//! here is idempotent in the aggregate (a redelivered event finds the work done).

use std::sync::Arc;

use careloop_backbone::store::{self, Cqrs};
use careloop_backbone::{EventHandler, Incoming};
use careloop_config::DueTimes;
use careloop_events::{Payload, from_timestamp};
use sqlx::PgConnection;

use crate::domain::{MatchingInputs, Priority, Received, Referral, ReferralCommand};

pub struct Handlers {
    pub cqrs: Arc<Cqrs<Referral>>,
    pub acceptance_due: DueTimes,
    pub first_contact_due: DueTimes,
}

#[async_trait::async_trait]
impl EventHandler for Handlers {
    async fn handle(&self, event: &Incoming, tx: &mut PgConnection) -> anyhow::Result<()> {
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
                let submitted_at = from_timestamp(event.envelope.occurred_at.as_ref());
                sqlx::query(
                    "INSERT INTO referral.person_referrals (person_ref, referral_id, submitted_at)
                     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                )
                .bind(&s.person_ref)
                .bind(&s.referral_id)
                .bind(submitted_at)
                .execute(&mut *tx)
                .await?;
                let receive = ReferralCommand::Receive(Box::new(received));
                store::tolerate_refusal(
                    store::execute(&self.cqrs, &s.referral_id, receive, &meta).await,
                )?;
                // Consent revoked after this submission, its event handled first.
                let revoked: Option<String> = sqlx::query_scalar(
                    "SELECT reason FROM referral.revoked_consents
                     WHERE person_ref = $1 AND revoked_at >= $2",
                )
                .bind(&s.person_ref)
                .bind(submitted_at)
                .fetch_optional(&mut *tx)
                .await?;
                match revoked {
                    Some(reason) => (s.referral_id.clone(), ReferralCommand::Cancel { reason }),
                    None => return Ok(()),
                }
            }
            Payload::ReferralWithdrawn(w) => (
                w.referral_id.clone(),
                ReferralCommand::Cancel {
                    reason: format!("withdrawn by the hospital: {}", w.reason),
                },
            ),
            Payload::ConsentRevoked(c) => {
                let revoked_at = from_timestamp(c.revoked_at.as_ref());
                sqlx::query(
                    "INSERT INTO referral.revoked_consents (person_ref, revoked_at, reason)
                     VALUES ($1, $2, $3)
                     ON CONFLICT (person_ref) DO UPDATE SET revoked_at = $2, reason = $3",
                )
                .bind(&c.person_ref)
                .bind(revoked_at)
                .bind(&c.reason)
                .execute(&mut *tx)
                .await?;
                // Every referral of the person submitted before the revocation.
                let referrals: Vec<String> = sqlx::query_scalar(
                    "SELECT referral_id FROM referral.person_referrals
                     WHERE person_ref = $1 AND submitted_at <= $2",
                )
                .bind(&c.person_ref)
                .bind(revoked_at)
                .fetch_all(&mut *tx)
                .await?;
                for id in referrals {
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
        store::tolerate_refusal(store::execute(&self.cqrs, &id, command, &meta).await)
    }
}
