//! An ADT message, read into what careloop needs. hl7-parser gives the structure
//! (segments, fields, repetitions, components, escape sequences, timestamps); this
//! module only picks fields, per HL7 v2.3 to v2.8.

use careloop_web::limits;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use hl7_parser::Message;
use hl7_parser::datetime::TimeStamp;

use crate::domain::{Identifier, PersonDetails, PersonName, RiskLevel};

/// The header fields an acknowledgement echoes.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Header {
    pub sending_application: String,
    pub sending_facility: String,
    pub receiving_application: String,
    pub receiving_facility: String,
    pub control_id: String,
    pub trigger: String,
    pub version: String,
    pub processing_id: String,
}

/// A peer-support referral flag at discharge: the ZPS segment (`ZPS|Y|consent time|
/// recorded by|risk level`), careloop's Z-segment for interface engines that can add
/// one.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferralFlag {
    pub consent_at: Option<DateTime<Utc>>,
    pub recorded_by: String,
    pub risk_level: RiskLevel,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Adt {
    pub header: Header,
    /// MSH-4 (or MSH-3) as a facility id: lower case, words joined by '-'.
    pub facility: String,
    pub person: PersonDetails,
    /// PV1-2 (I = inpatient).
    pub patient_class: Option<String>,
    /// PV1-3.1, the point of care.
    pub unit: Option<String>,
    /// PV1-44.
    pub admitted_at: Option<DateTime<Utc>>,
    /// PV1-45.
    pub discharged_at: Option<DateTime<Utc>>,
    /// ZPS-1 = N: the hospital says no peer-support referral.
    pub referral_declined: bool,
    /// EVN-6 (event occurred), EVN-2 (recorded) or MSH-7, in that order.
    pub event_at: Option<DateTime<Utc>>,
    pub flag: Option<ReferralFlag>,
}

/// Why a message can never be taken, as it is: not HL7 or not ADT (`Reject`), or a
/// field missing, wrong or past a limit (`Error`, naming it as `SEG-n`). Both are
/// answered AR: resending the same message cannot succeed. (AE is kept for what a
/// resend can fix: careloop's database or registry unavailable.)
#[derive(Debug, Clone, PartialEq)]
pub enum AdtError {
    Reject(String),
    Error { field: String, reason: String },
}

fn refused(field: impl Into<String>, reason: impl Into<String>) -> AdtError {
    AdtError::Error {
        field: field.into(),
        reason: reason.into(),
    }
}

/// The separators a message declares in MSH-1 and MSH-2 (field, repetition).
fn separators(text: &str) -> (char, char) {
    let mut chars = text.strip_prefix("MSH").unwrap_or_default().chars();
    let field = chars.next().unwrap_or('|');
    let _component = chars.next();
    let repetition = chars.next().unwrap_or('~');
    (field, repetition)
}

/// Where byte `at` of `text` lies, as `SEG-n` (the field of the segment it is in).
pub fn location(text: &str, at: usize) -> String {
    let (field_sep, _) = separators(text);
    let at = at.min(text.len());
    let start = text[..at].rfind(['\r', '\n']).map(|i| i + 1).unwrap_or(0);
    let segment = &text[start..at];
    let name: String = segment.chars().take(3).collect();
    let n = segment.matches(field_sep).count();
    match (name.as_str(), n) {
        (_, 0) => name,
        // MSH-1 is the field separator itself.
        ("MSH", n) => format!("MSH-{}", n + 1),
        (_, n) => format!("{name}-{n}"),
    }
}

/// The message's text: UTF-8, else ISO 8859-1 (the usual MSH-18 alternatives), without
/// a byte-order mark. A message whose MSH-18 declares UTF-8 (or Unicode) but whose
/// bytes are not is refused naming the field where the bad bytes are (with the text
/// as far as it could be read, for the acknowledgement's header).
pub fn read_text(bytes: &[u8]) -> Result<String, (String, AdtError)> {
    let stripped = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(stripped) {
        Ok(s) => Ok(s.to_string()),
        Err(e) => {
            let latin1: String = stripped.iter().map(|b| *b as char).collect();
            let (field_sep, _) = separators(&latin1);
            let declared = latin1
                .split(['\r', '\n'])
                .next()
                .and_then(|msh| msh.split(field_sep).nth(17))
                .map(|c| c.to_ascii_uppercase())
                .is_some_and(|c| c.contains("UTF") || c.contains("UNICODE"));
            if !declared {
                return Ok(latin1);
            }
            let valid = std::str::from_utf8(&stripped[..e.valid_up_to()]).expect("valid prefix");
            let at = location(valid, valid.len());
            Err((
                latin1,
                refused(
                    at.clone(),
                    format!("{at} is not valid UTF-8, the encoding MSH-18 declares"),
                ),
            ))
        }
    }
}

