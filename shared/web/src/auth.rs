//! Bearer-token authentication: HS256 JWTs signed with `CARELOOP_JWT_SECRET`, carrying
//! a role and, for hospitals, a `facility` claim and, for peers, a `peer_id` claim.
//!
//! HS256 is small enough to do with `hmac` + `sha2` (which the webhook signatures need
//! anyway) instead of a JWT crate that would pull a second crypto stack into the build.
//! Verification compares the MAC in constant time (`verify_slice`).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::Problem;

pub use careloop_access::{AccessDenied, Principal, Role};

impl From<AccessDenied> for Problem {
    fn from(e: AccessDenied) -> Self {
        Problem::forbidden(e.0)
    }
}

/// Signs and verifies tokens. Put one in the router's extensions
/// (`Extension(Arc<Authenticator>)`) and handlers extract [`Principal`].
pub struct Authenticator {
    secret: Vec<u8>,
}

impl Authenticator {
    pub fn new(secret: &str) -> Arc<Self> {
        Arc::new(Authenticator {
            secret: secret.as_bytes().to_vec(),
        })
    }

    fn mac(&self) -> Hmac<Sha256> {
        Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes any key length")
    }

    pub fn sign(&self, claims: &Principal) -> String {
        let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let body = B64.encode(serde_json::to_vec(claims).expect("claims serialise"));
        let signing_input = format!("{header}.{body}");
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{sig}")
    }

    pub fn verify(&self, token: &str) -> Result<Principal, &'static str> {
        let mut parts = token.split('.');
        let (Some(h), Some(b), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("token is not a JWT");
        };
        let header: serde_json::Value = B64
            .decode(h)
            .ok()
            .and_then(|h| serde_json::from_slice(&h).ok())
            .ok_or("token header is not valid")?;
        if header.get("alg").and_then(|a| a.as_str()) != Some("HS256") {
            return Err("token must be signed with HS256");
        }
        let sig = B64.decode(s).map_err(|_| "token signature is not valid")?;
        let mut mac = self.mac();
        mac.update(h.as_bytes());
        mac.update(b".");
        mac.update(b.as_bytes());
        mac.verify_slice(&sig)
            .map_err(|_| "token signature does not verify")?;
        let claims: Principal = B64
            .decode(b)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or("token claims are not valid (need sub, role, exp)")?;
        if claims.exp < chrono::Utc::now().timestamp() {
            return Err("token has expired");
        }
        // A hospital without a facility or a peer without a peer_id would slip
        // through every per-facility and per-peer check.
        match claims.role {
            Role::Hospital if claims.facility.as_deref().is_none_or(str::is_empty) => {
                return Err("a hospital token needs a facility claim");
            }
            Role::Peer if claims.peer_id.as_deref().is_none_or(str::is_empty) => {
                return Err("a peer token needs a peer_id claim");
            }
            _ => {}
        }
        Ok(claims)
    }

    /// A token for `role` valid for `ttl`.
    pub fn issue(
        &self,
        role: Role,
        facility: Option<String>,
        peer_id: Option<String>,
        ttl: chrono::Duration,
    ) -> String {
        self.sign(&Principal {
            sub: format!(
                "{}-{}",
                role.as_str(),
                &uuid::Uuid::new_v4().to_string()[..8]
            ),
            role,
            facility,
            peer_id,
            exp: (chrono::Utc::now() + ttl).timestamp(),
        })
    }
}

/// The extractor of a request's verified [`Principal`] (a newtype, since the
/// principal type lives in `careloop-access`); derefs to the principal.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Principal);

impl std::ops::Deref for Authenticated {
    type Target = Principal;
    fn deref(&self) -> &Principal {
        &self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let auth = parts
            .extensions
            .get::<Arc<Authenticator>>()
            .ok_or_else(|| Problem::internal("no Authenticator in the router's extensions"))?;
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                Problem::unauthorized("missing bearer token (Authorization: Bearer ...)")
            })?;
        auth.verify(token.trim())
            .map(Authenticated)
            .map_err(Problem::unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_token_verifies_and_a_tampered_one_does_not() {
        let auth = Authenticator::new("0123456789abcdef0123");
        let token = auth.issue(
            Role::Hospital,
            Some("st-marys".into()),
            None,
            chrono::Duration::hours(1),
        );
        let p = auth.verify(&token).unwrap();
        assert_eq!(p.role, Role::Hospital);
        assert_eq!(p.facility.as_deref(), Some("st-marys"));

        let other = Authenticator::new("another-secret-0123456");
        assert!(other.verify(&token).is_err());

        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = B64.encode(br#"{"sub":"x","role":"admin","exp":99999999999}"#);
        parts[1] = &forged;
        assert!(auth.verify(&parts.join(".")).is_err());
    }

    #[test]
    fn hospital_and_peer_tokens_need_their_scope_claim() {
        let auth = Authenticator::new("0123456789abcdef0123");
        let hospital = auth.issue(Role::Hospital, None, None, chrono::Duration::hours(1));
        assert_eq!(
            auth.verify(&hospital).unwrap_err(),
            "a hospital token needs a facility claim"
        );
        let peer = auth.issue(Role::Peer, None, None, chrono::Duration::hours(1));
        assert_eq!(
            auth.verify(&peer).unwrap_err(),
            "a peer token needs a peer_id claim"
        );
    }

    #[test]
    fn an_expired_token_is_refused() {
        let auth = Authenticator::new("0123456789abcdef0123");
        let token = auth.issue(Role::Admin, None, None, chrono::Duration::seconds(-5));
        assert_eq!(auth.verify(&token).unwrap_err(), "token has expired");
    }
}
