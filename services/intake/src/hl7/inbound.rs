//! What each ADT trigger does, and the acknowledgement.
//!
//! - A01 (admit), and A04 (register) for an inpatient: an admission of a person
//!   careloop knows (AdmissionRecorded, for readmissions);
//! - A04 for an outpatient (PV1-2 `O`): a visit of a person careloop knows
//!   (EncounterRecorded, for the measures of program impact);
//! - A03 (discharge): a referral, when the person has a consent to peer-support
//!   referral on record or the message carries careloop's ZPS flag (which records the
//!   consent it asserts);
//! - A08 (update): the person's details, for a person careloop knows;
//! - A11 (cancel admit): the admission no longer counts;
//! - A13 (cancel discharge): the referral of that discharge is withdrawn.
//!
//! Every effect is idempotent by its natural key (referral: facility + person +
//! discharge time; admission: person + facility + admission time), and a message
//! already handled (same sender, same MSH-10) gets its stored ACK again.

use careloop_backbone::Metadata;
use careloop_web::Problem;
use chrono::Utc;
use sqlx::PgPool;

use super::adt::{self, Adt, AdtError, Header};
use crate::domain::{
    Consent, Field, InvalidReferral, NewReferral, Preferences, ReferralDraft, RiskLevel,
};
use crate::reception::Reception;

#[derive(Clone)]
pub struct Inbound {
    pub pool: PgPool,
    pub reception: Reception,
}

/// MSA-1: AA accepted, AE application error, AR rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckCode {
    AA,
    AE,
    AR,
}

impl Inbound {
    /// Handles one framed message; returns the ACK to send back.
    pub async fn handle(&self, bytes: &[u8]) -> String {
        self.handle_from(bytes, None).await
    }

    /// Handles one framed message from `peer` (the sender's address, for the audit
    /// log); returns the ACK to send back.
    pub async fn handle_from(&self, bytes: &[u8], peer: Option<String>) -> String {
        // A message that can never be taken as it is gets AR, and nothing is stored.
        let refuse = |text: &str, e: AdtError| {
            let header = adt::header(text).unwrap_or_default();
            match e {
                AdtError::Reject(reason) => ack(&header, AckCode::AR, &reason, None),
                AdtError::Error { field, reason } => {
                    ack(&header, AckCode::AR, &reason, Some(&field))
                }
            }
        };
        let text = match adt::read_text(bytes) {
            Ok(text) => text,
            Err((text, e)) => return refuse(&text, e),
        };
        let adt = match adt::parse(&text) {
            Ok(adt) => adt,
            Err(e) => return refuse(&text, e),
        };
        // Only a registered facility's messages are taken (MSH-4, with MSH-3 when
        // registered): anything else is refused whole and nothing is stored.
        let first = |field: &str| field.split('^').next().unwrap_or_default().to_string();
        let (application, facility) = (
            first(&adt.header.sending_application),
            first(&adt.header.sending_facility),
        );
        let adt = match self
            .reception
            .facilities
            .by_hl7_sender(&application, &facility)
            .await
        {
            Ok(Some(id)) => Adt {
                facility: id,
                ..adt
            },
            Ok(None) => {
                return ack(
                    &adt.header,
                    AckCode::AR,
                    &format!(
                        "MSH-4: sending facility {facility:?} is not registered with careloop"
                    ),
                    Some("MSH-4"),
                );
            }
            Err(e) => {
                tracing::error!(error = %e, "facility registry unavailable");
                return ack(
                    &adt.header,
                    AckCode::AE,
                    "temporarily unavailable; resend",
                    None,
                );
            }
        };
        let sender = format!(
            "{}|{}",
            adt.header.sending_application, adt.header.sending_facility
        );
        let hash = message_hash(&text);
        match self.stored_ack(&sender, &adt.header.control_id).await {
            Ok(Some((previous, stored_hash))) => {
                if stored_hash.is_some_and(|h| h != hash) {
                    return ack(
                        &adt.header,
                        AckCode::AR,
                        "MSH-10 was used before for a different message",
                        Some("MSH-10"),
                    );
                }
                return previous;
            }
            Ok(None) => {}
            Err(e) => {
                tracing::error!(error = %e, "HL7 message log unavailable");
                return ack(
                    &adt.header,
                    AckCode::AE,
                    "temporarily unavailable; resend",
                    None,
                );
            }
        }
        let meta =
            Metadata::new(uuid::Uuid::new_v4().to_string()).actor(format!("hl7 {}", adt.facility));
        let reply = match self.apply(&adt, &meta, &peer).await {
            Ok(note) => ack(&adt.header, AckCode::AA, &note, None),
            // A conflict or a dependency unavailable may pass: AE, not stored, so a
            // resend is processed again (every effect is idempotent).
            Err(p) if p.status == 409 || p.status >= 500 => {
                tracing::warn!(detail = %p.detail, "HL7 message not applied; the sender may resend");
                return ack(
                    &adt.header,
                    AckCode::AE,
                    "temporarily unable to apply; resend",
                    None,
                );
            }
            // Refused for what it says (a 422): it can never succeed as it is. AR,
            // and nothing is stored, so the corrected message may reuse its MSH-10.
            Err(p) => {
                let field = match p.field.as_deref() {
                    Some(crate::reception::IDENTIFIERS) => "PID-3",
                    Some(f) => f,
                    None => "MSH",
                };
                return ack(&adt.header, AckCode::AR, &p.detail, Some(field));
            }
        };
        if let Err(e) = self.store_ack(&sender, &adt.header, &reply, &hash).await {
            tracing::warn!(error = %e, "could not store an HL7 acknowledgement");
        }
        reply
    }

