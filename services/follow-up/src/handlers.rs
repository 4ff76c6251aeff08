//! How the follow-up service reacts to other services' events: a peer assignment
//! starts (or moves) a plan, a closed referral cancels it, an admission may be a
//! readmission. Every command is idempotent in the aggregate.

use std::sync::Arc;

use careloop_backbone::store::{self, Cqrs};
use careloop_backbone::{EventHandler, Incoming};
use careloop_events::{Payload, from_timestamp, v1};
use sqlx::PgConnection;

use crate::domain::facts::{
    Admission, AdmissionFacts, AdmissionFactsCommand, Discharge, DischargeFacts, FactsCommand,
};
use crate::domain::{FollowUpCommand, FollowUpPlan, Protocol};
use crate::measures::metrics::REFERRALS_RECEIVED;

pub struct Handlers {
    pub cqrs: Arc<Cqrs<FollowUpPlan>>,
    pub discharges: Arc<Cqrs<DischargeFacts>>,
    pub admissions: Arc<Cqrs<AdmissionFacts>>,
    pub protocol: Protocol,
}

#[async_trait::async_trait]
impl EventHandler for Handlers {
    async fn handle(&self, event: &Incoming, tx: &mut PgConnection) -> anyhow::Result<()> {
        let meta = event.metadata(crate::SERVICE);
        let run = |id: String, command| {
            let meta = meta.clone();
            async move { store::tolerate_refusal(store::execute(&self.cqrs, &id, command, &meta).await) }
        };
        self.note_facts(event).await?;
        match &event.payload {
            Payload::PeerAssigned(a) => {
                let priority = v1::Priority::of(a.priority).name();
                let discharged_at = from_timestamp(a.discharged_at.as_ref());
                sqlx::query(
                    "INSERT INTO follow_up.plans_by_person (person_ref, referral_id, discharged_at)
                     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                )
                .bind(&a.person_ref)
                .bind(&a.referral_id)
                .bind(discharged_at)
                .execute(&mut *tx)
                .await?;
                let command = FollowUpCommand::Start {
                    peer_id: a.peer_id.clone(),
                    person_ref: a.person_ref.clone(),
                    facility: a.facility.clone(),
                    priority: priority.to_string(),
                    discharged_at,
                    first_contact_due_at: from_timestamp(a.first_contact_due_at.as_ref()),
                    protocol: self.protocol.clone(),
                    attempt: a.attempt.max(1),
                };
                run(a.referral_id.clone(), command).await?;
                // Admissions reported before the plan existed still link to it.
                let earlier: Vec<(String, chrono::DateTime<chrono::Utc>)> = sqlx::query_as(
                    "SELECT admission_id, admitted_at FROM follow_up.person_admissions
                     WHERE person_ref = $1 AND admitted_at > $2
                       AND admitted_at <= $2 + interval '30 days'",
                )
                .bind(&a.person_ref)
                .bind(discharged_at)
                .fetch_all(&mut *tx)
                .await?;
                for (admission_id, admitted_at) in earlier {
                    let link = FollowUpCommand::LinkReadmission {
                        admission_id,
                        admitted_at,
                    };
                    run(a.referral_id.clone(), link).await?;
                }
                Ok(())
            }
            Payload::PeerUnassigned(u) if !u.peer_id.is_empty() => {
                let command = FollowUpCommand::Unassign {
                    peer_id: u.peer_id.clone(),
                };
                run(u.referral_id.clone(), command).await
            }
            Payload::ReferralCancelled(c) => {
                run(c.referral_id.clone(), cancel("referral cancelled", false)).await
            }
            // A rejected referral may be rerouted: a newer assignment reopens the plan.
            Payload::ReferralRejected(r) => {
                run(r.referral_id.clone(), cancel("referral rejected", true)).await
            }
            Payload::ReferralStatusChanged(s) if s.to_status == "entered-in-error" => {
                run(
                    s.referral_id.clone(),
                    cancel("referral entered in error", false),
                )
                .await
            }
            Payload::AdmissionCancelled(a) => {
                sqlx::query("DELETE FROM follow_up.person_admissions WHERE admission_id = $1")
                    .bind(&a.admission_id)
                    .execute(&mut *tx)
                    .await?;
                let plans: Vec<String> = sqlx::query_scalar(
                    "SELECT referral_id FROM follow_up.plans_by_person WHERE person_ref = $1",
                )
                .bind(&a.person_ref)
                .fetch_all(&mut *tx)
                .await?;
                for referral_id in plans {
                    let command = FollowUpCommand::UnlinkReadmission {
                        admission_id: a.admission_id.clone(),
                    };
                    run(referral_id, command).await?;
                }
                Ok(())
            }
            Payload::AdmissionRecorded(a) => {
                let admitted_at = from_timestamp(a.admitted_at.as_ref());
                sqlx::query(
                    "INSERT INTO follow_up.person_admissions (admission_id, person_ref, admitted_at)
                     VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
                )
                .bind(&a.admission_id)
                .bind(&a.person_ref)
                .bind(admitted_at)
                .execute(&mut *tx)
                .await?;
                // Plans this admission may be a readmission for; the aggregate
                // decides on the window.
                let plans: Vec<String> = sqlx::query_scalar(
                    "SELECT referral_id FROM follow_up.plans_by_person
                     WHERE person_ref = $1 AND discharged_at < $2
                       AND discharged_at >= $2 - interval '30 days'",
                )
                .bind(&a.person_ref)
                .bind(admitted_at)
                .fetch_all(&mut *tx)
                .await?;
                for referral_id in plans {
                    let command = FollowUpCommand::LinkReadmission {
                        admission_id: a.admission_id.clone(),
                        admitted_at,
                    };
                    run(referral_id, command).await?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

impl Handlers {
    /// Keeps the facts the continuity measures need, as follow-up's own events.
    async fn note_facts(&self, event: &Incoming) -> anyhow::Result<()> {
        let meta = event.metadata(crate::SERVICE);
        let note = |id: String, command: FactsCommand| {
            let meta = meta.clone();
            async move {
                store::execute(&self.discharges, &id, command, &meta)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))
            }
        };
        let status =
            |id: &str, s: &str| note(id.to_string(), FactsCommand::NoteStatus(s.to_string()));
        let assignment =
            |id: &str, s: &str| note(id.to_string(), FactsCommand::NoteAssignment(s.to_string()));
        match &event.payload {
            Payload::ReferralSubmitted(s) => {
                let channel = match v1::Channel::try_from(s.channel) {
                    Ok(v1::Channel::Fhir) => "fhir",
                    Ok(v1::Channel::Hl7) => "hl7",
                    _ => "api",
                };
                REFERRALS_RECEIVED
                    .with_label_values(&[s.facility.as_str(), channel])
                    .inc();
                Ok(())
            }
            Payload::ReferralReceived(r) => {
                let discharge = Discharge {
                    person_ref: r.person_ref.clone(),
                    facility: r.facility.clone(),
                    discharged_at: from_timestamp(r.discharged_at.as_ref()),
                };
                note(
                    r.referral_id.clone(),
                    FactsCommand::NoteDischarge(discharge),
                )
                .await?;
                status(&r.referral_id, "received").await
            }
            Payload::ReferralAccepted(a) => status(&a.referral_id, "accepted").await,
            Payload::ReferralRejected(r) => status(&r.referral_id, "rejected").await,
            Payload::ReferralCancelled(c) => status(&c.referral_id, "cancelled").await,
            Payload::ReferralStatusChanged(s) => status(&s.referral_id, &s.to_status).await,
            Payload::PeerAssigned(a) => assignment(&a.referral_id, "assigned").await,
            Payload::AssignmentWaitlisted(w) => assignment(&w.referral_id, "waitlisted").await,
            Payload::PeerUnassigned(u) => assignment(&u.referral_id, "unassigned").await,
            Payload::AdmissionRecorded(a) => {
                let admission = Admission {
                    person_ref: a.person_ref.clone(),
                    facility: a.facility.clone(),
                    admitted_at: from_timestamp(a.admitted_at.as_ref()),
                };
                let cmd = AdmissionFactsCommand::Note(admission);
                store::execute(&self.admissions, &a.admission_id, cmd, &meta)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))
            }
            Payload::AdmissionCancelled(a) => {
                let cmd = AdmissionFactsCommand::Withdraw;
                store::execute(&self.admissions, &a.admission_id, cmd, &meta)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))
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
