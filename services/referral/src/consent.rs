//! The consent process manager: a revoked consent cancels every referral of the
//! person submitted before it, whichever of the two events is handled first.
//!
//! Its state is the person's [`PersonReferrals`] aggregate, kept as the referral
//! service's own events. Each handler notes its fact there, takes the state as that
//! command left it (`store::record`) and cancels what the rule says; cancelling is
//! idempotent (a referral no longer open refuses, and the refusal is final), so a
//! redelivery or a race between the two handlers cancels once.

use std::sync::Arc;

use careloop_backbone::Metadata;
use careloop_backbone::store::{self, Cqrs};
use chrono::{DateTime, Utc};

use crate::domain::{PersonReferrals, PersonReferralsCommand, Referral, ReferralCommand};

#[derive(Clone)]
pub struct ConsentGuard {
    pub people: Arc<Cqrs<PersonReferrals>>,
    pub referrals: Arc<Cqrs<Referral>>,
}

impl ConsentGuard {
    /// A referral of `person_ref` was received: cancel it if consent was revoked
    /// since it was submitted.
    pub async fn referral_received(
        &self,
        person_ref: &str,
        referral_id: &str,
        submitted_at: DateTime<Utc>,
        meta: &Metadata,
    ) -> anyhow::Result<()> {
        let note = PersonReferralsCommand::NoteReferral {
            referral_id: referral_id.to_string(),
            submitted_at,
        };
        let person = self.record(person_ref, note, meta).await?;
        if let Some(reason) = person.revoked_since(submitted_at) {
            self.cancel(referral_id, reason, meta).await?;
        }
        Ok(())
    }

    /// `person_ref` revoked consent: cancel every referral submitted before.
    pub async fn consent_revoked(
        &self,
        person_ref: &str,
        revoked_at: DateTime<Utc>,
        reason: &str,
        meta: &Metadata,
    ) -> anyhow::Result<()> {
        let note = PersonReferralsCommand::NoteRevocation {
            revoked_at,
            reason: reason.to_string(),
        };
        let person = self.record(person_ref, note, meta).await?;
        let reason = person
            .revoked
            .as_ref()
            .map(|(_, r)| r.clone())
            .unwrap_or_default();
        for id in person.revoked_referrals() {
            self.cancel(id, &reason, meta).await?;
        }
        Ok(())
    }

    async fn record(
        &self,
        person_ref: &str,
        command: PersonReferralsCommand,
        meta: &Metadata,
    ) -> anyhow::Result<PersonReferrals> {
        store::record(&self.people, person_ref, command, meta).await
    }

    async fn cancel(&self, referral_id: &str, reason: &str, meta: &Metadata) -> anyhow::Result<()> {
        let cmd = ReferralCommand::Cancel {
            reason: reason.to_string(),
        };
        store::tolerate_refusal(store::execute(&self.referrals, referral_id, cmd, meta).await)
    }
}
