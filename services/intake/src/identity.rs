//! Finding a person by any shared identifier (system + value).

use careloop_web::limits;
use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::Identifier;

/// The `person_ref` of the person holding any of `identifiers`, without creating one.
pub async fn find(pool: &PgPool, identifiers: &[Identifier]) -> sqlx::Result<Option<Uuid>> {
    let systems: Vec<&str> = identifiers.iter().map(|i| i.system.as_str()).collect();
    let values: Vec<&str> = identifiers.iter().map(|i| i.value.as_str()).collect();
    sqlx::query_scalar(
        "SELECT p.person_ref
         FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(s, v, n)
         JOIN intake.person_identifiers p ON p.system = t.s AND p.value = t.v
         ORDER BY t.n LIMIT 1",
    )
    .bind(&systems)
    .bind(&values)
    .fetch_optional(pool)
    .await
}

/// The `person_ref` of the person holding any of `identifiers`, or a new one; every
/// identifier not yet known is then indexed to it.
///
/// Concurrent requests naming the same identifiers are serialised by advisory locks
/// on each identifier, taken in sorted order (so two requests never wait on each
/// other in a cycle): the second sees what the first wrote, and one person never
/// becomes two. When the identifiers already belong to two different people, the
/// one holding the first identifier listed wins; merging people is left to a
/// coordinator.
///
/// The work is bounded: at most [`limits::MAX_IDENTIFIERS`] identifiers are taken
/// (so at most that many advisory locks, whatever the request), and a person holds at
/// most [`limits::MAX_PERSON_IDENTIFIERS`]; past either, nothing is written.
pub async fn resolve(pool: &PgPool, identifiers: &[Identifier]) -> Result<Uuid, ResolveError> {
    if let Some(why) =
        limits::count_problem(identifiers.len(), limits::MAX_IDENTIFIERS, "identifiers")
    {
        return Err(ResolveError::TooMany(format!("the list {why}")));
    }
    let systems: Vec<&str> = identifiers.iter().map(|i| i.system.as_str()).collect();
    let values: Vec<&str> = identifiers.iter().map(|i| i.value.as_str()).collect();
    let mut tx = pool.begin().await?;
    sqlx::query(
        "SELECT pg_advisory_xact_lock(k) FROM (
             SELECT DISTINCT hashtextextended('careloop.identifier:' || s || '|' || v, 0) AS k
             FROM unnest($1::text[], $2::text[]) AS t(s, v)) locks
         ORDER BY k",
    )
    .bind(&systems)
    .bind(&values)
    .execute(&mut *tx)
    .await?;
    let known: Vec<(i32, Uuid)> = sqlx::query_as(
        "SELECT t.n::int4, p.person_ref
         FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(s, v, n)
         JOIN intake.person_identifiers p ON p.system = t.s AND p.value = t.v
         ORDER BY t.n",
    )
    .bind(&systems)
    .bind(&values)
    .fetch_all(&mut *tx)
    .await?;
    let person_ref = known.first().map(|(_, p)| *p).unwrap_or_else(Uuid::new_v4);
    if let Some((_, existing)) = known.first() {
        let held: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM intake.person_identifiers WHERE person_ref = $1",
        )
        .bind(existing)
        .fetch_one(&mut *tx)
        .await?;
        let mut new: Vec<(&str, &str)> = systems
            .iter()
            .zip(&values)
            .enumerate()
            .filter(|(n, _)| !known.iter().any(|(k, _)| *k as usize == n + 1))
            .map(|(_, (s, v))| (*s, *v))
            .collect();
        new.sort_unstable();
        new.dedup();
        let total = held as usize + new.len();
        if total > limits::MAX_PERSON_IDENTIFIERS {
            return Err(ResolveError::TooMany(format!(
                "with these the person would hold {total} identifiers; at most {} are allowed per person",
                limits::MAX_PERSON_IDENTIFIERS
            )));
        }
    }
    sqlx::query(
        "INSERT INTO intake.person_identifiers (system, value, person_ref)
         SELECT s, v, $3 FROM unnest($1::text[], $2::text[]) AS t(s, v)
         ON CONFLICT DO NOTHING",
    )
    .bind(&systems)
    .bind(&values)
    .bind(person_ref)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(person_ref)
}

/// Why a person could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// Past a limit on identifiers: the request can never succeed as it is.
    #[error("{0}")]
    TooMany(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}