    async fn stored_ack(
        &self,
        sender: &str,
        control_id: &str,
    ) -> sqlx::Result<Option<(String, Option<String>)>> {
        sqlx::query_as(
            "SELECT ack, message_hash FROM intake.hl7_messages
             WHERE sender = $1 AND control_id = $2 AND ack IS NOT NULL",
        )
        .bind(sender)
        .bind(control_id)
        .fetch_optional(&self.pool)
        .await
    }

    async fn store_ack(
        &self,
        sender: &str,
        h: &Header,
        reply: &str,
        hash: &str,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "INSERT INTO intake.hl7_messages (sender, control_id, message_type, ack, message_hash)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (sender, control_id) DO NOTHING",
        )
        .bind(sender)
        .bind(&h.control_id)
        .bind(format!("ADT^{}", h.trigger))
        .bind(reply)
        .bind(hash)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The effect of one message; the text goes into MSA-3.
    async fn apply(
        &self,
        adt: &Adt,
        meta: &Metadata,
        peer: &Option<String>,
    ) -> Result<String, Problem> {
        // The limits on a person's details, whatever the trigger.
        crate::domain::check_person(&adt.person).map_err(invalid_message)?;
        let ids = &adt.person.identifiers;
        let when = |t: Option<chrono::DateTime<Utc>>, field: &str| {
            t.or(adt.event_at).ok_or_else(|| {
                Problem::invalid(
                    field.to_string(),
                    format!("{field} (or EVN-6, EVN-2, MSH-7) is needed"),
                )
            })
        };
        let unit = adt.unit.clone().unwrap_or_else(|| UNSPECIFIED_UNIT.into());
        match adt.header.trigger.as_str() {
            "A01" | "A04" => {
                if adt.header.trigger == "A04" && adt.patient_class.as_deref() == Some("O") {
                    return self
                        .visit(adt, when(adt.admitted_at, "PV1-44")?, meta)
                        .await;
                }
                if adt.header.trigger == "A04" && adt.patient_class.as_deref() != Some("I") {
                    return Ok("registration noted; not an inpatient admission".into());
                }
                let admitted_at = when(adt.admitted_at, "PV1-44")?;
                if admitted_at > Utc::now() {
                    return Err(Problem::invalid("PV1-44", "the admission is in the future"));
                }
                match self
                    .reception
                    .admit(ids, &adt.facility, admitted_at, &unit, meta)
                    .await?
                {
                    Some(_) => Ok("admission recorded".into()),
                    None => Ok("not a referred person; nothing stored".into()),
                }
            }
            "A03" => {
                self.discharge(adt, when(adt.discharged_at, "PV1-45")?, unit, meta, peer)
                    .await
            }
            "A08" => match self
                .reception
                .update_known_person(adt.person.clone(), meta)
                .await?
            {
                Some(person_ref) => {
                    self.audit(adt, peer, "update", Some(person_ref), None)
                        .await?;
                    Ok("person updated".into())
                }
                None => Ok("not a referred person; nothing stored".into()),
            },
            "A11" => {
                let admitted_at = when(adt.admitted_at, "PV1-44")?;
                let cancelled = self
                    .reception
                    .cancel_admission(ids, &adt.facility, admitted_at, meta)
                    .await?;
                Ok(if cancelled {
                    "admission cancelled"
                } else {
                    "not a referred person; nothing stored"
                }
                .into())
            }
            "A13" => {
                let discharged_at = when(adt.discharged_at, "PV1-45")?;
                let withdrawn = self
                    .reception
                    .withdraw(ids, &adt.facility, discharged_at, meta)
                    .await?;
                Ok(if withdrawn {
                    "referral withdrawn"
                } else {
                    "not a referred person; nothing stored"
                }
                .into())
            }
            other => Err(Problem::invalid(
                "MSH-9",
                format!("trigger {other} is not handled"),
            )),
        }
    }

