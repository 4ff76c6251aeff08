//! The `followups` read model: plans (the peers' worklists), check-ins, the contact
//! log and readmissions, rebuilt from follow-up events (`careloop replay followups`),
//! and every query on it.

use anyhow::Context;
use careloop_backbone::{Projection, StoredEvent, rows};
use careloop_events::ContactOutcome;
use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool};

use crate::domain::{
    Billing, Documentation, FollowUpEvent, GoalReviewKind, Missing, events_wire_name as wire,
    missing,
};

pub struct FollowUps;

#[async_trait::async_trait]
impl Projection for FollowUps {
    fn name(&self) -> &'static str {
        "followups"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "follow_up.followups",
            "follow_up.checkpoints",
            "follow_up.contacts",
            "follow_up.readmissions",
            "follow_up.contact_addenda",
            "follow_up.goals",
            "follow_up.goal_reviews",
        ]
    }

    /// Plans started one after another in a batch (most of its events, while referrals
    /// come in) are written together, three statements for the run however long
    /// (`PlanStarts`); any other event first writes the run before it, then applies
    /// itself, so each plan still sees its events in order.
    async fn apply(&self, events: &[StoredEvent], tx: &mut PgConnection) -> anyhow::Result<()> {
        let mut starts = PlanStarts::default();
        for e in events.iter().filter(|e| e.aggregate_type == "FollowUpPlan") {
            match e.decode::<FollowUpEvent>()? {
                FollowUpEvent::PlanStarted {
                    peer_id,
                    person_ref,
                    facility,
                    priority,
                    discharged_at,
                    ends_at,
                    checkpoints,
                    ..
                } => {
                    starts.plans.push(StartedPlan {
                        referral_id: e.aggregate_id.clone(),
                        peer_id,
                        person_ref,
                        facility,
                        priority: priority.as_str().to_string(),
                        discharged_at,
                        ends_at,
                        state: "active",
                        started_at: e.recorded_at,
                        updated_at: e.recorded_at,
                    });
                    starts
                        .checkpoints
                        .extend(checkpoints.into_iter().map(|c| NewCheckpoint {
                            referral_id: e.aggregate_id.clone(),
                            name: c.name,
                            window_start: c.window_start,
                            due_at: c.due_at,
                        }));
                }
                event => {
                    starts.write(tx).await?;
                    apply_event(tx, e, event)
                        .await
                        .with_context(|| format!("applying {} {}", e.event_type, e.event_id))?;
                }
            }
        }
        starts.write(tx).await
    }
}

/// A run of started plans not written yet.
#[derive(Default)]
struct PlanStarts {
    plans: Vec<StartedPlan>,
    checkpoints: Vec<NewCheckpoint>,
}

/// A `followups` row as a plan starts (the other columns take their defaults).
#[derive(Serialize)]
struct StartedPlan {
    referral_id: String,
    peer_id: String,
    person_ref: String,
    facility: String,
    priority: String,
    #[serde(serialize_with = "rows::micros")]
    discharged_at: DateTime<Utc>,
    #[serde(serialize_with = "rows::micros")]
    ends_at: DateTime<Utc>,
    state: &'static str,
    #[serde(serialize_with = "rows::micros")]
    started_at: DateTime<Utc>,
    #[serde(serialize_with = "rows::micros")]
    updated_at: DateTime<Utc>,
}

/// A `checkpoints` row as a plan starts.
#[derive(Serialize)]
struct NewCheckpoint {
    referral_id: String,
    name: String,
    #[serde(serialize_with = "rows::micros")]
    window_start: DateTime<Utc>,
    #[serde(serialize_with = "rows::micros")]
    due_at: DateTime<Utc>,
}

impl PlanStarts {
    /// Writes the run (plans, their check-ins, where each stands) and empties it.
    async fn write(&mut self, tx: &mut PgConnection) -> anyhow::Result<()> {
        if self.plans.is_empty() {
            return Ok(());
        }
        rows::insert(tx, "followups", &self.plans).await?;
        rows::insert(tx, "checkpoints", &self.checkpoints).await?;
        let ids: Vec<&str> = self.plans.iter().map(|p| p.referral_id.as_str()).collect();
        refresh_standing(tx, &ids, None).await?;
        *self = PlanStarts::default();
        Ok(())
    }
}

