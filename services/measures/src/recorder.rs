//! The consumer side of the measures: the facts they count, noted from other
//! services' events as the hosting service's own events ([`crate::records`]). Every
//! note is idempotent, so a redelivered event changes nothing.

use std::sync::Arc;

use careloop_backbone::store::{self, Cqrs, Start};
use careloop_backbone::{EventHandler, Incoming};
use careloop_events::{Channel, Payload, from_timestamp};
use sqlx::PgConnection;

use crate::records::{
    AdmissionRecord, AdmissionRecordCommand, Discharge, DischargeRecord, DischargeRecordCommand,
    EncounterRecord, ReportedAdmission, ReportedEncounter,
};

pub struct FactRecorder {
    pub discharges: Arc<Cqrs<DischargeRecord>>,
    pub admissions: Arc<Cqrs<AdmissionRecord>>,
    pub encounters: Arc<Cqrs<EncounterRecord>>,
    /// The service whose event store keeps the facts (for the metadata).
    pub service: &'static str,
}

#[async_trait::async_trait]
impl EventHandler for FactRecorder {
    async fn handle(&self, event: &Incoming, _tx: &mut PgConnection) -> anyhow::Result<()> {
        let meta = event.metadata(self.service);
        let note_from = |id: &str, command: DischargeRecordCommand, start| {
            let (id, meta) = (id.to_string(), meta.clone());
            async move {
                store::execute_from(&self.discharges, &id, command, &meta, start)
                    .await
                    .map_err(store::into_anyhow)
            }
        };
        let note = |id: &str, command| note_from(id, command, Start::Latest);
        let status = |id: &str, s: &str| note(id, DischargeRecordCommand::NoteStatus(s.into()));
        let assignment =
            |id: &str, s: &str| note(id, DischargeRecordCommand::NoteAssignment(s.into()));
        let admission = |id: &str, command: AdmissionRecordCommand| {
            let (id, meta) = (id.to_string(), meta.clone());
            async move {
                store::execute(&self.admissions, &id, command, &meta)
                    .await
                    .map_err(store::into_anyhow)
            }
        };
        match &event.payload {
            // Usually the record's first fact.
            Payload::ReferralSubmitted(s) => {
                let channel = DischargeRecordCommand::NoteChannel(Channel::from_proto(s.channel));
                note_from(&s.referral_id, channel, Start::New).await
            }
            Payload::ReferralReceived(r) => {
                let discharge = Discharge {
                    person_ref: r.person_ref.clone(),
                    facility: r.facility.clone(),
                    discharged_at: from_timestamp(r.discharged_at.as_ref()),
                };
                note(
                    &r.referral_id,
                    DischargeRecordCommand::NoteReceived(discharge),
                )
                .await
            }
            Payload::ReferralAccepted(a) => status(&a.referral_id, "accepted").await,
            Payload::ReferralRejected(r) => status(&r.referral_id, "rejected").await,
            Payload::ReferralCancelled(c) => status(&c.referral_id, "cancelled").await,
            Payload::ReferralStatusChanged(s) => match s.new_status() {
                Some(to) => status(&s.referral_id, to.as_str()).await,
                None => Ok(()),
            },
            Payload::PeerAssigned(a) => assignment(&a.referral_id, "assigned").await,
            Payload::AssignmentWaitlisted(w) => assignment(&w.referral_id, "waitlisted").await,
            Payload::PeerUnassigned(u) => assignment(&u.referral_id, "unassigned").await,
            Payload::AdmissionRecorded(a) => {
                let reported = ReportedAdmission {
                    person_ref: a.person_ref.clone(),
                    facility: a.facility.clone(),
                    admitted_at: from_timestamp(a.admitted_at.as_ref()),
                };
                admission(&a.admission_id, AdmissionRecordCommand::Note(reported)).await
            }
            Payload::AdmissionCancelled(a) => {
                admission(&a.admission_id, AdmissionRecordCommand::Withdraw).await
            }
            Payload::EncounterRecorded(e) => {
                let reported = ReportedEncounter {
                    person_ref: e.person_ref.clone(),
                    facility: e.facility.clone(),
                    class: e.encounter_class.clone(),
                    started_at: from_timestamp(e.started_at.as_ref()),
                    ended_at: e.ended_at.as_ref().map(|t| from_timestamp(Some(t))),
                };
                store::execute(&self.encounters, &e.encounter_id, reported, &meta)
                    .await
                    .map_err(store::into_anyhow)
            }
            _ => Ok(()),
        }
    }
}

/// The recorder for a service's event store in `pool`/`schema`.
pub fn recorder(pool: sqlx::PgPool, schema: &str, service: &'static str) -> FactRecorder {
    FactRecorder {
        discharges: store::cqrs(pool.clone(), schema, ()),
        admissions: store::cqrs(pool.clone(), schema, ()),
        encounters: store::cqrs(pool, schema, ()),
        service,
    }
}
