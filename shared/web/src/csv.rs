//! CSV for the exports a spreadsheet or a billing system imports (RFC 4180 quoting),
//! answered to a client that asks for it with `Accept: text/csv`.

use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};

/// The client asked for CSV (`Accept: text/csv`).
pub fn wanted(headers: &HeaderMap) -> bool {
    headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/csv"))
}

/// A CSV answer.
pub fn response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response()
}

/// One field: quoted when it holds a comma, a quote or a line break.
pub fn field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// One line of fields, ended by a line break.
pub fn line<S: AsRef<str>>(fields: &[S]) -> String {
    let mut out = fields
        .iter()
        .map(|f| field(f.as_ref()))
        .collect::<Vec<_>>()
        .join(",");
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_holding_separators_are_quoted_and_quotes_doubled() {
        assert_eq!(field("H0038"), "H0038");
        assert_eq!(field("Ada, (coordinator)"), "\"Ada, (coordinator)\"");
        assert_eq!(field("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(line(&["a", "b,c"]), "a,\"b,c\"\n");
    }
}
