//! HTTP plumbing every careloop service shares: bearer-token auth with roles, RFC 9457
//! problem+json errors, a JSON body extractor that names the failing field, the
//! `Idempotency-Key` store, correlation ids, and `/healthz`, `/readyz`, `/metrics`.

pub mod access;
pub mod auth;
pub mod availability;
pub mod correlation;
pub mod csv;
pub mod dependency;
pub mod health;
pub mod idempotency;
pub mod jose;
pub mod json;
pub mod jwks;
pub mod limits;
pub mod operation_outcome;
pub mod paging;
pub mod problem;
pub mod query;

pub use access::{RouteRule, Rule};
pub use auth::{AccessDenied, Authenticated, Authenticator, Principal, Role};
pub use careloop_access::Needs;
pub use correlation::CorrelationId;
pub use json::ApiJson;
pub use problem::Problem;
pub use query::ApiQuery;
