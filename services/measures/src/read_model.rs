//! The `measures` read model: discharges (with channel, status and assignment),
//! contacts and admissions, rebuilt from the hosting service's events (the records
//! and the follow-up plans' ContactRecorded events; `careloop replay measures`), and
//! every query on it.

use careloop_backbone::{Projection, StoredEvent, rows};
use careloop_events::{ContactOutcome, READMISSION_WINDOW_DAYS, ReferralStatus};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};

use crate::impact::{IndexDischarge, Stay};
use crate::records::{AdmissionRecordEvent, DischargeRecordEvent, EncounterRecordEvent};
use crate::report::{DischargeRow, Scope};

/// The part of a follow-up plan's stored `ContactRecorded` event the measures read:
/// `{"ContactRecorded": {"contact": {"contact_id", "occurred_at", "outcome", ...}}}`.
/// (The measures are hosted with the follow-up plans and read their contacts from the
/// same event store; follow-up's tests check that its events decode here.)
#[derive(Debug, Deserialize)]
pub struct RecordedContact {
    pub contact_id: String,
    pub occurred_at: DateTime<Utc>,
    pub outcome: ContactOutcome,
}

/// The contact a stored follow-up event records, if it records one.
pub fn recorded_contact(e: &StoredEvent) -> anyhow::Result<Option<RecordedContact>> {
    if e.aggregate_type != "FollowUpPlan" || e.event_type != "ContactRecorded" {
        return Ok(None);
    }
    let contact = e
        .payload
        .get("ContactRecorded")
        .and_then(|c| c.get("contact"))
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("ContactRecorded {} has no contact", e.event_id))?;
    Ok(Some(serde_json::from_value(contact)?))
}

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
            "follow_up.measure_encounters",
        ]
    }

    /// The discharges a batch names are read, its events folded into them
    /// (`fold_discharge`) and written back, and its contacts added, in one statement
    /// each (`careloop_backbone::rows`); admissions and encounters, a few a day, are
    /// written one by one. The tables are independent, so each keeps its events' order.
    async fn apply(&self, events: &[StoredEvent], tx: &mut PgConnection) -> anyhow::Result<()> {
        let discharges = events
            .iter()
            .filter(|e| e.aggregate_type == "DischargeRecord");
        rows::fold(
            tx,
            "measure_discharges",
            "referral_id",
            discharges,
            |row, e| {
                let facts = row.get_or_insert_with(|| DischargeFacts::of(&e.aggregate_id));
                fold_discharge(facts, e.decode()?);
                Ok(())
            },
        )
        .await?;
        let mut contacts = Vec::new();
        for e in events {
            if let Some(c) = recorded_contact(e)? {
                contacts.push(ContactFact {
                    contact_id: c.contact_id,
                    referral_id: e.aggregate_id.clone(),
                    occurred_at: c.occurred_at,
                    reached: c.outcome == ContactOutcome::Reached,
                });
            }
        }
        rows::insert_new(tx, "measure_contacts", &contacts).await?;
        for e in events {
            apply_record(e, tx).await?;
        }
        Ok(())
    }
}

/// Every column of `measure_discharges`: the facts known about one discharge. They
/// arrive in any order across consumers, so each is filled in as it comes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct DischargeFacts {
    referral_id: String,
    person_ref: Option<String>,
    facility: Option<String>,
    #[serde(serialize_with = "rows::micros_opt")]
    discharged_at: Option<DateTime<Utc>>,
    status: Option<String>,
    assignment: Option<String>,
    channel: Option<String>,
    /// Entered in error: excluded from every measure.
    excluded: bool,
}

impl DischargeFacts {
    fn of(referral_id: &str) -> Self {
        DischargeFacts {
            referral_id: referral_id.to_string(),
            ..Default::default()
        }
    }
}

fn fold_discharge(row: &mut DischargeFacts, event: DischargeRecordEvent) {
    match event {
        DischargeRecordEvent::DischargeNoted(d) => {
            row.person_ref = Some(d.person_ref);
            row.facility = Some(d.facility);
            row.discharged_at = Some(d.discharged_at);
            return;
        }
        DischargeRecordEvent::ChannelNoted { channel } => {
            row.channel = Some(channel.as_str().to_string())
        }
        DischargeRecordEvent::StatusNoted { status } => row.status = Some(status),
        DischargeRecordEvent::AssignmentNoted { state } => row.assignment = Some(state),
    }
    if let Some(status) = &row.status {
        row.excluded = status == ReferralStatus::EnteredInError.as_str();
    }
}

/// A row of `measure_contacts`.
#[derive(Debug, Serialize)]
struct ContactFact {
    contact_id: String,
    referral_id: String,
    #[serde(serialize_with = "rows::micros")]
    occurred_at: DateTime<Utc>,
    reached: bool,
}

