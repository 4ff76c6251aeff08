//! Finding a person by any shared identifier (system + value), without keeping the
//! identifier: the index holds the keyed digest of each (HMAC-SHA-256 under a vault
//! secret, `careloop_vault::Vault::digest`), so a dump of it names nobody and cannot
//! be searched by guessing identifiers, and matching still needs no decryption.

use careloop_vault::Vault;
use careloop_web::limits;
use sqlx::PgPool;
use uuid::Uuid;

use crate::domain::Identifier;

/// The digests of `identifiers`, in order.
async fn digests(vault: &Vault, identifiers: &[Identifier]) -> Result<Vec<Vec<u8>>, ResolveError> {
    let mut out = Vec::with_capacity(identifiers.len());
    for i in identifiers {
        out.push(
            vault
                .digest(&i.system, &i.value)
                .await
                .map_err(vault_error)?,
        );
    }
    Ok(out)
}

fn vault_error(e: careloop_vault::VaultError) -> ResolveError {
    match e {
        careloop_vault::VaultError::Database(e) => ResolveError::Database(e),
        other => ResolveError::Vault(other.to_string()),
    }
}

/// The `person_ref` of the person holding any of `identifiers`, without creating one.
pub async fn find(
    pool: &PgPool,
    vault: &Vault,
    identifiers: &[Identifier],
) -> Result<Option<Uuid>, ResolveError> {
    let digests = digests(vault, identifiers).await?;
    Ok(sqlx::query_scalar(
        "SELECT p.person_ref
         FROM unnest($1::bytea[]) WITH ORDINALITY AS t(d, n)
         JOIN intake.person_identifier_digests p ON p.digest = t.d
         ORDER BY t.n LIMIT 1",
    )
    .bind(&digests)
    .fetch_optional(pool)
    .await?)
}

/// A person as [`resolve`] found them.
#[derive(Debug, Clone, Copy)]
pub struct Resolved {
    pub person_ref: Uuid,
    /// No identifier was known: the reference is new, so the person has no events.
    pub new: bool,
}

/// The `person_ref` of the person holding any of `identifiers`, or a new one; every
/// identifier not yet known is then indexed to it.
///
/// Concurrent requests naming the same identifiers are serialised by advisory locks
/// on each identifier's digest, taken in sorted order (so two requests never wait on
/// each other in a cycle): the second sees what the first wrote, and one person never
/// becomes two. When the identifiers already belong to two different people, the
/// one holding the first identifier listed wins; merging people is left to a
/// coordinator.
///
/// The work is bounded: at most [`limits::MAX_IDENTIFIERS`] identifiers are taken
/// (so at most that many advisory locks, whatever the request), and a person holds at
/// most [`limits::MAX_PERSON_IDENTIFIERS`]; past either, nothing is written.
pub async fn resolve(
    pool: &PgPool,
    vault: &Vault,
    identifiers: &[Identifier],
) -> Result<Resolved, ResolveError> {
    if let Some(why) =
        limits::count_problem(identifiers.len(), limits::MAX_IDENTIFIERS, "identifiers")
    {
        return Err(ResolveError::TooMany(format!("the list {why}")));
    }
    let digests = digests(vault, identifiers).await?;
    let mut tx = pool.begin().await?;
    sqlx::query(
        "SELECT pg_advisory_xact_lock(k) FROM (
             SELECT DISTINCT ('x' || substr(encode(d, 'hex'), 1, 16))::bit(64)::bigint AS k
             FROM unnest($1::bytea[]) AS t(d)) locks
         ORDER BY k",
    )
    .bind(&digests)
    .execute(&mut *tx)
    .await?;
    let known: Vec<(i32, Uuid)> = sqlx::query_as(
        "SELECT t.n::int4, p.person_ref
         FROM unnest($1::bytea[]) WITH ORDINALITY AS t(d, n)
         JOIN intake.person_identifier_digests p ON p.digest = t.d
         ORDER BY t.n",
    )
    .bind(&digests)
    .fetch_all(&mut *tx)
    .await?;
    let person_ref = known.first().map(|(_, p)| *p).unwrap_or_else(Uuid::new_v4);
    if let Some((_, existing)) = known.first() {
        let held: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM intake.person_identifier_digests WHERE person_ref = $1",
        )
        .bind(existing)
        .fetch_one(&mut *tx)
        .await?;
        let mut new: Vec<&[u8]> = digests
            .iter()
            .enumerate()
            .filter(|(n, _)| !known.iter().any(|(k, _)| *k as usize == n + 1))
            .map(|(_, d)| d.as_slice())
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
        "INSERT INTO intake.person_identifier_digests (digest, person_ref)
         SELECT d, $2 FROM unnest($1::bytea[]) AS t(d)
         ON CONFLICT DO NOTHING",
    )
    .bind(&digests)
    .bind(person_ref)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Resolved {
        person_ref,
        new: known.is_empty(),
    })
}

/// Removes every identifier of the person from the index (and any still kept in the
/// clear by an older careloop): after an erasure the same identifiers name a new
/// person. Takes the same advisory locks as [`resolve`], so a resolution in flight
/// either finishes first (and its digests go too) or starts after (and finds nobody).
pub async fn forget(pool: &PgPool, person_ref: Uuid) -> sqlx::Result<u64> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "SELECT pg_advisory_xact_lock(k) FROM (
             SELECT DISTINCT ('x' || substr(encode(digest, 'hex'), 1, 16))::bit(64)::bigint AS k
             FROM intake.person_identifier_digests WHERE person_ref = $1) locks
         ORDER BY k",
    )
    .bind(person_ref)
    .execute(&mut *tx)
    .await?;
    let done = sqlx::query("DELETE FROM intake.person_identifier_digests WHERE person_ref = $1")
        .bind(person_ref)
        .execute(&mut *tx)
        .await?;
    sqlx::query("DELETE FROM intake.person_identifiers WHERE person_ref = $1")
        .bind(person_ref)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(done.rows_affected())
}

/// Moves identifiers indexed in the clear before the vault (migration 0001's
/// `person_identifiers`) into the digest index, then deletes them. Run once at start;
/// idempotent.
pub async fn upgrade_clear_identifiers(pool: &PgPool, vault: &Vault) -> Result<u64, ResolveError> {
    let mut moved = 0;
    loop {
        let rows: Vec<(String, String, Uuid)> = sqlx::query_as(
            "SELECT system, value, person_ref FROM intake.person_identifiers LIMIT 500",
        )
        .fetch_all(pool)
        .await?;
        if rows.is_empty() {
            return Ok(moved);
        }
        let mut tx = pool.begin().await?;
        for (system, value, person_ref) in rows {
            let digest = vault.digest(&system, &value).await.map_err(vault_error)?;
            sqlx::query(
                "INSERT INTO intake.person_identifier_digests (digest, person_ref)
                 VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(&digest)
            .bind(person_ref)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM intake.person_identifiers WHERE system = $1 AND value = $2")
                .bind(&system)
                .bind(&value)
                .execute(&mut *tx)
                .await?;
            moved += 1;
        }
        tx.commit().await?;
    }
}

/// Why a person could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// Past a limit on identifiers: the request can never succeed as it is.
    #[error("{0}")]
    TooMany(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The vault's keys could not be used (a key-encryption key missing).
    #[error("{0}")]
    Vault(String),
}
