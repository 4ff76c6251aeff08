//! One field sealed under one person's data key: AES-256-GCM with a random 96-bit
//! nonce, the person's reference as associated data, written as
//! `sealed:v1:<base64 of nonce, ciphertext and tag>` so a sealed value is a string
//! wherever the clear one was (a JSON field, a text column).

use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

const PREFIX: &str = "sealed:v1:";

/// Whether `value` is a sealed value (not a clear one).
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(PREFIX)
}

/// A person's data key, unwrapped, in memory only.
pub struct DataKey(LessSafeKey);

impl DataKey {
    pub fn new(key: &[u8]) -> anyhow::Result<Self> {
        let key = UnboundKey::new(&AES_256_GCM, key)
            .map_err(|_| anyhow::anyhow!("a data key must be 32 bytes"))?;
        Ok(DataKey(LessSafeKey::new(key)))
    }

    /// 32 fresh random bytes.
    pub fn generate() -> anyhow::Result<[u8; 32]> {
        let mut key = [0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| anyhow::anyhow!("no randomness"))?;
        Ok(key)
    }

    /// `plain` sealed for the person `person_ref`.
    pub fn seal(&self, person_ref: &str, plain: &str) -> anyhow::Result<String> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| anyhow::anyhow!("no randomness"))?;
        let mut buf = plain.as_bytes().to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(person_ref.as_bytes()),
                &mut buf,
            )
            .map_err(|_| anyhow::anyhow!("sealing failed"))?;
        Ok(format!(
            "{PREFIX}{}",
            STANDARD_NO_PAD.encode([nonce.as_slice(), &buf].concat())
        ))
    }

    /// The clear value of `sealed`, which must have been sealed for `person_ref`.
    pub fn open(&self, person_ref: &str, sealed: &str) -> anyhow::Result<String> {
        let body = sealed
            .strip_prefix(PREFIX)
            .ok_or_else(|| anyhow::anyhow!("not a sealed value"))?;
        let bytes = STANDARD_NO_PAD
            .decode(body)
            .map_err(|_| anyhow::anyhow!("a sealed value is not base64"))?;
        if bytes.len() < NONCE_LEN {
            anyhow::bail!("a sealed value is too short");
        }
        let (nonce, rest) = bytes.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).expect("nonce length");
        let mut buf = rest.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(person_ref.as_bytes()), &mut buf)
            .map_err(|_| anyhow::anyhow!("a sealed value does not open for this person"))?;
        Ok(String::from_utf8(plain.to_vec())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_only_for_its_person_and_hides_the_clear_text() {
        let key = DataKey::new(&DataKey::generate().unwrap()).unwrap();
        let sealed = key.seal("p1", "Zebulon Quixote").unwrap();
        assert!(is_sealed(&sealed));
        assert!(!sealed.contains("Zebulon"));
        assert_ne!(
            sealed,
            key.seal("p1", "Zebulon Quixote").unwrap(),
            "fresh nonce"
        );
        assert_eq!(key.open("p1", &sealed).unwrap(), "Zebulon Quixote");
        assert!(key.open("p2", &sealed).is_err(), "bound to the person");
        let other = DataKey::new(&DataKey::generate().unwrap()).unwrap();
        assert!(
            other.open("p1", &sealed).is_err(),
            "another key does not open it"
        );
    }
}
