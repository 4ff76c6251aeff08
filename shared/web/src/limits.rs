//! The limits of the edge: how much one request or one HL7 message may carry, and
//! what text careloop can store. Every channel (REST, FHIR, HL7 v2) checks against
//! these numbers, so a referral that fits one channel fits the others, and no request
//! makes work (rows, locks, bytes) that grows past them. A refusal names the field and
//! the limit; the input is refused whole and nothing is written.
//!
//! The table in docs/api.md ("Limits") is this module; keep them together.

use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::Value;

use crate::Problem;

/// A request body (REST JSON or FHIR JSON), in bytes (a FHIR Consent may carry a
/// long narrative).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// One HL7 v2 message (the content of one MLLP frame), in bytes.
pub const MAX_HL7_MESSAGE_BYTES: usize = 256 * 1024;
/// Identifiers of one person in one request (REST `person.identifiers`, FHIR
/// `Patient.identifier`, HL7 PID-3 and PID-2 repetitions together).
pub const MAX_IDENTIFIERS: usize = 20;
/// Identifiers one person may accumulate across every message about them.
pub const MAX_PERSON_IDENTIFIERS: usize = 50;
/// Items of any other list a referral carries: needs, lived experience, contact
/// modes (FHIR `ServiceRequest.category`).
pub const MAX_LIST_ITEMS: usize = 20;
/// Entries of a FHIR transaction Bundle (a referral needs three).
pub const MAX_BUNDLE_ENTRIES: usize = 10;
/// Segments of one HL7 v2 message.
pub const MAX_HL7_SEGMENTS: usize = 100;
/// Repetitions of one HL7 v2 field (`~`).
pub const MAX_HL7_REPETITIONS: usize = MAX_IDENTIFIERS;
/// Characters of one HL7 v2 field.
pub const MAX_HL7_FIELD_CHARS: usize = 4_000;
/// Characters of a short text: identifiers, names, codes, phone, units, reasons.
pub const MAX_TEXT_CHARS: usize = 256;
/// Characters of free text: notes.
pub const MAX_NOTES_CHARS: usize = 4_000;
/// Any JSON body: characters of one string (only the body's size bounds a string
/// careloop does not keep, such as a FHIR narrative), items of one array, nesting
/// depth (the bounds of routes without a tighter rule of their own).
pub const MAX_JSON_STRING_CHARS: usize = MAX_BODY_BYTES;
pub const MAX_JSON_ARRAY_ITEMS: usize = 1_000;
pub const MAX_JSON_DEPTH: usize = 32;

/// Why a text can never be stored: a control character (NUL included: Postgres text
/// cannot hold it), or more than `max` characters. `None` when it fits.
pub fn text_problem(value: &str, max: usize) -> Option<String> {
    if let Some(c) = value
        .chars()
        .find(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Some(format!(
            "contains the control character U+{:04X}, which careloop cannot store",
            c as u32
        ));
    }
    let chars = value.chars().count();
    if chars > max {
        return Some(format!(
            "is {chars} characters long; at most {max} are allowed"
        ));
    }
    None
}

/// Why a list is too long, or `None`.
pub fn count_problem(len: usize, max: usize, what: &str) -> Option<String> {
    (len > max).then(|| format!("has {len} {what}; at most {max} are allowed"))
}

/// The first string, array or nesting level of `value` over the JSON bounds, or with
/// a character careloop cannot store: its path (`person.name.given`, `entry[3]`) and
/// the reason.
pub fn scan_json(value: &Value) -> Option<(String, String)> {
    fn walk(v: &Value, path: &mut String, depth: usize) -> Option<(String, String)> {
        if depth > MAX_JSON_DEPTH {
            return Some((
                path.clone(),
                format!("is nested deeper than {MAX_JSON_DEPTH} levels"),
            ));
        }
        match v {
            Value::String(s) => text_problem(s, MAX_JSON_STRING_CHARS).map(|r| (path.clone(), r)),
            Value::Array(items) => {
                if let Some(r) = count_problem(items.len(), MAX_JSON_ARRAY_ITEMS, "items") {
                    return Some((path.clone(), r));
                }
                for (i, item) in items.iter().enumerate() {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    if let Some(found) = walk(item, path, depth + 1) {
                        return Some(found);
                    }
                    path.truncate(len);
                }
                None
            }
            Value::Object(map) => {
                for (k, item) in map {
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(k);
                    if let Some(r) = text_problem(k, MAX_TEXT_CHARS) {
                        return Some((path.clone(), format!("the member name {r}")));
                    }
                    if let Some(found) = walk(item, path, depth + 1) {
                        return Some(found);
                    }
                    path.truncate(len);
                }
                None
            }
            _ => None,
        }
    }
    walk(value, &mut String::new(), 0)
}

/// Bodies over [`MAX_BODY_BYTES`] are refused with 413 in the route's own error format
/// (problem+json, or an OperationOutcome under `/fhir`), whether the client announced
/// the length or streamed the body.
pub async fn body_limit(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let too_large = || {
        crate::operation_outcome::refuse(
            &path,
            Problem::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than {MAX_BODY_BYTES} bytes, the most careloop takes"),
            )
            .with_field("body"),
        )
    };
    let announced = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if announced.is_some_and(|n| n > MAX_BODY_BYTES as u64) {
        return too_large();
    }
    // Read at most the limit (a streamed body without a length is cut there).
    let (parts, body) = req.into_parts();
    let bytes = match axum::body::to_bytes(body, MAX_BODY_BYTES).await {
        Ok(bytes) => bytes,
        Err(e) if format!("{e:#}").contains("length limit") => return too_large(),
        Err(_) => {
            return crate::operation_outcome::refuse(
                &path,
                Problem::bad_request("the body could not be read to its end"),
            );
        }
    };
    next.run(Request::from_parts(parts, axum::body::Body::from(bytes)))
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn text_is_refused_for_control_characters_and_length() {
        assert_eq!(text_problem("Alex\nRivera\t", 20), None);
        assert!(text_problem("A\0B", 20).unwrap().contains("U+0000"));
        assert!(text_problem("\u{1b}[2J", 20).unwrap().contains("U+001B"));
        assert!(
            text_problem(&"é".repeat(21), 20)
                .unwrap()
                .contains("at most 20")
        );
        assert_eq!(
            text_problem(&"é".repeat(20), 20),
            None,
            "characters, not bytes"
        );
        assert!(
            count_problem(21, 20, "identifiers")
                .unwrap()
                .contains("21 identifiers")
        );
    }

    #[test]
    fn json_is_scanned_with_paths() {
        assert_eq!(scan_json(&json!({"a": [1, "x"]})), None);
        let (path, why) = scan_json(&json!({"person": {"name": {"given": "A\u{0}"}}})).unwrap();
        assert_eq!(path, "person.name.given");
        assert!(why.contains("U+0000"));
        let (path, _) = scan_json(&json!({"entry": [{}, {"r": ["ok", "\u{7}"]}]})).unwrap();
        assert_eq!(path, "entry[1].r[1]");
        let long: Vec<u8> = vec![0; MAX_JSON_ARRAY_ITEMS + 1];
        let (path, why) = scan_json(&json!({ "ids": long })).unwrap();
        assert_eq!(path, "ids");
        assert!(why.contains("at most 1000"));
        let mut deep = json!(1);
        for _ in 0..40 {
            deep = json!([deep]);
        }
        assert!(scan_json(&deep).unwrap().1.contains("nested"));
    }
}
