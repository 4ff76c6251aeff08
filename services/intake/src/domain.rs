//! Intake's aggregates: the Person (the PHI vault), the ReferralSubmission (what a
//! hospital sent, with its consent) and the Admission (a referred person admitted
//! again).

mod admission;
mod person;
mod submission;

pub use admission::{Admission, AdmissionCommand, AdmissionError, AdmissionEvent, AdmissionFacts};
pub use person::{
    ConsentRecord, Identifier, Person, PersonCommand, PersonDetails, PersonEvent, PersonName,
};
pub use submission::{
    Consent, Preferences, ReferralSubmission, RiskLevel, SubmissionCommand, SubmissionError,
    SubmissionEvent, Submitted,
};
