//! FHIR search as careloop applies it, for every resource type it searches: the
//! parameters the type supports (its table in [`super::capability`]), refused when
//! unknown (400) unless the client sends `Prefer: handling=lenient`, the `self` link
//! listing exactly what was applied; `_count` and `_cursor` paging with a `next`
//! link; `_lastUpdated` with `gt`, `ge`, `lt`, `le` (repeatable, combined); `_total`.

use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Datelike, Utc};
use serde_json::{Value, json};

use super::outcome::OperationOutcome;
use super::read;

/// Accepted on every search, whatever the type (`_format` is answered by the
/// content negotiation in front of the routes).
const ALWAYS: &[&str] = &["_format"];

/// A bound on `_lastUpdated`: the instant and whether it is included.
pub type Bound = Option<(DateTime<Utc>, bool)>;

/// A parsed search.
#[derive(Debug)]
pub struct Search {
    base: String,
    /// What was applied, in the order given.
    applied: Vec<(String, String)>,
    pub count: i64,
    /// Where the page starts: (last change, id) of the last entry of the page before.
    pub after: Option<(DateTime<Utc>, String)>,
    pub updated_from: Bound,
    pub updated_to: Bound,
    /// `_total=accurate`: count every match.
    pub total_accurate: bool,
}

fn invalid(name: &str, why: impl Into<String>) -> OperationOutcome {
    OperationOutcome::invalid(name, why.into())
}