/// The limits on a message's shape (see [`careloop_web::limits`]), checked before
/// anything in it is read: one message per frame (a second MSH, or a batch, refuses
/// the frame whole), at most [`limits::MAX_HL7_SEGMENTS`] segments, and in every
/// field at most [`limits::MAX_HL7_REPETITIONS`] repetitions and
/// [`limits::MAX_HL7_FIELD_CHARS`] characters, none of them a control character.
pub fn check_shape(text: &str) -> Result<(), AdtError> {
    let (field_sep, repetition) = separators(text);
    let segments: Vec<(usize, &str)> = text
        .split(['\r', '\n'])
        .scan(0usize, |offset, seg| {
            let start = *offset;
            *offset += seg.len() + 1;
            Some((start, seg))
        })
        .filter(|(_, seg)| !seg.trim().is_empty())
        .collect();
    let headers: Vec<&str> = segments
        .iter()
        .map(|(_, s)| s.get(..3).unwrap_or(s))
        .filter(|name| matches!(*name, "MSH" | "BHS" | "FHS"))
        .collect();
    if headers.len() > 1 || headers.iter().any(|h| *h != "MSH") {
        return Err(refused(
            "MSH",
            format!(
                "one message per MLLP frame: this frame holds {} header segments ({}); none of it was taken, send each message in its own frame",
                headers.len(),
                headers.join(", ")
            ),
        ));
    }
    if segments.len() > limits::MAX_HL7_SEGMENTS {
        let (_, seg) = segments[limits::MAX_HL7_SEGMENTS];
        return Err(refused(
            seg.get(..3).unwrap_or(seg),
            format!(
                "the message has {} segments; at most {} are allowed",
                segments.len(),
                limits::MAX_HL7_SEGMENTS
            ),
        ));
    }
    for (start, seg) in segments {
        let mut offset = start;
        for (i, field) in seg.split(field_sep).enumerate() {
            let at = || location(text, offset + field.len());
            let encoding_characters = i == 1 && seg.starts_with("MSH");
            if !encoding_characters {
                let reps = field.matches(repetition).count() + 1;
                if let Some(why) =
                    limits::count_problem(reps, limits::MAX_HL7_REPETITIONS, "repetitions")
                {
                    let at = at();
                    return Err(refused(at.clone(), format!("{at} {why}")));
                }
            }
            if let Some(why) = limits::text_problem(field, limits::MAX_HL7_FIELD_CHARS) {
                let at = at();
                return Err(refused(at.clone(), format!("{at} {why}")));
            }
            offset += field.len() + field_sep.len_utf8();
        }
    }
    Ok(())
}

/// Bytes as text: UTF-8, else ISO 8859-1 (the usual MSH-18 alternatives), without a
/// byte-order mark.
pub fn decode(bytes: &[u8]) -> String {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(s) => s.to_string(),
        Err(_) => bytes.iter().map(|b| *b as char).collect(),
    }
}

/// The header alone, for acknowledging a message that cannot be read further.
pub fn header(text: &str) -> Option<Header> {
    let m = Message::parse_with_lenient_newlines(text.trim_start_matches('\u{feff}').trim(), true)
        .ok()?;
    read_header(&m)
}

fn read_header(m: &Message<'_>) -> Option<Header> {
    let msh = m.segment("MSH")?;
    let f = |n: usize| {
        msh.field(n)
            .map(|f| f.raw_value().to_string())
            .unwrap_or_default()
    };
    let c = |n: usize, k: usize| {
        msh.field(n)
            .and_then(|f| f.component(k))
            .map(|c| c.raw_value().to_string())
            .unwrap_or_default()
    };
    let trigger = {
        let t = c(9, 2);
        if t.is_empty() {
            // Old senders put the trigger in EVN-1 only.
            m.segment("EVN")
                .and_then(|e| e.field(1))
                .map(|f| f.raw_value().to_string())
                .unwrap_or_default()
        } else {
            t
        }
    };
    Some(Header {
        sending_application: f(3),
        sending_facility: f(4),
        receiving_application: f(5),
        receiving_facility: f(6),
        control_id: f(10),
        trigger,
        version: c(12, 1),
        processing_id: c(11, 1),
    })
}