/// Applies one event other than `PlanStarted` to its plan.
async fn apply_event(
    tx: &mut PgConnection,
    e: &StoredEvent,
    event: FollowUpEvent,
) -> anyhow::Result<()> {
    let id = &e.aggregate_id;
    let at = e.recorded_at;
    match event {
        FollowUpEvent::PlanStarted { .. } => unreachable!("written in runs by `apply`"),
        FollowUpEvent::PlanReopened { peer_id, .. } => {
            sqlx::query(
                "UPDATE followups SET peer_id = $2, state = 'active', outcome = NULL,
                        close_reason = NULL WHERE referral_id = $1",
            )
            .bind(id)
            .bind(peer_id)
            .execute(&mut *tx)
            .await?;
        }
        FollowUpEvent::PlanUnassigned { .. } => {
            sqlx::query("UPDATE followups SET peer_id = '' WHERE referral_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        FollowUpEvent::PlanReassigned { to_peer, .. } => {
            sqlx::query("UPDATE followups SET peer_id = $2 WHERE referral_id = $1")
                .bind(id)
                .bind(to_peer)
                .execute(&mut *tx)
                .await?;
        }
        FollowUpEvent::ContactRecorded { peer_id, contact } => {
            sqlx::query(
                "INSERT INTO contacts (contact_id, referral_id, peer_id, occurred_at,
                        channel, outcome, support_types, recorded_at, notes, goal_ids)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            )
            .bind(&contact.contact_id)
            .bind(id)
            .bind(peer_id)
            .bind(contact.occurred_at)
            .bind(wire(&contact.channel))
            .bind(contact.outcome.as_str())
            .bind(contact.support_types.iter().map(wire).collect::<Vec<_>>())
            .bind(at)
            .bind(&contact.notes)
            .bind(&contact.goal_ids)
            .execute(&mut *tx)
            .await?;
            document(tx, &contact.contact_id, &contact.documentation).await?;
            // The first reach is the earliest reached contact, whatever the order
            // of entry (back-entry is normal).
            let reached =
                (contact.outcome == ContactOutcome::Reached).then_some(contact.occurred_at);
            sqlx::query(
                "UPDATE followups SET attempts = attempts + 1,
                        first_reached_at = CASE
                            WHEN $2::timestamptz IS NULL THEN first_reached_at
                            ELSE LEAST(COALESCE(first_reached_at, $2), $2) END
                     WHERE referral_id = $1",
            )
            .bind(id)
            .bind(reached)
            .execute(&mut *tx)
            .await?;
        }
        FollowUpEvent::ContactDocumented {
            contact_id,
            documentation,
        } => document(tx, &contact_id, &documentation).await?,
        FollowUpEvent::ContactSigned {
            contact_id,
            signed_by,
            signed_at,
        } => {
            sqlx::query("UPDATE contacts SET signed_by = $2, signed_at = $3 WHERE contact_id = $1")
                .bind(contact_id)
                .bind(signed_by)
                .bind(signed_at)
                .execute(&mut *tx)
                .await?;
        }
        FollowUpEvent::ContactAddendumAdded {
            contact_id,
            addendum_id,
            text,
            added_by,
            added_at,
        } => {
            sqlx::query(
                "INSERT INTO contact_addenda (addendum_id, contact_id, referral_id, text,
                        added_by, added_at) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(addendum_id)
            .bind(contact_id)
            .bind(id)
            .bind(text)
            .bind(added_by)
            .bind(added_at)
            .execute(&mut *tx)
            .await?;
        }
        FollowUpEvent::GoalSet {
            goal_id,
            words,
            support_types,
            set_at,
        } => {
            sqlx::query(
                "INSERT INTO goals (referral_id, goal_id, words, support_types, status,
                        set_at) VALUES ($1, $2, $3, $4, 'progress', $5)",
            )
            .bind(id)
            .bind(goal_id)
            .bind(words)
            .bind(support_types.iter().map(wire).collect::<Vec<_>>())
            .bind(set_at)
            .execute(&mut *tx)
            .await?;
        }
        FollowUpEvent::GoalReviewed {
            goal_id,
            kind,
            words,
            note,
            reviewed_by,
            reviewed_at,
            ..
        } => {
            sqlx::query(
                "INSERT INTO goal_reviews (referral_id, goal_id, seq, kind, words, note,
                        reviewed_by, reviewed_at)
                     SELECT $1, $2, COALESCE(max(seq), 0) + 1, $3, $4, $5, $6, $7
                     FROM goal_reviews WHERE referral_id = $1 AND goal_id = $2",
            )
            .bind(id)
            .bind(&goal_id)
            .bind(wire(&kind))
            .bind(&words)
            .bind(note)
            .bind(reviewed_by)
            .bind(reviewed_at)
            .execute(&mut *tx)
            .await?;
            // A changed goal is worked on in its new words.
            let status = match kind {
                GoalReviewKind::Changed => GoalReviewKind::Progress,
                other => other,
            };
            sqlx::query(
                "UPDATE goals SET status = $3, words = COALESCE($4, words),
                        reviewed_at = $5 WHERE referral_id = $1 AND goal_id = $2",
            )
            .bind(id)
            .bind(goal_id)
            .bind(wire(&status))
            .bind(words)
            .bind(reviewed_at)
            .execute(&mut *tx)
            .await?;
        }
        FollowUpEvent::CaringContactsStarted { due, started_at } => {
            let mut window_start = started_at;
            for (i, due_at) in due.into_iter().enumerate() {
                sqlx::query(
                    "INSERT INTO checkpoints (referral_id, name, window_start, due_at)
                         VALUES ($1, $2, $3, $4)",
                )
                .bind(id)
                .bind(caring_name(i as u32 + 1))
                .bind(window_start)
                .bind(due_at)
                .execute(&mut *tx)
                .await?;
                window_start = due_at;
            }
            set_caring(tx, id, "running").await?;
        }
        FollowUpEvent::CaringContactMade { n, contact_id } => {
            sqlx::query(
                "UPDATE checkpoints SET met_at = c.occurred_at, met_by = c.contact_id
                     FROM contacts c
                     WHERE checkpoints.referral_id = $1 AND checkpoints.name = $2
                       AND c.contact_id = $3",
            )
            .bind(id)
            .bind(caring_name(n))
            .bind(contact_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE followups SET caring_state = 'done'
                     WHERE referral_id = $1 AND NOT EXISTS (
                         SELECT 1 FROM checkpoints WHERE referral_id = $1
                           AND name LIKE 'caring\\_%' AND met_at IS NULL)",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        FollowUpEvent::CaringContactsStopped { .. } => {
            // What was not made is no longer due.
            sqlx::query(
                "DELETE FROM checkpoints WHERE referral_id = $1
                       AND name LIKE 'caring\\_%' AND met_at IS NULL",
            )
            .bind(id)
            .execute(&mut *tx)
            .await?;
            set_caring(tx, id, "stopped").await?;
        }
        FollowUpEvent::CheckpointMet {
            checkpoint,
            contact_id,
            occurred_at,
        } => {
            sqlx::query(
                "UPDATE checkpoints SET met_at = $3, met_by = $4
                     WHERE referral_id = $1 AND name = $2",
            )
            .bind(id)
            .bind(checkpoint)
            .bind(occurred_at)
            .bind(contact_id)
            .execute(&mut *tx)
            .await?;
        }
        FollowUpEvent::FollowUpOverdue { checkpoint, .. } => {
            sqlx::query(
                "UPDATE checkpoints SET overdue = true WHERE referral_id = $1 AND name = $2",
            )
            .bind(id)
            .bind(checkpoint)
            .execute(&mut *tx)
            .await?;
        }
        FollowUpEvent::ReadmissionLinked {
            admission_id,
            admitted_at,
            paused,
        } => {
            sqlx::query(
                "INSERT INTO readmissions (referral_id, admission_id, admitted_at, linked_at)
                     VALUES ($1, $2, $3, $4)",
            )
            .bind(id)
            .bind(admission_id)
            .bind(admitted_at)
            .bind(at)
            .execute(&mut *tx)
            .await?;
            if paused {
                set_state(tx, id, "paused", None, None).await?;
            }
        }
        FollowUpEvent::PlanResumed { .. } => set_state(tx, id, "active", None, None).await?,
        FollowUpEvent::ReadmissionUnlinked {
            admission_id,
            resumed,
        } => {
            sqlx::query("DELETE FROM readmissions WHERE referral_id = $1 AND admission_id = $2")
                .bind(id)
                .bind(admission_id)
                .execute(&mut *tx)
                .await?;
            if resumed {
                set_state(tx, id, "active", None, None).await?;
            }
        }
        FollowUpEvent::FollowUpClosed {
            outcome, reason, ..
        } => {
            set_state(tx, id, "closed", Some(outcome.as_str()), Some(&reason)).await?;
        }
    }
    refresh_standing(tx, &[id.as_str()], Some(at)).await?;
    Ok(())
}

