//! A new referral: one discharge a hospital refers to peer support, as every channel
//! (REST, FHIR, HL7 v2) hands it over once it has read its own format.
//!
//! Each channel fills a [`ReferralDraft`] with what it read; [`NewReferral::new`]
//! applies the rules every referral must meet, whatever its channel, and derives what
//! careloop computes from it (the priority, the region, the matching inputs, the
//! referral's id) in one place. A refusal names a [`Field`], which each channel
//! translates into its own vocabulary (`discharge.discharged_at`, a FHIRPath, `PV1-45`).

use careloop_events::{Channel, Priority};
use careloop_web::limits;
use chrono::{DateTime, Utc};

use super::person::PersonDetails;
use super::submission::{Consent, Preferences, RiskLevel, SubmittedReferral};

/// What a channel read, before any rule is checked.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferralDraft {
    pub facility: String,
    pub channel: Channel,
    pub person: PersonDetails,
    pub discharged_at: DateTime<Utc>,
    pub unit: String,
    pub risk_level: RiskLevel,
    pub consent: Consent,
    pub needs: Vec<String>,
    pub preferences: Preferences,
    pub notes: Option<String>,
}

/// A referral that meets every rule.
#[derive(Debug, Clone, PartialEq)]
pub struct NewReferral(ReferralDraft);

/// The part of a referral a rule refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Facility,
    Identifiers,
    /// One identifier, by its position among those given.
    Identifier(usize),
    Language,
    BirthDate,
    DischargedAt,
    Unit,
    ConsentGrantedAt,
    /// The consent's scope or who recorded it.
    ConsentTerms,
    Name,
    Phone,
    Gender,
    Postcode,
    /// The list of needs.
    Needs,
    /// One need, by its position.
    Need(usize),
    PeerGender,
    LivedExperience,
    ContactModes,
    Notes,
}

/// Why a referral was refused: the field and a reason fit to show the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidReferral {
    pub field: Field,
    pub reason: String,
}

