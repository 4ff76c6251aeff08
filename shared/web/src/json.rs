//! A JSON body extractor whose errors are problem+json naming the failing field
//! (`person.birth_date`), for malformed JSON, missing or unknown fields and unknown
//! enum values alike.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header;
use serde::de::DeserializeOwned;

use crate::Problem;

pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        require_json(req.headers())?;
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| Problem::bad_request(e.body_text()))?;
        parse(&bytes).map(ApiJson)
    }
}

/// 415 unless the request says its body is JSON (`application/json` or `...+json`).
pub fn require_json(headers: &axum::http::HeaderMap) -> Result<(), Problem> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let v = v
                .split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            v == "application/json" || v.ends_with("+json")
        });
    if is_json {
        Ok(())
    } else {
        Err(Problem::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "expected Content-Type: application/json",
        )
        .with_field("Content-Type"))
    }
}

/// Whether a JSON syntax error is about the text itself (bytes that are not UTF-8, a
/// lone surrogate escape): text careloop can never store, wherever it is sent.
pub fn is_bad_text(e: &serde_json::Error) -> bool {
    let m = e.to_string();
    m.contains("unicode code point")
        || m.contains("surrogate")
        || m.contains("UTF-8")
        || m.contains("hex escape")
}

/// Any JSON document, refused like [`parse`]'s: text that can never be stored, and
/// anything past [`crate::limits::scan_json`]'s bounds, as `(path, reason)`; other
/// syntax errors as `("", message)`.
pub fn parse_document(bytes: &[u8]) -> Result<serde_json::Value, (String, String, bool)> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value: serde_json::Value = serde_path_to_error::deserialize(&mut *de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if is_bad_text(&inner) {
            (
                path,
                format!("is not valid text: {}", strip_position(&inner.to_string())),
                true,
            )
        } else {
            (String::new(), inner.to_string(), false)
        }
    })?;
    de.end()
        .map_err(|e| (String::new(), e.to_string(), false))?;
    if let Some((path, reason)) = crate::limits::scan_json(&value) {
        return Err((path, reason, true));
    }
    Ok(value)
}

/// Parses `bytes` as `T`, mapping errors to problem+json with the field path. Text
/// careloop cannot store (invalid UTF-8, control characters such as NUL) and strings,
/// arrays or nesting past [`crate::limits`] are refused (422) naming the field.
pub fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut *de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        match inner.classify() {
            serde_json::error::Category::Syntax if is_bad_text(&inner) => Problem::invalid(
                path.clone(),
                format!(
                    "{path} is not valid text: {}",
                    strip_position(&inner.to_string())
                ),
            ),
            serde_json::error::Category::Syntax | serde_json::error::Category::Eof => {
                Problem::bad_request(format!("malformed JSON: {inner}"))
            }
            _ => {
                // serde reports a missing field at its parent: name the field itself.
                // The offending value is left out of the message: it may be PHI.
                let msg = without_values(&inner.to_string());
                let field = missing_field(&msg)
                    .map(|f| {
                        if path == "." {
                            f.to_string()
                        } else {
                            format!("{path}.{f}")
                        }
                    })
                    .unwrap_or(path);
                Problem::invalid(field.clone(), format!("{field}: {}", strip_position(&msg)))
            }
        }
    })?;
    // Trailing bytes after the document are malformed input too.
    de.end()
        .map_err(|e| Problem::bad_request(format!("malformed JSON: {e}")))?;
    // The same bytes as a document: every string and array within the bounds.
    let document: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| Problem::bad_request(format!("malformed JSON: {e}")))?;
    if let Some((path, reason)) = crate::limits::scan_json(&document) {
        return Err(Problem::invalid(path.clone(), format!("{path} {reason}")));
    }
    Ok(value)
}

/// `invalid type: string "Alex Rivera", expected ...` without the value.
pub fn without_values(msg: &str) -> String {
    let msg = strip_position(msg);
    for prefix in ["invalid type: ", "invalid value: ", "invalid length "] {
        if let Some(rest) = msg.strip_prefix(prefix)
            && let Some((_, expected)) = rest.split_once(", expected ")
        {
            let kind = rest.split([' ', ',']).next().unwrap_or("value");
            return format!("{prefix}{kind} (value not shown), expected {expected}");
        }
    }
    if let Some(rest) = msg.strip_prefix("unknown variant `")
        && let Some((_, expected)) = rest.split_once("`, expected ")
    {
        return format!("unknown variant, expected {expected}");
    }
    msg.to_string()
}

/// The unknown field a message names, if any.
pub fn unknown_field(msg: &str) -> Option<&str> {
    msg.strip_prefix("unknown field `")?.split('`').next()
}

fn missing_field(msg: &str) -> Option<&str> {
    let rest = msg.strip_prefix("missing field `")?;
    rest.split('`').next()
}

fn strip_position(msg: &str) -> &str {
    msg.split(" at line ").next().unwrap_or(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Outer {
        inner: Inner,
    }
    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        kind: Kind,
        name: String,
    }
    #[derive(serde::Deserialize, Debug)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        One,
    }

    #[test]
    fn errors_name_the_failing_field() {
        let p = parse::<Outer>(br#"{"inner": {"kind": "two", "name": "x"}}"#).unwrap_err();
        assert_eq!(p.field.as_deref(), Some("inner.kind"));
        assert_eq!(p.status, 422);
        let p = parse::<Outer>(br#"{"inner": {"kind": "one"}}"#).unwrap_err();
        assert_eq!(p.field.as_deref(), Some("inner.name"));
        let p =
            parse::<Outer>(br#"{"inner": {"kind": "one", "name": "x", "extra": 1}}"#).unwrap_err();
        assert_eq!(p.field.as_deref(), Some("inner.extra"));
        assert!(p.detail.contains("extra"), "{}", p.detail);
        let p = parse::<Outer>(br#"{"inner": "#).unwrap_err();
        assert_eq!(p.status, 400);
        let p = parse::<Outer>(br#"{"inner": {"kind": "one", "name": 42}}"#).unwrap_err();
        assert!(
            !p.detail.contains("42"),
            "values are not echoed: {}",
            p.detail
        );
        let p = parse::<Outer>(br#"{"inner": {"kind": "Alex Rivera", "name": "x"}}"#).unwrap_err();
        assert!(!p.detail.contains("Alex"), "{}", p.detail);
        let p = parse::<Outer>(br#"{"inner": {"kind": "one", "name": "x"}} {}"#).unwrap_err();
        assert_eq!(p.status, 400);
        // Text careloop can never store: 422 naming the field, never a 500 or a 400.
        let p = parse::<Outer>(br#"{"inner": {"kind": "one", "name": "A\u0000B"}}"#).unwrap_err();
        assert_eq!(
            (p.status, p.field.as_deref()),
            (422, Some("inner.name")),
            "{p}"
        );
        let p =
            parse::<Outer>(b"{\"inner\": {\"kind\": \"one\", \"name\": \"\xff\"}}").unwrap_err();
        assert_eq!(
            (p.status, p.field.as_deref()),
            (422, Some("inner.name")),
            "{p}"
        );
        let p = parse::<Outer>(br#"{"inner": {"kind": "one", "name": "\ud800"}}"#).unwrap_err();
        assert_eq!(
            (p.status, p.field.as_deref()),
            (422, Some("inner.name")),
            "{p}"
        );
    }
}
