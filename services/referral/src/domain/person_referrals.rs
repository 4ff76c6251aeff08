//! PersonReferrals: one person's referrals and the revocation of their consent, the
//! state of the consent process manager ([`crate::consent`]).
//!
//! Intake reports a referral (ReferralSubmitted) and a revoked consent
//! (ConsentRevoked) as events of two different aggregates, which may be handled in
//! either order. Both are noted here, on the person, so whichever comes second finds
//! the first: a revocation cancels every referral submitted before it, also one whose
//! submission is handled after the revocation. Kept as the referral service's own
//! events, so it needs no table of its own and nothing to replay.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PersonReferrals {
    /// Each referral of the person and when it was submitted.
    pub referrals: Vec<(String, DateTime<Utc>)>,
    /// The latest revocation of consent: when, and why.
    pub revoked: Option<(DateTime<Utc>, String)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PersonReferralsCommand {
    NoteReferral {
        referral_id: String,
        submitted_at: DateTime<Utc>,
    },
    NoteRevocation {
        revoked_at: DateTime<Utc>,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PersonReferralsEvent {
    ReferralOfPersonNoted {
        referral_id: String,
        submitted_at: DateTime<Utc>,
    },
    ConsentRevocationNoted {
        revoked_at: DateTime<Utc>,
        reason: String,
    },
}

impl DomainEvent for PersonReferralsEvent {
    fn event_type(&self) -> String {
        match self {
            Self::ReferralOfPersonNoted { .. } => "ReferralOfPersonNoted",
            Self::ConsentRevocationNoted { .. } => "ConsentRevocationNoted",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

/// Noting is never refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PersonReferralsError {}

impl PersonReferrals {
    /// The reason to cancel a referral submitted at `submitted_at`, if consent was
    /// revoked at or after it.
    pub fn revoked_since(&self, submitted_at: DateTime<Utc>) -> Option<&str> {
        self.revoked
            .as_ref()
            .filter(|(at, _)| *at >= submitted_at)
            .map(|(_, reason)| reason.as_str())
    }

    /// The referrals submitted at or before the latest revocation (none without one).
    pub fn revoked_referrals(&self) -> Vec<&str> {
        self.referrals
            .iter()
            .filter(|(_, at)| self.revoked_since(*at).is_some())
            .map(|(id, _)| id.as_str())
            .collect()
    }
}

impl Aggregate for PersonReferrals {
    const TYPE: &'static str = "PersonReferrals";
    type Command = PersonReferralsCommand;
    type Event = PersonReferralsEvent;
    type Error = PersonReferralsError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        use PersonReferralsCommand as C;
        use PersonReferralsEvent as E;
        let event = match command {
            C::NoteReferral {
                referral_id,
                submitted_at,
            } => {
                if self.referrals.iter().any(|(id, _)| *id == referral_id) {
                    return Ok(());
                }
                E::ReferralOfPersonNoted {
                    referral_id,
                    submitted_at,
                }
            }
            C::NoteRevocation { revoked_at, reason } => {
                if self
                    .revoked
                    .as_ref()
                    .is_some_and(|(at, _)| *at >= revoked_at)
                {
                    return Ok(());
                }
                E::ConsentRevocationNoted { revoked_at, reason }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            PersonReferralsEvent::ReferralOfPersonNoted {
                referral_id,
                submitted_at,
            } => self.referrals.push((referral_id, submitted_at)),
            PersonReferralsEvent::ConsentRevocationNoted { revoked_at, reason } => {
                self.revoked = Some((revoked_at, reason))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn noted(id: &str, at: &str) -> PersonReferralsEvent {
        PersonReferralsEvent::ReferralOfPersonNoted {
            referral_id: id.into(),
            submitted_at: t(at),
        }
    }

    fn revoked(at: &str) -> PersonReferralsEvent {
        PersonReferralsEvent::ConsentRevocationNoted {
            revoked_at: t(at),
            reason: "consent revoked: asked".into(),
        }
    }

    fn state(events: Vec<PersonReferralsEvent>) -> PersonReferrals {
        let mut s = PersonReferrals::default();
        for e in events {
            s.apply(e);
        }
        s
    }

    #[test]
    fn a_revocation_covers_referrals_submitted_before_it_in_either_order() {
        // The revocation noted first, the earlier referral after it.
        let s = state(vec![
            revoked("2026-11-21T00:00:00Z"),
            noted("r1", "2026-11-20T00:00:00Z"),
        ]);
        assert_eq!(
            s.revoked_since(t("2026-11-20T00:00:00Z")),
            Some("consent revoked: asked")
        );
        assert_eq!(s.revoked_referrals(), ["r1"]);
        // A referral after the revocation (consent given again) stands.
        let s = state(vec![
            revoked("2026-11-21T00:00:00Z"),
            noted("r2", "2026-11-22T00:00:00Z"),
        ]);
        assert_eq!(s.revoked_since(t("2026-11-22T00:00:00Z")), None);
        assert!(s.revoked_referrals().is_empty());
    }

    #[tokio::test]
    async fn each_fact_is_noted_once() {
        TestFramework::<PersonReferrals>::with(())
            .given(vec![noted("r1", "2026-11-20T00:00:00Z")])
            .when_async(PersonReferralsCommand::NoteReferral {
                referral_id: "r1".into(),
                submitted_at: t("2026-11-20T00:00:00Z"),
            })
            .await
            .then_expect_events(vec![]);
        TestFramework::<PersonReferrals>::with(())
            .given(vec![revoked("2026-11-21T00:00:00Z")])
            .when_async(PersonReferralsCommand::NoteRevocation {
                revoked_at: t("2026-11-21T00:00:00Z"),
                reason: "again".into(),
            })
            .await
            .then_expect_events(vec![]);
    }
}
