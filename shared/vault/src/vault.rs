//! The per-person data keys, the identifier digest key, and erasure.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ring::hmac;
use sqlx::PgPool;

use crate::cipher::{DataKey, is_sealed};
use crate::kek::Keyring;

/// The most unwrapped data keys kept in memory at once (then the cache starts again).
const CACHE_LIMIT: usize = 10_000;

/// The secret the identifier digests are keyed with.
const DIGEST_SECRET: &str = "identifier-digest";

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    /// The person was erased: their key is gone, nothing new is sealed for them.
    #[error("this person's details were erased")]
    Erased,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Key(#[from] anyhow::Error),
}

/// What an erasure found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Erased {
    /// The key was destroyed now.
    Now,
    /// It had been destroyed before.
    Already,
}

/// What `careloop vault rewrap` did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RewrapReport {
    pub person_keys: u64,
    pub secrets: u64,
}

#[derive(Clone)]
pub struct Vault {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    keyring: Keyring,
    /// Unwrapped data keys by person and wrapping: unwrapping (a KMS call, in production)
    /// is done once per key, while the wrapped key itself is read from the table on
    /// every use, so an erasure made by any process holds at once in every other.
    unwrapped: Mutex<HashMap<Vec<u8>, Arc<DataKey>>>,
    digest_key: Mutex<Option<hmac::Key>>,
}

fn person_context(person_ref: &str) -> Vec<u8> {
    format!("careloop person key:{person_ref}").into_bytes()
}

fn secret_context(name: &str) -> Vec<u8> {
    format!("careloop vault secret:{name}").into_bytes()
}

impl Vault {
    pub fn new(pool: PgPool, keyring: Keyring) -> Self {
        Vault {
            inner: Arc::new(Inner {
                pool,
                keyring,
                unwrapped: Mutex::new(HashMap::new()),
                digest_key: Mutex::new(None),
            }),
        }
    }

    /// `plain` sealed under the person's data key (made on first use). Refused once
    /// the person is erased.
    pub async fn seal(&self, person_ref: &str, plain: &str) -> Result<String, VaultError> {
        let key = self
            .key(person_ref, true)
            .await?
            .expect("made when missing");
        Ok(key.seal(person_ref, plain)?)
    }

