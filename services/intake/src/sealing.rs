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
                    // Written in the clear by an older careloop and not sealed yet: an
                    // erased person's still reads as nothing.
                    if SEALED_PERSON_EVENTS.contains(&event.event_type.as_str())
                        && self.vault.is_erased(&event.aggregate_id).await?
                    {
                        event.payload = json!("Shredded");
                    }
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
                    AND json_typeof(payload) = 'object' AND payload->>'sealed' IS NULL)
                OR (aggregate_type = 'ReferralSubmission' AND event_type = 'ReferralSubmitted'
                    AND ((json_typeof(payload->'ReferralSubmitted'->'notes') = 'string'
                          AND payload->'ReferralSubmitted'->>'notes' NOT LIKE 'sealed:v1:%')
                      OR (json_typeof(payload->'ReferralSubmitted'->'consent'->'recorded_by') = 'string'
                          AND payload->'ReferralSubmitted'->'consent'->>'recorded_by'
                              NOT LIKE 'sealed:v1:%')))
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
                            for field in SEALED_SUBMISSION_FIELDS {
                                if let Some(n) = p.pointer_mut(field) {
                                    *n = Value::Null;
                                }
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

/// What of a ReferralSubmitted is sealed: the hospital's free-text notes, and who
/// recorded the consent (often the person themselves or a relative, by name).
const SEALED_SUBMISSION_FIELDS: &[&str] = &[
    "/ReferralSubmitted/notes",
    "/ReferralSubmitted/consent/recorded_by",
];

fn person_of(payload: &Value) -> Option<String> {
    payload
        .pointer("/ReferralSubmitted/person_ref")?
        .as_str()
        .map(str::to_string)
}

async fn seal_notes(vault: &Vault, payload: &mut Value) -> anyhow::Result<()> {
    let Some(person_ref) = person_of(payload) else {
        return Ok(());
    };
    for field in SEALED_SUBMISSION_FIELDS {
        if let Some(v) = payload.pointer_mut(field)
            && let Some(clear) = v.as_str().filter(|c| !careloop_vault::is_sealed(c))
        {
            let sealed = vault.seal(&person_ref, clear).await?;
            *v = Value::String(sealed);
        }
    }
    Ok(())
}

/// Opens the sealed fields of a stored ReferralSubmitted payload in place (for
/// readers of the events table itself); erased: the notes are `null`, the consent's
/// recorder "erased".
pub async fn open_notes(vault: &Vault, payload: &mut Value) -> anyhow::Result<()> {
    let Some(person_ref) = person_of(payload) else {
        return Ok(());
    };
    for field in SEALED_SUBMISSION_FIELDS {
        if let Some(v) = payload.pointer_mut(field)
            && let Some(stored) = v.as_str().map(str::to_string)
        {
            *v = match vault.open(&person_ref, &stored).await? {
                Some(clear) => Value::String(clear),
                None if field.ends_with("recorded_by") => Value::String("erased".into()),
                None => Value::Null,
            };
        }
    }
    Ok(())
}

/// What an older careloop wrote in the clear, sealed once at start (retried with
/// backoff until done): the identifier index, then the events.
pub async fn upgrade_at_start(
    pool: sqlx::PgPool,
    vault: Vault,
    shutdown: careloop_backbone::Shutdown,
) {
    careloop_backbone::shutdown::until_done(
        "sealing what was written in the clear",
        shutdown,
        || async {
            let moved = crate::identity::upgrade_clear_identifiers(&pool, &vault).await?;
            let sealed = upgrade_clear_events(&pool, &vault).await?;
            if moved + sealed > 0 {
                tracing::info!(
                    moved,
                    sealed,
                    "identifiers and events written in the clear sealed"
                );
            }
            Ok(())
        },
    )
    .await
}
