//! careloop's signing keys: ES256, rotating, sealed at rest.
//!
//! The newest key signs; a new one is made when it is older than the rotation period
//! (one process makes it, under an advisory lock). A key stays in the published JWKS
//! until every token it signed has expired. The private half is sealed with
//! AES-256-GCM under the key-encryption key (`CARELOOP_KEY_ENCRYPTION_KEY`), which
//! never enters the database, so a dump of the database signs nothing.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use careloop_web::jose::{Jwk, Jwks, SigningKey};
use careloop_web::jwks::KeySource;
use chrono::Utc;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use sqlx::PgPool;

/// The longest life of a token careloop signs.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(300);

/// How long the public keys are served from memory before the table is read again.
const CACHE: Duration = Duration::from_secs(15);

pub struct KeyStore {
    pool: PgPool,
    kek: LessSafeKey,
    rotation: Duration,
    cached: Mutex<Option<(Vec<Jwk>, Instant)>>,
}

impl KeyStore {
    pub fn new(pool: PgPool, kek: &[u8; 32], rotation: Duration) -> Self {
        let kek = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, kek).expect("32-byte key"));
        KeyStore {
            pool,
            kek,
            rotation,
            cached: Mutex::new(None),
        }
    }

    fn seal(&self, kid: &str, plain: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| anyhow::anyhow!("no randomness"))?;
        let mut sealed = plain.to_vec();
        self.kek
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(kid.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| anyhow::anyhow!("sealing a key failed"))?;
        Ok([nonce.as_slice(), &sealed].concat())
    }

    fn open(&self, kid: &str, sealed: &[u8]) -> anyhow::Result<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            anyhow::bail!("sealed key {kid} is too short");
        }
        let (nonce, rest) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).expect("nonce length");
        let mut buf = rest.to_vec();
        let plain = self
            .kek
            .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut buf)
            .map_err(|_| {
                anyhow::anyhow!(
                    "signing key {kid} does not open with CARELOOP_KEY_ENCRYPTION_KEY (was the key-encryption key changed?)"
                )
            })?;
        Ok(plain.to_vec())
    }

    /// The key to sign with now, making a new one when the newest is due.
    pub async fn signer(&self) -> anyhow::Result<SigningKey> {
        let current: Option<(String, Vec<u8>)> = sqlx::query_as(
            "SELECT kid, sealed_key FROM intake.signing_keys
             WHERE sign_until > now() ORDER BY created_at DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await?;
        if let Some((kid, sealed)) = current {
            let pkcs8 = self.open(&kid, &sealed)?;
            return SigningKey::from_pkcs8(kid, pkcs8).map_err(anyhow::Error::msg);
        }
        self.rotate().await
    }

    /// Makes a new signing key (unless another process just did).
    pub async fn rotate(&self) -> anyhow::Result<SigningKey> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended('careloop.signing-keys', 0))")
            .execute(&mut *tx)
            .await?;
        let fresh: Option<(String, Vec<u8>)> = sqlx::query_as(
            "SELECT kid, sealed_key FROM intake.signing_keys
             WHERE sign_until > now() + interval '1 minute' ORDER BY created_at DESC LIMIT 1",
        )
        .fetch_optional(&mut *tx)
        .await?;
        if let Some((kid, sealed)) = fresh {
            tx.commit().await?;
            let pkcs8 = self.open(&kid, &sealed)?;
            return SigningKey::from_pkcs8(kid, pkcs8).map_err(anyhow::Error::msg);
        }
        let key = SigningKey::generate().map_err(anyhow::Error::msg)?;
        let now = Utc::now();
        let sign_until = now + chrono::Duration::from_std(self.rotation)?;
        let publish_until = sign_until + chrono::Duration::from_std(MAX_TOKEN_TTL * 2)?;
        sqlx::query(
            "INSERT INTO intake.signing_keys (kid, sealed_key, public_jwk, created_at, sign_until,
                 publish_until)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(&key.kid)
        .bind(self.seal(&key.kid, key.pkcs8())?)
        .bind(serde_json::to_value(key.public_jwk())?)
        .bind(now)
        .bind(sign_until)
        .bind(publish_until)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(kid = %key.kid, "new signing key");
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = None;
        Ok(key)
    }

    /// The public keys tokens may be verified with now (careloop's JWKS).
    pub async fn jwks(&self) -> anyhow::Result<Jwks> {
        if let Some((keys, at)) = &*self.cached.lock().unwrap_or_else(|e| e.into_inner())
            && at.elapsed() < CACHE
        {
            return Ok(Jwks { keys: keys.clone() });
        }
        let rows: Vec<serde_json::Value> = sqlx::query_scalar(
            "SELECT public_jwk FROM intake.signing_keys WHERE publish_until > now()
             ORDER BY created_at DESC",
        )
        .fetch_all(&self.pool)
        .await?;
        let keys: Vec<Jwk> = rows
            .into_iter()
            .filter_map(|v| serde_json::from_value(v).ok())
            .collect();
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((keys.clone(), Instant::now()));
        Ok(Jwks { keys })
    }
}

#[async_trait::async_trait]
impl KeySource for KeyStore {
    async fn keys(&self, kid: &str) -> Result<Vec<Jwk>, String> {
        let mut jwks = self.jwks().await.map_err(|e| format!("{e:#}"))?;
        if jwks.with_kid(kid).next().is_none() {
            // A key made by another process since the cache was filled.
            *self.cached.lock().unwrap_or_else(|e| e.into_inner()) = None;
            jwks = self.jwks().await.map_err(|e| format!("{e:#}"))?;
        }
        Ok(jwks.with_kid(kid).cloned().collect())
    }
}