    /// The clear value of `sealed`; `None` once the person is erased. A value that
    /// is not sealed (written before the vault, not yet sealed at start) is returned as
    /// it is, unless the person was erased.
    pub async fn open(&self, person_ref: &str, sealed: &str) -> Result<Option<String>, VaultError> {
        if !is_sealed(sealed) {
            return Ok((!self.is_erased(person_ref).await?).then(|| sealed.to_string()));
        }
        match self.key(person_ref, false).await {
            Ok(Some(key)) => Ok(Some(key.open(person_ref, sealed)?)),
            Ok(None) => Err(VaultError::Key(anyhow::anyhow!(
                "a value is sealed for a person who has no data key"
            ))),
            Err(VaultError::Erased) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether the person was erased.
    pub async fn is_erased(&self, person_ref: &str) -> Result<bool, VaultError> {
        let erased: Option<bool> = sqlx::query_scalar(
            "SELECT erased_at IS NOT NULL FROM vault.person_keys WHERE person_ref = $1",
        )
        .bind(person_ref)
        .fetch_optional(&self.inner.pool)
        .await?;
        Ok(erased.unwrap_or(false))
    }

    /// Destroys the person's data key (crypto-shredding): everything sealed under it,
    /// wherever it was copied, stays unreadable, and no key is ever made for this
    /// person again.
    pub async fn erase(&self, person_ref: &str) -> Result<Erased, VaultError> {
        let now: Option<bool> = sqlx::query_scalar(
            "INSERT INTO vault.person_keys (person_ref, kek_id, wrapped, erased_at)
             VALUES ($1, NULL, NULL, now())
             ON CONFLICT (person_ref) DO UPDATE
                 SET kek_id = NULL, wrapped = NULL, erased_at = now()
                 WHERE vault.person_keys.erased_at IS NULL
             RETURNING true",
        )
        .bind(person_ref)
        .fetch_optional(&self.inner.pool)
        .await?;
        Ok(if now.is_some() {
            Erased::Now
        } else {
            Erased::Already
        })
    }

    /// The keyed digest of an identifier: how a person is found by `system` + `value`
    /// without the identifier being stored. HMAC-SHA-256 under a vault secret, so a
    /// dump of the digests cannot be searched by guessing identifiers.
    pub async fn digest(&self, system: &str, value: &str) -> Result<Vec<u8>, VaultError> {
        let cached = self.inner.digest_key.lock().unwrap().clone();
        let key = match cached {
            Some(k) => k,
            None => {
                let bytes = self.secret(DIGEST_SECRET).await?;
                let k = hmac::Key::new(hmac::HMAC_SHA256, &bytes);
                *self.inner.digest_key.lock().unwrap() = Some(k.clone());
                k
            }
        };
        let mut ctx = hmac::Context::with_key(&key);
        ctx.update(system.as_bytes());
        ctx.update(&[0]);
        ctx.update(value.as_bytes());
        Ok(ctx.sign().as_ref().to_vec())
    }

    /// Re-wraps every data key and secret not wrapped by the current KEK under it.
    /// Events and sealed values are untouched: only the wrapping changes.
    pub async fn rewrap(&self) -> Result<RewrapReport, VaultError> {
        let keyring = &self.inner.keyring;
        let current = keyring.current().id().to_string();
        let mut report = RewrapReport::default();
        loop {
            let rows: Vec<(String, String, Vec<u8>)> = sqlx::query_as(
                "SELECT person_ref, kek_id, wrapped FROM vault.person_keys
                 WHERE wrapped IS NOT NULL AND kek_id <> $1 LIMIT 500",
            )
            .bind(&current)
            .fetch_all(&self.inner.pool)
            .await?;
            if rows.is_empty() {
                break;
            }
            for (person_ref, kek_id, wrapped) in rows {
                let ctx = person_context(&person_ref);
                let key = keyring.unwrap(&kek_id, &wrapped, &ctx).await?;
                let (id, rewrapped) = keyring.wrap(&key, &ctx).await?;
                let done = sqlx::query(
                    "UPDATE vault.person_keys SET kek_id = $3, wrapped = $4
                     WHERE person_ref = $1 AND kek_id = $2",
                )
                .bind(&person_ref)
                .bind(&kek_id)
                .bind(&id)
                .bind(&rewrapped)
                .execute(&self.inner.pool)
                .await?;
                report.person_keys += done.rows_affected();
            }
        }
        let secrets: Vec<(String, String, Vec<u8>)> =
            sqlx::query_as("SELECT name, kek_id, wrapped FROM vault.secrets WHERE kek_id <> $1")
                .bind(&current)
                .fetch_all(&self.inner.pool)
                .await?;
        for (name, kek_id, wrapped) in secrets {
            let ctx = secret_context(&name);
            let key = keyring.unwrap(&kek_id, &wrapped, &ctx).await?;
            let (id, rewrapped) = keyring.wrap(&key, &ctx).await?;
            let done = sqlx::query(
                "UPDATE vault.secrets SET kek_id = $3, wrapped = $4 WHERE name = $1 AND kek_id = $2",
            )
            .bind(&name)
            .bind(&kek_id)
            .bind(&id)
            .bind(&rewrapped)
            .execute(&self.inner.pool)
            .await?;
            report.secrets += done.rows_affected();
        }
        Ok(report)
    }

    /// The person's data key; made when missing and `create`.
    async fn key(
        &self,
        person_ref: &str,
        create: bool,
    ) -> Result<Option<Arc<DataKey>>, VaultError> {
        for _ in 0..2 {
            let row: Option<(Option<String>, Option<Vec<u8>>)> = sqlx::query_as(
                "SELECT kek_id, wrapped FROM vault.person_keys WHERE person_ref = $1",
            )
            .bind(person_ref)
            .fetch_optional(&self.inner.pool)
            .await?;
            match row {
                Some((Some(kek_id), Some(wrapped))) => {
                    let slot = [person_ref.as_bytes(), &[0], &wrapped].concat();
                    let cached = self.inner.unwrapped.lock().unwrap().get(&slot).cloned();
                    if let Some(key) = cached {
                        return Ok(Some(key));
                    }
                    // The context binds the wrapping to this person: a wrapped key
                    // copied onto another person's row does not unwrap.
                    let bytes = self
                        .inner
                        .keyring
                        .unwrap(&kek_id, &wrapped, &person_context(person_ref))
                        .await?;
                    let key = Arc::new(DataKey::new(&bytes)?);
                    let mut cache = self.inner.unwrapped.lock().unwrap();
                    if cache.len() >= CACHE_LIMIT {
                        cache.clear();
                    }
                    cache.insert(slot, key.clone());
                    return Ok(Some(key));
                }
                Some(_) => return Err(VaultError::Erased),
                None if !create => return Ok(None),
                None => {
                    let fresh = DataKey::generate()?;
                    let (kek_id, wrapped) = self
                        .inner
                        .keyring
                        .wrap(&fresh, &person_context(person_ref))
                        .await?;
                    // A concurrent first use may win; the loop then reads its key.
                    sqlx::query(
                        "INSERT INTO vault.person_keys (person_ref, kek_id, wrapped)
                         VALUES ($1, $2, $3) ON CONFLICT (person_ref) DO NOTHING",
                    )
                    .bind(person_ref)
                    .bind(&kek_id)
                    .bind(&wrapped)
                    .execute(&self.inner.pool)
                    .await?;
                }
            }
        }
        Err(VaultError::Key(anyhow::anyhow!(
            "the data key of a person could not be read back after it was made"
        )))
    }

    /// A vault secret (32 bytes), made on first use.
    async fn secret(&self, name: &str) -> Result<Vec<u8>, VaultError> {
        let ctx = secret_context(name);
        for _ in 0..2 {
            let row: Option<(String, Vec<u8>)> =
                sqlx::query_as("SELECT kek_id, wrapped FROM vault.secrets WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&self.inner.pool)
                    .await?;
            if let Some((kek_id, wrapped)) = row {
                return Ok(self.inner.keyring.unwrap(&kek_id, &wrapped, &ctx).await?);
            }
            let fresh = DataKey::generate()?;
            let (kek_id, wrapped) = self.inner.keyring.wrap(&fresh, &ctx).await?;
            sqlx::query(
                "INSERT INTO vault.secrets (name, kek_id, wrapped) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO NOTHING",
            )
            .bind(name)
            .bind(&kek_id)
            .bind(&wrapped)
            .execute(&self.inner.pool)
            .await?;
        }
        Err(VaultError::Key(anyhow::anyhow!(
            "vault secret {name} could not be read back after it was made"
        )))
    }
}
