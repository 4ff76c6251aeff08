//! The Peer aggregate: a peer support specialist's profile, availability and
//! caseload.
//!
//! Capacity is enforced here: reserving a slot is refused once the caseload is full
//! or the peer is not available, and two reservations racing for the last slot meet
//! at the event store's optimistic lock, so one of them reloads, sees the peer full,
//! and is refused.

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerProfile {
    pub name: String,
    pub languages: Vec<String>,
    pub gender: Option<String>,
    pub lived_experience: Vec<String>,
    pub regions: Vec<String>,
    pub modes: Vec<String>,
    pub max_caseload: u32,
    /// The peer's certification as a peer support specialist (older events: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certification: Option<Certification>,
}

/// A peer support specialist certification: who issued it, its number, and the last
/// day it is valid. A peer whose certification has expired is not matched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certification {
    pub issuer: String,
    pub number: String,
    pub expires_on: NaiveDate,
}

impl Certification {
    /// Valid on `day` (through its last day).
    pub fn is_valid_on(&self, day: NaiveDate) -> bool {
        day <= self.expires_on
    }
}

/// Whether a peer takes new referrals.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Availability {
    #[default]
    Active,
    /// Back on `until`; their current referrals go back to matching.
    OnLeave {
        until: DateTime<Utc>,
    },
    Inactive,
}

impl Availability {
    pub fn takes_referrals(&self, now: DateTime<Utc>) -> bool {
        match self {
            Availability::Active => true,
            Availability::OnLeave { until } => now >= *until,
            Availability::Inactive => false,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            Availability::Active => "active",
            Availability::OnLeave { .. } => "on_leave",
            Availability::Inactive => "inactive",
        }
    }
}

/// A partial update: only the fields given change.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerPatch {
    pub name: Option<String>,
    pub languages: Option<Vec<String>>,
    pub gender: Option<Option<String>>,
    pub lived_experience: Option<Vec<String>>,
    pub regions: Option<Vec<String>>,
    pub modes: Option<Vec<String>>,
    pub max_caseload: Option<u32>,
    /// `Some(None)` removes the certification.
    pub certification: Option<Option<Certification>>,
}

