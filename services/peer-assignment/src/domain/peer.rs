//! The Peer aggregate: a peer support specialist's profile and caseload.
//!
//! Capacity is enforced here: reserving a slot is refused once the caseload is full,
//! and two reservations racing for the last slot meet at the event store's optimistic
//! lock, so one of them reloads, sees the peer full, and is refused.

use std::collections::BTreeSet;

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use careloop_web::Problem;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeerProfile {
    pub name: String,
    pub languages: Vec<String>,
    pub gender: Option<String>,
    pub lived_experience: Vec<String>,
    pub regions: Vec<String>,
    pub modes: Vec<String>,
    pub max_caseload: u32,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Peer {
    pub registered: bool,
    pub max_caseload: u32,
    pub caseload: BTreeSet<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PeerCommand {
    Register(PeerProfile),
    /// Takes one caseload slot for `referral_id`.
    ReserveSlot {
        referral_id: String,
    },
    ReleaseSlot {
        referral_id: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PeerEvent {
    PeerRegistered(PeerProfile),
    SlotReserved { referral_id: String },
    SlotReleased { referral_id: String },
}

impl DomainEvent for PeerEvent {
    fn event_type(&self) -> String {
        match self {
            PeerEvent::PeerRegistered(_) => "PeerRegistered",
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
}

impl From<PeerError> for Problem {
    fn from(e: PeerError) -> Problem {
        match e {
            PeerError::NotFound => Problem::not_found(e.to_string()),
            _ => Problem::conflict(e.to_string()),
        }
    }
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
        match command {
            PeerCommand::Register(profile) => {
                if self.registered {
                    return Err(PeerError::AlreadyRegistered);
                }
                sink.write(PeerEvent::PeerRegistered(profile), self).await;
            }
            PeerCommand::ReserveSlot { referral_id } => {
                if !self.registered {
                    return Err(PeerError::NotFound);
                }
                if self.caseload.contains(&referral_id) {
                    return Ok(());
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
            PeerEvent::PeerRegistered(p) => {
                self.registered = true;
                self.max_caseload = p.max_caseload;
            }
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

    fn registered(max: u32) -> PeerEvent {
        PeerEvent::PeerRegistered(PeerProfile {
            name: "Jordan Lee".into(),
            languages: vec!["en".into()],
            gender: None,
            lived_experience: vec![],
            regions: vec![],
            modes: vec![],
            max_caseload: max,
        })
    }

    fn reserved(r: &str) -> PeerEvent {
        PeerEvent::SlotReserved {
            referral_id: r.into(),
        }
    }

    #[tokio::test]
    async fn a_slot_is_reserved_while_capacity_is_free() {
        Given::with(())
            .given(vec![registered(2), reserved("r1")])
            .when_async(PeerCommand::ReserveSlot {
                referral_id: "r2".into(),
            })
            .await
            .then_expect_events(vec![reserved("r2")]);
    }

    #[tokio::test]
    async fn a_full_caseload_refuses_another_referral() {
        Given::with(())
            .given(vec![registered(1), reserved("r1")])
            .when_async(PeerCommand::ReserveSlot {
                referral_id: "r2".into(),
            })
            .await
            .then_expect_error(PeerError::CaseloadFull(1));
    }

    #[tokio::test]
    async fn reserving_again_for_the_same_referral_changes_nothing() {
        Given::with(())
            .given(vec![registered(1), reserved("r1")])
            .when_async(PeerCommand::ReserveSlot {
                referral_id: "r1".into(),
            })
            .await
            .then_expect_events(vec![]);
    }
}
