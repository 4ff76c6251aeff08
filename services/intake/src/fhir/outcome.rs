//! OperationOutcome: how the FHIR edge says no (the type lives in `careloop-web`, so the
//! access layer answers FHIR routes the same way).

pub use careloop_web::operation_outcome::{FHIR_JSON, OperationOutcome};