    /// An outpatient visit (A04, PV1-2 `O`) at `at` (PV1-44).
    async fn visit(
        &self,
        adt: &Adt,
        at: chrono::DateTime<Utc>,
        meta: &Metadata,
    ) -> Result<String, Problem> {
        if at > Utc::now() {
            return Err(Problem::invalid("PV1-44", "the visit is in the future"));
        }
        let recorded = self
            .reception
            .record_encounter(
                &adt.person.identifiers,
                &adt.facility,
                crate::reception::ReportedEncounter {
                    class: crate::domain::EncounterClass::Outpatient,
                    started_at: at,
                    ended_at: None,
                    unit: UNSPECIFIED_UNIT.into(),
                },
                meta,
            )
            .await?;
        Ok(match recorded {
            Some(_) => "outpatient visit recorded",
            None => "not a referred person; nothing stored",
        }
        .into())
    }

    async fn discharge(
        &self,
        adt: &Adt,
        discharged_at: chrono::DateTime<Utc>,
        unit: String,
        meta: &Metadata,
        peer: &Option<String>,
    ) -> Result<String, Problem> {
        if adt.referral_declined {
            return Ok("discharge noted; ZPS-1 says no peer-support referral".into());
        }
        let consent = match &adt.flag {
            Some(flag) => Consent {
                granted_at: flag.consent_at.unwrap_or(discharged_at).min(Utc::now()),
                scope: "peer-support-referral".into(),
                recorded_by: flag.recorded_by.clone(),
            },
            None => {
                let known = match self.reception.find(&adt.person.identifiers).await? {
                    Some(p) => self.reception.person(&p).await?.consent,
                    None => None,
                };
                match known {
                    Some(c) => c,
                    None => {
                        return Ok(
                            "discharge noted; no consent to peer-support referral on record".into(),
                        );
                    }
                }
            }
        };
        let referral = referral_from_discharge(adt, discharged_at, unit, consent)?;
        let accepted = self.reception.submit(referral, meta).await?;
        self.audit(
            adt,
            peer,
            "create",
            Some(accepted.person_ref.clone()),
            Some(accepted.referral_id.clone()),
        )
        .await?;
        Ok(format!(
            "referral {}{}",
            accepted.referral_id,
            if accepted.duplicate {
                " (already referred)"
            } else {
                " created"
            }
        ))
    }
}

