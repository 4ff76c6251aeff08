//! Reading the elements careloop needs from FHIR JSON, each failure naming its
//! element (`Bundle.entry[1].resource.subject`).

use chrono::{DateTime, NaiveDate, Utc};
use serde_json::Value;

use super::outcome::OperationOutcome;
use crate::domain::{Consent, Identifier, PersonDetails, PersonName, RiskLevel};

/// A resource and the expression it lives at.
#[derive(Clone, Copy)]
pub struct At<'a> {
    pub value: &'a Value,
    pub path: &'a str,
}

impl<'a> At<'a> {
    pub fn str(&self, key: &str) -> Option<&'a str> {
        self.value
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
    }

    pub fn req(&self, key: &str) -> Result<&'a str, OperationOutcome> {
        self.str(key)
            .ok_or_else(|| OperationOutcome::required(format!("{}.{key}", self.path)))
    }

    pub fn path(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }
}

/// A FHIR date or dateTime (partial dates allowed: YYYY, YYYY-MM, YYYY-MM-DD).
pub fn date_time(raw: &str, expression: &str) -> Result<DateTime<Utc>, OperationOutcome> {
    if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&Utc));
    }
    let padded = match raw.len() {
        4 => format!("{raw}-01-01"),
        7 => format!("{raw}-01"),
        _ => raw.to_string(),
    };
    NaiveDate::parse_from_str(&padded, "%Y-%m-%d")
        .map(|d| d.and_hms_opt(0, 0, 0).expect("midnight").and_utc())
        .map_err(|_| {
            OperationOutcome::invalid(expression, format!("{expression} is not a FHIR dateTime"))
        })
}

/// The id a reference points at, for `Patient/{id}` or a `urn:uuid:` fullUrl.
pub fn reference(value: &Value) -> Option<&str> {
    value.get("reference").and_then(Value::as_str)
}

fn first_code(v: &Value) -> Option<&str> {
    v.get("coding")
        .and_then(Value::as_array)
        .and_then(|c| c.iter().find_map(|c| c.get("code").and_then(Value::as_str)))
        .or_else(|| v.get("text").and_then(Value::as_str))
}

/// Patient → the person's details (into the PHI vault only).
pub fn patient(p: At<'_>) -> Result<PersonDetails, OperationOutcome> {
    let ids = p
        .value
        .get("identifier")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| OperationOutcome::required(p.path("identifier")))?;
    let mut identifiers = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let path = format!("{}.identifier[{i}]", p.path);
        let at = At {
            value: id,
            path: &path,
        };
        identifiers.push(Identifier {
            system: at.req("system")?.to_string(),
            value: at.req("value")?.to_string(),
        });
    }
    let names = p.value.get("name").and_then(Value::as_array);
    // The name the person goes by: a HumanName with use "usual" or "nickname".
    let preferred = names.and_then(|n| {
        n.iter()
            .find(|n| {
                matches!(
                    n.get("use").and_then(Value::as_str),
                    Some("usual" | "nickname")
                )
            })
            .and_then(|n| n.get("given").and_then(Value::as_array))
            .and_then(|g| g.first())
            .and_then(Value::as_str)
            .map(str::to_string)
    });
    let name = names
        .and_then(|n| {
            n.iter()
                .find(|n| n.get("use").and_then(Value::as_str) == Some("official"))
                .or_else(|| n.first())
        })
        .map(|n| PersonName {
            preferred: preferred.clone(),
            given: n
                .get("given")
                .and_then(Value::as_array)
                .and_then(|g| g.first())
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            family: n
                .get("family")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
        });
    let birth_date = match p.str("birthDate") {
        None => None,
        Some(raw) => {
            let d = NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| {
                OperationOutcome::invalid(p.path("birthDate"), "birthDate must be YYYY-MM-DD")
            })?;
            Some(d)
        }
    };
    let phone = p
        .value
        .get("telecom")
        .and_then(Value::as_array)
        .and_then(|t| {
            t.iter()
                .find(|t| t.get("system").and_then(Value::as_str) == Some("phone"))
                .and_then(|t| t.get("value").and_then(Value::as_str))
        })
        .map(str::to_string);
    let postcode = p
        .value
        .get("address")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(|a| a.get("postalCode").and_then(Value::as_str))
        .map(str::to_string);
    let language = p
        .value
        .get("communication")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .and_then(|c| c.get("language"))
        .and_then(first_code)
        .map(|l| l.split('-').next().unwrap_or(l).to_lowercase())
        .unwrap_or_else(|| "en".into());
    // Patient.gender is bound (required) to AdministrativeGender.
    let gender = match p.str("gender") {
        None => None,
        Some(g @ ("male" | "female" | "other" | "unknown")) => Some(g.to_string()),
        Some(_) => {
            return Err(OperationOutcome::invalid(
                p.path("gender"),
                "gender must be male, female, other or unknown (AdministrativeGender)",
            ));
        }
    };
    Ok(PersonDetails {
        identifiers,
        name,
        birth_date,
        phone,
        gender,
        postcode,
        language,
    })
}

