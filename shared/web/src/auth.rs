//! Who is calling: bearer tokens verified into a [`Principal`].
//!
//! Three kinds of token are accepted, each checked against its own signer:
//! - careloop's own access tokens (ES256, issued by the identity service to a
//!   hospital's SMART backend client or to a staff member's console session), verified
//!   with careloop's public keys ([`KeySource`]: the key store in-process, or the
//!   published JWKS);
//! - the OpenID provider's access tokens, for staff scripts, verified with the
//!   provider's JWKS; role, facility and peer come from configured claims;
//! - HS256 tokens signed with `CARELOOP_JWT_SECRET`, only when `CARELOOP_AUTH=dev`
//!   (`careloop token`).
//!
//! Every token must name its issuer, be unexpired, and carry the claims its role needs
//! (a hospital its facility, a peer their roster entry).

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::Problem;
use crate::jose;
use crate::jwks::{DiscoveredJwks, KeySource, RemoteJwks};

pub use careloop_access::{AccessDenied, Principal, Role};

impl From<AccessDenied> for Problem {
    fn from(e: AccessDenied) -> Self {
        Problem::forbidden(e.0)
    }
}

/// The audience of careloop's own access tokens.
pub const AUDIENCE: &str = "careloop";

/// How careloop's own tokens are recognised and checked.
pub struct Issuer {
    /// The `iss` of careloop's tokens: its public base URL.
    pub url: String,
    pub keys: Arc<dyn KeySource>,
}

/// Which claims of an OpenID provider's token say who a staff member is.
#[derive(Debug, Clone)]
pub struct ClaimNames {
    pub role: String,
    pub facility: String,
    pub peer_id: String,
    pub name: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        ClaimNames {
            role: "careloop_role".into(),
            facility: "careloop_facility".into(),
            peer_id: "careloop_peer_id".into(),
            name: "name".into(),
        }
    }
}

/// Staff scripts' tokens from the OpenID provider.
pub struct ProviderTokens {
    pub issuer: String,
    /// The `aud` the provider puts in access tokens for careloop's API.
    pub audience: String,
    /// The scope a provider token must carry to call careloop's API.
    pub api_scope: String,
    pub claims: ClaimNames,
    pub jwks: Box<dyn KeySource>,
}

pub struct Authenticator {
    dev_secret: Option<Vec<u8>>,
    issuer: Option<Issuer>,
    provider: Option<ProviderTokens>,
}

/// The scope a staff member's token carries: what their role allows, no more (the
/// role checks decide).
pub const STAFF_SCOPE: &str = "user/*.*";

impl Authenticator {
    /// The authenticator of a process with `settings`: careloop's own tokens verified
    /// with `keys` (the key store, when the identity service runs in the process; its
    /// published JWKS otherwise), the provider's tokens when one is configured, and
    /// dev tokens in dev mode only.
    pub fn from_settings(
        settings: &careloop_config::IdentitySettings,
        dev_secret: &str,
        keys: Option<Arc<dyn KeySource>>,
    ) -> Arc<Self> {
        let keys = keys.unwrap_or_else(|| Arc::new(RemoteJwks::new(settings.jwks_url.clone())));
        let provider = settings.oidc.as_ref().map(|o| ProviderTokens {
            issuer: o.issuer.clone(),
            audience: o.audience.clone(),
            api_scope: o.api_scope.clone(),
            claims: ClaimNames {
                role: o.role_claim.clone(),
                facility: o.facility_claim.clone(),
                peer_id: o.peer_claim.clone(),
                name: o.name_claim.clone(),
            },
            jwks: Box::new(DiscoveredJwks::new(o.issuer.clone())),
        });
        let dev = (settings.mode == careloop_config::AuthMode::Dev).then_some(dev_secret);
        Self::new(
            dev,
            Some(Issuer {
                url: settings.public_url.clone(),
                keys,
            }),
            provider,
        )
    }

    pub fn new(
        dev_secret: Option<&str>,
        issuer: Option<Issuer>,
        provider: Option<ProviderTokens>,
    ) -> Arc<Self> {
        Arc::new(Authenticator {
            dev_secret: dev_secret.map(|s| s.as_bytes().to_vec()),
            issuer,
            provider,
        })
    }

    /// Only HS256 dev tokens signed with `secret` (tests of other parts, `careloop token`).
    pub fn dev(secret: &str) -> Arc<Self> {
        Self::new(Some(secret), None, None)
    }

    pub fn issuer_url(&self) -> Option<&str> {
        self.issuer.as_ref().map(|i| i.url.as_str())
    }

    fn mac(&self) -> Option<Hmac<Sha256>> {
        self.dev_secret
            .as_ref()
            .map(|s| Hmac::<Sha256>::new_from_slice(s).expect("HMAC takes any key length"))
    }