/// Where each of the plans `$1` stands now: its next unmet check-in (while caring
/// contacts run, they are what is due) and whether an unmet one is late; `$2` moves
/// `updated_at` when given. Both look up the plan's own check-ins by key: written as
/// `EXISTS`, the late one was planned as one scan of every late check-in of every
/// plan, hashed, at each batch (1-12 ms a batch under load, growing with the table).
/// Public for its test (`a_plans_standing_is_read_from_its_own_check_ins`).
pub const REFRESH_STANDING: &str = "UPDATE followups f SET updated_at = COALESCE($2, f.updated_at),
    (next_checkpoint, next_due_at) = (
        SELECT c.name, c.due_at FROM checkpoints c
        WHERE c.referral_id = f.referral_id AND c.met_at IS NULL
          AND (f.caring_state IS DISTINCT FROM 'running' OR c.name LIKE 'caring\\_%')
        ORDER BY c.due_at, c.name LIMIT 1),
    overdue = COALESCE((SELECT true FROM checkpoints c
                        WHERE c.referral_id = f.referral_id AND c.met_at IS NULL
                          AND c.overdue LIMIT 1), false)
 WHERE f.referral_id = ANY($1)";

/// Runs [`REFRESH_STANDING`] for the plans `ids`.
async fn refresh_standing(
    tx: &mut PgConnection,
    ids: &[&str],
    at: Option<DateTime<Utc>>,
) -> sqlx::Result<()> {
    sqlx::query(REFRESH_STANDING)
        .bind(ids)
        .bind(at)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

/// The check-in name of the `n`th caring contact (from 1).
pub fn caring_name(n: u32) -> String {
    format!("caring_{n}")
}

/// running | stopped | done
async fn set_caring(tx: &mut PgConnection, id: &str, state: &str) -> sqlx::Result<()> {
    sqlx::query("UPDATE followups SET caring_state = $2 WHERE referral_id = $1")
        .bind(id)
        .bind(state)
        .execute(&mut *tx)
        .await?;
    Ok(())
}

async fn set_state(
    tx: &mut PgConnection,
    id: &str,
    state: &str,
    outcome: Option<&str>,
    reason: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE followups SET state = $2,
            outcome = COALESCE($3, outcome), close_reason = COALESCE($4, close_reason)
         WHERE referral_id = $1",
    )
    .bind(id)
    .bind(state)
    .bind(outcome)
    .bind(reason)
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[derive(Serialize, sqlx::FromRow)]
pub struct FollowUpRow {
    pub referral_id: String,
    /// Who the plan is for (opens the sealed contact notes; not part of the answer).
    #[serde(skip)]
    pub person_ref: String,
    pub peer_id: String,
    pub facility: String,
    pub priority: String,
    pub discharged_at: DateTime<Utc>,
    pub ends_at: DateTime<Utc>,
    pub state: String,
    pub outcome: Option<String>,
    pub close_reason: Option<String>,
    pub first_reached_at: Option<DateTime<Utc>>,
    pub attempts: i32,
    pub next_checkpoint: Option<String>,
    pub next_due_at: Option<DateTime<Utc>>,
    pub overdue: bool,
    /// Caring contacts after the plan completed: running, stopped or done.
    pub caring_state: Option<String>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Serialize, sqlx::FromRow)]