/// Where a ServiceRequest says the discharge happened.
pub const DISCHARGE_EXTENSION: &str =
    "https://careloop.dev/fhir/StructureDefinition/discharge-datetime";

/// Where a ServiceRequest says the person was discharged from.
pub const UNIT_EXTENSION: &str = "https://careloop.dev/fhir/StructureDefinition/discharge-unit";

/// The unit when the ServiceRequest does not say.
pub const UNSPECIFIED_UNIT: &str = "unspecified";

/// What a ServiceRequest says about the referral.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceRequestFacts {
    pub discharged_at: DateTime<Utc>,
    /// The element the discharge time was read from.
    pub discharge_expression: String,
    pub unit: String,
    pub risk_level: RiskLevel,
    pub needs: Vec<String>,
    pub notes: Option<String>,
}

fn extension<'a>(v: &'a Value, url: &str, value_key: &str) -> Option<&'a str> {
    v.get("extension").and_then(Value::as_array).and_then(|e| {
        e.iter()
            .find(|e| e.get("url").and_then(Value::as_str) == Some(url))
            .and_then(|e| e.get(value_key).and_then(Value::as_str))
    })
}

/// ServiceRequest → the referral's facts.
pub fn service_request(sr: At<'_>) -> Result<ServiceRequestFacts, OperationOutcome> {
    let status = sr.req("status")?;
    if status != "active" {
        return Err(OperationOutcome::invalid(
            sr.path("status"),
            format!("a referral needs status active, not {status}"),
        ));
    }
    let intent = sr.req("intent")?;
    if !["order", "plan", "proposal", "original-order"].contains(&intent) {
        return Err(OperationOutcome::invalid(
            sr.path("intent"),
            format!("unexpected intent {intent}"),
        ));
    }
    let in_extension = extension(sr.value, DISCHARGE_EXTENSION, "valueDateTime");
    let (raw, expression) = match (
        in_extension,
        sr.str("occurrenceDateTime"),
        sr.str("authoredOn"),
    ) {
        (Some(v), _, _) => (v, sr.path("extension")),
        (None, Some(v), _) => (v, sr.path("occurrenceDateTime")),
        (None, None, Some(v)) => (v, sr.path("authoredOn")),
        _ => {
            return Err(OperationOutcome::invalid(
                sr.path("occurrenceDateTime"),
                "the discharge time is needed: the discharge-datetime extension, occurrenceDateTime or authoredOn",
            ));
        }
    };
    let discharged_at = date_time(raw, &expression)?;
    let risk_level = match sr.str("priority").unwrap_or("routine") {
        "stat" | "asap" => RiskLevel::High,
        "urgent" => RiskLevel::Moderate,
        "routine" => RiskLevel::Low,
        other => {
            return Err(OperationOutcome::invalid(
                sr.path("priority"),
                format!("unknown priority {other}"),
            ));
        }
    };
    let needs = sr
        .value
        .get("category")
        .and_then(Value::as_array)
        .map(|c| {
            c.iter()
                .filter_map(first_code)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let notes = sr
        .value
        .get("note")
        .and_then(Value::as_array)
        .and_then(|n| n.first())
        .and_then(|n| n.get("text").and_then(Value::as_str))
        .map(str::to_string);
    let unit = extension(sr.value, UNIT_EXTENSION, "valueString")
        .map(str::to_string)
        .unwrap_or_else(|| UNSPECIFIED_UNIT.to_string());
    Ok(ServiceRequestFacts {
        discharged_at,
        discharge_expression: expression,
        unit,
        risk_level,
        needs,
        notes,
    })
}

/// Consent → who consented to what, when. `active` is required for a referral.
pub fn consent(c: At<'_>) -> Result<(String, Consent), OperationOutcome> {
    let status = c.req("status")?.to_string();
    let granted_at = date_time(c.req("dateTime")?, &c.path("dateTime"))?;
    let scope = c
        .value
        .get("scope")
        .and_then(first_code)
        .unwrap_or("peer-support-referral")
        .to_string();
    let display = |key: &str| {
        c.value
            .get(key)
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(|v| v.get("display").or_else(|| v.get("reference")))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let recorded_by = display("performer")
        .or_else(|| display("organization"))
        .unwrap_or_else(|| "FHIR Consent".into());
    Ok((
        status,
        Consent {
            granted_at,
            scope,
            recorded_by,
        },
    ))
}