/// Writes an admission or an encounter (other events: nothing).
async fn apply_record(e: &StoredEvent, tx: &mut PgConnection) -> anyhow::Result<()> {
    let id = &e.aggregate_id;
    match e.aggregate_type.as_str() {
        "AdmissionRecord" => {
            let AdmissionRecordEvent::AdmissionNoted(a) = e.decode()? else {
                sqlx::query("DELETE FROM measure_admissions WHERE admission_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                return Ok(());
            };
            sqlx::query(
                "INSERT INTO measure_admissions (admission_id, person_ref, facility, admitted_at)
                     VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(&a.person_ref)
            .bind(&a.facility)
            .bind(a.admitted_at)
            .execute(&mut *tx)
            .await?;
        }
        "EncounterRecord" => {
            let EncounterRecordEvent::EncounterNoted(n) = e.decode()?;
            sqlx::query(
                "INSERT INTO measure_encounters
                         (encounter_id, person_ref, facility, class, started_at, ended_at)
                     VALUES ($1, $2, $3, $4, $5, $6)
                     ON CONFLICT (encounter_id)
                     DO UPDATE SET ended_at = COALESCE($6, measure_encounters.ended_at)",
            )
            .bind(id)
            .bind(&n.person_ref)
            .bind(&n.facility)
            .bind(&n.class)
            .bind(n.started_at)
            .bind(n.ended_at)
            .execute(&mut *tx)
            .await?;
        }
        _ => {}
    }
    Ok(())
}

/// Each discharge in `scope` with its first reached contact and its first
/// readmission (within the readmission window), both as of `scope.as_of`.
pub async fn discharges(pool: &PgPool, scope: &Scope) -> sqlx::Result<Vec<DischargeRow>> {
    sqlx::query_as(
        "SELECT d.facility, d.discharged_at,
            (SELECT min(c.occurred_at) FROM follow_up.measure_contacts c
              WHERE c.referral_id = d.referral_id AND c.reached
                AND c.occurred_at > d.discharged_at AND c.occurred_at <= $1) AS first_reached,
            (SELECT min(a.admitted_at) FROM follow_up.measure_admissions a
              WHERE a.person_ref = d.person_ref
                AND a.admitted_at > d.discharged_at
                AND a.admitted_at <= d.discharged_at + make_interval(days => $5)
                AND a.admitted_at <= $1) AS first_readmission,
            (SELECT min(c.occurred_at) FROM follow_up.measure_contacts c
              WHERE c.referral_id = d.referral_id AND c.reached
                AND c.occurred_at >= date_trunc('day', d.discharged_at AT TIME ZONE 'UTC')
                                     AT TIME ZONE 'UTC' + interval '1 day'
                AND c.occurred_at <= $1) AS first_reached_after_day
         FROM follow_up.measure_discharges d
         WHERE d.discharged_at IS NOT NULL AND d.facility IS NOT NULL
           AND NOT d.excluded
           AND d.discharged_at <= $1
           AND ($2::text IS NULL OR d.facility = $2)
           AND ($3::timestamptz IS NULL OR d.discharged_at >= $3)
           AND ($4::timestamptz IS NULL OR d.discharged_at < $4)",
    )
    .bind(scope.as_of)
    .bind(&scope.facility)
    .bind(scope.from)
    .bind(scope.to)
    .bind(READMISSION_WINDOW_DAYS as i32)
    .fetch_all(pool)
    .await
}

/// Referrals by their latest status (entered in error left out).
pub async fn referrals_by_status(pool: &PgPool) -> sqlx::Result<Vec<(String, i64)>> {
    sqlx::query_as(
        "SELECT status, count(*) FROM follow_up.measure_discharges
         WHERE status IS NOT NULL AND NOT excluded GROUP BY status ORDER BY status",
    )
    .fetch_all(pool)
    .await
}

/// Referrals received, by facility and channel (every one, whatever became of it).
pub async fn referrals_received(pool: &PgPool) -> sqlx::Result<Vec<(String, String, i64)>> {
    sqlx::query_as(
        "SELECT facility, channel, count(*) FROM follow_up.measure_discharges
         WHERE facility IS NOT NULL AND channel IS NOT NULL
         GROUP BY facility, channel ORDER BY facility, channel",
    )
    .fetch_all(pool)
    .await
}

/// Each person's index discharge in `scope`: their earliest (entered in error left
/// out), and whether they were engaged (reached within 30 days of it).
pub async fn index_discharges(pool: &PgPool, scope: &Scope) -> sqlx::Result<Vec<IndexDischarge>> {
    sqlx::query_as(
        "SELECT DISTINCT ON (d.person_ref) d.person_ref, d.facility, d.discharged_at,
            EXISTS (SELECT 1 FROM follow_up.measure_contacts c
                    WHERE c.referral_id = d.referral_id AND c.reached
                      AND c.occurred_at > d.discharged_at
                      AND c.occurred_at <= d.discharged_at + make_interval(days => $5)
                      AND c.occurred_at <= $1) AS engaged
         FROM follow_up.measure_discharges d
         WHERE d.discharged_at IS NOT NULL AND d.facility IS NOT NULL
           AND d.person_ref IS NOT NULL AND NOT d.excluded
           AND d.discharged_at <= $1
           AND ($2::text IS NULL OR d.facility = $2)
           AND ($3::timestamptz IS NULL OR d.discharged_at >= $3)
           AND ($4::timestamptz IS NULL OR d.discharged_at < $4)
         ORDER BY d.person_ref, d.discharged_at, d.referral_id",
    )
    .bind(scope.as_of)
    .bind(&scope.facility)
    .bind(scope.from)
    .bind(scope.to)
    .bind(crate::impact::ENGAGED_WITHIN_DAYS as i32)
    .fetch_all(pool)
    .await
}

/// The inpatient stays of `people` that began by `as_of`: each admission not
/// cancelled, ending when the hospital said, or else at the person's next discharge
/// careloop knows (none: still unknown).
pub async fn stays(
    pool: &PgPool,
    people: &[String],
    as_of: DateTime<Utc>,
) -> sqlx::Result<Vec<Stay>> {
    sqlx::query_as(
        "SELECT a.person_ref, a.admitted_at AS started_at,
            COALESCE(e.ended_at, (SELECT min(d.discharged_at) FROM follow_up.measure_discharges d
                                  WHERE d.person_ref = a.person_ref AND NOT d.excluded
                                    AND d.discharged_at > a.admitted_at
                                    AND d.discharged_at <= $2)) AS ended_at
         FROM follow_up.measure_admissions a
         LEFT JOIN follow_up.measure_encounters e ON e.encounter_id = a.admission_id
         WHERE a.person_ref = ANY($1) AND a.admitted_at <= $2",
    )
    .bind(people)
    .bind(as_of)
    .fetch_all(pool)
    .await
}

/// The outpatient visits of `people` by `as_of`: (person, time).
pub async fn visits(
    pool: &PgPool,
    people: &[String],
    as_of: DateTime<Utc>,
) -> sqlx::Result<Vec<(String, DateTime<Utc>)>> {
    sqlx::query_as(
        "SELECT person_ref, started_at FROM follow_up.measure_encounters
         WHERE class = 'outpatient' AND person_ref = ANY($1) AND started_at <= $2",
    )
    .bind(people)
    .bind(as_of)
    .fetch_all(pool)
    .await
}

#[cfg(test)]
mod tests {
    use careloop_events::Channel;
    use chrono::TimeZone;

    use super::*;
    use crate::records::Discharge;

    fn facts_after(events: Vec<DischargeRecordEvent>) -> DischargeFacts {
        let mut row = DischargeFacts::of("ref-1");
        for e in events {
            fold_discharge(&mut row, e);
        }
        row
    }

    fn status(s: ReferralStatus) -> DischargeRecordEvent {
        DischargeRecordEvent::StatusNoted {
            status: s.as_str().to_string(),
        }
    }

    #[test]
    fn facts_fill_in_whatever_order_they_arrive() {
        let discharged_at = Utc.with_ymd_and_hms(2026, 11, 2, 9, 0, 0).unwrap();
        let row = facts_after(vec![
            status(ReferralStatus::Accepted),
            DischargeRecordEvent::ChannelNoted {
                channel: Channel::Hl7,
            },
            DischargeRecordEvent::DischargeNoted(Discharge {
                person_ref: "person-1".into(),
                facility: "north".into(),
                discharged_at,
            }),
        ]);
        assert_eq!(row.status.as_deref(), Some("accepted"));
        assert_eq!(row.channel.as_deref(), Some(Channel::Hl7.as_str()));
        assert_eq!(row.discharged_at, Some(discharged_at));
        assert!(!row.excluded);
    }

    #[test]
    fn a_referral_entered_in_error_is_excluded_until_its_status_changes() {
        let excluded = facts_after(vec![status(ReferralStatus::EnteredInError)]);
        assert!(excluded.excluded);
        let assigned_after = facts_after(vec![
            status(ReferralStatus::EnteredInError),
            DischargeRecordEvent::AssignmentNoted {
                state: "released".into(),
            },
        ]);
        assert!(assigned_after.excluded, "another fact keeps the exclusion");
        let rerouted = facts_after(vec![
            status(ReferralStatus::EnteredInError),
            status(ReferralStatus::Received),
        ]);
        assert!(!rerouted.excluded);
    }
}
