//! OperationOutcome: how the FHIR edge says no, naming the failing element by its
//! FHIRPath expression; every error on a `/fhir` route has this shape.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::Problem;

pub const FHIR_JSON: &str = "application/fhir+json";

#[derive(Debug, Clone, PartialEq)]
pub struct OperationOutcome {
    pub status: StatusCode,
    /// invalid | required | value | not-found | forbidden | security | exception
    pub code: &'static str,
    pub expression: Option<String>,
    pub diagnostics: String,
    /// `Retry-After` seconds, for a dependency unavailable (503).
    pub retry_after: Option<u32>,
}

impl OperationOutcome {
    pub fn invalid(expression: impl Into<String>, diagnostics: impl Into<String>) -> Self {
        OperationOutcome {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "invalid",
            expression: Some(expression.into()),
            diagnostics: diagnostics.into(),
            retry_after: None,
        }
    }

    pub fn required(expression: impl Into<String>) -> Self {
        let expression = expression.into();
        OperationOutcome {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "required",
            diagnostics: format!("{expression} is required"),
            expression: Some(expression),
            retry_after: None,
        }
    }

    /// The body is not a FHIR resource at all (400).
    pub fn structure(diagnostics: impl Into<String>) -> Self {
        OperationOutcome {
            status: StatusCode::BAD_REQUEST,
            code: "structure",
            expression: None,
            diagnostics: diagnostics.into(),
            retry_after: None,
        }
    }
}

/// An error in the route's own format: OperationOutcome under `/fhir`, problem+json
/// elsewhere (for answers given before a handler runs: access, deadlines).
pub fn refuse(path: &str, p: Problem) -> Response {
    if path == "/fhir" || path.starts_with("/fhir/") {
        OperationOutcome::from(p).into_response()
    } else {
        p.into_response()
    }
}

impl From<crate::AccessDenied> for OperationOutcome {
    fn from(e: crate::AccessDenied) -> Self {
        Problem::from(e).into()
    }
}

impl From<Problem> for OperationOutcome {
    fn from(p: Problem) -> Self {
        let status = StatusCode::from_u16(p.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let code = match p.status {
            401 => "security",
            403 => "forbidden",
            404 => "not-found",
            409 => "conflict",
            400 | 422 => "invalid",
            503 => "transient",
            _ => "exception",
        };
        OperationOutcome {
            status,
            code,
            expression: p.field,
            diagnostics: p.detail,
            retry_after: p.retry_after,
        }
    }
}

impl IntoResponse for OperationOutcome {
    fn into_response(self) -> Response {
        let mut issue = json!({
            "severity": "error",
            "code": self.code,
            "diagnostics": self.diagnostics,
        });
        if let Some(e) = self.expression {
            issue["expression"] = json!([e]);
        }
        let body = json!({"resourceType": "OperationOutcome", "issue": [issue]});
        let mut res = (self.status, axum::Json(body)).into_response();
        res.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
        if let Some(s) = self.retry_after {
            res.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"careloop\""),
            );
        }
        res
    }
}
