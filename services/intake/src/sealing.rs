//! What of intake's events is sealed at rest, under the person's data key.
//!
//! - Person events with details or consent (PersonRegistered, PersonDetailsUpdated,
//!   Consented): the whole payload, stored as `{"sealed": "sealed:v1:…"}`. Once the
//!   person is erased they load as `PersonEvent::Shredded`. ConsentRevoked and
//!   PersonErased stay clear: they are published and carry no PHI.
//! - ReferralSubmitted: the hospital's free-text `notes` (the rest is what matching
//!   and the measures need, and identifies nobody without the vault).
//!
//! Sealing happens at the event store's edge ([`careloop_backbone::store::PayloadSeal`]),
//! so the domain works on clear values and never sees a sealed one.

use careloop_backbone::store::PayloadSeal;
use careloop_vault::Vault;
use cqrs_es::persist::SerializedEvent;
use serde_json::{Value, json};

/// The Person events sealed whole.
const SEALED_PERSON_EVENTS: &[&str] = &["PersonRegistered", "PersonDetailsUpdated", "Consented"];

pub struct IntakeSeal {
    pub vault: Vault,
}

/// Seals what must be sealed of one event's payload, in place.
async fn seal_payload(
    vault: &Vault,
    aggregate_type: &str,
    aggregate_id: &str,
    event_type: &str,
    payload: &mut Value,
) -> anyhow::Result<()> {
    match aggregate_type {
        "Person" if SEALED_PERSON_EVENTS.contains(&event_type) => {
            let clear = payload.to_string();
            let sealed = vault.seal(aggregate_id, &clear).await?;
            *payload = json!({ "sealed": sealed });
        }
        "ReferralSubmission" if event_type == "ReferralSubmitted" => {
            seal_notes(vault, payload).await?;
        }
        _ => {}
    }
    Ok(())
}

#[async_trait::async_trait]
impl PayloadSeal for IntakeSeal {
    async fn seal(&self, event: &mut SerializedEvent) -> anyhow::Result<()> {
        seal_payload(
            &self.vault,
            &event.aggregate_type,
            &event.aggregate_id,
            &event.event_type,
            &mut event.payload,
        )
        .await
    }

    async fn open(&self, event: &mut SerializedEvent) -> anyhow::Result<()> {
        match event.aggregate_type.as_str() {
            "Person" => {
                let Some(sealed) = event.payload.get("sealed").and_then(Value::as_str) else {
                    return Ok(());
                };
                event.payload = match self.vault.open(&event.aggregate_id, sealed).await? {
                    Some(clear) => serde_json::from_str(&clear)?,
                    None => json!("Shredded"),
                };
            }
            "ReferralSubmission" if event.event_type == "ReferralSubmitted" => {
                open_notes(&self.vault, &mut event.payload).await?;
            }
            _ => {}
        }
        Ok(())
    }
}

/// Seals events written in the clear before the vault existed (a database from
/// before migration `0007_vault`), in place: the one time events are rewritten, with
/// the append-only guard lifted inside the same transaction. Returns how many were
/// sealed; run at start, a no-op once done. A person erased meanwhile cannot be
/// sealed for: their clear events are blanked to `"Shredded"` instead.
pub async fn upgrade_clear_events(pool: &sqlx::PgPool, vault: &Vault) -> anyhow::Result<u64> {
    let mut sealed = 0;
    loop {
        let rows: Vec<(i64, String, String, String, Value)> = sqlx::query_as(
            "SELECT position, aggregate_type, aggregate_id, event_type, payload FROM intake.events
             WHERE (aggregate_type = 'Person' AND event_type = ANY($1)
                    AND payload->>'sealed' IS NULL)
                OR (aggregate_type = 'ReferralSubmission' AND event_type = 'ReferralSubmitted'
                    AND json_typeof(payload->'ReferralSubmitted'->'notes') = 'string'
                    AND payload->'ReferralSubmitted'->>'notes' NOT LIKE 'sealed:v1:%')
             ORDER BY position LIMIT 200",
        )
        .bind(SEALED_PERSON_EVENTS)
        .fetch_all(pool)
        .await?;
        if rows.is_empty() {
            return Ok(sealed);
        }
        let mut tx = pool.begin().await?;
        sqlx::query("ALTER TABLE intake.events DISABLE TRIGGER events_append_only")
            .execute(&mut *tx)
            .await?;
        for (position, aggregate_type, aggregate_id, event_type, mut payload) in rows {
            match seal_payload(
                vault,
                &aggregate_type,
                &aggregate_id,
                &event_type,
                &mut payload,
            )
            .await
            {
                Ok(()) => {}
                Err(e)
                    if e.downcast_ref::<careloop_vault::VaultError>()
                        .is_some_and(|v| matches!(v, careloop_vault::VaultError::Erased)) =>
                {
                    payload = match aggregate_type.as_str() {
                        "Person" => json!("Shredded"),
                        _ => {
                            let mut p = payload;
                            if let Some(n) = p.pointer_mut("/ReferralSubmitted/notes") {
                                *n = Value::Null;
                            }
                            p
                        }
                    };
                }
                Err(e) => return Err(e),
            }
            sqlx::query("UPDATE intake.events SET payload = $2 WHERE position = $1")
                .bind(position)
                .bind(&payload)
                .execute(&mut *tx)
                .await?;
            sealed += 1;
        }
        sqlx::query("ALTER TABLE intake.events ENABLE TRIGGER events_append_only")
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
}

fn notes_of(payload: &mut Value) -> Option<(String, &mut Value)> {
    let submitted = payload.get_mut("ReferralSubmitted")?;
    let person_ref = submitted.get("person_ref")?.as_str()?.to_string();
    let notes = submitted.get_mut("notes")?;
    notes.is_string().then_some((person_ref, notes))
}

async fn seal_notes(vault: &Vault, payload: &mut Value) -> anyhow::Result<()> {
    if let Some((person_ref, notes)) = notes_of(payload) {
        let sealed = vault
            .seal(&person_ref, notes.as_str().unwrap_or_default())
            .await?;
        *notes = Value::String(sealed);
    }
    Ok(())
}

/// Opens the notes of a stored ReferralSubmitted payload in place (for readers of
/// the events table itself); erased: the notes are `null`.
pub async fn open_notes(vault: &Vault, payload: &mut Value) -> anyhow::Result<()> {
    if let Some((person_ref, notes)) = notes_of(payload) {
        *notes = match vault
            .open(&person_ref, notes.as_str().unwrap_or_default())
            .await?
        {
            Some(clear) => Value::String(clear),
            None => Value::Null,
        };
    }
    Ok(())
}
