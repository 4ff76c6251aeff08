//! FHIR R4 at the hospital edge, following the SDOH Clinical Care IG's referral
//! workflow: a transaction Bundle (Patient + ServiceRequest + Consent) or a
//! ServiceRequest for a Patient sent earlier creates a referral; the Task that tracks
//! it is read back with `GET /fhir/Task/{id}` (each status change a version:
//! `_history`), or searched ([`search`]). A Consent with status `inactive` revokes
//! consent.
//!
//! Resources are read as JSON with the few elements careloop needs, each checked
//! with its FHIRPath-like expression, so an invalid resource gets an
//! OperationOutcome naming the failing element and nothing is stored. Server ids:
//! `Patient/{person_ref}`, `ServiceRequest/{referral_id}`, `Task/{referral_id}`.

pub mod api;
pub mod capability;
pub mod history;
pub mod outcome;
pub mod queries;
pub mod read;
pub mod search;
pub mod task;