pub struct CheckpointRow {
    pub name: String,
    pub window_start: DateTime<Utc>,
    pub due_at: DateTime<Utc>,
    pub met_at: Option<DateTime<Utc>>,
    pub met_by: Option<String>,
    pub overdue: bool,
}

/// Writes a contact's documentation (as recorded, or as corrected before signing).
async fn document(
    tx: &mut PgConnection,
    contact_id: &str,
    doc: &Documentation,
) -> anyhow::Result<()> {
    sqlx::query(
        "UPDATE contacts SET duration_minutes = $2, ended_at = $3, place = $4, billing = $5
         WHERE contact_id = $1",
    )
    .bind(contact_id)
    .bind(doc.duration_minutes.map(|d| d as i32))
    .bind(doc.ended_at)
    .bind(doc.place.as_ref().map(wire))
    .bind(doc.billing.as_ref().map(sqlx::types::Json))
    .execute(&mut *tx)
    .await?;
    Ok(())
}

#[derive(Serialize, sqlx::FromRow)]
pub struct ContactRow {
    pub contact_id: String,
    pub peer_id: String,
    pub occurred_at: DateTime<Utc>,
    pub channel: String,
    pub outcome: String,
    pub support_types: Vec<String>,
    pub duration_minutes: Option<i32>,
    pub ended_at: Option<DateTime<Utc>>,
    pub place: Option<String>,
    pub billing: Option<sqlx::types::Json<Billing>>,
    pub goal_ids: Vec<String>,
    pub signed_by: Option<String>,
    pub signed_at: Option<DateTime<Utc>>,
    pub notes: Option<String>,
}

