//! How callers prove who they are: careloop's own tokens (issuer, keys), the staff's
//! OpenID provider, sessions, and the dev mode.

use std::time::Duration;

/// `CARELOOP_AUTH`: `standard` (SMART backend services for hospitals, OpenID Connect
/// for staff) or `dev` (also accepts HS256 tokens from `careloop token` and offers a
/// pick-a-demo-person sign-in; never outside a laptop).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    Standard,
    Dev,
}

/// The staff's OpenID Connect provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcSettings {
    /// `CARELOOP_OIDC_ISSUER`: the provider's issuer URL (discovery at
    /// `/.well-known/openid-configuration`).
    pub issuer: String,
    /// `CARELOOP_OIDC_CLIENT_ID` / `CARELOOP_OIDC_CLIENT_SECRET`: the console's
    /// registration at the provider (authorization code with PKCE).
    pub client_id: String,
    pub client_secret: String,
    /// `CARELOOP_OIDC_SCOPES`: what the console asks for at sign-in.
    pub scopes: String,
    /// `CARELOOP_OIDC_AUDIENCE`: the `aud` of the provider's access tokens for
    /// careloop's API (staff scripts).
    pub audience: String,
    /// `CARELOOP_OIDC_API_SCOPE`: the scope such a token must carry.
    pub api_scope: String,
    /// `CARELOOP_OIDC_ROLE_CLAIM`, `_FACILITY_CLAIM`, `_PEER_CLAIM`, `_NAME_CLAIM`.
    pub role_claim: String,
    pub facility_claim: String,
    pub peer_claim: String,
    pub name_claim: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentitySettings {
    pub mode: AuthMode,
    /// `CARELOOP_PUBLIC_URL`: the base URL clients use (the issuer of careloop's
    /// tokens; the SMART token endpoint is `<this>/auth/token`).
    pub public_url: String,
    /// `CARELOOP_JWKS_URL`: where a process without the identity service finds
    /// careloop's public keys.
    pub jwks_url: String,
    /// `CARELOOP_KEY_ENCRYPTION_KEY` (base64 of 32 bytes) or `_FILE`: wraps the
    /// signing keys of the identity service and the PHI vault's data keys at rest.
    pub key_encryption_key: Option<Vec<u8>>,
    /// `CARELOOP_PREVIOUS_KEY_ENCRYPTION_KEYS` (comma-separated base64, or `_FILE`):
    /// key-encryption keys replaced by the current one, still accepted for unwrapping
    /// until `careloop vault rewrap` has re-wrapped everything under the current one.
    pub previous_key_encryption_keys: Vec<Vec<u8>>,
    pub oidc: Option<OidcSettings>,
    /// `CARELOOP_SESSION_IDLE_MINUTES`: a console session unused this long ends.
    pub session_idle: Duration,
    /// `CARELOOP_SIGNING_KEY_ROTATION_HOURS`: a new signing key this often.
    pub key_rotation: Duration,
}

/// The key-encryption key `careloop dev` uses when none is given (with a warning).
pub const DEV_KEY_ENCRYPTION_KEY: [u8; 32] = *b"careloop-dev-kek-never-in-prod!!";

impl IdentitySettings {
    /// The key-encryption key in force: the one configured; in dev mode without one,
    /// [`DEV_KEY_ENCRYPTION_KEY`]. Outside dev mode without one, a random key (which
    /// seals nothing anyone can open again): the binaries refuse to start that way
    /// before anything is sealed (`check_auth_settings`).
    pub fn key_encryption_key_or_dev(&self) -> [u8; 32] {
        match (&self.key_encryption_key, self.mode) {
            (Some(k), _) => k.as_slice().try_into().expect("settings checked 32 bytes"),
            (None, AuthMode::Dev) => DEV_KEY_ENCRYPTION_KEY,
            (None, AuthMode::Standard) => {
                let mut k = [0u8; 32];
                ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut k)
                    .expect("randomness");
                k
            }
        }
    }

    /// The key-encryption keys replaced by the current one.
    pub fn previous_key_encryption_keys(&self) -> Vec<[u8; 32]> {
        self.previous_key_encryption_keys
            .iter()
            .map(|k| k.as_slice().try_into().expect("settings checked 32 bytes"))
            .collect()
    }
}
