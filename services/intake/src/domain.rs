//! Intake's aggregates: the Person (the PHI vault), the ReferralSubmission (what a
//! hospital sent, with its consent), the Admission (a referred person admitted again),
//! the Encounter (their stays and visits, for the measures of impact)
//! and the ReferralTask (the hospital's view of the referral: its status as the
//! referral service reports it and the peer who holds it). [`NewReferral`] is the one
//! way a referral comes in, whatever the channel.

mod admission;
mod encounter;
mod new_referral;
mod person;
mod submission;
mod task;

pub use admission::{
    Admission, AdmissionCommand, AdmissionDetails, AdmissionError, AdmissionEvent,
};
pub use encounter::{Encounter, EncounterClass, EncounterDetails, EncounterError, EncounterEvent};
pub use new_referral::{
    Field, InvalidReferral, NewReferral, ReferralDraft, check_person, language_code, referral_id,
    region_of,
};
pub use person::{
    ErasureCause, Identifier, Person, PersonCommand, PersonDetails, PersonError, PersonEvent,
    PersonName,
};
pub use submission::{
    Consent, Preferences, ReferralSubmission, RiskLevel, SubmissionCommand, SubmissionError,
    SubmissionEvent, SubmittedReferral,
};
pub use task::{ReferralTask, StatusChange, TaskCommand, TaskError, TaskEvent};