const CONTACTS: &str = "SELECT contact_id, peer_id, occurred_at, channel, outcome, support_types,
    duration_minutes, ended_at, place, billing, goal_ids, signed_by, signed_at, notes
    FROM follow_up.contacts";

impl ContactRow {
    /// What keeps this contact from being signed and billed ([`missing`], the rule
    /// signing applies).
    pub fn missing(&self) -> Vec<Missing> {
        fn parse<T: serde::de::DeserializeOwned>(s: &str) -> Option<T> {
            serde_json::from_value(serde_json::Value::String(s.into())).ok()
        }
        let Some(channel) = parse(&self.channel) else {
            return Vec::new();
        };
        let doc = Documentation {
            duration_minutes: self.duration_minutes.map(|d| d as u32),
            ended_at: self.ended_at,
            place: self
                .place
                .as_deref()
                .and_then(parse::<crate::domain::Place>),
            billing: self.billing.as_ref().map(|b| b.0.clone()),
        };
        missing(
            self.outcome == ContactOutcome::Reached.as_str(),
            channel,
            &doc,
        )
    }
}

/// A later change to a signed contact (its text sealed).
#[derive(Serialize, sqlx::FromRow)]
pub struct AddendumRow {
    pub addendum_id: String,
    pub contact_id: String,
    pub text: Option<String>,
    pub added_by: String,
    pub added_at: DateTime<Utc>,
}

/// One of the person's goals (its words sealed).
#[derive(Serialize, sqlx::FromRow)]
pub struct GoalRow {
    pub goal_id: String,
    pub words: Option<String>,
    pub support_types: Vec<String>,
    pub status: String,
    pub set_at: DateTime<Utc>,
    pub reviewed_at: Option<DateTime<Utc>>,
}

#[derive(Clone, Serialize, sqlx::FromRow)]
pub struct GoalReviewRow {
    pub goal_id: String,
    pub kind: String,
    pub words: Option<String>,
    pub note: Option<String>,
    pub reviewed_by: String,
    pub reviewed_at: DateTime<Utc>,
}