fn slug(s: &str) -> String {
    let mut out = String::new();
    for ch in s.trim().to_lowercase().chars() {
        if ch.is_ascii_alphanumeric() {
            out.push(ch);
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    out.trim_end_matches('-').to_string()
}

/// An HL7 timestamp as UTC (a timestamp without an offset is taken as UTC).
pub fn timestamp(raw: &str) -> Option<DateTime<Utc>> {
    let raw = raw.trim();
    if raw.is_empty() {
        return None;
    }
    let t: TimeStamp = hl7_parser::datetime::parse_timestamp(raw, true).ok()?;
    let date = NaiveDate::from_ymd_opt(
        t.year as i32,
        t.month.unwrap_or(1) as u32,
        t.day.unwrap_or(1) as u32,
    )?;
    let naive = date.and_hms_opt(
        t.hour.unwrap_or(0) as u32,
        t.minute.unwrap_or(0) as u32,
        t.second.unwrap_or(0) as u32,
    )?;
    let offset = t
        .offset
        .map(|o| {
            let sign = if o.hours < 0 { -1 } else { 1 };
            Duration::hours(o.hours as i64) + Duration::minutes(sign * o.minutes as i64)
        })
        .unwrap_or_default();
    Some(naive.and_utc() - offset)
}

pub fn parse(text: &str) -> Result<Adt, AdtError> {
    let text = text.trim_start_matches('\u{feff}').trim();
    if !text.starts_with("MSH") {
        return Err(AdtError::Reject(
            "not an HL7 v2 message (it does not start with MSH)".into(),
        ));
    }
    check_shape(text)?;
    let m = Message::parse_with_lenient_newlines(text, true)
        .map_err(|_| AdtError::Reject("not an HL7 v2 message".into()))?;
    let header = read_header(&m).ok_or_else(|| AdtError::Reject("no MSH segment".into()))?;
    let msh = m.segment("MSH").expect("read_header found it");
    let kind = msh
        .field(9)
        .and_then(|f| f.component(1))
        .map(|c| c.raw_value())
        .unwrap_or_default();
    if kind != "ADT" {
        return Err(AdtError::Reject(format!(
            "message type {kind:?} is not ADT"
        )));
    }
    if header.control_id.is_empty() {
        return Err(AdtError::Reject(
            "MSH-10 (message control id) is empty".into(),
        ));
    }
    let sep = &m.separators;
    let decode = |raw: &str| sep.decode(raw).to_string().trim().to_string();
    let facility = {
        let hd = msh
            .field(4)
            .and_then(|f| f.component(1))
            .map(|c| c.raw_value())
            .filter(|v| !v.is_empty())
            .or_else(|| {
                msh.field(3)
                    .and_then(|f| f.component(1))
                    .map(|c| c.raw_value())
            })
            .unwrap_or_default();
        slug(&decode(hd))
    };
    if facility.is_empty() {
        return Err(AdtError::Error {
            field: "MSH-4".into(),
            reason: "no sending facility".into(),
        });
    }

    let pid = m.segment("PID").ok_or_else(|| AdtError::Error {
        field: "PID".into(),
        reason: "no PID segment".into(),
    })?;
    let mut identifiers = Vec::new();
    for (field, label) in [(3, "PID-3"), (2, "PID-2")] {
        let Some(f) = pid.field(field) else { continue };
        for r in f.repeats() {
            let value = r
                .component(1)
                .map(|c| decode(c.raw_value()))
                .unwrap_or_default();
            if value.is_empty() {
                continue;
            }
            let authority = r.component(4);
            let sub = |k: usize| {
                authority
                    .and_then(|a| a.subcomponent(k))
                    .map(|s| decode(s.raw_value()))
                    .unwrap_or_default()
            };
            let (namespace, universal) = (
                if authority.is_some_and(|a| a.has_subcomponents()) {
                    sub(1)
                } else {
                    authority.map(|a| decode(a.raw_value())).unwrap_or_default()
                },
                sub(2),
            );
            let id_type = r
                .component(5)
                .map(|c| decode(c.raw_value()))
                .unwrap_or_default();
            let system = if !universal.is_empty() {
                if universal.chars().all(|c| c.is_ascii_digit() || c == '.') {
                    format!("urn:oid:{universal}")
                } else {
                    universal
                }
            } else if !namespace.is_empty() {
                // A bare namespace ("MR", "1") means nothing outside its sender:
                // qualify it by the facility, so two hospitals' MRN 1 stay two people.
                format!("urn:careloop:hl7:{facility}:authority:{}", slug(&namespace))
            } else {
                let kind = if id_type.is_empty() {
                    label.to_lowercase()
                } else {
                    id_type.to_lowercase()
                };
                format!("urn:careloop:hl7:{facility}:{kind}")
            };
            identifiers.push(Identifier { system, value });
        }
    }
    if identifiers.is_empty() {
        return Err(AdtError::Error {
            field: "PID-3".into(),
            reason: "no patient identifier".into(),
        });
    }
    let comp = |seg: &hl7_parser::message::Segment<'_>, f: usize, c: usize| {
        seg.field(f)
            .and_then(|f| f.repeats().next().and_then(|r| r.component(c)))
            .map(|c| decode(c.raw_value()))
            .filter(|v| !v.is_empty())
    };
    let name = match (comp(pid, 5, 1), comp(pid, 5, 2)) {
        (None, None) => None,
        (family, given) => Some(PersonName {
            family: family.unwrap_or_default(),
            given: given.unwrap_or_default(),
            preferred: None,
        }),
    };
    let birth_date = comp(pid, 7, 1)
        .and_then(|b| timestamp(&b))
        .map(|t| t.date_naive());
    let language = comp(pid, 15, 1)
        .map(|l| match l.to_lowercase().as_str() {
            "e" | "en" | "eng" | "english" => "en".to_string(),
            "s" | "es" | "spa" | "spanish" => "es".to_string(),
            other if other.len() == 2 => other.to_string(),
            _ => "en".to_string(),
        })
        .unwrap_or_else(|| "en".into());
    let person = PersonDetails {
        identifiers,
        name,
        birth_date,
        phone: comp(pid, 13, 1),
        gender: comp(pid, 8, 1).map(|g| match g.as_str() {
            "F" => "female".to_string(),
            "M" => "male".to_string(),
            other => other.to_lowercase(),
        }),
        postcode: comp(pid, 11, 5),
        language,
    };

    let pv1 = m.segment("PV1");
    // A time that is present must read; only an empty one falls back to another.
    let pv1_time = |n: usize| -> Result<Option<DateTime<Utc>>, AdtError> {
        match pv1.and_then(|p| comp(p, n, 1)) {
            None => Ok(None),
            Some(raw) => timestamp(&raw).map(Some).ok_or_else(|| AdtError::Error {
                field: format!("PV1-{n}"),
                reason: format!("PV1-{n} is not an HL7 timestamp"),
            }),
        }
    };
    let evn_time = |n: usize| {
        m.segment("EVN")
            .and_then(|e| e.field(n))
            .map(|f| f.raw_value())
            .and_then(timestamp)
    };
    let msh_time = msh.field(7).map(|f| f.raw_value()).and_then(timestamp);
    let zps = m.segment("ZPS");
    let answer = zps.and_then(|z| comp(z, 1, 1)).map(|v| v.to_uppercase());
    let flag = match (zps, answer.as_deref()) {
        (Some(z), Some("Y")) => Some(ReferralFlag {
            consent_at: match comp(z, 2, 1) {
                None => None,
                Some(raw) => Some(timestamp(&raw).ok_or_else(|| AdtError::Error {
                    field: "ZPS-2".into(),
                    reason: "ZPS-2 (consent time) is not an HL7 timestamp".into(),
                })?),
            },
            recorded_by: comp(z, 3, 1).unwrap_or_else(|| "discharge planner (HL7 ZPS)".into()),
            risk_level: match comp(z, 4, 1).map(|r| r.to_lowercase()).as_deref() {
                None | Some("moderate") => RiskLevel::Moderate,
                Some("high") => RiskLevel::High,
                Some("low") => RiskLevel::Low,
                Some(_) => {
                    return Err(AdtError::Error {
                        field: "ZPS-4".into(),
                        reason: "ZPS-4 (risk level) must be high, moderate or low".into(),
                    });
                }
            },
        }),
        (Some(_), Some("N")) | (None, _) => None,
        (Some(_), _) => {
            return Err(AdtError::Error {
                field: "ZPS-1".into(),
                reason: "ZPS-1 must be Y (refer to peer support) or N".into(),
            });
        }
    };
    Ok(Adt {
        referral_declined: answer.as_deref() == Some("N"),
        facility,
        patient_class: pv1.and_then(|p| comp(p, 2, 1)),
        unit: pv1.and_then(|p| comp(p, 3, 1)),
        admitted_at: pv1_time(44)?,
        discharged_at: pv1_time(45)?,
        event_at: evn_time(6).or_else(|| evn_time(2)).or(msh_time),
        person,
        flag,
        header,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/fixtures/hl7v2/{name}", env!("CARGO_MANIFEST_DIR"));
        decode(&std::fs::read(path).unwrap())
    }

    #[test]
    fn every_fixture_reads() {
        for (name, trigger, ids) in [
            ("fhirconverter_ADT-A03-02.hl7", "A03", 3),
            ("fhirconverter_ADT-A08-01.hl7", "A08", 3),
            ("fhirconverter_ADT-A11-02.hl7", "A11", 3),
            ("fhirconverter_ADT-A13-02.hl7", "A13", 3),
            ("fhirconverter_ADT01-23.hl7", "A01", 1),
            ("fhirconverter_ADT01-28.hl7", "A01", 2),
            ("fhirconverter_ADT04-23.hl7", "A04", 1),
            ("fhirconverter_ADT04-28.hl7", "A04", 3),
            ("hapi_ADT_A01.hl7", "A01", 2),
        ] {
            let adt = parse(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e:?}"));
            assert_eq!(adt.header.trigger, trigger, "{name}");
            assert_eq!(
                adt.person.identifiers.len(),
                ids,
                "{name}: {:?}",
                adt.person.identifiers
            );
            assert!(!adt.header.control_id.is_empty(), "{name}");
        }
    }

    #[test]
    fn repeating_pid3_keeps_each_assigning_authority() {
        let adt = parse(&fixture("fhirconverter_ADT04-28.hl7")).unwrap();
        let systems: Vec<&str> = adt
            .person
            .identifiers
            .iter()
            .map(|i| i.system.as_str())
            .collect();
        assert_eq!(
            systems,
            // CX.4, the assigning authority, is what tells identifiers apart; this
            // sender puts the identifier type there.
            [
                "urn:careloop:hl7:rdx:authority:mr",
                "urn:careloop:hl7:rdx:authority:ehrid",
                "urn:careloop:hl7:rdx:authority:nist"
            ]
        );
        let adt = parse(&fixture("fhirconverter_ADT01-28.hl7")).unwrap();
        assert_eq!(
            adt.person.identifiers[0].system,
            "urn:careloop:hl7:good-health-hospital:authority:adt1"
        );
        assert_eq!(adt.person.identifiers[0].value, "PATID1234");
        assert_eq!(adt.facility, "good-health-hospital");
    }

    #[test]
    fn a_bare_assigning_authority_is_qualified_by_its_sender() {
        let msg = |facility: &str| {
            format!(
                "MSH|^~\\&|APP|{facility}|C|D|20260101||ADT^A08|1|P|2.5\rPID|1||0000000001^^^MR^MR"
            )
        };
        let a = parse(&msg("ST MARYS")).unwrap().person.identifiers;
        let b = parse(&msg("MERCY")).unwrap().person.identifiers;
        assert_ne!(
            a[0].system, b[0].system,
            "two hospitals' MRN 1 are two people"
        );
    }

    #[test]
    fn timestamps_carry_their_offset() {
        assert_eq!(
            timestamp("20050110045504+0700"),
            Some("2005-01-09T21:55:04Z".parse().unwrap())
        );
        assert_eq!(
            timestamp("200105231927"),
            Some("2001-05-23T19:27:00Z".parse().unwrap())
        );
        assert_eq!(timestamp(""), None);
    }

    #[test]
    fn escapes_and_newline_endings_are_handled() {
        let msg = format!(
            "MSH|^~\\&|APP|ST MARYS|CARELOOP|CL|20261120153000||ADT^A03^ADT_A03|M1|P|2.5\nEVN|A03|20261120153000\nPID|1||MRN12345^^^HOSP&2.16.840.1.113883.3.999.1&ISO^MR||O\\T\\BRIEN^ANNE\nPV1|1|I|PSYCH^101{}20261101090000|20261120153000\n",
            "|".repeat(41)
        );
        let adt = parse(&msg).unwrap();
        assert_eq!(adt.person.name.as_ref().unwrap().family, "O&BRIEN");
        assert_eq!(
            adt.person.identifiers[0].system,
            "urn:oid:2.16.840.1.113883.3.999.1"
        );
        assert_eq!(
            adt.discharged_at,
            Some("2026-11-20T15:30:00Z".parse().unwrap())
        );
        assert_eq!(adt.unit.as_deref(), Some("PSYCH"));
        assert_eq!(adt.facility, "st-marys");
    }

    #[test]
    fn what_is_not_adt_is_rejected() {
        assert!(matches!(parse("hello"), Err(AdtError::Reject(_))));
        assert!(matches!(
            parse("MSH|^~\\&|A|B|C|D|20260101||ORU^R01|1|P|2.5"),
            Err(AdtError::Reject(_))
        ));
        assert!(matches!(
            parse("MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.5\rPID|1"),
            Err(AdtError::Error { .. })
        ));
    }

    /// Each limit of the message's shape, refused whole, naming where.
    #[test]
    fn the_shape_of_a_message_is_bounded() {
        let msh = "MSH|^~\\&|APP|ST MARYS|C|D|20260101||ADT^A08|7|P|2.5";
        let field = |e: AdtError| match e {
            AdtError::Error { field, reason } => (field, reason),
            other => panic!("{other:?}"),
        };
        // Two messages in one frame: the whole frame is refused.
        let two = format!("{msh}\rPID|1||X1^^^H^MR\r{msh}\rPID|1||X2^^^H^MR");
        let (f, why) = field(parse(&two).unwrap_err());
        assert_eq!(f, "MSH");
        assert!(why.contains("one message per MLLP frame"), "{why}");
        let batch = format!("BHS|^~\\&|APP\r{msh}\rPID|1||X1^^^H^MR");
        assert!(parse(&batch).is_err());
        // PID-3 repeated past the limit.
        let many = vec!["X^^^H^MR"; limits::MAX_HL7_REPETITIONS + 1].join("~");
        let (f, why) = field(parse(&format!("{msh}\rPID|1||{many}")).unwrap_err());
        assert_eq!(f, "PID-3");
        assert!(why.contains("at most 20"), "{why}");
        let fits = vec!["X^^^H^MR"; limits::MAX_HL7_REPETITIONS].join("~");
        assert!(parse(&format!("{msh}\rPID|1||{fits}")).is_ok());
        // A NUL in a name, a field too long, too many segments.
        let (f, why) = field(parse(&format!("{msh}\rPID|1||X^^^H^MR||RIV\0ERA^ALEX")).unwrap_err());
        assert_eq!(f, "PID-5");
        assert!(why.contains("U+0000"), "{why}");
        let long = "A".repeat(limits::MAX_HL7_FIELD_CHARS + 1);
        let (f, _) = field(parse(&format!("{msh}\rPID|1||X^^^H^MR||{long}")).unwrap_err());
        assert_eq!(f, "PID-5");
        let nte = "NTE|1|x\r".repeat(limits::MAX_HL7_SEGMENTS);
        let (f, _) = field(parse(&format!("{msh}\rPID|1||X^^^H^MR\r{nte}")).unwrap_err());
        assert_eq!(f, "NTE");
        // MSH fields are numbered from MSH-1, the separator.
        let (f, _) = field(parse(&msh.replace("|7|", "|7\u{1}|")).unwrap_err());
        assert_eq!(f, "MSH-10");
    }

    #[test]
    fn bytes_that_are_not_the_declared_utf8_are_refused() {
        let mut bytes =
            b"MSH|^~\\&|A|B|C|D|20260101||ADT^A08|7|P|2.5||||||UNICODE UTF-8\rPID|1||X1^^^H^MR||M"
                .to_vec();
        bytes.push(0xDC);
        bytes.extend_from_slice(b"LLER^JO");
        let (text, e) = read_text(&bytes).unwrap_err();
        assert!(text.starts_with("MSH"));
        assert!(
            matches!(e, AdtError::Error { ref field, .. } if field == "PID-5"),
            "{e:?}"
        );
        // Undeclared: read as ISO 8859-1.
        let undeclared = String::from_utf8_lossy(&bytes).replace("UNICODE UTF-8", "");
        let mut latin = undeclared
            .split('\u{fffd}')
            .next()
            .unwrap()
            .as_bytes()
            .to_vec();
        latin.push(0xDC);
        assert!(read_text(&latin).unwrap().ends_with('Ü'));
    }

    #[test]
    fn latin1_bytes_are_read() {
        let mut bytes =
            b"MSH|^~\\&|A|B|C|D|20260101||ADT^A08|7|P|2.5|||||||8859/1\rPID|1||X1^^^H^MR||M"
                .to_vec();
        bytes.push(0xDC); // Ü in ISO 8859-1
        bytes.extend_from_slice(b"LLER^JO");
        let adt = parse(&decode(&bytes)).unwrap();
        assert_eq!(adt.person.name.unwrap().family, "MÜLLER");
    }
}