impl std::fmt::Display for InvalidReferral {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for InvalidReferral {}

fn refuse<T>(field: Field, reason: &str) -> Result<T, InvalidReferral> {
    Err(InvalidReferral {
        field,
        reason: reason.to_string(),
    })
}

fn blank(s: &str) -> bool {
    s.trim().is_empty()
}

/// A language as careloop compares it: the primary subtag of a BCP 47 tag, lower
/// case (`en-US` → `en`).
pub fn language_code(raw: &str) -> String {
    let raw = raw.trim().to_lowercase();
    raw.split(['-', '_']).next().unwrap_or(&raw).to_string()
}

/// The region matching may use: the first three characters of the postcode, never
/// the whole postcode.
pub fn region_of(postcode: Option<&str>) -> Option<String> {
    postcode
        .map(|p| p.trim().chars().take(3).collect::<String>())
        .filter(|r| !r.is_empty())
}

/// The id of the referral of one discharge: derived from the facility, the person and
/// the discharge time, so the same discharge sent twice, over any channel, is one
/// referral (and a hospital withdrawing a discharge names the same one).
pub fn referral_id(facility: &str, person_ref: &str, discharged_at: DateTime<Utc>) -> String {
    uuid::Uuid::new_v5(
        &uuid::Uuid::NAMESPACE_URL,
        format!(
            "careloop:referral:{facility}:{person_ref}:{}",
            discharged_at.timestamp()
        )
        .as_bytes(),
    )
    .to_string()
}

/// A text within `max` characters careloop can store (see [`careloop_web::limits`]).
fn text(field: Field, value: &str, max: usize) -> Result<(), InvalidReferral> {
    match limits::text_problem(value, max) {
        None => Ok(()),
        Some(why) => refuse(field, &format!("the value {why}")),
    }
}

/// A list of at most `max` short texts.
fn list(
    field: Field,
    item: impl Fn(usize) -> Field,
    values: &[String],
    what: &str,
) -> Result<(), InvalidReferral> {
    if let Some(why) = limits::count_problem(values.len(), limits::MAX_LIST_ITEMS, what) {
        return refuse(field, &format!("the list {why}"));
    }
    for (i, v) in values.iter().enumerate() {
        text(item(i), v, limits::MAX_TEXT_CHARS)?;
    }
    Ok(())
}

/// The limits on a person's details, whatever brought them (a referral, an HL7 A08):
/// at most [`limits::MAX_IDENTIFIERS`] identifiers, every text short and storable.
pub fn check_person(person: &PersonDetails) -> Result<(), InvalidReferral> {
    let short = limits::MAX_TEXT_CHARS;
    if let Some(why) = limits::count_problem(
        person.identifiers.len(),
        limits::MAX_IDENTIFIERS,
        "identifiers",
    ) {
        return refuse(Field::Identifiers, &format!("the list {why}"));
    }
    for (i, id) in person.identifiers.iter().enumerate() {
        text(Field::Identifier(i), &id.system, short)?;
        text(Field::Identifier(i), &id.value, short)?;
    }
    if let Some(name) = &person.name {
        text(Field::Name, &name.given, short)?;
        text(Field::Name, &name.family, short)?;
        if let Some(p) = &name.preferred {
            text(Field::Name, p, short)?;
        }
    }
    for (field, value) in [
        (Field::Phone, &person.phone),
        (Field::Gender, &person.gender),
        (Field::Postcode, &person.postcode),
    ] {
        if let Some(v) = value {
            text(field, v, short)?;
        }
    }
    text(Field::Language, &person.language, short)
}

impl Consent {
    /// The rules a consent meets, with a referral or on its own.
    pub fn check(&self, now: DateTime<Utc>) -> Result<(), InvalidReferral> {
        text(Field::ConsentTerms, &self.scope, limits::MAX_TEXT_CHARS)?;
        text(
            Field::ConsentTerms,
            &self.recorded_by,
            limits::MAX_TEXT_CHARS,
        )?;
        if self.granted_at > now {
            return refuse(
                Field::ConsentGrantedAt,
                "the consent is dated in the future",
            );
        }
        if blank(&self.scope) || blank(&self.recorded_by) {
            return refuse(
                Field::ConsentTerms,
                "consent needs a scope and who recorded it",
            );
        }
        Ok(())
    }
}

impl NewReferral {
    /// Checks `draft` against every rule as of `now`, and normalises what the rules
    /// compare (trimmed facility and unit, the language code).
    pub fn new(mut draft: ReferralDraft, now: DateTime<Utc>) -> Result<Self, InvalidReferral> {
        // The limits first: nothing past them is looked at further.
        let short = limits::MAX_TEXT_CHARS;
        text(Field::Facility, &draft.facility, short)?;
        check_person(&draft.person)?;
        text(Field::Unit, &draft.unit, short)?;
        list(Field::Needs, Field::Need, &draft.needs, "needs")?;
        let p = &draft.preferences;
        if let Some(g) = &p.peer_gender {
            text(Field::PeerGender, g, short)?;
        }
        list(
            Field::LivedExperience,
            |_| Field::LivedExperience,
            &p.lived_experience,
            "lived-experience tags",
        )?;
        list(
            Field::ContactModes,
            |_| Field::ContactModes,
            &p.contact_modes,
            "contact modes",
        )?;
        if let Some(n) = &draft.notes {
            text(Field::Notes, n, limits::MAX_NOTES_CHARS)?;
        }
        if blank(&draft.facility) {
            return refuse(Field::Facility, "facility must not be empty");
        }
        if draft.person.identifiers.is_empty() {
            return refuse(
                Field::Identifiers,
                "at least one identifier (system and value) is needed",
            );
        }
        if let Some(i) = draft
            .person
            .identifiers
            .iter()
            .position(|id| blank(&id.system) || blank(&id.value))
        {
            return refuse(
                Field::Identifier(i),
                "an identifier needs a system and a value",
            );
        }
        if blank(&draft.person.language) {
            return refuse(Field::Language, "language must not be empty");
        }
        if draft
            .person
            .birth_date
            .is_some_and(|b| b > now.date_naive())
        {
            return refuse(Field::BirthDate, "the birth date is in the future");
        }
        if draft.discharged_at > now {
            return refuse(
                Field::DischargedAt,
                "the discharge is in the future; refer at or after discharge",
            );
        }
        if blank(&draft.unit) {
            return refuse(Field::Unit, "the discharging unit must not be empty");
        }
        draft.consent.check(now)?;
        draft.facility = draft.facility.trim().to_string();
        draft.unit = draft.unit.trim().to_string();
        draft.person.language = language_code(&draft.person.language);
        Ok(NewReferral(draft))
    }

    pub fn facility(&self) -> &str {
        &self.0.facility
    }

    pub fn channel(&self) -> Channel {
        self.0.channel
    }

    pub fn person(&self) -> &PersonDetails {
        &self.0.person
    }

    pub fn consent(&self) -> &Consent {
        &self.0.consent
    }

    pub fn discharged_at(&self) -> DateTime<Utc> {
        self.0.discharged_at
    }

    /// high → asap, moderate → urgent, low → routine.
    pub fn priority(&self) -> Priority {
        self.0.risk_level.priority()
    }

    pub fn region(&self) -> Option<String> {
        region_of(self.0.person.postcode.as_deref())
    }

    /// The referral's id (see [`referral_id`]).
    pub fn referral_id(&self, person_ref: &str) -> String {
        referral_id(&self.0.facility, person_ref, self.0.discharged_at)
    }

