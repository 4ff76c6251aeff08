//! RFC 9457 `application/problem+json` errors. Every error a client sees has this
//! shape; validation errors name the failing field in `field`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Problem {
    /// `about:blank`: the title is the HTTP status phrase (RFC 9457, section 4.2.1).
    #[serde(rename = "type")]
    pub type_uri: &'static str,
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Extra members, e.g. the current status of a referral on a 409.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub extensions: Option<Box<serde_json::Map<String, serde_json::Value>>>,
    /// Seconds after which a retry may succeed (`Retry-After`, on 503 and 409).
    #[serde(skip)]
    pub retry_after: Option<u32>,
}

impl Problem {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Problem {
            type_uri: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
            extensions: Default::default(),
            retry_after: None,
        }
    }

    /// A dependency (the database, NATS) is unavailable or too slow: 503, retry after
    /// a moment. The client's request was fine; nothing was done.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        let mut p = Self::new(StatusCode::SERVICE_UNAVAILABLE, detail);
        p.retry_after = Some(2);
        p
    }

    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    pub fn with_extension(mut self, key: &str, value: impl Serialize) -> Self {
        self.extensions.get_or_insert_default().insert(
            key.to_string(),
            serde_json::to_value(value).unwrap_or_default(),
        );
        self
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    /// A well-formed request whose `field` breaks a rule (422).
    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, detail).with_field(field)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, detail)
    }

    /// Logs the cause (never PHI: callers pass errors, not request bodies) and hides it.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error; it has been logged",
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut res = (status, axum::Json(&self)).into_response();
        res.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(s) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"careloop\""),
            );
        }
        res
    }
}

/// A database error as the client hears it: 503 (retry) when the database is
/// unavailable or slow, 422 when it refused a value that can never be stored, else a
/// logged 500.
impl From<sqlx::Error> for Problem {
    fn from(e: sqlx::Error) -> Self {
        if crate::dependency::is_transient(&e) {
            tracing::warn!(error = %e, "database unavailable");
            Problem::unavailable("the database is not answering now; retry shortly")
        } else if crate::dependency::is_bad_value(&e) {
            Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "a value cannot be stored (for example a NUL character)",
            )
        } else {
            Problem::internal(e)
        }
    }
}

/// careloop failing to serialise its own value: a bug, logged.
impl From<serde_json::Error> for Problem {
    fn from(e: serde_json::Error) -> Self {
        Problem::internal(e)
    }
}

/// Any other failure: a dependency's (503) when its chain says so, else a logged 500.
impl From<anyhow::Error> for Problem {
    fn from(e: anyhow::Error) -> Self {
        if crate::dependency::is_transient_chain(e.as_ref()) {
            tracing::warn!(error = %format!("{e:#}"), "dependency unavailable");
            Problem::unavailable("a dependency is not answering now; retry shortly")
        } else {
            Problem::internal(format!("{e:#}"))
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.title, self.detail)
    }
}