const PLANS: &str =
    "SELECT referral_id, person_ref, peer_id, facility, priority, discharged_at, ends_at,
    state, outcome, close_reason, first_reached_at, attempts, next_checkpoint, next_due_at,
    overdue, caring_state, updated_at FROM follow_up.followups";

/// A plan with its check-ins and contacts, read from one snapshot so that the
/// plan's next check-in always agrees with the check-ins it lists (each `CheckpointMet`
/// is its own transaction; three separate reads could straddle two of them).
pub struct PlanView {
    pub plan: FollowUpRow,
    pub checkpoints: Vec<CheckpointRow>,
    pub contacts: Vec<ContactRow>,
    pub addenda: Vec<AddendumRow>,
    pub goals: Vec<GoalRow>,
    pub reviews: Vec<GoalReviewRow>,
}

pub async fn plan_view(pool: &PgPool, referral_id: &str) -> sqlx::Result<Option<PlanView>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let Some(plan) = sqlx::query_as::<_, FollowUpRow>(&format!("{PLANS} WHERE referral_id = $1"))
        .bind(referral_id)
        .fetch_optional(&mut *tx)
        .await?
    else {
        return Ok(None);
    };
    let checkpoints = sqlx::query_as(
        "SELECT name, window_start, due_at, met_at, met_by, overdue
         FROM follow_up.checkpoints WHERE referral_id = $1 ORDER BY due_at, name",
    )
    .bind(referral_id)
    .fetch_all(&mut *tx)
    .await?;
    let contacts = sqlx::query_as(&format!(
        "{CONTACTS} WHERE referral_id = $1 ORDER BY occurred_at, contact_id"
    ))
    .bind(referral_id)
    .fetch_all(&mut *tx)
    .await?;
    let addenda = sqlx::query_as(
        "SELECT addendum_id, contact_id, text, added_by, added_at FROM follow_up.contact_addenda
         WHERE referral_id = $1 ORDER BY added_at, addendum_id",
    )
    .bind(referral_id)
    .fetch_all(&mut *tx)
    .await?;
    let goals = sqlx::query_as(
        "SELECT goal_id, words, support_types, status, set_at, reviewed_at FROM follow_up.goals
         WHERE referral_id = $1 ORDER BY set_at, goal_id",
    )
    .bind(referral_id)
    .fetch_all(&mut *tx)
    .await?;
    let reviews = sqlx::query_as(
        "SELECT goal_id, kind, words, note, reviewed_by, reviewed_at FROM follow_up.goal_reviews
         WHERE referral_id = $1 ORDER BY goal_id, seq",
    )
    .bind(referral_id)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(PlanView {
        plan,
        checkpoints,
        contacts,
        addenda,
        goals,
        reviews,
    }))
}

/// What the worklist is filtered by (`state`: active, paused, closed or all).
pub struct WorklistFilter {
    pub peer_id: Option<String>,
    pub due_before: Option<DateTime<Utc>>,
    pub overdue: Option<bool>,
    pub state: String,
    /// The page starts after this key.
    pub after: Option<WorklistKey>,
    pub limit: i64,
}

/// Where a worklist page ends: the next due time (none sorts last) and the referral.
#[derive(Debug, Clone, PartialEq)]
pub struct WorklistKey {
    pub due: Option<DateTime<Utc>>,
    pub referral_id: String,
}

impl WorklistKey {
    pub fn of(row: &FollowUpRow) -> Self {
        WorklistKey {
            due: row.next_due_at,
            referral_id: row.referral_id.clone(),
        }
    }

    pub fn parts(&self) -> Vec<String> {
        vec![
            self.due
                .map(|d| d.timestamp_micros().to_string())
                .unwrap_or_else(|| "none".into()),
            self.referral_id.clone(),
        ]
    }

