//! Retention: people are erased a configurable period after their last activity
//! (`CARELOOP_RETENTION`, per state law; off by default), except those on a legal
//! hold. `GET /v1/retention/report` is the dry run: who would be erased, and who is
//! held, with when each was last active.
//!
//! A person's last activity is the latest event intake recorded about them: their
//! details or consent, a referral, an admission, a status change of one of their
//! referrals (which follows every contact that moves it).

use std::time::Duration;

use careloop_backbone::{Metadata, Shutdown};
use careloop_config::RetentionSettings;
use careloop_web::Problem;
use chrono::{DateTime, Utc};
use sqlx::PgPool;

use crate::domain::ErasureCause;
use crate::reception::Reception;

/// The most people one sweep erases (the next sweep takes the rest).
const SWEEP_BATCH: i64 = 500;

/// One person past (or, with a hold, kept past) the retention period.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Due {
    pub person_ref: String,
    pub last_activity: DateTime<Utc>,
    /// The legal hold that keeps them, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub legal_hold: Option<String>,
}

pub struct Retention {
    pub pool: PgPool,
    pub reception: Reception,
    pub settings: RetentionSettings,
}

/// People not erased whose last activity is before `cutoff`, oldest first: those on
/// a legal hold when `held`, the others when not.
pub async fn past(
    pool: &PgPool,
    cutoff: DateTime<Utc>,
    held: bool,
    limit: i64,
) -> sqlx::Result<Vec<Due>> {
    let rows: Vec<(String, DateTime<Utc>, Option<String>)> = sqlx::query_as(
        "WITH activity AS (
             SELECT aggregate_id AS person_ref, recorded_at FROM intake.events
             WHERE aggregate_type = 'Person'
             UNION ALL
             SELECT payload->'ReferralSubmitted'->>'person_ref', recorded_at FROM intake.events
             WHERE aggregate_type = 'ReferralSubmission' AND event_type = 'ReferralSubmitted'
             UNION ALL
             SELECT payload->'AdmissionRecorded'->>'person_ref', recorded_at FROM intake.events
             WHERE aggregate_type = 'Admission' AND event_type = 'AdmissionRecorded'
             UNION ALL
             SELECT payload->'EncounterRecorded'->>'person_ref', recorded_at FROM intake.events
             WHERE aggregate_type = 'Encounter' AND event_type = 'EncounterRecorded'
             UNION ALL
             SELECT payload->'TaskStatusChanged'->'change'->>'person_ref', recorded_at
             FROM intake.events
             WHERE aggregate_type = 'ReferralTask' AND event_type = 'TaskStatusChanged'
         ), last AS (
             SELECT person_ref, max(recorded_at) AS last_activity FROM activity
             WHERE person_ref IS NOT NULL GROUP BY person_ref
         )
         SELECT l.person_ref, l.last_activity, h.reason
         FROM last l
         LEFT JOIN intake.legal_holds h ON h.person_ref::text = l.person_ref
         WHERE l.last_activity < $1 AND (h.person_ref IS NOT NULL) = $3
           AND EXISTS (SELECT 1 FROM intake.events e
                       WHERE e.aggregate_type = 'Person' AND e.aggregate_id = l.person_ref)
           AND NOT EXISTS (SELECT 1 FROM intake.events e
                           WHERE e.aggregate_type = 'Person' AND e.aggregate_id = l.person_ref
                             AND e.event_type = 'PersonErased')
         ORDER BY l.last_activity, l.person_ref
         LIMIT $2",
    )
    .bind(cutoff)
    .bind(limit)
    .bind(held)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(person_ref, last_activity, legal_hold)| Due {
            person_ref,
            last_activity,
            legal_hold,
        })
        .collect())
}

/// The cutoff of `period` as of `now`.
pub fn cutoff(now: DateTime<Utc>, period: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(period)
        .ok()
        .and_then(|p| now.checked_sub_signed(p))
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

impl Retention {
    /// Erases everyone past the period and not held; how many were erased.
    pub async fn sweep(&self) -> Result<usize, Problem> {
        let Some(period) = self.settings.period else {
            return Ok(0);
        };
        let due = past(&self.pool, cutoff(Utc::now(), period), false, SWEEP_BATCH).await?;
        let mut erased = 0;
        for person in due {
            let meta = Metadata::new(uuid::Uuid::new_v4().to_string()).actor("retention");
            let entry = careloop_identity::audit::Entry {
                at: Utc::now(),
                sub: Some("careloop-retention".into()),
                action: "erase".into(),
                resource: "person".into(),
                person_ref: Some(person.person_ref.clone()),
                outcome: "success".into(),
                detail: Some("the retention period after the last activity ended".into()),
                ..Default::default()
            };
            self.reception.audit.record(entry).await?;
            if self
                .reception
                .erase(&person.person_ref, ErasureCause::Retention, &meta)
                .await?
                .is_some()
            {
                erased += 1;
            }
        }
        if erased > 0 {
            tracing::info!(erased, "retention: people past the period erased");
        }
        Ok(erased)
    }

    /// Sweeps every `CARELOOP_RETENTION_SWEEP_SECS` until shutdown.
    pub async fn run(self, shutdown: Shutdown) {
        let this = &self;
        careloop_backbone::shutdown::every(
            "retention sweep",
            self.settings.sweep,
            shutdown,
            || async move {
                this.sweep()
                    .await
                    .map_err(|p| anyhow::anyhow!("{}", p.detail))?;
                Ok(())
            },
        )
        .await
    }
}
