//! JSON Web Signatures, keys and key sets, on `ring`: what careloop needs to sign its
//! own access tokens (ES256) and to verify tokens others sign (a hospital system's
//! SMART client assertions, RS384 or ES384; an OpenID provider's tokens, RS256 or
//! ES256).
//!
//! Only asymmetric algorithms are verified here (HS256 dev tokens are
//! [`crate::auth`]'s): a JWS names its `alg` in a header the sender controls, so the
//! key decides the algorithm family — a token is verified only with a key of the
//! same type and curve, and never with "none".

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};

/// A public JSON Web Key (RFC 7517): EC (P-256, P-384) or RSA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Jwk {
    pub kty: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alg: Option<String>,
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crv: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub y: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e: Option<String>,
    /// Private parts are refused: a JWKS given to careloop must be public.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub d: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

impl Jwks {
    /// The keys with this `kid`.
    pub fn with_kid<'a>(&'a self, kid: &'a str) -> impl Iterator<Item = &'a Jwk> + 'a {
        self.keys
            .iter()
            .filter(move |k| k.kid.as_deref() == Some(kid))
    }

    /// Checks that every key is a public signing key careloop can use.
    pub fn validate(&self) -> Result<(), String> {
        if self.keys.is_empty() {
            return Err("the key set has no keys".into());
        }
        for (i, k) in self.keys.iter().enumerate() {
            if k.d.is_some() {
                return Err(format!(
                    "keys[{i}] holds a private key; send only public keys"
                ));
            }
            if k.kid.as_deref().is_none_or(str::is_empty) {
                return Err(format!("keys[{i}] has no kid"));
            }
            k.verifier_kind().map_err(|e| format!("keys[{i}]: {e}"))?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Deserialize)]
pub struct Header {
    pub alg: String,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub typ: Option<String>,
    #[serde(default)]
    pub jku: Option<String>,
}

/// A compact JWS, split and decoded but not yet verified.
#[derive(Debug, Clone)]
pub struct Compact {
    pub header: Header,
    pub claims: serde_json::Value,
    signing_input: String,
    signature: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    P256,
    P384,
    Rsa,
}

impl Jwk {
    fn verifier_kind(&self) -> Result<KeyKind, String> {
        match (self.kty.as_str(), self.crv.as_deref()) {
            ("EC", Some("P-256")) if self.x.is_some() && self.y.is_some() => Ok(KeyKind::P256),
            ("EC", Some("P-384")) if self.x.is_some() && self.y.is_some() => Ok(KeyKind::P384),
            ("RSA", _) if self.n.is_some() && self.e.is_some() => Ok(KeyKind::Rsa),
            (kty, crv) => Err(format!(
                "unsupported key (kty {kty}, crv {})",
                crv.unwrap_or("none")
            )),
        }
    }

    fn b64(field: &Option<String>) -> Result<Vec<u8>, String> {
        B64.decode(field.as_deref().unwrap_or_default())
            .map_err(|_| "a key parameter is not base64url".to_string())
    }
}

/// Splits and decodes a compact JWS (`header.claims.signature`).
pub fn decode(token: &str) -> Result<Compact, String> {
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a compact JWS (three dot-separated parts)".into());
    };
    let header: Header = B64
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or("the JWS header is not valid")?;
    let claims: serde_json::Value = B64
        .decode(c)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .filter(|v: &serde_json::Value| v.is_object())
        .ok_or("the JWS claims are not a JSON object")?;
    let signature = B64
        .decode(s)
        .map_err(|_| "the JWS signature is not base64url")?;
    Ok(Compact {
        header,
        claims,
        signing_input: format!("{h}.{c}"),
        signature,
    })
}

impl Compact {
    /// Verifies the signature with `jwk`, whose key type and curve decide the
    /// algorithm; the header's `alg` must name that algorithm (or one of RS256/RS384
    /// for an RSA key) and be in `allowed`.
    pub fn verify(&self, jwk: &Jwk, allowed: &[&str]) -> Result<(), String> {
        let alg = self.header.alg.as_str();
        if !allowed.contains(&alg) {
            return Err(format!("alg {alg} is not accepted here"));
        }
        let kind = jwk.verifier_kind()?;
        let msg = self.signing_input.as_bytes();
        let sig = self.signature.as_slice();
        let point = || -> Result<Vec<u8>, String> {
            let mut p = vec![0x04];
            p.extend(Jwk::b64(&jwk.x)?);
            p.extend(Jwk::b64(&jwk.y)?);
            Ok(p)
        };
        let ok = match (kind, alg) {
            (KeyKind::P256, "ES256") => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point()?)
                    .verify(msg, sig)
            }
            (KeyKind::P384, "ES384") => {
                UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point()?)
                    .verify(msg, sig)
            }
            (KeyKind::Rsa, "RS256" | "RS384") => {
                let (n, e) = (Jwk::b64(&jwk.n)?, Jwk::b64(&jwk.e)?);
                let params = if alg == "RS256" {
                    &signature::RSA_PKCS1_2048_8192_SHA256
                } else {
                    &signature::RSA_PKCS1_2048_8192_SHA384
                };
                signature::RsaPublicKeyComponents { n: &n, e: &e }.verify(params, msg, sig)
            }
            _ => return Err(format!("alg {alg} does not fit the key")),
        };
        ok.map_err(|_| "the signature does not verify".to_string())
    }
}