    pub fn parse(cursor: &str) -> Result<Self, careloop_web::Problem> {
        let parts = careloop_web::paging::parse_cursor(cursor, 2)?;
        let due = match parts[0].as_str() {
            "none" => None,
            micros => Some(
                micros
                    .parse::<i64>()
                    .ok()
                    .and_then(DateTime::from_timestamp_micros)
                    .ok_or_else(|| {
                        careloop_web::Problem::invalid("cursor", "not a cursor this API returned")
                    })?,
            ),
        };
        Ok(WorklistKey {
            due,
            referral_id: parts[1].clone(),
        })
    }
}

/// Plans by their next due check-in.
pub async fn worklist(pool: &PgPool, f: &WorklistFilter) -> sqlx::Result<Vec<FollowUpRow>> {
    // Plans with no due check-in sort last ('infinity'), each page after the key of
    // the last row of the page before.
    sqlx::query_as(&format!(
        "{PLANS}
         WHERE ($1::text IS NULL OR peer_id = $1)
           AND ($2::timestamptz IS NULL OR next_due_at < $2)
           AND ($3::bool IS NULL OR overdue = $3)
           AND ($4 = 'all' OR state = $4 OR ($4 = 'caring' AND caring_state = 'running'))
           AND ($6::text IS NULL
                OR (COALESCE(next_due_at, 'infinity'), referral_id)
                   > (COALESCE($7::timestamptz, 'infinity'), $6))
         ORDER BY COALESCE(next_due_at, 'infinity'), referral_id LIMIT $5"
    ))
    .bind(&f.peer_id)
    .bind(f.due_before)
    .bind(f.overdue)
    .bind(&f.state)
    .bind(f.limit)
    .bind(f.after.as_ref().map(|k| k.referral_id.clone()))
    .bind(f.after.as_ref().and_then(|k| k.due))
    .fetch_all(pool)
    .await
}

/// Active plans with a check-in past due and not yet marked, or past their end, as
/// of `now`: the plans the deadline check asks (the aggregate decides).
pub async fn due_for_check(
    pool: &PgPool,
    now: DateTime<Utc>,
    limit: i64,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT f.referral_id FROM follow_up.followups f
         WHERE f.state = 'active' AND (f.ends_at <= $1 OR EXISTS (
             SELECT 1 FROM follow_up.checkpoints c
             WHERE c.referral_id = f.referral_id AND c.met_at IS NULL
               AND NOT c.overdue AND c.due_at < $1))
         LIMIT $2",
    )
    .bind(now)
    .bind(limit)
    .fetch_all(pool)
    .await
}

/// Active plans with an overdue check-in.
pub async fn overdue_count(pool: &PgPool) -> sqlx::Result<i64> {
    sqlx::query_scalar(
        "SELECT count(*) FROM follow_up.followups WHERE state = 'active' AND overdue",
    )
    .fetch_one(pool)
    .await
}

/// A billed contact with its plan's person and facility: a line of the billing
/// export, or an exception.
#[derive(sqlx::FromRow)]
pub struct BilledContact {
    pub referral_id: String,
    pub person_ref: String,
    pub facility: String,
    #[sqlx(flatten)]
    pub contact: ContactRow,
}

/// Billed contacts that took place in `[from, to)`, of one facility or all.
pub async fn billed_contacts(
    pool: &PgPool,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    facility: Option<&str>,
) -> sqlx::Result<Vec<BilledContact>> {
    sqlx::query_as(
        "SELECT c.referral_id, f.person_ref, f.facility, c.contact_id, c.peer_id,
                c.occurred_at, c.channel, c.outcome, c.support_types, c.duration_minutes,
                c.ended_at, c.place, c.billing, c.goal_ids, c.signed_by, c.signed_at,
                NULL::text AS notes
         FROM follow_up.contacts c JOIN follow_up.followups f USING (referral_id)
         WHERE c.billing IS NOT NULL AND c.occurred_at >= $1 AND c.occurred_at < $2
           AND ($3::text IS NULL OR f.facility = $3)
         ORDER BY c.occurred_at, c.contact_id",
    )
    .bind(from)
    .bind(to)
    .bind(facility)
    .fetch_all(pool)
    .await
}
