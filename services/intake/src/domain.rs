//! Intake's aggregates: the Person (the PHI vault) and the ReferralSubmission (what a
//! hospital sent, with its consent).

mod person;
mod submission;

pub use person::{Identifier, Person, PersonCommand, PersonDetails, PersonEvent, PersonName};
pub use submission::{
    Consent, Preferences, ReferralSubmission, RiskLevel, SubmissionCommand, SubmissionError,
    SubmissionEvent, Submitted,
};