impl Inbound {
    /// Records a change of a person's details the message made, by its sender.
    async fn audit(
        &self,
        adt: &Adt,
        peer: &Option<String>,
        action: &str,
        person_ref: Option<String>,
        referral_id: Option<String>,
    ) -> Result<(), Problem> {
        let sender = careloop_web::Principal {
            sub: format!(
                "hl7 {}|{}",
                adt.header.sending_application, adt.header.sending_facility
            ),
            role: careloop_web::Role::Hospital,
            facility: Some(adt.facility.clone()),
            ..Default::default()
        };
        let address = careloop_identity::audit::ClientAddress(peer.clone());
        let mut entry = careloop_identity::audit::Audit::by(&sender, &address, action, "person");
        entry.person_ref = person_ref;
        entry.referral_id = referral_id;
        self.reception.audit.record(entry).await
    }
}

/// The referral an A03 makes, once the consent is known.
pub fn referral_from_discharge(
    adt: &Adt,
    discharged_at: chrono::DateTime<Utc>,
    unit: String,
    consent: Consent,
) -> Result<NewReferral, Problem> {
    let draft = ReferralDraft {
        facility: adt.facility.clone(),
        channel: careloop_events::Channel::Hl7,
        person: adt.person.clone(),
        discharged_at,
        unit,
        risk_level: adt
            .flag
            .as_ref()
            .map(|f| f.risk_level)
            .unwrap_or(RiskLevel::Moderate),
        consent,
        needs: vec![],
        preferences: Preferences::default(),
        notes: None,
    };
    NewReferral::new(draft, Utc::now()).map_err(invalid_message)
}

/// The unit when PV1-3 (assigned location) is empty.
const UNSPECIFIED_UNIT: &str = "unspecified";

/// A refused referral, the field named as an HL7 v2 location.
fn invalid_message(e: InvalidReferral) -> Problem {
    let field = match e.field {
        Field::Facility => "MSH-4",
        Field::Identifiers | Field::Identifier(_) => "PID-3",
        Field::Language => "PID-15",
        Field::BirthDate => "PID-7",
        Field::DischargedAt => "PV1-45",
        Field::Unit => "PV1-3",
        Field::ConsentGrantedAt => "ZPS-2",
        Field::ConsentTerms => "ZPS-3",
        Field::Name => "PID-5",
        Field::Phone => "PID-13",
        Field::Gender => "PID-8",
        Field::Postcode => "PID-11",
        // Not read from HL7 v2 (no field carries them).
        Field::Needs
        | Field::Need(_)
        | Field::PeerGender
        | Field::LivedExperience
        | Field::ContactModes
        | Field::Notes => "ZPS",
    };
    Problem::invalid(field, e.reason)
}

