//! The versions of a Task, from the events: version 1 is the referral as submitted
//! (`requested`), and each status the referral service reported since is the next
//! (the ReferralTask's TaskStatusChanged events, one per change). Read, vread,
//! `_history` and search all render from here, so a read and the latest vread are
//! the same resource with the same `meta.versionId`, and a search entry is the version
//! its `tasks` row matched (the same once the read model has caught up).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::PgPool;

use crate::domain::{StatusChange, TaskEvent};
use crate::tasks::read_model::TaskRow;

#[derive(Debug, Clone)]
pub struct TaskHistory {
    pub referral_id: String,
    pub person_ref: Option<String>,
    pub facility: String,
    /// When intake took the referral (version 1).
    pub submitted_at: DateTime<Utc>,
    pub changes: Vec<StatusChange>,
}

impl TaskHistory {
    /// How many versions there are (the latest is this number).
    pub fn versions(&self) -> usize {
        1 + self.changes.len()
    }

    /// The Task's state at `version` (1-based); `None` past the latest.
    pub fn at(&self, version: usize) -> Option<TaskRow> {
        let (status, reason, last_updated) = match version {
            0 => return None,
            1 => ("requested".to_string(), None, self.submitted_at),
            n => {
                let c = self.changes.get(n - 2)?;
                (
                    c.status.as_str().to_string(),
                    c.reason.clone(),
                    c.occurred_at,
                )
            }
        };
        Some(TaskRow {
            referral_id: self.referral_id.clone(),
            person_ref: self.person_ref.clone(),
            facility: self.facility.clone(),
            status,
            reason,
            authored_on: Some(self.submitted_at),
            last_updated,
        })
    }

    /// The Task as it is now.
    pub fn latest(&self) -> TaskRow {
        self.at(self.versions()).expect("the latest version exists")
    }

    /// The version a `tasks` read-model row stands for. A search filters, orders and
    /// pages on the row, so its entry shows that version: while the row catches up with
    /// the events it is a moment behind a read, never a later version the search's own
    /// `_lastUpdated` bounds or cursor would not have matched. When no version has the
    /// row's status and instant (a row made by a holder change alone), the newest
    /// version no later than the row (version 1 if none is).
    pub fn version_of(&self, row: &TaskRow) -> usize {
        let at = row.last_updated.timestamp_micros();
        let versions = || {
            (1..=self.versions())
                .rev()
                .filter_map(|v| Some((v, self.at(v)?)))
        };
        versions()
            .find(|(_, a)| a.status == row.status && a.last_updated.timestamp_micros() == at)
            .or_else(|| versions().find(|(_, a)| a.last_updated.timestamp_micros() <= at))
            .map_or(1, |(v, _)| v)
    }

    /// The Task resource at `version`.
    pub fn render(&self, version: usize) -> Option<Value> {
        self.at(version)
            .map(|row| super::task::render(&row, version))
    }
}

/// The histories of the referrals `ids` (those intake holds), in one query.
pub async fn load(pool: &PgPool, ids: &[String]) -> sqlx::Result<HashMap<String, TaskHistory>> {
    let rows: Vec<(String, String, Value, DateTime<Utc>)> = sqlx::query_as(
        "SELECT aggregate_type, aggregate_id, payload, recorded_at FROM intake.events
         WHERE aggregate_id = ANY($1)
           AND ((aggregate_type = 'ReferralSubmission' AND sequence = 1)
                OR (aggregate_type = 'ReferralTask' AND event_type = 'TaskStatusChanged'))
         ORDER BY aggregate_id, aggregate_type, sequence",
    )
    .bind(ids)
    .fetch_all(pool)
    .await?;
    let mut out: HashMap<String, TaskHistory> = HashMap::new();
    for (aggregate_type, id, payload, recorded_at) in rows {
        if aggregate_type == "ReferralSubmission" {
            let submitted = &payload["ReferralSubmitted"];
            out.insert(
                id.clone(),
                TaskHistory {
                    referral_id: id,
                    person_ref: submitted["person_ref"].as_str().map(str::to_string),
                    facility: submitted["facility"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    submitted_at: recorded_at,
                    changes: vec![],
                },
            );
            continue;
        }
        let Ok(TaskEvent::TaskStatusChanged { change, .. }) = serde_json::from_value(payload)
        else {
            continue;
        };
        // A referral mirrored without its submission (only before intake kept
        // submissions as events): the first change stands in for it.
        let history = out.entry(id.clone()).or_insert_with(|| TaskHistory {
            referral_id: id,
            person_ref: change.person_ref.clone(),
            facility: change.facility.clone(),
            submitted_at: change.occurred_at,
            changes: vec![],
        });
        if history.person_ref.is_none() {
            history.person_ref = change.person_ref.clone();
        }
        history.changes.push(change);
    }
    Ok(out)
}

/// One referral's history.
pub async fn one(pool: &PgPool, id: &str) -> sqlx::Result<Option<TaskHistory>> {
    Ok(load(pool, &[id.to_string()]).await?.remove(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use careloop_events::ReferralStatus;
    use chrono::TimeZone;

    fn at(minute: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, 9, minute, 0).unwrap()
    }

    /// Submitted at 9:00, received at 9:01, accepted at 9:02.
    fn history() -> TaskHistory {
        let change = |status, minute| StatusChange {
            facility: "st-marys".into(),
            person_ref: Some("p1".into()),
            status,
            reason: None,
            occurred_at: at(minute),
        };
        TaskHistory {
            referral_id: "r1".into(),
            person_ref: Some("p1".into()),
            facility: "st-marys".into(),
            submitted_at: at(0),
            changes: vec![
                change(ReferralStatus::Received, 1),
                change(ReferralStatus::Accepted, 2),
            ],
        }
    }

    /// Guarantee: a search entry is the version its read-model row matched, so it
    /// lies within the search's own `_lastUpdated` bounds, never a later one.
    #[test]
    fn a_search_entry_is_the_version_its_row_matched() {
        let h = history();
        let received = h.at(2).unwrap();
        assert_eq!(h.version_of(&received), 2, "a row behind the events");
        assert_eq!(h.version_of(&h.latest()), 3);
        // A row made by a holder change alone: status requested, at the change's time.
        let mut holder_only = h.at(1).unwrap();
        holder_only.last_updated = at(1) + chrono::Duration::seconds(30);
        assert_eq!(
            h.version_of(&holder_only),
            2,
            "the newest no later than the row"
        );
        holder_only.last_updated = at(0) - chrono::Duration::seconds(1);
        assert_eq!(h.version_of(&holder_only), 1);
    }
}