impl PeerPatch {
    fn apply_to(self, p: &PeerProfile) -> PeerProfile {
        PeerProfile {
            name: self.name.unwrap_or_else(|| p.name.clone()),
            languages: self.languages.unwrap_or_else(|| p.languages.clone()),
            gender: self.gender.unwrap_or_else(|| p.gender.clone()),
            lived_experience: self
                .lived_experience
                .unwrap_or_else(|| p.lived_experience.clone()),
            regions: self.regions.unwrap_or_else(|| p.regions.clone()),
            modes: self.modes.unwrap_or_else(|| p.modes.clone()),
            max_caseload: self.max_caseload.unwrap_or(p.max_caseload),
            certification: self
                .certification
                .unwrap_or_else(|| p.certification.clone()),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Peer {
    pub registered: bool,
    pub profile: Option<PeerProfile>,
    pub max_caseload: u32,
    pub availability: Availability,
    pub caseload: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PeerCommand {
    Register(PeerProfile),
    /// Changes the fields the patch gives (merged here, under the optimistic lock, so
    /// two concurrent PATCHes never undo each other).
    Update(PeerPatch),
    SetAvailability(Availability),
    /// Takes one caseload slot for `referral_id`.
    ReserveSlot {
        referral_id: String,
        now: DateTime<Utc>,
    },
    ReleaseSlot {
        referral_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PeerEvent {
    PeerRegistered(PeerProfile),
    PeerProfileUpdated(PeerProfile),
    AvailabilityChanged(Availability),
    SlotReserved { referral_id: String },
    SlotReleased { referral_id: String },
}

impl DomainEvent for PeerEvent {
    fn event_type(&self) -> String {
        match self {
            PeerEvent::PeerRegistered(_) => "PeerRegistered",
            PeerEvent::PeerProfileUpdated(_) => "PeerProfileUpdated",
            PeerEvent::AvailabilityChanged(_) => "AvailabilityChanged",
            PeerEvent::SlotReserved { .. } => "SlotReserved",
            PeerEvent::SlotReleased { .. } => "SlotReleased",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PeerError {
    #[error("no such peer")]
    NotFound,
    #[error("this peer is already registered")]
    AlreadyRegistered,
    #[error("the peer's caseload is full ({0})")]
    CaseloadFull(u32),
    #[error("the peer is not taking referrals ({0})")]
    Unavailable(&'static str),
    #[error("max_caseload {wanted} is below the peer's current caseload of {current}")]
    BelowCaseload { wanted: u32, current: u32 },
}

impl Aggregate for Peer {
    const TYPE: &'static str = "Peer";
    type Command = PeerCommand;
    type Event = PeerEvent;
    type Error = PeerError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        if let PeerCommand::Register(profile) = command {
            if self.registered {
                return Err(PeerError::AlreadyRegistered);
            }
            sink.write(PeerEvent::PeerRegistered(profile), self).await;
            return Ok(());
        }
        if !self.registered {
            return Err(PeerError::NotFound);
        }
        match command {
            PeerCommand::Register(_) => {}
            PeerCommand::Update(patch) => {
                let Some(before) = &self.profile else {
                    return Err(PeerError::NotFound);
                };
                let profile = patch.apply_to(before);
                if profile == *before {
                    return Ok(());
                }
                let current = self.caseload.len() as u32;
                if profile.max_caseload < current {
                    return Err(PeerError::BelowCaseload {
                        wanted: profile.max_caseload,
                        current,
                    });
                }
                sink.write(PeerEvent::PeerProfileUpdated(profile), self)
                    .await;
            }
            PeerCommand::SetAvailability(a) => {
                if a != self.availability {
                    sink.write(PeerEvent::AvailabilityChanged(a), self).await;
                }
            }
            PeerCommand::ReserveSlot { referral_id, now } => {
                if self.caseload.contains(&referral_id) {
                    return Ok(());
                }
                if !self.availability.takes_referrals(now) {
                    return Err(PeerError::Unavailable(self.availability.as_str()));
                }
                if self.caseload.len() as u32 >= self.max_caseload {
                    return Err(PeerError::CaseloadFull(self.max_caseload));
                }
                sink.write(PeerEvent::SlotReserved { referral_id }, self)
                    .await;
            }
            PeerCommand::ReleaseSlot { referral_id } => {
                if self.caseload.contains(&referral_id) {
                    sink.write(PeerEvent::SlotReleased { referral_id }, self)
                        .await;
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            PeerEvent::PeerRegistered(p) | PeerEvent::PeerProfileUpdated(p) => {
                self.registered = true;
                self.max_caseload = p.max_caseload;
                self.profile = Some(p);
            }
            PeerEvent::AvailabilityChanged(a) => self.availability = a,
            PeerEvent::SlotReserved { referral_id } => {
                self.caseload.insert(referral_id);
            }
            PeerEvent::SlotReleased { referral_id } => {
                self.caseload.remove(&referral_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    type Given = TestFramework<Peer>;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    fn profile(max: u32) -> PeerProfile {
        PeerProfile {
            name: "Jordan Lee".into(),
            languages: vec!["en".into()],
            gender: None,
            lived_experience: vec![],
            regions: vec![],
            modes: vec![],
            max_caseload: max,
            certification: None,
        }
    }

    fn reserved(r: &str) -> PeerEvent {
        PeerEvent::SlotReserved {
            referral_id: r.into(),
        }
    }

    fn reserve(r: &str) -> PeerCommand {
        PeerCommand::ReserveSlot {
            referral_id: r.into(),
            now: t("2026-11-21T12:00:00Z"),
        }
    }

    #[tokio::test]
    async fn a_slot_is_reserved_while_capacity_is_free() {
        Given::with(())
            .given(vec![PeerEvent::PeerRegistered(profile(2)), reserved("r1")])
            .when_async(reserve("r2"))
            .await
            .then_expect_events(vec![reserved("r2")]);
    }

    #[tokio::test]
    async fn a_full_caseload_refuses_another_referral() {
        Given::with(())
            .given(vec![PeerEvent::PeerRegistered(profile(1)), reserved("r1")])
            .when_async(reserve("r2"))
            .await
            .then_expect_error(PeerError::CaseloadFull(1));
    }

    #[tokio::test]
    async fn reserving_again_for_the_same_referral_changes_nothing() {
        Given::with(())
            .given(vec![PeerEvent::PeerRegistered(profile(1)), reserved("r1")])
            .when_async(reserve("r1"))
            .await
            .then_expect_events(vec![]);
    }

    #[tokio::test]
    async fn a_peer_on_leave_takes_referrals_again_from_the_return_date() {
        let leave = PeerEvent::AvailabilityChanged(Availability::OnLeave {
            until: t("2026-11-21T12:00:00Z"),
        });
        Given::with(())
            .given(vec![PeerEvent::PeerRegistered(profile(3)), leave.clone()])
            .when_async(PeerCommand::ReserveSlot {
                referral_id: "r1".into(),
                now: t("2026-11-21T11:59:59Z"),
            })
            .await
            .then_expect_error(PeerError::Unavailable("on_leave"));
        Given::with(())
            .given(vec![PeerEvent::PeerRegistered(profile(3)), leave])
            .when_async(reserve("r1"))
            .await
            .then_expect_events(vec![reserved("r1")]);
    }

    #[tokio::test]
    async fn max_caseload_cannot_drop_below_the_current_caseload() {
        Given::with(())
            .given(vec![
                PeerEvent::PeerRegistered(profile(3)),
                reserved("r1"),
                reserved("r2"),
            ])
            .when_async(PeerCommand::Update(PeerPatch {
                max_caseload: Some(1),
                ..Default::default()
            }))
            .await
            .then_expect_error(PeerError::BelowCaseload {
                wanted: 1,
                current: 2,
            });
    }
}
