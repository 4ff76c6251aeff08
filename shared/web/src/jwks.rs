//! Key sets fetched over HTTP and cached: an OpenID provider's JWKS, a hospital
//! system's registered JWKS URL, careloop's own JWKS seen from another process.
//!
//! A key set is fetched on first use and kept; a token signed with a `kid` the cache
//! does not hold makes it fetch again (the signer rotated its keys), at most once per
//! [`MIN_REFRESH`], so tokens with made-up kids cannot make careloop hammer the
//! signer. A signer that cannot be reached leaves the cached keys in use.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::jose::{Jwk, Jwks};

/// The least time between two fetches of one key set.
pub const MIN_REFRESH: Duration = Duration::from_secs(10);

/// Where careloop finds the public key a token was signed with.
#[async_trait::async_trait]
pub trait KeySource: Send + Sync + 'static {
    /// The keys with `kid` (more than one is the key set's fault: callers refuse).
    async fn keys(&self, kid: &str) -> Result<Vec<Jwk>, String>;
}

pub struct RemoteJwks {
    url: String,
    http: reqwest::Client,
    cached: Mutex<Option<(Jwks, Instant)>>,
}

impl RemoteJwks {
    pub fn new(url: impl Into<String>) -> Self {
        RemoteJwks {
            url: url.into(),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(5))
                .build()
                .expect("HTTP client"),
            cached: Mutex::new(None),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Fetches the key set now.
    pub async fn fetch(&self) -> Result<Jwks, String> {
        let res = self
            .http
            .get(&self.url)
            .send()
            .await
            .map_err(|e| format!("could not fetch the key set at {}: {e}", self.url))?;
        if !res.status().is_success() {
            return Err(format!(
                "the key set at {} answered {}",
                self.url,
                res.status()
            ));
        }
        let jwks: Jwks = res
            .json()
            .await
            .map_err(|e| format!("the key set at {} is not a JWKS: {e}", self.url))?;
        *self.cached.lock().unwrap_or_else(|e| e.into_inner()) =
            Some((jwks.clone(), Instant::now()));
        Ok(jwks)
    }

    fn lookup(&self, kid: &str) -> (Option<Vec<Jwk>>, bool) {
        let cached = self.cached.lock().unwrap_or_else(|e| e.into_inner());
        match &*cached {
            None => (None, true),
            Some((jwks, at)) => {
                let found: Vec<Jwk> = jwks.with_kid(kid).cloned().collect();
                let may_refresh = at.elapsed() >= MIN_REFRESH;
                ((!found.is_empty()).then_some(found), may_refresh)
            }
        }
    }
}

#[async_trait::async_trait]
impl KeySource for RemoteJwks {
    async fn keys(&self, kid: &str) -> Result<Vec<Jwk>, String> {
        let (found, may_refresh) = self.lookup(kid);
        if let Some(keys) = found {
            return Ok(keys);
        }
        if !may_refresh {
            return Ok(Vec::new());
        }
        let jwks = self.fetch().await?;
        Ok(jwks.with_kid(kid).cloned().collect())
    }
}

/// A fixed key set (tests, and a JWKS registered inline).
#[async_trait::async_trait]
impl KeySource for Jwks {
    async fn keys(&self, kid: &str) -> Result<Vec<Jwk>, String> {
        Ok(self.with_kid(kid).cloned().collect())
    }
}

/// What an OpenID provider publishes at `/.well-known/openid-configuration`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct ProviderMetadata {
    pub issuer: String,
    pub authorization_endpoint: String,
    pub token_endpoint: String,
    pub jwks_uri: String,
    #[serde(default)]
    pub end_session_endpoint: Option<String>,
}

/// Fetches an OpenID provider's metadata, checking that it names `issuer`.
pub async fn discover(issuer: &str) -> Result<ProviderMetadata, String> {
    let url = format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    );
    let meta: ProviderMetadata = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("HTTP client")
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("the OpenID provider at {url} cannot be reached: {e}"))?
        .error_for_status()
        .map_err(|e| format!("the OpenID provider at {url} answered {e}"))?
        .json()
        .await
        .map_err(|e| format!("the OpenID provider's metadata at {url} is not valid: {e}"))?;
    if meta.issuer.trim_end_matches('/') != issuer.trim_end_matches('/') {
        return Err(format!(
            "the OpenID provider at {url} names another issuer ({})",
            meta.issuer
        ));
    }
    Ok(meta)
}

/// A provider's key set found through its discovery document, on first use (so a
/// process starts while the provider is away, and finds its keys once it answers).
pub struct DiscoveredJwks {
    issuer: String,
    jwks: tokio::sync::OnceCell<RemoteJwks>,
}

impl DiscoveredJwks {
    pub fn new(issuer: impl Into<String>) -> Self {
        DiscoveredJwks {
            issuer: issuer.into(),
            jwks: tokio::sync::OnceCell::new(),
        }
    }
}

#[async_trait::async_trait]
impl KeySource for DiscoveredJwks {
    async fn keys(&self, kid: &str) -> Result<Vec<Jwk>, String> {
        let jwks = self
            .jwks
            .get_or_try_init(|| async {
                discover(&self.issuer)
                    .await
                    .map(|m| RemoteJwks::new(m.jwks_uri))
            })
            .await?;
        jwks.keys(kid).await
    }
}
