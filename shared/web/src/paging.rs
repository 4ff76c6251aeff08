//! Cursor paging, the same on every list: `?limit=` (1 to [`MAX_LIMIT`]; 0, a
//! negative number or more is refused with 422 naming `limit`) and `?cursor=` (the
//! `next_cursor` of the page before, opaque). A page answers
//! `{"items": [...], "next_cursor": "..." | null}`; `null` means the list ended.
//! Lists page by a key that never changes order under concurrent writes (an id, or a
//! time and an id), so a client that follows the cursors sees every item once.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

use crate::Problem;

/// The most items one page holds.
pub const MAX_LIMIT: i64 = 500;

/// The page size asked for, or `default`; refused outside 1..=[`MAX_LIMIT`].
pub fn limit(requested: Option<i64>, default: i64) -> Result<i64, Problem> {
    match requested {
        None => Ok(default),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(Problem::invalid(
            "limit",
            format!("limit must be between 1 and {MAX_LIMIT}, got {n}"),
        )),
    }
}

/// A cursor holding `parts` (the key of the last item of a page).
pub fn cursor(parts: &[String]) -> String {
    B64.encode(parts.join("\u{1f}"))
}

/// The `n` parts of a cursor this API returned; anything else is refused (422).
pub fn parse_cursor(c: &str, n: usize) -> Result<Vec<String>, Problem> {
    let bad = || Problem::invalid("cursor", "not a cursor this API returned");
    let raw = B64.decode(c).map_err(|_| bad())?;
    let text = String::from_utf8(raw).map_err(|_| bad())?;
    let parts: Vec<String> = text.split('\u{1f}').map(str::to_string).collect();
    if parts.len() == n {
        Ok(parts)
    } else {
        Err(bad())
    }
}

/// `rows` fetched with `limit + 1`: the page (at most `limit` rows) and the cursor
/// of the next page, if there is one.
pub fn page<T>(
    mut rows: Vec<T>,
    limit: i64,
    key: impl Fn(&T) -> Vec<String>,
) -> (Vec<T>, Option<String>) {
    if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        let next = rows.last().map(|r| cursor(&key(r)));
        (rows, next)
    } else {
        (rows, None)
    }
}

/// The JSON of a page.
pub fn json<T: serde::Serialize>(items: &[T], next_cursor: Option<String>) -> serde_json::Value {
    serde_json::json!({"items": items, "next_cursor": next_cursor})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_checked_and_cursors_round_trip() {
        assert_eq!(limit(None, 50).unwrap(), 50);
        assert_eq!(limit(Some(500), 50).unwrap(), 500);
        for bad in [0, -1, 501] {
            assert_eq!(
                limit(Some(bad), 50).unwrap_err().field.as_deref(),
                Some("limit")
            );
        }
        let c = cursor(&["2026-01-01".into(), "id-1".into()]);
        assert_eq!(parse_cursor(&c, 2).unwrap(), ["2026-01-01", "id-1"]);
        assert!(parse_cursor(&c, 3).is_err());
        assert!(parse_cursor("%%%", 2).is_err());
        let (rows, next) = page(vec![1, 2, 3], 2, |r| vec![r.to_string()]);
        assert_eq!(
            (rows, next.map(|n| parse_cursor(&n, 1).unwrap())),
            (vec![1, 2], Some(vec!["2".to_string()]))
        );
        assert_eq!(page(vec![1, 2], 2, |r| vec![r.to_string()]).1, None);
    }
}
