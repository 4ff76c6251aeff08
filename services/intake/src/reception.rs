//! The reception every channel goes through (REST, FHIR, HL7 v2): it finds or creates
//! the person by any shared identifier, keeps their details and consent in the PHI
//! vault, and submits the referral, once.
//!
//! A referral's id is derived from its facility, person and discharge time, so the
//! same discharge sent twice, over the same channel or another, is one referral; the
//! second answer names the first.

use std::sync::Arc;

use careloop_backbone::Metadata;
use careloop_backbone::store::{self, Cqrs, Start};
use careloop_web::Problem;
use chrono::{DateTime, Utc};
use cqrs_es::AggregateError;
use sqlx::PgPool;

use crate::domain::{
    Admission, AdmissionCommand, AdmissionDetails, Consent, ErasureCause, Identifier, NewReferral,
    Person, PersonCommand, PersonDetails, ReferralSubmission, SubmissionCommand, SubmissionError,
    SubmissionEvent, SubmittedReferral,
};
use crate::identity;

/// The field a refusal of the person's identifiers names (each channel says it its
/// own way: `PID-3`, `Patient.identifier`).
pub const IDENTIFIERS: &str = "person.identifiers";

fn vault_problem(e: careloop_vault::VaultError) -> Problem {
    match e {
        careloop_vault::VaultError::Database(e) => Problem::from(e),
        other => Problem::internal(other),
    }
}

/// An encounter as a hospital reports it (REST or HL7).
pub struct ReportedEncounter {
    pub class: crate::domain::EncounterClass,
    pub started_at: DateTime<Utc>,
    /// The end of an inpatient stay, once known.
    pub ended_at: Option<DateTime<Utc>>,
    /// The unit of a stay (its admission's).
    pub unit: String,
}

/// What became of a submission.
pub struct Accepted {
    pub referral_id: String,
    pub person_ref: String,
    /// The same discharge was referred before; this is that referral.
    pub duplicate: bool,
}

#[derive(Clone)]
pub struct Reception {
    pub pool: PgPool,
    pub persons: Arc<Cqrs<Person>>,
    pub submissions: Arc<Cqrs<ReferralSubmission>>,
    pub admissions: Arc<Cqrs<Admission>>,
    pub encounters: Arc<Cqrs<crate::domain::Encounter>>,
    pub person_store: Arc<store::EventStore<Person>>,
    /// Referrals and admissions are taken for registered facilities only.
    pub facilities: careloop_identity::facilities::Registry,
    /// Every read or change of a person's details is recorded.
    pub audit: careloop_identity::audit::Audit,
    /// The person's details are sealed under their data key; identifiers are found
    /// by keyed digest.
    pub vault: careloop_vault::Vault,
}

fn resolve_problem(e: identity::ResolveError) -> Problem {
    match e {
        identity::ResolveError::TooMany(why) => Problem::invalid(IDENTIFIERS, why),
        identity::ResolveError::Database(e) => Problem::from(e),
        identity::ResolveError::Vault(why) => Problem::internal(why),
    }
}

impl Reception {
    /// Refused (422, naming `field`) unless `facility` is registered.
    pub async fn check_registered(&self, facility: &str, field: &str) -> Result<(), Problem> {
        let known = self.facilities.is_registered(facility).await?;
        if known {
            Ok(())
        } else {
            Err(Problem::invalid(
                field.to_string(),
                format!(
                    "facility {facility} is not registered: an administrator registers it first"
                ),
            ))
        }
    }

    /// Records the person (found by any shared identifier, or new) and their consent,
    /// then submits the referral.
    pub async fn submit(
        &self,
        referral: NewReferral,
        meta: &Metadata,
    ) -> Result<Accepted, Problem> {
        let details = referral.person().clone();
        let consent = Some(referral.consent().clone());
        let person_ref = self.record(details, consent, meta).await?;
        self.submit_for(&referral, &person_ref, meta).await
    }

