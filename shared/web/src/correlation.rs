//! Correlation ids: taken from the `X-Correlation-Id` request header or made fresh,
//! then carried in event metadata and NATS headers so one referral's journey can be
//! followed across services in the logs.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use std::convert::Infallible;

pub const HEADER: &str = "x-correlation-id";

#[derive(Debug, Clone)]
pub struct CorrelationId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for CorrelationId {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let id = parts
            .headers
            .get(HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty() && v.len() <= 128 && v.is_ascii())
            .map(str::to_string)
            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        Ok(CorrelationId(id))
    }
}