impl Search {
    /// Reads `query` for `resource`, whose parameters are `supported` (name, type,
    /// description).
    pub fn parse(
        public_url: &str,
        resource: &'static str,
        supported: &[(&str, &str, &str)],
        headers: &HeaderMap,
        query: Vec<(String, String)>,
    ) -> Result<Search, OperationOutcome> {
        let lenient = headers
            .get("prefer")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("handling=lenient"));
        let known = |k: &str| supported.iter().any(|(n, ..)| *n == k) || ALWAYS.contains(&k);
        if let Some((unknown, _)) = query.iter().filter(|(k, _)| !known(k)).min()
            && !lenient
        {
            return Err(OperationOutcome {
                status: StatusCode::BAD_REQUEST,
                code: "not-supported",
                expression: Some(unknown.clone()),
                diagnostics: format!(
                    "search parameter {unknown} is not supported on {resource} (supported: {}); send Prefer: handling=lenient to have it ignored",
                    supported
                        .iter()
                        .map(|(n, ..)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                retry_after: None,
            });
        }
        let applied: Vec<(String, String)> = query
            .into_iter()
            .filter(|(k, _)| known(k) && !ALWAYS.contains(&k.as_str()))
            .collect();
        let mut search = Search {
            base: format!("{public_url}/fhir/{resource}"),
            applied,
            count: 100,
            after: None,
            updated_from: None,
            updated_to: None,
            total_accurate: false,
        };
        for (name, value) in search.applied.clone() {
            match name.as_str() {
                "_count" => {
                    search.count = value
                        .parse::<i64>()
                        .ok()
                        .filter(|n| (1..=careloop_web::paging::MAX_LIMIT).contains(n))
                        .ok_or_else(|| {
                            invalid("_count", "_count must be a number from 1 to 500")
                        })?;
                }
                "_cursor" => {
                    let bad = || invalid("_cursor", "not a cursor careloop gave");
                    let parts = careloop_web::paging::parse_cursor(&value, 2).map_err(|_| bad())?;
                    let at = parts[0]
                        .parse::<i64>()
                        .ok()
                        .and_then(DateTime::from_timestamp_micros)
                        .ok_or_else(bad)?;
                    search.after = Some((at, parts[1].clone()));
                }
                "_total" => match value.as_str() {
                    "accurate" => search.total_accurate = true,
                    "none" | "estimate" => {}
                    _ => return Err(invalid("_total", "_total is none, estimate or accurate")),
                },
                "_lastUpdated" => search.last_updated(&value)?,
                _ => {}
            }
        }
        Ok(search)
    }

    /// One `_lastUpdated` value. A date without a time is the whole period it names
    /// (FHIR's implicit range): `gt2026-12-01` is after that day, `le2026-12` through
    /// the end of that month.
    fn last_updated(&mut self, value: &str) -> Result<(), OperationOutcome> {
        let prefix_error = || {
            invalid(
                "_lastUpdated",
                "_lastUpdated takes a prefix: gt, ge, lt or le (e.g. gt2026-12-01T00:00:00Z)",
            )
        };
        let (Some(prefix), Some(raw)) = (value.get(..2), value.get(2..)) else {
            return Err(prefix_error());
        };
        let start = read::date_time(raw, "_lastUpdated")?;
        let end = if DateTime::parse_from_rfc3339(raw).is_ok() {
            None
        } else {
            let day = start.date_naive();
            let next = match raw.len() {
                4 => day.with_year(day.year() + 1),
                7 => day.checked_add_months(chrono::Months::new(1)),
                _ => day.succ_opt(),
            };
            next.map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
        };
        // Repeated bounds combine: the tightest of each side holds.
        let tighter = |current: Bound, new: (DateTime<Utc>, bool), lower: bool| match current {
            Some(c) => {
                let beyond = if lower { new.0 > c.0 } else { new.0 < c.0 };
                Some(if beyond || (new.0 == c.0 && !new.1) {
                    new
                } else {
                    c
                })
            }
            None => Some(new),
        };
        match (prefix, end) {
            ("gt", None) => self.updated_from = tighter(self.updated_from, (start, false), true),
            ("gt", Some(end)) => self.updated_from = tighter(self.updated_from, (end, true), true),
            ("ge", _) => self.updated_from = tighter(self.updated_from, (start, true), true),
            ("lt", _) => self.updated_to = tighter(self.updated_to, (start, false), false),
            ("le", None) => self.updated_to = tighter(self.updated_to, (start, true), false),
            ("le", Some(end)) => self.updated_to = tighter(self.updated_to, (end, false), false),
            _ => return Err(prefix_error()),
        }
        Ok(())
    }

    /// The one value of `name` (the first, when repeated).
    pub fn value(&self, name: &str) -> Option<&str> {
        self.applied
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The id of a reference parameter (`Patient/{id}` or a bare id), refused when it
    /// names another type.
    pub fn reference(&self, name: &str, target: &str) -> Result<Option<String>, OperationOutcome> {
        let Some(v) = self.value(name) else {
            return Ok(None);
        };
        let id = match v.split_once('/') {
            Some((t, id)) if t == target => id,
            Some(_) => {
                return Err(invalid(name, format!("{name} must be {target}/{{id}}")));
            }
            None => v,
        };
        Ok(Some(id.to_string()))
    }

    fn link(&self, without_cursor: bool, cursor: Option<&str>) -> String {
        let encode = |v: &str| {
            v.replace('%', "%25")
                .replace('&', "%26")
                .replace('+', "%2B")
                .replace(' ', "%20")
        };
        let mut pairs: Vec<String> = self
            .applied
            .iter()
            .filter(|(k, _)| !(without_cursor && k == "_cursor"))
            .map(|(k, v)| format!("{k}={}", encode(v)))
            .collect();
        if let Some(c) = cursor {
            pairs.push(format!("_cursor={c}"));
        }
        if pairs.is_empty() {
            self.base.clone()
        } else {
            format!("{}?{}", self.base, pairs.join("&"))
        }
    }

    /// The searchset: `entries` (resources) of this page, the `next` page's cursor,
    /// and the number of all matches when it is known.
    pub fn bundle(&self, resources: Vec<Value>, next: Option<String>, total: Option<i64>) -> Value {
        let mut links = vec![json!({"relation": "self", "url": self.link(false, None)})];
        let complete = next.is_none();
        if let Some(c) = next {
            links.push(json!({"relation": "next", "url": self.link(true, Some(&c))}));
        }
        let count = resources.len();
        let entry: Vec<Value> = resources
            .into_iter()
            .map(|r| {
                let url = format!("{}/{}", self.base, r["id"].as_str().unwrap_or_default());
                json!({"fullUrl": url, "resource": r, "search": {"mode": "match"}})
            })
            .collect();
        let mut bundle = json!({"resourceType": "Bundle", "type": "searchset",
                                "link": links, "entry": entry});
        // Known without counting when this page is the first and the last.
        let total = total.or((complete && self.after.is_none()).then_some(count as i64));
        if let Some(t) = total {
            bundle["total"] = json!(t);
        }
        bundle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bounds(values: &[&str]) -> (Bound, Bound) {
        let query = values
            .iter()
            .map(|v| ("_lastUpdated".to_string(), v.to_string()))
            .collect();
        let s = Search::parse(
            "http://x",
            "Task",
            &[("_lastUpdated", "date", "")],
            &HeaderMap::new(),
            query,
        )
        .unwrap();
        (s.updated_from, s.updated_to)
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn last_updated_takes_instants_and_whole_periods() {
        let t = "2026-12-01T10:00:00Z";
        assert_eq!(bounds(&[&format!("gt{t}")]), (Some((at(t), false)), None));
        assert_eq!(bounds(&[&format!("le{t}")]), (None, Some((at(t), true))));
        // A day is the whole day: after it, through it.
        assert_eq!(
            bounds(&["gt2026-12-01", "le2026-12-31"]),
            (
                Some((at("2026-12-02T00:00:00Z"), true)),
                Some((at("2027-01-01T00:00:00Z"), false))
            )
        );
        assert_eq!(
            bounds(&["ge2026-12", "lt2027"]),
            (
                Some((at("2026-12-01T00:00:00Z"), true)),
                Some((at("2027-01-01T00:00:00Z"), false))
            )
        );
        // The tighter of two lower bounds holds.
        assert_eq!(
            bounds(&["ge2026-01-01", "gt2026-06-01T00:00:00Z"]).0,
            Some((at("2026-06-01T00:00:00Z"), false))
        );
        for bad in ["2026-12-01", "é", "gtnot-a-date", "eq2026"] {
            let query = vec![("_lastUpdated".to_string(), bad.to_string())];
            let err = Search::parse(
                "http://x",
                "Task",
                &[("_lastUpdated", "date", "")],
                &HeaderMap::new(),
                query,
            )
            .unwrap_err();
            assert_eq!(err.expression.as_deref(), Some("_lastUpdated"), "{bad}");
        }
    }
}