    /// Submits a referral for a person already in the vault.
    pub async fn submit_for(
        &self,
        referral: &NewReferral,
        person_ref: &str,
        meta: &Metadata,
    ) -> Result<Accepted, Problem> {
        let submitted = referral.submitted_for(person_ref);
        let id = submitted.referral_id.clone();
        // A discharge is usually referred once: decided as new, checked by the store.
        let result = store::execute_from(
            &self.submissions,
            &id,
            SubmissionCommand::Submit(Box::new(submitted)),
            meta,
            Start::New,
        )
        .await;
        let duplicate = match result {
            Ok(()) => false,
            Err(AggregateError::UserError(SubmissionError::AlreadySubmitted)) => true,
            Err(e) => return Err(store::to_problem(e)),
        };
        Ok(Accepted {
            referral_id: id,
            person_ref: person_ref.to_string(),
            duplicate,
        })
    }

    /// Finds (or creates) the person and records what they sent about them.
    pub async fn record_person(
        &self,
        person: PersonDetails,
        meta: &Metadata,
    ) -> Result<String, Problem> {
        self.record(person, None, meta).await
    }

    /// Finds (or creates) the person and records their details and, when a referral
    /// brings it, their consent, in one command.
    async fn record(
        &self,
        person: PersonDetails,
        consent: Option<Consent>,
        meta: &Metadata,
    ) -> Result<String, Problem> {
        let resolved = identity::resolve(&self.pool, &self.vault, &person.identifiers)
            .await
            .map_err(resolve_problem)?;
        let person_ref = resolved.person_ref.to_string();
        let command = match consent {
            Some(consent) => PersonCommand::RecordWithConsent {
                details: person,
                consent,
            },
            None => PersonCommand::Record(person),
        };
        // A person just given their reference has no events: nothing to load.
        let start = Start::new_when(resolved.new);
        store::execute_from(&self.persons, &person_ref, command, meta, start)
            .await
            .map_err(store::to_problem)?;
        Ok(person_ref)
    }

    /// Updates the details of a person careloop knows (HL7 A08); unknown: nothing.
    pub async fn update_known_person(
        &self,
        person: PersonDetails,
        meta: &Metadata,
    ) -> Result<Option<String>, Problem> {
        match self.find(&person.identifiers).await? {
            Some(_) => self.record_person(person, meta).await.map(Some),
            None => Ok(None),
        }
    }

    pub async fn record_consent(
        &self,
        person_ref: &str,
        consent: Consent,
        meta: &Metadata,
    ) -> Result<(), Problem> {
        store::execute(
            &self.persons,
            person_ref,
            PersonCommand::RecordConsent(consent),
            meta,
        )
        .await
        .map_err(store::to_problem)
    }

    /// Revokes the person's consent: ConsentRevoked cancels their open referrals and
    /// stops follow-up.
    pub async fn revoke_consent(
        &self,
        person_ref: &str,
        reason: String,
        meta: &Metadata,
    ) -> Result<(), Problem> {
        let cmd = PersonCommand::RevokeConsent {
            revoked_at: Utc::now(),
            reason,
        };
        store::execute(&self.persons, person_ref, cmd, meta)
            .await
            .map_err(store::to_problem)
    }

    pub async fn find(&self, identifiers: &[Identifier]) -> Result<Option<String>, Problem> {
        Ok(identity::find(&self.pool, &self.vault, identifiers)
            .await
            .map_err(resolve_problem)?
            .map(|p| p.to_string()))
    }

