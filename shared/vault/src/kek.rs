//! The key-encryption key (KEK): it wraps data keys and never enters the database.
//!
//! [`KeyEncryptionKey`] is the interface a key-management service implements (wrap and
//! unwrap a key, with a context the wrapping is bound to); [`LocalKek`] is the one
//! implementation here, AES-256-GCM under 32 bytes from `CARELOOP_KEY_ENCRYPTION_KEY`
//! (or its `_FILE`). A [`Keyring`] holds the current KEK, which wraps everything new,
//! and the previous ones, which still unwrap what they wrapped until
//! `careloop vault rewrap` has moved it under the current one.

use std::sync::Arc;

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// A key-encryption key: wraps and unwraps other keys. A KMS-backed implementation
/// calls its service here; `context` must be bound into the wrapping (AES-GCM
/// associated data, a KMS encryption context) so a wrapped key moved to another row
/// does not unwrap.
#[async_trait::async_trait]
pub trait KeyEncryptionKey: Send + Sync {
    /// A stable, non-secret name of this key, stored beside what it wrapped.
    fn id(&self) -> &str;
    async fn wrap(&self, key: &[u8], context: &[u8]) -> anyhow::Result<Vec<u8>>;
    async fn unwrap(&self, wrapped: &[u8], context: &[u8]) -> anyhow::Result<Vec<u8>>;
}

/// A KEK held by this process: 32 bytes given in the environment or a file.
pub struct LocalKek {
    id: String,
    key: LessSafeKey,
}

impl LocalKek {
    pub fn new(key: &[u8; 32]) -> Self {
        // The id is a keyed digest of a fixed label: it tells keys apart and reveals
        // nothing of them.
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, key),
            b"careloop key-encryption key id",
        );
        let id = tag.as_ref()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>();
        LocalKek {
            id: format!("local:{id}"),
            key: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("32-byte key")),
        }
    }
}

#[async_trait::async_trait]
impl KeyEncryptionKey for LocalKek {
    fn id(&self) -> &str {
        &self.id
    }

    async fn wrap(&self, key: &[u8], context: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| anyhow::anyhow!("no randomness"))?;
        let mut sealed = key.to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context),
                &mut sealed,
            )
            .map_err(|_| anyhow::anyhow!("wrapping a key failed"))?;
        Ok([nonce.as_slice(), &sealed].concat())
    }

    async fn unwrap(&self, wrapped: &[u8], context: &[u8]) -> anyhow::Result<Vec<u8>> {
        if wrapped.len() < NONCE_LEN {
            anyhow::bail!("a wrapped key is too short");
        }
        let (nonce, rest) = wrapped.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).expect("nonce length");
        let mut buf = rest.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context), &mut buf)
            .map_err(|_| {
                anyhow::anyhow!(
                    "a wrapped key does not unwrap under {} (tampered, or moved from another row)",
                    self.id
                )
            })?;
        Ok(plain.to_vec())
    }
}

/// The current KEK and the previous ones still accepted for unwrapping.
#[derive(Clone)]
pub struct Keyring {
    current: Arc<dyn KeyEncryptionKey>,
    previous: Vec<Arc<dyn KeyEncryptionKey>>,
}

impl Keyring {
    pub fn new(current: Arc<dyn KeyEncryptionKey>) -> Self {
        Keyring {
            current,
            previous: vec![],
        }
    }

    /// Local keys: the current one, then those it replaced.
    pub fn local(current: &[u8; 32], previous: &[[u8; 32]]) -> Self {
        let mut ring = Keyring::new(Arc::new(LocalKek::new(current)));
        for key in previous {
            ring = ring.with_previous(Arc::new(LocalKek::new(key)));
        }
        ring
    }

    /// The keys the settings name (`CARELOOP_KEY_ENCRYPTION_KEY`, in dev mode its
    /// default, and `CARELOOP_PREVIOUS_KEY_ENCRYPTION_KEYS`).
    pub fn from_settings(settings: &careloop_config::IdentitySettings) -> Self {
        Keyring::local(
            &settings.key_encryption_key_or_dev(),
            &settings.previous_key_encryption_keys(),
        )
    }

    pub fn with_previous(mut self, key: Arc<dyn KeyEncryptionKey>) -> Self {
        self.previous.push(key);
        self
    }

    pub fn current(&self) -> &dyn KeyEncryptionKey {
        self.current.as_ref()
    }

    /// The KEK named `id`, current or previous.
    pub fn find(&self, id: &str) -> anyhow::Result<&dyn KeyEncryptionKey> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id() == id)
            .map(|k| k.as_ref())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "a key was wrapped under key-encryption key {id}, which is not configured: give it in CARELOOP_PREVIOUS_KEY_ENCRYPTION_KEYS until `careloop vault rewrap` has run"
                )
            })
    }

    pub async fn wrap(&self, key: &[u8], context: &[u8]) -> anyhow::Result<(String, Vec<u8>)> {
        let wrapped = self.current.wrap(key, context).await?;
        Ok((self.current.id().to_string(), wrapped))
    }

    pub async fn unwrap(
        &self,
        id: &str,
        wrapped: &[u8],
        context: &[u8],
    ) -> anyhow::Result<Vec<u8>> {
        self.find(id)?.unwrap(wrapped, context).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_wrapped_key_unwraps_only_under_its_kek_and_context() {
        let old = Keyring::local(&[1; 32], &[]);
        let (id, wrapped) = old.wrap(&[7; 32], b"person:a").await.unwrap();
        assert_eq!(
            old.unwrap(&id, &wrapped, b"person:a").await.unwrap(),
            vec![7; 32]
        );
        // Moved to another person's row: refused.
        assert!(old.unwrap(&id, &wrapped, b"person:b").await.is_err());
        // A new KEK alone does not know the old one; with it as previous it does.
        let new = Keyring::local(&[2; 32], &[]);
        assert!(new.unwrap(&id, &wrapped, b"person:a").await.is_err());
        let rotated = Keyring::local(&[2; 32], &[[1; 32]]);
        assert_eq!(
            rotated.unwrap(&id, &wrapped, b"person:a").await.unwrap(),
            vec![7; 32]
        );
        assert_ne!(rotated.current().id(), id, "each KEK has its own id");
    }
}
