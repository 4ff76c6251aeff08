//! The `measures` projection: discharges (with status and assignment), contacts and
//! admissions, from follow-up's own events.

use careloop_backbone::{Projection, StoredEvent};
use sqlx::PgConnection;

use crate::domain::facts::{AdmissionEvent, FactsEvent};
use crate::domain::{FollowUpEvent, Outcome};

pub struct Measures;

#[async_trait::async_trait]
impl Projection for Measures {
    fn name(&self) -> &'static str {
        "measures"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "follow_up.measure_discharges",
            "follow_up.measure_contacts",
            "follow_up.measure_admissions",
        ]
    }

    async fn apply(&self, e: &StoredEvent, tx: &mut PgConnection) -> anyhow::Result<()> {
        let id = &e.aggregate_id;
        match e.aggregate_type.as_str() {
            "DischargeFacts" => {
                // Facts may arrive in any order across consumers: upsert each column.
                let (column, value): (&str, Option<String>) = match e.decode::<FactsEvent>()? {
                    FactsEvent::DischargeNoted(d) => {
                        sqlx::query(
                            "INSERT INTO follow_up.measure_discharges
                                 (referral_id, person_ref, facility, discharged_at)
                             VALUES ($1, $2, $3, $4)
                             ON CONFLICT (referral_id) DO UPDATE
                             SET person_ref = $2, facility = $3, discharged_at = $4",
                        )
                        .bind(id)
                        .bind(&d.person_ref)
                        .bind(&d.facility)
                        .bind(d.discharged_at)
                        .execute(&mut *tx)
                        .await?;
                        return Ok(());
                    }
                    FactsEvent::StatusNoted { status } => ("status", Some(status)),
                    FactsEvent::AssignmentNoted { state } => ("assignment", Some(state)),
                };
                sqlx::query(&format!(
                    "INSERT INTO follow_up.measure_discharges (referral_id, {column}) VALUES ($1, $2)
                     ON CONFLICT (referral_id) DO UPDATE SET {column} = $2"
                ))
                .bind(id)
                .bind(&value)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE follow_up.measure_discharges SET excluded = (status = 'entered-in-error')
                     WHERE referral_id = $1 AND status IS NOT NULL",
                )
                .bind(id)
                .execute(&mut *tx)
                .await?;
            }
            "AdmissionFacts" => {
                let AdmissionEvent::AdmissionNoted(a) = e.decode()? else {
                    sqlx::query("DELETE FROM follow_up.measure_admissions WHERE admission_id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    return Ok(());
                };
                sqlx::query(
                    "INSERT INTO follow_up.measure_admissions (admission_id, person_ref, facility, admitted_at)
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                )
                .bind(id)
                .bind(&a.person_ref)
                .bind(&a.facility)
                .bind(a.admitted_at)
                .execute(&mut *tx)
                .await?;
            }
            "FollowUpPlan" => {
                if let FollowUpEvent::ContactRecorded { contact, .. } = e.decode()? {
                    sqlx::query(
                        "INSERT INTO follow_up.measure_contacts (contact_id, referral_id, occurred_at, reached)
                         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                    )
                    .bind(&contact.contact_id)
                    .bind(id)
                    .bind(contact.occurred_at)
                    .bind(contact.outcome == Outcome::Reached)
                    .execute(&mut *tx)
                    .await?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}