    /// Whether `facility` ever referred this person: a hospital acts on a person's
    /// consent or refers them again only then.
    pub async fn facility_referred(
        &self,
        person_ref: &str,
        facility: &str,
    ) -> Result<bool, Problem> {
        let found: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM intake.events
             WHERE aggregate_type = 'ReferralSubmission' AND event_type = 'ReferralSubmitted'
               AND payload->'ReferralSubmitted'->>'person_ref' = $1
               AND payload->'ReferralSubmitted'->>'facility' = $2
             LIMIT 1",
        )
        .bind(person_ref)
        .bind(facility)
        .fetch_optional(&self.pool)
        .await
        .map_err(Problem::from)?;
        Ok(found.is_some())
    }

    /// For a hospital principal: 403 unless its facility referred the person.
    pub async fn check_facility(
        &self,
        principal: &careloop_web::Principal,
        person_ref: &str,
    ) -> Result<(), Problem> {
        if principal.role != careloop_web::Role::Hospital {
            return Ok(());
        }
        let facility = principal.facility.as_deref().unwrap_or_default();
        if self.facility_referred(person_ref, facility).await? {
            Ok(())
        } else {
            Err(Problem::forbidden(
                "this person was never referred by your facility",
            ))
        }
    }

    /// The person as the vault holds them (empty when unknown).
    pub async fn person(&self, person_ref: &str) -> Result<Person, Problem> {
        store::load(&self.person_store, person_ref)
            .await
            .map_err(store::to_problem)
    }

    /// Whether the person has a consent to peer-support referral in force.
    pub async fn has_consent(&self, person_ref: &str) -> Result<bool, Problem> {
        Ok(self.person(person_ref).await?.consent.is_some())
    }

    /// The referral as it was submitted, and when; `None` when intake never took it.
    pub async fn submission(
        &self,
        referral_id: &str,
    ) -> Result<Option<(SubmittedReferral, DateTime<Utc>)>, Problem> {
        let row: Option<(serde_json::Value, DateTime<Utc>)> = sqlx::query_as(
            "SELECT payload, recorded_at FROM intake.events
             WHERE aggregate_type = 'ReferralSubmission' AND aggregate_id = $1 AND sequence = 1",
        )
        .bind(referral_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(Problem::from)?;
        let Some((mut payload, at)) = row else {
            return Ok(None);
        };
        crate::sealing::open_notes(&self.vault, &mut payload)
            .await
            .map_err(Problem::internal)?;
        Ok(match serde_json::from_value(payload) {
            Ok(SubmissionEvent::ReferralSubmitted(s)) => Some((*s, at)),
            _ => None,
        })
    }

    /// Erases the person: destroys their data key first (from then on nothing sealed
    /// for them opens, wherever it was copied), forgets their identifiers (the same
    /// MRN names a new person), then records PersonErased, which the other services
    /// act on. Repeating it finishes what a crash left undone and changes nothing
    /// else. `None` when careloop never knew the person.
    pub async fn erase(
        &self,
        person_ref: &str,
        cause: ErasureCause,
        meta: &Metadata,
    ) -> Result<Option<DateTime<Utc>>, Problem> {
        let Ok(uuid) = uuid::Uuid::parse_str(person_ref) else {
            return Ok(None);
        };
        let person = self.person(person_ref).await?;
        if let Some(at) = person.erased_at {
            // Done before: make sure nothing was left (a crash between the steps).
            self.vault.erase(person_ref).await.map_err(vault_problem)?;
            identity::forget(&self.pool, uuid).await?;
            return Ok(Some(at));
        }
        if !self.is_known(person_ref).await? {
            return Ok(None);
        }
        let erased_at = Utc::now();
        self.vault.erase(person_ref).await.map_err(vault_problem)?;
        identity::forget(&self.pool, uuid).await?;
        let cmd = PersonCommand::Erase { erased_at, cause };
        store::execute(&self.persons, person_ref, cmd, meta)
            .await
            .map_err(store::to_problem)?;
        Ok(Some(
            self.person(person_ref)
                .await?
                .erased_at
                .unwrap_or(erased_at),
        ))
    }

    /// Whether intake ever recorded this person.
    pub async fn is_known(&self, person_ref: &str) -> Result<bool, Problem> {
        let known: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM intake.events WHERE aggregate_type = 'Person' AND aggregate_id = $1 LIMIT 1",
        )
        .bind(person_ref)
        .fetch_optional(&self.pool)
        .await?;
        Ok(known.is_some())
    }

    /// A person as a principal may read them: for a hospital, only one its facility
    /// referred (checked first, so it learns nothing of anyone else: neither that they
    /// exist nor that they were erased); 410 once erased; `None` when unknown.
    pub async fn readable_person(
        &self,
        principal: &careloop_web::Principal,
        person_ref: &str,
    ) -> Result<Option<Person>, Problem> {
        self.check_facility(principal, person_ref).await?;
        if uuid::Uuid::parse_str(person_ref).is_err() {
            return Ok(None);
        }
        let person = self.person(person_ref).await?;
        Self::require_not_erased(&person)?;
        Ok(person.details.is_some().then_some(person))
    }

    /// 410 when the person was erased.
    pub fn require_not_erased(person: &Person) -> Result<(), Problem> {
        match person.erased_at {
            Some(_) => Err(crate::domain::PersonError::Erased.into()),
            None => Ok(()),
        }
    }

    /// Records an admission of a person careloop knows; `None` for anyone else
    /// (careloop keeps nothing about people it was never asked to help).
    pub async fn admit(
        &self,
        identifiers: &[Identifier],
        facility: &str,
        admitted_at: DateTime<Utc>,
        unit: &str,
        meta: &Metadata,
    ) -> Result<Option<String>, Problem> {
        let Some(person_ref) = self.find(identifiers).await? else {
            return Ok(None);
        };
        self.record_admission(person_ref, facility, admitted_at, unit, meta)
            .await
            .map(Some)
    }

    /// Records an admission of a person careloop knows; its id.
    async fn record_admission(
        &self,
        person_ref: String,
        facility: &str,
        admitted_at: DateTime<Utc>,
        unit: &str,
        meta: &Metadata,
    ) -> Result<String, Problem> {
        let facts = AdmissionDetails {
            person_ref,
            facility: facility.to_string(),
            admitted_at,
            unit: unit.to_string(),
        };
        let id = facts.admission_id();
        store::execute(&self.admissions, &id, AdmissionCommand::Record(facts), meta)
            .await
            .map_err(store::to_problem)?;
        Ok(id)
    }

    /// Records a referred person's encounter (an inpatient stay is also their
    /// admission, so a readmission links as from any channel); the encounter's id, or
    /// `None` when careloop does not know the person (nothing stored).
    pub async fn record_encounter(
        &self,
        identifiers: &[Identifier],
        facility: &str,
        encounter: ReportedEncounter,
        meta: &Metadata,
    ) -> Result<Option<String>, Problem> {
        let Some(person_ref) = self.find(identifiers).await? else {
            return Ok(None);
        };
        let ReportedEncounter {
            class,
            started_at,
            ended_at,
            unit,
        } = encounter;
        if class == crate::domain::EncounterClass::Inpatient {
            self.record_admission(person_ref.clone(), facility, started_at, &unit, meta)
                .await?;
        }
        let details = crate::domain::EncounterDetails {
            person_ref,
            facility: facility.to_string(),
            class,
            started_at,
            ended_at,
        };
        let id = details.encounter_id();
        store::execute(&self.encounters, &id, details, meta)
            .await
            .map_err(store::to_problem)?;
        Ok(Some(id))
    }

    /// Cancels an admission reported before (HL7 A11).
    pub async fn cancel_admission(
        &self,
        identifiers: &[Identifier],
        facility: &str,
        admitted_at: DateTime<Utc>,
        meta: &Metadata,
    ) -> Result<bool, Problem> {
        let Some(person_ref) = self.find(identifiers).await? else {
            return Ok(false);
        };
        let id = AdmissionDetails {
            person_ref,
            facility: facility.to_string(),
            admitted_at,
            unit: String::new(),
        }
        .admission_id();
        let cmd = AdmissionCommand::Cancel {
            reason: "admission cancelled by the hospital".into(),
        };
        store::execute(&self.admissions, &id, cmd, meta)
            .await
            .map_err(store::to_problem)?;
        Ok(true)
    }

    /// Withdraws the referral of a discharge the hospital cancelled (HL7 A13).
    pub async fn withdraw(
        &self,
        identifiers: &[Identifier],
        facility: &str,
        discharged_at: DateTime<Utc>,
        meta: &Metadata,
    ) -> Result<bool, Problem> {
        let Some(person_ref) = self.find(identifiers).await? else {
            return Ok(false);
        };
        let id = crate::domain::referral_id(facility, &person_ref, discharged_at);
        let cmd = SubmissionCommand::Withdraw {
            reason: "the hospital cancelled the discharge".into(),
        };
        store::execute(&self.submissions, &id, cmd, meta)
            .await
            .map_err(store::to_problem)?;
        Ok(true)
    }
}
