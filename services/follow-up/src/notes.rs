//! Contact notes are sealed under the person's data key (`careloop-vault`): a peer's
//! words about a person are PHI, and erasing the person must leave them unreadable
//! in the events, the read model and every copy of either.

use careloop_vault::{Vault, VaultError, is_sealed};
use careloop_web::Problem;
use serde_json::Value;
use sqlx::PgPool;

/// The person a plan is for, from its first event (the read model may lag).
pub async fn person_of_plan(pool: &PgPool, referral_id: &str) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar(
        "SELECT payload->'PlanStarted'->>'person_ref' FROM follow_up.events
         WHERE aggregate_type = 'FollowUpPlan' AND aggregate_id = $1
           AND event_type = 'PlanStarted'
         ORDER BY sequence LIMIT 1",
    )
    .bind(referral_id)
    .fetch_optional(pool)
    .await
}

/// Seals `text` under the data key of the person the plan is for: contact notes,
/// addenda, goals and their reviews.
pub async fn seal_for_plan(
    pool: &PgPool,
    vault: &Vault,
    referral_id: &str,
    text: &str,
) -> Result<String, Problem> {
    PlanSeal::of(pool, vault, referral_id)
        .await?
        .seal(text)
        .await
}

/// Seals for the person a plan is for, found once for several values.
pub struct PlanSeal<'a> {
    vault: &'a Vault,
    person_ref: String,
}

impl<'a> PlanSeal<'a> {
    pub async fn of(pool: &PgPool, vault: &'a Vault, referral_id: &str) -> Result<Self, Problem> {
        let Some(person_ref) = person_of_plan(pool, referral_id)
            .await
            .map_err(Problem::from)?
        else {
            return Err(crate::domain::FollowUpError::NoPlan.into());
        };
        Ok(PlanSeal { vault, person_ref })
    }

    pub async fn seal(&self, text: &str) -> Result<String, Problem> {
        self.vault
            .seal(&self.person_ref, text)
            .await
            .map_err(vault_problem)
    }
}

/// Opens what [`seal_for_plan`] sealed: `None` once the person was erased.
pub async fn open_for_person(
    vault: &Vault,
    person_ref: &str,
    sealed: Option<String>,
) -> Result<Option<String>, Problem> {
    match sealed {
        Some(sealed) => vault.open(person_ref, &sealed).await.map_err(vault_problem),
        None => Ok(None),
    }
}

/// A vault refusal as the client's answer: an erased person is `410 Gone`.
pub fn vault_problem(e: VaultError) -> Problem {
    match e {
        VaultError::Erased => Problem::new(
            axum::http::StatusCode::GONE,
            "this person's details were erased",
        ),
        VaultError::Database(e) => Problem::from(e),
        other => Problem::internal(other),
    }
}

/// Seals the notes written in the clear before the vault existed, in the events
/// (the append-only guard lifted inside the same transaction) and in the contacts
/// read model. Run at start; a no-op once done.
pub async fn upgrade_clear_notes(pool: &PgPool, vault: &Vault) -> anyhow::Result<u64> {
    let mut sealed = 0;
    loop {
        let rows: Vec<(i64, String, Value)> = sqlx::query_as(
            "SELECT position, aggregate_id, payload FROM follow_up.events
             WHERE aggregate_type = 'FollowUpPlan' AND event_type = 'ContactRecorded'
               AND json_typeof(payload->'ContactRecorded'->'contact'->'notes') = 'string'
               AND payload->'ContactRecorded'->'contact'->>'notes' NOT LIKE 'sealed:v1:%'
             ORDER BY position LIMIT 200",
        )
        .fetch_all(pool)
        .await?;
        if rows.is_empty() {
            break;
        }
        let mut tx = pool.begin().await?;
        sqlx::query("ALTER TABLE follow_up.events DISABLE TRIGGER events_append_only")
            .execute(&mut *tx)
            .await?;
        for (position, referral_id, mut payload) in rows {
            let person_ref = person_of_plan(pool, &referral_id)
                .await?
                .unwrap_or_default();
            if let Some(notes) = payload.pointer_mut("/ContactRecorded/contact/notes") {
                *notes =
                    seal_or_drop(vault, &person_ref, notes.as_str().unwrap_or_default()).await?;
            }
            sqlx::query("UPDATE follow_up.events SET payload = $2 WHERE position = $1")
                .bind(position)
                .bind(&payload)
                .execute(&mut *tx)
                .await?;
            sealed += 1;
        }
        sqlx::query("ALTER TABLE follow_up.events ENABLE TRIGGER events_append_only")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    let rows: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT contact_id, referral_id, notes FROM follow_up.contacts
         WHERE notes IS NOT NULL AND notes NOT LIKE 'sealed:v1:%'",
    )
    .fetch_all(pool)
    .await?;
    for (contact_id, referral_id, notes) in rows {
        debug_assert!(!is_sealed(&notes));
        let person_ref = person_of_plan(pool, &referral_id)
            .await?
            .unwrap_or_default();
        let value = seal_or_drop(vault, &person_ref, &notes).await?;
        sqlx::query("UPDATE follow_up.contacts SET notes = $2 WHERE contact_id = $1")
            .bind(&contact_id)
            .bind(value.as_str())
            .execute(pool)
            .await?;
    }
    Ok(sealed)
}

/// `notes` sealed for the person; for a person erased meanwhile, nothing.
async fn seal_or_drop(vault: &Vault, person_ref: &str, notes: &str) -> anyhow::Result<Value> {
    match vault.seal(person_ref, notes).await {
        Ok(sealed) => Ok(Value::String(sealed)),
        Err(VaultError::Erased) => Ok(Value::Null),
        Err(e) => Err(e.into()),
    }
}