    /// A dev token (HS256), only when dev tokens are accepted.
    pub fn sign_dev(&self, claims: &Principal) -> Option<String> {
        let mut mac = self.mac()?;
        let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let body = B64.encode(serde_json::to_vec(claims).expect("claims serialise"));
        let signing_input = format!("{header}.{body}");
        mac.update(signing_input.as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        Some(format!("{signing_input}.{sig}"))
    }

    /// A dev token for `role` valid for `ttl` (every scope of the role).
    pub fn issue(
        &self,
        role: Role,
        facility: Option<String>,
        peer_id: Option<String>,
        ttl: chrono::Duration,
    ) -> String {
        self.sign_dev(&Principal {
            // One dev account per role (and facility or peer): a renewed dev token is
            // the same person, as a renewed real one is.
            sub: match (&facility, &peer_id) {
                (Some(f), _) => format!("dev-{}-{f}", role.as_str()),
                (None, Some(p)) => format!("dev-{}-{p}", role.as_str()),
                (None, None) => format!("dev-{}", role.as_str()),
            },
            role,
            facility,
            peer_id,
            exp: (chrono::Utc::now() + ttl).timestamp(),
            scope: Some(dev_scope(role).into()),
            ..Default::default()
        })
        .expect("dev tokens are enabled")
    }

    /// Verifies `token` and returns who it speaks for.
    pub async fn verify(&self, token: &str) -> Result<Principal, String> {
        let jws = jose::decode(token)?;
        let iss = jws.claims.get("iss").and_then(|v| v.as_str());
        let principal = match (jws.header.alg.as_str(), iss) {
            ("HS256", _) => self.verify_dev(token)?,
            (_, Some(iss)) if Some(iss) == self.issuer_url() => self.verify_own(&jws).await?,
            (_, Some(iss)) if self.provider.as_ref().is_some_and(|p| p.issuer == iss) => {
                self.verify_provider(&jws).await?
            }
            (_, Some(iss)) => return Err(format!("tokens from {iss} are not accepted")),
            (_, None) => return Err("the token names no issuer (iss)".into()),
        };
        check_claims(&principal)?;
        Ok(principal)
    }

    fn verify_dev(&self, token: &str) -> Result<Principal, String> {
        let Some(mut mac) = self.mac() else {
            return Err("HS256 tokens are accepted only with CARELOOP_AUTH=dev".into());
        };
        let (input, sig) = token.rsplit_once('.').ok_or("token is not a JWT")?;
        let sig = B64
            .decode(sig)
            .map_err(|_| "token signature is not valid")?;
        mac.update(input.as_bytes());
        mac.verify_slice(&sig)
            .map_err(|_| "token signature does not verify")?;
        let body = input.split('.').nth(1).unwrap_or_default();
        let mut claims: Principal = B64
            .decode(body)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or("token claims are not valid (need sub, role, exp)")?;
        // Dev tokens made before scopes existed may do what their role may.
        claims
            .scope
            .get_or_insert_with(|| dev_scope(claims.role).into());
        Ok(claims)
    }

    async fn verify_own(&self, jws: &jose::Compact) -> Result<Principal, String> {
        let issuer = self.issuer.as_ref().expect("matched on the issuer");
        let key = one_key(issuer.keys.as_ref(), jws).await?;
        jws.verify(&key, &["ES256"])?;
        if !audience_has(&jws.claims, AUDIENCE) {
            return Err("the token is not for careloop (aud)".into());
        }
        serde_json::from_value(jws.claims.clone())
            .map_err(|_| "token claims are not valid (need sub, role, exp)".to_string())
    }

    async fn verify_provider(&self, jws: &jose::Compact) -> Result<Principal, String> {
        let p = self.provider.as_ref().expect("matched on the issuer");
        let key = one_key(p.jwks.as_ref(), jws).await?;
        jws.verify(&key, &["RS256", "RS384", "ES256", "ES384"])?;
        if !audience_has(&jws.claims, &p.audience) {
            return Err(format!("the token is not for {} (aud)", p.audience));
        }
        let claim = |name: &str| {
            jws.claims
                .get(name)
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let scopes = claim("scope").unwrap_or_default();
        if !scopes.split_whitespace().any(|s| s == p.api_scope) {
            return Err(format!(
                "the token does not carry the {} scope",
                p.api_scope
            ));
        }
        let role = claim(&p.claims.role)
            .ok_or_else(|| {
                format!(
                    "the token has no {} claim: ask an administrator to give you a careloop role",
                    p.claims.role
                )
            })?
            .parse::<Role>()?;
        Ok(Principal {
            sub: claim("sub").ok_or("the token has no sub")?,
            role,
            facility: claim(&p.claims.facility),
            peer_id: claim(&p.claims.peer_id),
            exp: jws.claims.get("exp").and_then(|v| v.as_i64()).unwrap_or(0),
            scope: Some(STAFF_SCOPE.into()),
            client_id: claim("client_id").or_else(|| claim("azp")),
            name: claim(&p.claims.name),
        })
    }
}

/// Every scope a dev token's role may use.
fn dev_scope(role: Role) -> &'static str {
    match role {
        Role::Hospital => "system/*.*",
        _ => STAFF_SCOPE,
    }
}

fn audience_has(claims: &serde_json::Value, audience: &str) -> bool {
    match claims.get("aud") {
        Some(serde_json::Value::String(a)) => a == audience,
        Some(serde_json::Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(audience)),
        _ => false,
    }
}

/// The one key the token's `kid` names.
async fn one_key(keys: &dyn KeySource, jws: &jose::Compact) -> Result<jose::Jwk, String> {
    let kid = jws
        .header
        .kid
        .as_deref()
        .ok_or("the token names no key (kid)")?;
    let mut found = keys.keys(kid).await?;
    match found.len() {
        1 => Ok(found.remove(0)),
        0 => Err("the token's key (kid) is not known".into()),
        _ => Err("the token's kid names more than one key".into()),
    }
}

/// Expiry, and the claims a role needs.
fn check_claims(claims: &Principal) -> Result<(), String> {
    if claims.exp < chrono::Utc::now().timestamp() {
        return Err("token has expired".into());
    }
    // A hospital without a facility or a peer without a peer_id would slip
    // through every per-facility and per-peer check.
    match claims.role {
        Role::Hospital if claims.facility.as_deref().is_none_or(str::is_empty) => {
            Err("a hospital token needs a facility claim".into())
        }
        Role::Peer if claims.peer_id.as_deref().is_none_or(str::is_empty) => {
            Err("a peer token needs a peer_id claim".into())
        }
        _ => Ok(()),
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

/// The bearer token of a request, if it has one.
pub fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        // The access layer verified the token already for this request.
        if let Some(p) = parts.extensions.get::<Authenticated>() {
            return Ok(p.clone());
        }
        let auth = parts
            .extensions
            .get::<Arc<Authenticator>>()
            .cloned()
            .ok_or_else(|| Problem::internal("no Authenticator in the router's extensions"))?;
        let token = bearer(parts).ok_or_else(|| {
            Problem::unauthorized("missing bearer token (Authorization: Bearer ...)")
        })?;
        auth.verify(token)
            .await
            .map(Authenticated)
            .map_err(Problem::unauthorized)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_signed_token_verifies_and_a_tampered_one_does_not() {
        let auth = Authenticator::dev("0123456789abcdef0123");
        let token = auth.issue(
            Role::Hospital,
            Some("st-marys".into()),
            None,
            chrono::Duration::hours(1),
        );
        let p = auth.verify(&token).await.unwrap();
        assert_eq!(p.role, Role::Hospital);
        assert_eq!(p.facility.as_deref(), Some("st-marys"));

        let other = Authenticator::dev("another-secret-0123456");
        assert!(other.verify(&token).await.is_err());

        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = B64.encode(br#"{"sub":"x","role":"admin","exp":99999999999}"#);
        parts[1] = &forged;
        assert!(auth.verify(&parts.join(".")).await.is_err());
        let no_dev = Authenticator::new(None, None, None);
        assert!(no_dev.verify(&token).await.is_err(), "HS256 only in dev");
    }

    #[tokio::test]
    async fn hospital_and_peer_tokens_need_their_scope_claim() {
        let auth = Authenticator::dev("0123456789abcdef0123");
        let hospital = auth.issue(Role::Hospital, None, None, chrono::Duration::hours(1));
        assert_eq!(
            auth.verify(&hospital).await.unwrap_err(),
            "a hospital token needs a facility claim"
        );
        let peer = auth.issue(Role::Peer, None, None, chrono::Duration::hours(1));
        assert_eq!(
            auth.verify(&peer).await.unwrap_err(),
            "a peer token needs a peer_id claim"
        );
    }

    #[tokio::test]
    async fn an_expired_token_is_refused() {
        let auth = Authenticator::dev("0123456789abcdef0123");
        let token = auth.issue(Role::Admin, None, None, chrono::Duration::seconds(-5));
        assert_eq!(auth.verify(&token).await.unwrap_err(), "token has expired");
    }

    #[tokio::test]
    async fn careloops_own_tokens_verify_with_its_keys_and_audience() {
        let key = jose::SigningKey::generate().unwrap();
        let jwks = jose::Jwks {
            keys: vec![key.public_jwk()],
        };
        let auth = Authenticator::new(
            None,
            Some(Issuer {
                url: "https://careloop.test".into(),
                keys: Arc::new(jwks),
            }),
            None,
        );
        let claims = |aud: &str| {
            serde_json::json!({"iss": "https://careloop.test", "aud": aud, "sub": "client-1",
                "role": "hospital", "facility": "st-marys", "scope": "system/Task.read",
                "exp": chrono::Utc::now().timestamp() + 60})
        };
        let token = key.sign("at+jwt", &claims(AUDIENCE)).unwrap();
        let p = auth.verify(&token).await.unwrap();
        assert_eq!(p.scope.as_deref(), Some("system/Task.read"));
        let elsewhere = key.sign("at+jwt", &claims("someone-else")).unwrap();
        assert!(auth.verify(&elsewhere).await.is_err());
        let stranger = jose::SigningKey::generate().unwrap();
        let forged = stranger.sign("at+jwt", &claims(AUDIENCE)).unwrap();
        assert!(auth.verify(&forged).await.is_err(), "unknown kid");
    }
}