    /// The referral as intake stores it, for the person the vault holds as
    /// `person_ref`.
    pub fn submitted_for(&self, person_ref: &str) -> SubmittedReferral {
        let d = &self.0;
        SubmittedReferral {
            referral_id: self.referral_id(person_ref),
            person_ref: person_ref.to_string(),
            facility: d.facility.clone(),
            channel: d.channel,
            discharged_at: d.discharged_at,
            unit: d.unit.clone(),
            risk_level: d.risk_level,
            consent: d.consent.clone(),
            needs: d.needs.clone(),
            language: d.person.language.clone(),
            preferences: d.preferences.clone(),
            region: self.region(),
            notes: d.notes.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Identifier;

    fn draft() -> ReferralDraft {
        ReferralDraft {
            facility: " st-marys ".into(),
            channel: Channel::Api,
            person: PersonDetails {
                identifiers: vec![Identifier {
                    system: "urn:oid:1.2".into(),
                    value: "MRN1".into(),
                }],
                name: None,
                birth_date: None,
                phone: None,
                gender: None,
                postcode: Some(" 68102".into()),
                language: "EN-us".into(),
            },
            discharged_at: "2026-11-20T15:30:00Z".parse().unwrap(),
            unit: "inpatient-psychiatry".into(),
            risk_level: RiskLevel::High,
            consent: Consent {
                granted_at: "2026-11-20T14:00:00Z".parse().unwrap(),
                scope: "peer-support-referral".into(),
                recorded_by: "discharge planner".into(),
            },
            needs: vec!["emotional".into()],
            preferences: Preferences::default(),
            notes: None,
        }
    }

    fn now() -> DateTime<Utc> {
        "2026-11-21T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn derivations_are_made_once_here() {
        let r = NewReferral::new(draft(), now()).unwrap();
        assert_eq!(r.facility(), "st-marys");
        assert_eq!(r.priority(), Priority::Asap);
        assert_eq!(r.region().as_deref(), Some("681"));
        let s = r.submitted_for("p1");
        assert_eq!(s.matching().language, "en");
        assert_eq!(s.matching().region.as_deref(), Some("681"));
        assert_eq!(s.referral_id, r.referral_id("p1"));
        assert_eq!(s.region.as_deref(), Some("681"));
        assert_ne!(r.referral_id("p1"), r.referral_id("p2"));
    }

    #[test]
    fn each_rule_names_its_field() {
        type Change = Box<dyn Fn(&mut ReferralDraft)>;
        let cases: Vec<(Change, Field)> = vec![
            (Box::new(|d| d.facility = " ".into()), Field::Facility),
            (
                Box::new(|d| d.person.identifiers.clear()),
                Field::Identifiers,
            ),
            (
                Box::new(|d| d.person.identifiers[0].value = "".into()),
                Field::Identifier(0),
            ),
            (Box::new(|d| d.person.language = "".into()), Field::Language),
            (
                Box::new(|d| d.person.birth_date = chrono::NaiveDate::from_ymd_opt(2030, 1, 1)),
                Field::BirthDate,
            ),
            (
                Box::new(|d| d.discharged_at = "2026-12-01T00:00:00Z".parse().unwrap()),
                Field::DischargedAt,
            ),
            (Box::new(|d| d.unit = "".into()), Field::Unit),
            (
                Box::new(|d| d.consent.granted_at = "2026-12-01T00:00:00Z".parse().unwrap()),
                Field::ConsentGrantedAt,
            ),
            (
                Box::new(|d| d.consent.scope = "".into()),
                Field::ConsentTerms,
            ),
            // The limits (careloop_web::limits), named by field.
            (
                Box::new(|d| {
                    let id = d.person.identifiers[0].clone();
                    d.person.identifiers = vec![id; limits::MAX_IDENTIFIERS + 1];
                }),
                Field::Identifiers,
            ),
            (
                Box::new(|d| d.person.identifiers[0].value = "MRN\0".into()),
                Field::Identifier(0),
            ),
            (
                Box::new(|d| d.needs = vec!["x".into(); limits::MAX_LIST_ITEMS + 1]),
                Field::Needs,
            ),
            (
                Box::new(|d| d.needs = vec!["x".into(), "y".repeat(limits::MAX_TEXT_CHARS + 1)]),
                Field::Need(1),
            ),
            (
                Box::new(|d| {
                    d.preferences.lived_experience = vec!["x".into(); limits::MAX_LIST_ITEMS + 1]
                }),
                Field::LivedExperience,
            ),
            (
                Box::new(|d| d.preferences.contact_modes = vec!["\u{7}".into()]),
                Field::ContactModes,
            ),
            (
                Box::new(|d| d.notes = Some("n".repeat(limits::MAX_NOTES_CHARS + 1))),
                Field::Notes,
            ),
            (
                Box::new(|d| d.person.phone = Some("\0".into())),
                Field::Phone,
            ),
            (
                Box::new(|d| d.consent.recorded_by = "r".repeat(limits::MAX_TEXT_CHARS + 1)),
                Field::ConsentTerms,
            ),
        ];
        for (change, field) in cases {
            let mut d = draft();
            change(&mut d);
            assert_eq!(NewReferral::new(d, now()).unwrap_err().field, field);
        }
    }
}
