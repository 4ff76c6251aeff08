//! The Person aggregate: the PHI vault. Its events never leave the intake service,
//! except ConsentRevoked and PersonErased, which carry no PHI. The others are sealed
//! at rest under the person's data key (`crate::sealing`); once the person is erased
//! that key is gone and they load as [`PersonEvent::Shredded`].

use chrono::NaiveDate;
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use super::Consent;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Identifier {
    pub system: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PersonName {
    pub given: String,
    pub family: String,
    /// The name the person goes by, when it is not their given name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferred: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonDetails {
    pub identifiers: Vec<Identifier>,
    pub name: Option<PersonName>,
    pub birth_date: Option<NaiveDate>,
    pub phone: Option<String>,
    pub gender: Option<String>,
    pub postcode: Option<String>,
    pub language: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Person {
    pub details: Option<PersonDetails>,
    /// The consent in force, if any (revoking clears it).
    pub consent: Option<Consent>,
    /// When the person was erased: nothing is recorded about them after.
    pub erased_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Why a person was erased.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErasureCause {
    /// An administrator erased them, at the person's request or the law's.
    Request,
    /// The retention period after their last activity ended.
    Retention,
}

impl ErasureCause {
    pub fn as_str(self) -> &'static str {
        match self {
            ErasureCause::Request => "request",
            ErasureCause::Retention => "retention",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum PersonCommand {
    /// Records the person, or what changed since the last referral.
    Record(PersonDetails),
    /// Records the person and the consent a referral brings with them: one load and
    /// one commit where `Record` and `RecordConsent` would take two.
    RecordWithConsent {
        details: PersonDetails,
        consent: Consent,
    },
    RecordConsent(Consent),
    RevokeConsent {
        revoked_at: chrono::DateTime<chrono::Utc>,
        reason: String,
    },
    /// Records that the person's data key was destroyed (the vault did that first).
    Erase {
        erased_at: chrono::DateTime<chrono::Utc>,
        cause: ErasureCause,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PersonEvent {
    PersonRegistered(PersonDetails),
    PersonDetailsUpdated(PersonDetails),
    Consented(Consent),
    ConsentRevoked {
        revoked_at: chrono::DateTime<chrono::Utc>,
        reason: String,
    },
    PersonErased {
        erased_at: chrono::DateTime<chrono::Utc>,
        cause: ErasureCause,
    },
    /// A sealed event whose key was destroyed: it happened, nothing of it is readable.
    /// Never written; the store gives it in place of the sealed event.
    Shredded,
}

impl DomainEvent for PersonEvent {
    fn event_type(&self) -> String {
        match self {
            PersonEvent::PersonRegistered(_) => "PersonRegistered",
            PersonEvent::PersonDetailsUpdated(_) => "PersonDetailsUpdated",
            PersonEvent::Consented(_) => "Consented",
            PersonEvent::ConsentRevoked { .. } => "ConsentRevoked",
            PersonEvent::PersonErased { .. } => "PersonErased",
            PersonEvent::Shredded => "Shredded",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PersonError {
    #[error("no such person")]
    NotFound,
    #[error("this person's details were erased")]
    Erased,
}

impl Person {
    /// Registers the person, or records what changed in their details.
    async fn record(&mut self, mut details: PersonDetails, sink: &EventSink<Self>) {
        match &self.details {
            None => {
                sink.write(PersonEvent::PersonRegistered(details), self)
                    .await
            }
            Some(current) => {
                // Identifiers accumulate: a person is found by any of them.
                for id in &current.identifiers {
                    if !details.identifiers.contains(id) {
                        details.identifiers.push(id.clone());
                    }
                }
                if *current != details {
                    sink.write(PersonEvent::PersonDetailsUpdated(details), self)
                        .await;
                }
            }
        }
    }

    /// Records consent `c` unless it is the one on record.
    async fn consent_to(&mut self, c: Consent, sink: &EventSink<Self>) {
        if self.consent.as_ref() != Some(&c) {
            sink.write(PersonEvent::Consented(c), self).await;
        }
    }
}

impl Aggregate for Person {
    const TYPE: &'static str = "Person";
    type Command = PersonCommand;
    type Event = PersonEvent;
    type Error = PersonError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        if let PersonCommand::Erase { erased_at, cause } = command {
            if self.erased_at.is_none() {
                sink.write(PersonEvent::PersonErased { erased_at, cause }, self)
                    .await;
            }
            return Ok(());
        }
        if self.erased_at.is_some() {
            return Err(PersonError::Erased);
        }
        let (details, consent) = match command {
            PersonCommand::Record(details) => (details, None),
            PersonCommand::RecordWithConsent { details, consent } => (details, Some(consent)),
            PersonCommand::RecordConsent(c) => {
                if self.details.is_none() {
                    return Err(PersonError::NotFound);
                }
                self.consent_to(c, sink).await;
                return Ok(());
            }
            PersonCommand::RevokeConsent { revoked_at, reason } => {
                if self.details.is_none() {
                    return Err(PersonError::NotFound);
                }
                if self.consent.is_some() {
                    let e = PersonEvent::ConsentRevoked { revoked_at, reason };
                    sink.write(e, self).await;
                }
                return Ok(());
            }
            PersonCommand::Erase { .. } => unreachable!("handled first"),
        };
        self.record(details, sink).await;
        if let Some(c) = consent {
            self.consent_to(c, sink).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            PersonEvent::PersonRegistered(d) | PersonEvent::PersonDetailsUpdated(d) => {
                self.details = Some(d)
            }
            PersonEvent::Consented(c) => self.consent = Some(c),
            PersonEvent::ConsentRevoked { .. } => self.consent = None,
            PersonEvent::PersonErased { erased_at, .. } => {
                self.details = None;
                self.consent = None;
                self.erased_at = Some(erased_at);
            }
            PersonEvent::Shredded => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<Person>;

    fn details(ids: &[(&str, &str)], phone: &str) -> PersonDetails {
        PersonDetails {
            identifiers: ids
                .iter()
                .map(|(s, v)| Identifier {
                    system: s.to_string(),
                    value: v.to_string(),
                })
                .collect(),
            name: Some(PersonName {
                given: "Alex".into(),
                family: "Rivera".into(),
                preferred: None,
            }),
            birth_date: NaiveDate::from_ymd_opt(1990, 4, 12),
            phone: Some(phone.into()),
            gender: None,
            postcode: None,
            language: "en".into(),
        }
    }

    #[tokio::test]
    async fn a_new_person_is_registered() {
        let d = details(&[("mrn", "1")], "+1-402-555-0134");
        Given::with(())
            .given_no_previous_events()
            .when_async(PersonCommand::Record(d.clone()))
            .await
            .then_expect_events(vec![PersonEvent::PersonRegistered(d)]);
    }

    fn consent(scope: &str) -> Consent {
        Consent {
            granted_at: "2026-11-20T14:00:00Z".parse().unwrap(),
            scope: scope.into(),
            recorded_by: "unit nurse".into(),
        }
    }

    #[tokio::test]
    async fn a_referred_person_is_registered_with_their_consent_in_one_command() {
        let d = details(&[("mrn", "1")], "+1-402-555-0134");
        let c = consent("peer support referral");
        let refer = |d: PersonDetails, c: Consent| PersonCommand::RecordWithConsent {
            details: d,
            consent: c,
        };
        Given::with(())
            .given_no_previous_events()
            .when_async(refer(d.clone(), c.clone()))
            .await
            .then_expect_events(vec![
                PersonEvent::PersonRegistered(d.clone()),
                PersonEvent::Consented(c.clone()),
            ]);
        // Referred again with the same details and consent: nothing new.
        Given::with(())
            .given(vec![
                PersonEvent::PersonRegistered(d.clone()),
                PersonEvent::Consented(c.clone()),
            ])
            .when_async(refer(d.clone(), c.clone()))
            .await
            .then_expect_events(vec![]);
        // A new consent with the same details: only the consent.
        let renewed = consent("peer support referral, renewed");
        Given::with(())
            .given(vec![
                PersonEvent::PersonRegistered(d.clone()),
                PersonEvent::Consented(c),
            ])
            .when_async(refer(d, renewed.clone()))
            .await
            .then_expect_events(vec![PersonEvent::Consented(renewed)]);
    }

    #[tokio::test]
    async fn the_same_details_again_change_nothing() {
        let d = details(&[("mrn", "1")], "+1-402-555-0134");
        Given::with(())
            .given(vec![PersonEvent::PersonRegistered(d.clone())])
            .when_async(PersonCommand::Record(d))
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn an_erased_person_is_erased_once_and_nothing_is_recorded_after() {
        let d = details(&[("mrn", "1")], "+1-402-555-0134");
        let at = chrono::Utc::now();
        let erased = PersonEvent::PersonErased {
            erased_at: at,
            cause: ErasureCause::Request,
        };
        let erase = PersonCommand::Erase {
            erased_at: at,
            cause: ErasureCause::Request,
        };
        Given::with(())
            .given(vec![PersonEvent::Shredded])
            .when_async(erase.clone())
            .await
            .then_expect_events(vec![erased.clone()]);
        Given::with(())
            .given(vec![PersonEvent::Shredded, erased.clone()])
            .when_async(erase)
            .await
            .then_expect_events(vec![]);
        Given::with(())
            .given(vec![PersonEvent::Shredded, erased])
            .when_async(PersonCommand::Record(d))
            .await
            .then_expect_error(PersonError::Erased);
    }

    #[tokio::test]
    async fn new_details_keep_every_known_identifier() {
        let first = details(&[("mrn", "1")], "+1-402-555-0134");
        let later = details(&[("ssn", "9")], "+1-402-555-9999");
        let merged = details(&[("ssn", "9"), ("mrn", "1")], "+1-402-555-9999");
        Given::with(())
            .given(vec![PersonEvent::PersonRegistered(first)])
            .when_async(PersonCommand::Record(later))
            .await
            .then_expect_events(vec![PersonEvent::PersonDetailsUpdated(merged)]);
    }
}
