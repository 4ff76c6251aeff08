//! careloop's own access tokens: ES256, at most five minutes, for a hospital's SMART
//! backend client or a staff member's console session.

use std::sync::Arc;

use careloop_access::Principal;
use careloop_web::auth::AUDIENCE;
use chrono::Utc;

use crate::keys::{KeyStore, MAX_TOKEN_TTL};

#[derive(Clone)]
pub struct TokenIssuer {
    pub keys: Arc<KeyStore>,
    /// The `iss` (careloop's public base URL).
    pub issuer: String,
}

/// A token issued, as the token endpoint answers it.
pub struct Issued {
    pub access_token: String,
    pub expires_in: i64,
}

impl TokenIssuer {
    /// A token for `who` (its `exp` is set here), valid for `ttl` at most five minutes.
    pub async fn issue(&self, who: &Principal, ttl: std::time::Duration) -> anyhow::Result<Issued> {
        let ttl = ttl.min(MAX_TOKEN_TTL);
        let now = Utc::now();
        let exp = now.timestamp() + ttl.as_secs() as i64;
        let mut claims = serde_json::to_value(Principal { exp, ..who.clone() })?;
        let extra = serde_json::json!({
            "iss": self.issuer,
            "aud": AUDIENCE,
            "iat": now.timestamp(),
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        for (k, v) in extra.as_object().expect("an object") {
            claims[k] = v.clone();
        }
        let key = self.keys.signer().await?;
        let access_token = key.sign("at+jwt", &claims).map_err(anyhow::Error::msg)?;
        Ok(Issued {
            access_token,
            expires_in: ttl.as_secs() as i64,
        })
    }
}