/// The message without its MSH-7 (a resend may carry a new send time): what must
/// match for a repeated MSH-10 to be the same message.
fn message_hash(text: &str) -> String {
    use sha2::{Digest, Sha256};
    let normalised: String = text
        .replace("\r\n", "\r")
        .replace('\n', "\r")
        .split('\r')
        .filter(|seg| !seg.trim().is_empty())
        .map(|seg| {
            if seg.starts_with("MSH") {
                let mut f: Vec<&str> = seg.split('|').collect();
                if f.len() > 6 {
                    f[6] = "";
                }
                f.join("|")
            } else {
                seg.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\r");
    format!("{:x}", Sha256::digest(normalised.as_bytes()))
}

/// An ACK for `h` (the incoming header, possibly empty when it could not be read).
/// `field` is where the error is, as `SEG-n` (`PID-3`); the ERR segment says it as an
/// HL7 error location (`PID^1^3`): ERR-2 from v2.5 on, ERR-1 before.
pub fn ack(h: &Header, code: AckCode, text: &str, field: Option<&str>) -> String {
    // What is echoed from a message that may have been refused for its bytes: no
    // control characters, short.
    let echo = |s: &str| -> String {
        s.chars()
            .filter(|c| !c.is_control())
            .take(careloop_web::limits::MAX_TEXT_CHARS)
            .collect()
    };
    let h = &Header {
        sending_application: echo(&h.sending_application),
        sending_facility: echo(&h.sending_facility),
        control_id: echo(&h.control_id),
        trigger: echo(&h.trigger),
        version: echo(&h.version),
        ..Header::default()
    };
    let now = Utc::now().format("%Y%m%d%H%M%S");
    let code = match code {
        AckCode::AA => "AA",
        AckCode::AE => "AE",
        AckCode::AR => "AR",
    };
    let version = if h.version.is_empty() {
        "2.5"
    } else {
        h.version.as_str()
    };
    // MSH-9.3 (the message structure) exists from v2.3.1 on.
    let message_type = match h.trigger.as_str() {
        "" => "ACK".to_string(),
        t if before_v231(version) => format!("ACK^{t}"),
        t => format!("ACK^{t}^ACK"),
    };
    let clean = |s: &str| echo(&s.replace(['|', '^', '~', '\\', '&', '\r', '\n'], " "));
    let mut out = format!(
        "MSH|^~\\&|CARELOOP|CARELOOP|{}|{}|{now}||{message_type}|{}|P|{version}\rMSA|{code}|{}|{}\r",
        h.sending_application,
        h.sending_facility,
        uuid::Uuid::new_v4().simple(),
        h.control_id,
        clean(text),
    );
    if code != "AA" {
        // HL7 table 0357: what kind of error this is.
        let condition = match (code, field) {
            (_, Some("MSH-10")) => "205^Duplicate key identifier",
            ("AR", None) => "200^Unsupported message type",
            ("AE", _) => "207^Application internal error",
            (_, Some(_)) if text.contains("at most") => "104^Value too long",
            (_, Some(_)) if text.contains("needed") || text.contains("no ") => {
                "101^Required field missing"
            }
            (_, Some(_)) => "102^Data type error",
            _ => "207^Application internal error",
        };
        let location = field.map(error_location).unwrap_or_default();
        if version.starts_with("2.3") || version.starts_with("2.4") || version.starts_with("2.2") {
            let condition = condition.replace('^', "&");
            out.push_str(&format!("ERR|{location}^{condition}\r"));
        } else {
            out.push_str(&format!(
                "ERR||{location}|{condition}|E||||{}\r",
                clean(text)
            ));
        }
    }
    out
}

fn before_v231(version: &str) -> bool {
    matches!(version, "2.1" | "2.2" | "2.3")
}

/// `PID-3` as an HL7 error location (segment ^ sequence ^ field): `PID^1^3`.
fn error_location(field: &str) -> String {
    let keep = |s: &str| {
        s.chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
    };
    match field.split_once('-') {
        Some((segment, n)) => format!("{}^1^{}", keep(segment), keep(n)),
        None => format!("{}^1", keep(field)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(version: &str) -> Header {
        Header {
            sending_application: "EPIC".into(),
            sending_facility: "ST MARYS".into(),
            control_id: "C1".into(),
            trigger: "A03".into(),
            version: version.into(),
            ..Default::default()
        }
    }

    #[test]
    fn an_ack_speaks_the_senders_version() {
        let a = ack(
            &header("2.3"),
            AckCode::AR,
            "PID-3 has 21 repetitions; at most 20 are allowed",
            Some("PID-3"),
        );
        assert!(a.contains("||ACK^A03|"), "no MSH-9.3 before v2.3.1: {a}");
        assert!(a.contains("\rERR|PID^1^3^104&Value too long\r"), "{a}");
        let a = ack(&header("2.5.1"), AckCode::AR, "bad", Some("ZPS-4"));
        assert!(a.contains("||ACK^A03^ACK|"), "{a}");
        assert!(a.contains("\rERR||ZPS^1^4|102^Data type error|E"), "{a}");
        let a = ack(
            &header("2.5"),
            AckCode::AR,
            "MSH-10 was used before",
            Some("MSH-10"),
        );
        assert!(a.contains("|205^Duplicate key identifier|"), "{a}");
        let a = ack(
            &header("2.5"),
            AckCode::AE,
            "temporarily unable to apply; resend",
            None,
        );
        assert!(a.contains("|207^Application internal error|"), "{a}");
    }
}
