//! The readmission process manager: an admission of a referred person links, as a
//! readmission, to every follow-up plan of theirs whose discharge it follows within
//! the readmission window, whichever of the plan and the admission came first; an
//! admission the hospital cancels is unlinked again.
//!
//! The same state tells which plans a revoked consent or an erasure must stop the
//! caring contacts of ([`ReadmissionLinker::stop_caring_contacts`]).
//!
//! Its state is the person's [`PersonCare`] aggregate, kept as follow-up's own
//! events. Each handler notes its fact there, takes the state as that command left
//! it (`store::record`) and sends the plans what the rule says; linking and
//! unlinking are idempotent in the plan, so a redelivery or a race between the
//! handlers links once.

use std::sync::Arc;

use careloop_backbone::Metadata;
use careloop_backbone::store::{self, Cqrs, EventStore};
use chrono::{DateTime, Utc};

use crate::domain::{FollowUpCommand, FollowUpPlan, PersonCare, PersonCareCommand};

#[derive(Clone)]
pub struct ReadmissionLinker {
    pub people: Arc<Cqrs<PersonCare>>,
    pub people_store: Arc<EventStore<PersonCare>>,
    pub plans: Arc<Cqrs<FollowUpPlan>>,
}

impl ReadmissionLinker {
    /// A plan of `person_ref` started: link the admissions that readmit them.
    pub async fn plan_started(
        &self,
        person_ref: &str,
        referral_id: &str,
        discharged_at: DateTime<Utc>,
        meta: &Metadata,
    ) -> anyhow::Result<()> {
        let note = PersonCareCommand::NotePlan {
            referral_id: referral_id.to_string(),
            discharged_at,
        };
        let care = self.record(person_ref, note, meta).await?;
        for (admission_id, admitted_at) in care.readmissions_after(discharged_at) {
            let link = FollowUpCommand::LinkReadmission {
                admission_id: admission_id.to_string(),
                admitted_at,
            };
            self.send(referral_id, link, meta).await?;
        }
        Ok(())
    }

    /// `person_ref` was admitted: link the admission to the plans it readmits.
    pub async fn admitted(
        &self,
        person_ref: &str,
        admission_id: &str,
        admitted_at: DateTime<Utc>,
        meta: &Metadata,
    ) -> anyhow::Result<()> {
        let note = PersonCareCommand::NoteAdmission {
            admission_id: admission_id.to_string(),
            admitted_at,
        };
        let care = self.record(person_ref, note, meta).await?;
        for referral_id in care.plans_readmitted_at(admitted_at) {
            let link = FollowUpCommand::LinkReadmission {
                admission_id: admission_id.to_string(),
                admitted_at,
            };
            self.send(referral_id, link, meta).await?;
        }
        Ok(())
    }

    /// The hospital cancelled the admission: unlink it from every plan.
    pub async fn admission_cancelled(
        &self,
        person_ref: &str,
        admission_id: &str,
        meta: &Metadata,
    ) -> anyhow::Result<()> {
        let note = PersonCareCommand::NoteAdmissionCancelled {
            admission_id: admission_id.to_string(),
        };
        let care = self.record(person_ref, note, meta).await?;
        for referral_id in care.plan_ids() {
            let unlink = FollowUpCommand::UnlinkReadmission {
                admission_id: admission_id.to_string(),
            };
            self.send(referral_id, unlink, meta).await?;
        }
        Ok(())
    }

    /// The person's consent ended (revoked, or their details erased): every plan of
    /// theirs stops its caring contacts.
    pub async fn stop_caring_contacts(
        &self,
        person_ref: &str,
        reason: &str,
        meta: &Metadata,
    ) -> anyhow::Result<()> {
        let care = store::load(&self.people_store, person_ref)
            .await
            .map_err(store::into_anyhow)?;
        for referral_id in care.plan_ids() {
            let stop = FollowUpCommand::StopCaringContacts {
                reason: reason.to_string(),
                by_peer: None,
                now: Utc::now(),
            };
            self.send(referral_id, stop, meta).await?;
        }
        Ok(())
    }

    async fn record(
        &self,
        person_ref: &str,
        command: PersonCareCommand,
        meta: &Metadata,
    ) -> anyhow::Result<PersonCare> {
        store::record(&self.people, person_ref, command, meta).await
    }

    async fn send(
        &self,
        referral_id: &str,
        command: FollowUpCommand,
        meta: &Metadata,
    ) -> anyhow::Result<()> {
        store::tolerate_refusal(store::execute(&self.plans, referral_id, command, meta).await)
    }
}
