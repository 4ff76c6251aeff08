//! PersonCare: one person's follow-up plans and inpatient admissions, the state of
//! the readmission process manager ([`crate::readmissions`]).
//!
//! A plan starts on PeerAssigned (peer-assignment) and an admission is reported by
//! AdmissionRecorded (intake): two services, either order. Both are noted here, on the
//! person, so whichever comes second finds the first and the admission is linked to
//! every plan it is a readmission for. Kept as follow-up's own events, so it needs no
//! table of its own and nothing to replay.

use careloop_events::is_readmission;
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PersonCare {
    /// Each plan (its referral) and the discharge it follows.
    pub plans: Vec<(String, DateTime<Utc>)>,
    /// Each admission reported and not cancelled.
    pub admissions: Vec<(String, DateTime<Utc>)>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PersonCareCommand {
    NotePlan {
        referral_id: String,
        discharged_at: DateTime<Utc>,
    },
    NoteAdmission {
        admission_id: String,
        admitted_at: DateTime<Utc>,
    },
    /// The hospital cancelled the admission (HL7 A11).
    NoteAdmissionCancelled { admission_id: String },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PersonCareEvent {
    PlanOfPersonNoted {
        referral_id: String,
        discharged_at: DateTime<Utc>,
    },
    AdmissionOfPersonNoted {
        admission_id: String,
        admitted_at: DateTime<Utc>,
    },
    AdmissionOfPersonCancelled {
        admission_id: String,
    },
}

impl DomainEvent for PersonCareEvent {
    fn event_type(&self) -> String {
        match self {
            Self::PlanOfPersonNoted { .. } => "PlanOfPersonNoted",
            Self::AdmissionOfPersonNoted { .. } => "AdmissionOfPersonNoted",
            Self::AdmissionOfPersonCancelled { .. } => "AdmissionOfPersonCancelled",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

/// Noting is never refused.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PersonCareError {}

impl PersonCare {
    /// The admissions that are readmissions after the discharge at `discharged_at`.
    pub fn readmissions_after(&self, discharged_at: DateTime<Utc>) -> Vec<(&str, DateTime<Utc>)> {
        self.admissions
            .iter()
            .filter(|(_, at)| is_readmission(discharged_at, *at))
            .map(|(id, at)| (id.as_str(), *at))
            .collect()
    }

    /// The plans an admission at `admitted_at` is a readmission for.
    pub fn plans_readmitted_at(&self, admitted_at: DateTime<Utc>) -> Vec<&str> {
        self.plans
            .iter()
            .filter(|(_, discharged_at)| is_readmission(*discharged_at, admitted_at))
            .map(|(id, _)| id.as_str())
            .collect()
    }

    pub fn plan_ids(&self) -> impl Iterator<Item = &str> {
        self.plans.iter().map(|(id, _)| id.as_str())
    }
}

impl Aggregate for PersonCare {
    const TYPE: &'static str = "PersonCare";
    type Command = PersonCareCommand;
    type Event = PersonCareEvent;
    type Error = PersonCareError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        use PersonCareCommand as C;
        use PersonCareEvent as E;
        let event = match command {
            C::NotePlan {
                referral_id,
                discharged_at,
            } => {
                if self.plans.iter().any(|(id, _)| *id == referral_id) {
                    return Ok(());
                }
                E::PlanOfPersonNoted {
                    referral_id,
                    discharged_at,
                }
            }
            C::NoteAdmission {
                admission_id,
                admitted_at,
            } => {
                if self.admissions.iter().any(|(id, _)| *id == admission_id) {
                    return Ok(());
                }
                E::AdmissionOfPersonNoted {
                    admission_id,
                    admitted_at,
                }
            }
            C::NoteAdmissionCancelled { admission_id } => {
                if !self.admissions.iter().any(|(id, _)| *id == admission_id) {
                    return Ok(());
                }
                E::AdmissionOfPersonCancelled { admission_id }
            }
        };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            PersonCareEvent::PlanOfPersonNoted {
                referral_id,
                discharged_at,
            } => self.plans.push((referral_id, discharged_at)),
            PersonCareEvent::AdmissionOfPersonNoted {
                admission_id,
                admitted_at,
            } => self.admissions.push((admission_id, admitted_at)),
            PersonCareEvent::AdmissionOfPersonCancelled { admission_id } => {
                self.admissions.retain(|(id, _)| *id != admission_id)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn an_admission_finds_the_plans_it_readmits_in_either_order() {
        let mut care = PersonCare::default();
        care.apply(PersonCareEvent::AdmissionOfPersonNoted {
            admission_id: "a1".into(),
            admitted_at: t("2026-11-10T00:00:00Z"),
        });
        care.apply(PersonCareEvent::PlanOfPersonNoted {
            referral_id: "r1".into(),
            discharged_at: t("2026-11-01T00:00:00Z"),
        });
        care.apply(PersonCareEvent::PlanOfPersonNoted {
            referral_id: "old".into(),
            discharged_at: t("2026-09-01T00:00:00Z"),
        });
        assert_eq!(
            care.readmissions_after(t("2026-11-01T00:00:00Z")),
            [("a1", t("2026-11-10T00:00:00Z"))]
        );
        assert_eq!(care.plans_readmitted_at(t("2026-11-10T00:00:00Z")), ["r1"]);
        care.apply(PersonCareEvent::AdmissionOfPersonCancelled {
            admission_id: "a1".into(),
        });
        assert!(
            care.readmissions_after(t("2026-11-01T00:00:00Z"))
                .is_empty()
        );
    }
}