/// careloop's own signing key: ECDSA P-256 (ES256), kept as PKCS#8.
pub struct SigningKey {
    pub kid: String,
    pair: EcdsaKeyPair,
    pkcs8: Vec<u8>,
}

impl SigningKey {
    /// A fresh key with a random `kid`.
    pub fn generate() -> Result<Self, String> {
        let rng = SystemRandom::new();
        let doc = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| "could not generate a key")?;
        let kid = {
            let mut b = [0u8; 12];
            ring::rand::SecureRandom::fill(&rng, &mut b).map_err(|_| "no randomness")?;
            B64.encode(b)
        };
        Self::from_pkcs8(kid, doc.as_ref().to_vec())
    }

    pub fn from_pkcs8(kid: String, pkcs8: Vec<u8>) -> Result<Self, String> {
        let pair = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &pkcs8,
            &SystemRandom::new(),
        )
        .map_err(|_| "not an ES256 PKCS#8 key")?;
        Ok(SigningKey { kid, pair, pkcs8 })
    }

    pub fn pkcs8(&self) -> &[u8] {
        &self.pkcs8
    }

    /// The public half as a JWK.
    pub fn public_jwk(&self) -> Jwk {
        let point = self.pair.public_key().as_ref();
        Jwk {
            kty: "EC".into(),
            kid: Some(self.kid.clone()),
            alg: Some("ES256".into()),
            use_: Some("sig".into()),
            crv: Some("P-256".into()),
            x: Some(B64.encode(&point[1..33])),
            y: Some(B64.encode(&point[33..65])),
            ..Default::default()
        }
    }

    /// A compact JWS over `claims` (`typ` JWT, or `at+jwt` for access tokens).
    pub fn sign(&self, typ: &str, claims: &serde_json::Value) -> Result<String, String> {
        let header = serde_json::json!({"alg": "ES256", "typ": typ, "kid": self.kid});
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let sig = self
            .pair
            .sign(&SystemRandom::new(), input.as_bytes())
            .map_err(|_| "signing failed")?;
        Ok(format!("{input}.{}", B64.encode(sig.as_ref())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_token_verifies_with_its_public_key_only() {
        let key = SigningKey::generate().unwrap();
        let token = key
            .sign("at+jwt", &serde_json::json!({"sub": "s", "exp": 1}))
            .unwrap();
        let jws = decode(&token).unwrap();
        assert_eq!(jws.header.kid.as_deref(), Some(key.kid.as_str()));
        assert!(jws.verify(&key.public_jwk(), &["ES256"]).is_ok());
        let other = SigningKey::generate().unwrap();
        assert!(jws.verify(&other.public_jwk(), &["ES256"]).is_err());
        assert!(
            jws.verify(&key.public_jwk(), &["RS384"]).is_err(),
            "alg allow-list"
        );
        let again = SigningKey::from_pkcs8(key.kid.clone(), key.pkcs8().to_vec()).unwrap();
        assert_eq!(again.public_jwk(), key.public_jwk());
        let mut tampered = token.clone();
        tampered.replace_range(tampered.len() - 4.., "AAAA");
        assert!(
            decode(&tampered)
                .unwrap()
                .verify(&key.public_jwk(), &["ES256"])
                .is_err()
        );
    }

    #[test]
    fn a_key_set_must_be_public_with_kids() {
        let key = SigningKey::generate().unwrap();
        let mut set = Jwks {
            keys: vec![key.public_jwk()],
        };
        assert!(set.validate().is_ok());
        set.keys[0].d = Some("secret".into());
        assert!(set.validate().is_err());
        set.keys[0].d = None;
        set.keys[0].kid = None;
        assert!(set.validate().is_err());
    }
}
