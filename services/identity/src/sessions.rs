//! Console sessions: how a staff member signs in, stays signed in, and signs out.
//!
//! Sign-in is OpenID Connect with the organisation's provider (authorization code with
//! PKCE, `/session/login` → provider → `/session/callback`), or, only with
//! `CARELOOP_AUTH=dev`, picking a demo person (`/session/dev`). Either way careloop
//! keeps a session whose random token is the `careloop_session` cookie (HttpOnly,
//! SameSite=Strict, Secure outside dev; the table keeps only its hash). The console
//! asks `POST /session/token` for a short-lived careloop access token and calls the
//! API with it like any other client, so the API knows no cookie and no CSRF can
//! reach it; the cookie-authenticated session routes that change something require
//! the session's CSRF token in `X-CSRF-Token` and a same-origin `Origin`. A session
//! unused (no token asked while the person is active) for the idle time ends.
//! Sign-in, failed sign-in and sign-out go to the audit log.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use careloop_access::{Principal, Role};
use careloop_config::{AuthMode, IdentitySettings, OidcSettings};
use careloop_web::auth::STAFF_SCOPE;
use careloop_web::jose;
use careloop_web::jwks::{DiscoveredJwks, KeySource, ProviderMetadata, discover};
use careloop_web::{Problem, RouteRule};
use chrono::{DateTime, Utc};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::audit::{Audit, ClientAddress, Entry};
use crate::staff::{self, Account};
use crate::tokens::TokenIssuer;

pub const COOKIE: &str = "careloop_session";
const SIGN_IN_COOKIE: &str = "careloop_sign_in";
/// The longest a session lasts, however active.
const ABSOLUTE: Duration = Duration::from_secs(12 * 3600);
/// How long a console access token lives.
const CONSOLE_TOKEN_TTL: Duration = Duration::from_secs(300);
/// The console's client id in the tokens it gets.
pub const CONSOLE_CLIENT: &str = "careloop-console";

/// The access rules: the session routes authenticate by their cookie themselves.
pub const RULES: &[RouteRule] = &[
    RouteRule::open("GET", "/session"),
    RouteRule::open("POST", "/session/token"),
    RouteRule::open("POST", "/session/logout"),
    RouteRule::open("GET", "/session/login"),
    RouteRule::open("GET", "/session/callback"),
    RouteRule::open("GET", "/session/dev-people"),
    RouteRule::open("POST", "/session/dev"),
];

#[derive(Clone)]
pub struct Sessions {
    pub pool: PgPool,
    pub settings: IdentitySettings,
    pub tokens: TokenIssuer,
    pub audit: Audit,
    provider: Arc<tokio::sync::OnceCell<ProviderMetadata>>,
    provider_keys: Arc<Option<DiscoveredJwks>>,
    http: reqwest::Client,
}

/// A signed-in staff member.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Session {
    #[serde(skip)]
    pub id_hash: String,
    pub sub: String,
    pub name: Option<String>,
    pub role: String,
    pub facility: Option<String>,
    pub peer_id: Option<String>,
    #[serde(skip)]
    pub csrf: String,
    #[serde(skip)]
    pub id_token: Option<String>,
    #[serde(skip)]
    pub last_active_at: DateTime<Utc>,
    #[serde(skip)]
    pub expires_at: DateTime<Utc>,
}

impl Session {
    pub fn principal(&self) -> Principal {
        Principal {
            sub: self.sub.clone(),
            role: self.role.parse().unwrap_or_default(),
            facility: self.facility.clone(),
            peer_id: self.peer_id.clone(),
            exp: 0,
            scope: Some(STAFF_SCOPE.into()),
            client_id: Some(CONSOLE_CLIENT.into()),
            name: self.name.clone(),
        }
    }
}

fn random(n: usize) -> String {
    let mut b = vec![0u8; n];
    SystemRandom::new().fill(&mut b).expect("randomness");
    B64.encode(b)
}

fn hash(token: &str) -> String {
    format!("{:x}", Sha256::digest(token.as_bytes()))
}

fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

impl Sessions {
    pub fn new(
        pool: PgPool,
        settings: IdentitySettings,
        tokens: TokenIssuer,
        audit: Audit,
    ) -> Self {
        let provider_keys = settings
            .oidc
            .as_ref()
            .map(|o| DiscoveredJwks::new(o.issuer.clone()));
        Sessions {
            pool,
            settings,
            tokens,
            audit,
            provider: Default::default(),
            provider_keys: Arc::new(provider_keys),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("HTTP client"),
        }
    }

    fn dev(&self) -> bool {
        self.settings.mode == AuthMode::Dev
    }

    fn set_cookie(
        &self,
        name: &str,
        value: &str,
        same_site: &str,
        max_age: Option<i64>,
    ) -> HeaderValue {
        let secure = if self.dev() { "" } else { "; Secure" };
        let age = max_age
            .map(|a| format!("; Max-Age={a}"))
            .unwrap_or_default();
        HeaderValue::from_str(&format!(
            "{name}={value}; Path=/; HttpOnly; SameSite={same_site}{secure}{age}"
        ))
        .expect("cookie value is ASCII")
    }

    /// The session a request's cookie names, if it is still alive.
    pub async fn current(&self, headers: &HeaderMap) -> Result<Option<Session>, Problem> {
        let Some(token) = cookie_value(headers, COOKIE) else {
            return Ok(None);
        };
        let session: Option<Session> = sqlx::query_as(
            "SELECT id_hash, sub, name, role, facility, peer_id, csrf, id_token, last_active_at,
                    expires_at
             FROM intake.sessions WHERE id_hash = $1",
        )
        .bind(hash(token))
        .fetch_optional(&self.pool)
        .await
        .map_err(Problem::from)?;
        let Some(session) = session else {
            return Ok(None);
        };
        let idle = chrono::Duration::from_std(self.settings.session_idle).unwrap_or_default();
        let now = Utc::now();
        if now > session.expires_at || now - session.last_active_at > idle {
            self.end(&session.id_hash).await?;
            return Ok(None);
        }
        Ok(Some(session))
    }

    async fn end(&self, id_hash: &str) -> Result<(), Problem> {
        sqlx::query("DELETE FROM intake.sessions WHERE id_hash = $1")
            .bind(id_hash)
            .execute(&self.pool)
            .await
            .map_err(Problem::from)?;
        Ok(())
    }

    /// A session for `account`; the cookie that names it.
    async fn start(
        &self,
        account: &Account,
        id_token: Option<String>,
    ) -> Result<HeaderValue, Problem> {
        let token = random(32);
        let now = Utc::now();
        sqlx::query(
            "INSERT INTO intake.sessions (id_hash, sub, name, role, facility, peer_id, csrf,
                 id_token, created_at, last_active_at, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9, $10)",
        )
        .bind(hash(&token))
        .bind(&account.sub)
        .bind(&account.name)
        .bind(&account.role)
        .bind(&account.facility)
        .bind(&account.peer_id)
        .bind(random(24))
        .bind(id_token)
        .bind(now)
        .bind(now + chrono::Duration::from_std(ABSOLUTE).expect("fits"))
        .execute(&self.pool)
        .await
        .map_err(Problem::from)?;
        Ok(self.set_cookie(COOKIE, &token, "Strict", None))
    }

    /// Refuses a state change that does not come from careloop's own pages.
    fn same_origin(&self, headers: &HeaderMap) -> Result<(), Problem> {
        match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
            None => Ok(()),
            Some(origin) if origin == self.settings.public_url => Ok(()),
            Some(origin) => {
                // The Host the browser used (careloop dev on another address).
                let host = headers
                    .get(header::HOST)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default();
                let bare = origin
                    .strip_prefix("http://")
                    .or_else(|| origin.strip_prefix("https://"))
                    .unwrap_or(origin);
                if !host.is_empty() && bare == host {
                    Ok(())
                } else {
                    Err(Problem::forbidden("a request from another origin"))
                }
            }
        }
    }

    fn check_csrf(&self, headers: &HeaderMap, session: &Session) -> Result<(), Problem> {
        self.same_origin(headers)?;
        let given = headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        // Compared in constant time: a byte-by-byte early exit would leak the token.
        let ok = given.len() == session.csrf.len()
            && given
                .bytes()
                .zip(session.csrf.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0;
        if ok {
            Ok(())
        } else {
            Err(Problem::forbidden("missing or wrong X-CSRF-Token"))
        }
    }

    async fn provider(&self) -> Result<(&OidcSettings, &ProviderMetadata), Problem> {
        let Some(oidc) = &self.settings.oidc else {
            return Err(Problem::not_found("no OpenID provider is configured"));
        };
        let meta = self
            .provider
            .get_or_try_init(|| discover(&oidc.issuer))
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "OpenID provider unavailable");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the sign-in provider cannot be reached; try again shortly",
                )
            })?;
        Ok((oidc, meta))
    }

    fn callback_url(&self) -> String {
        format!("{}/session/callback", self.settings.public_url)
    }
}

pub fn routes(state: Sessions) -> Router {
    Router::new()
        .route("/session", get(status))
        .route("/session/token", post(token))
        .route("/session/logout", post(logout))
        .route("/session/login", get(login))
        .route("/session/callback", get(callback))
        .route("/session/dev-people", get(dev_people))
        .route("/session/dev", post(dev_sign_in))
        .with_state(state)
}

fn no_store<T: IntoResponse>(body: T) -> Response {
    let mut res = body.into_response();
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res
}

/// `GET /session`: who is signed in (and the CSRF token their changes need).
async fn status(State(s): State<Sessions>, headers: HeaderMap) -> Result<Response, Problem> {
    let session = s.current(&headers).await?;
    let ways = serde_json::json!({"dev": s.dev(), "oidc": s.settings.oidc.is_some()});
    let body = match session {
        None => serde_json::json!({"signed_in": false, "sign_in": ways,
                                   "idle_timeout_secs": s.settings.session_idle.as_secs()}),
        Some(session) => serde_json::json!({
            "signed_in": true,
            "user": session,
            "csrf_token": session.csrf,
            "sign_in": ways,
            "idle_timeout_secs": s.settings.session_idle.as_secs(),
        }),
    };
    Ok(no_store(Json(body)))
}

#[derive(Debug, Deserialize, Default)]
struct TokenRequest {
    /// The person used the console since the last token (keeps the session alive).
    #[serde(default)]
    active: bool,
}

/// `POST /session/token`: a short-lived careloop access token for the console.
async fn token(
    State(s): State<Sessions>,
    headers: HeaderMap,
    body: Option<Json<TokenRequest>>,
) -> Result<Response, Problem> {
    let Some(session) = s.current(&headers).await? else {
        return Err(Problem::unauthorized("not signed in, or the session ended"));
    };
    s.check_csrf(&headers, &session)?;
    if body.unwrap_or_default().0.active {
        sqlx::query("UPDATE intake.sessions SET last_active_at = now() WHERE id_hash = $1")
            .bind(&session.id_hash)
            .execute(&s.pool)
            .await
            .map_err(Problem::from)?;
    }
    let issued = s
        .tokens
        .issue(&session.principal(), CONSOLE_TOKEN_TTL)
        .await
        .map_err(|e| {
            tracing::error!(error = %format!("{e:#}"), "could not sign a console token");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot sign a token now; retry",
            )
        })?;
    Ok(no_store(Json(serde_json::json!({
        "access_token": issued.access_token,
        "token_type": "bearer",
        "expires_in": issued.expires_in,
    }))))
}

/// `POST /session/logout`: ends the session; names the provider's sign-out page.
async fn logout(
    State(s): State<Sessions>,
    address: ClientAddress,
    headers: HeaderMap,
) -> Result<Response, Problem> {
    let mut end_session_url = None;
    if let Some(session) = s.current(&headers).await? {
        s.check_csrf(&headers, &session)?;
        s.end(&session.id_hash).await?;
        s.audit
            .record(Audit::by(
                &session.principal(),
                &address,
                "sign-out",
                "session",
            ))
            .await?;
        if let (Ok((_, meta)), Some(id_token)) = (s.provider().await, &session.id_token)
            && let Some(end) = &meta.end_session_endpoint
        {
            end_session_url = Some(format!(
                "{end}?id_token_hint={id_token}&post_logout_redirect_uri={}",
                urlencode(&format!("{}/", s.settings.public_url))
            ));
        }
    }
    let mut res = no_store(Json(serde_json::json!({
        "signed_out": true, "end_session_url": end_session_url,
    })));
    res.headers_mut().insert(
        header::SET_COOKIE,
        s.set_cookie(COOKIE, "", "Strict", Some(0)),
    );
    Ok(res)
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Only a path on careloop itself, never another site.
fn safe_return(to: Option<&str>) -> String {
    match to {
        Some(p) if p.starts_with('/') && !p.starts_with("//") && !p.contains('\\') => p.to_string(),
        _ => "/".to_string(),
    }
}

#[derive(Debug, Deserialize)]
struct LoginQuery {
    return_to: Option<String>,
}

/// `GET /session/login`: off to the provider, with PKCE (S256), a state and a nonce.
async fn login(
    State(s): State<Sessions>,
    Query(q): Query<LoginQuery>,
) -> Result<Response, Problem> {
    let (oidc, meta) = s.provider().await?;
    let (state, verifier, nonce) = (random(24), random(48), random(24));
    let challenge = B64.encode(Sha256::digest(verifier.as_bytes()));
    sqlx::query(
        "WITH gone AS (DELETE FROM intake.sign_ins WHERE created_at < now() - interval '10 minutes')
         INSERT INTO intake.sign_ins (state, verifier, nonce, return_to) VALUES ($1, $2, $3, $4)",
    )
    .bind(&state)
    .bind(&verifier)
    .bind(&nonce)
    .bind(safe_return(q.return_to.as_deref()))
    .execute(&s.pool)
    .await
    .map_err(Problem::from)?;
    let url = format!(
        "{}?response_type=code&client_id={}&redirect_uri={}&scope={}&state={state}&nonce={nonce}&code_challenge={challenge}&code_challenge_method=S256",
        meta.authorization_endpoint,
        urlencode(&oidc.client_id),
        urlencode(&s.callback_url()),
        urlencode(&oidc.scopes),
    );
    let mut res = (StatusCode::SEE_OTHER, [(header::LOCATION, url)]).into_response();
    // Ties the callback to this browser (SameSite=Lax: the provider's redirect back
    // is a top-level navigation from another site).
    res.headers_mut().insert(
        header::SET_COOKIE,
        s.set_cookie(SIGN_IN_COOKIE, &state, "Lax", Some(600)),
    );
    Ok(res)
}

#[derive(Debug, Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// A plain page (no script) that says what happened and moves on.
fn page(title: &str, text: &str, next: &str) -> Response {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let body = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"0;url={next}\"><title>{title}</title></head>\
         <body><main><h1>{title}</h1><p>{text}</p><p><a href=\"{next}\">Continue</a></p></main></body></html>",
        title = esc(title),
        text = esc(text),
        next = esc(next),
    );
    no_store(Html(body))
}

/// `GET /session/callback`: the provider sends the person back with a code.
async fn callback(
    State(s): State<Sessions>,
    address: ClientAddress,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Result<Response, Problem> {
    let (audit, from) = (s.audit.clone(), address.0.clone());
    let failed = |why: String| async move {
        let entry = Entry {
            at: Utc::now(),
            action: "sign-in".into(),
            resource: "session".into(),
            address: from,
            outcome: "refused".into(),
            detail: Some(why.clone()),
            ..Default::default()
        };
        audit.record(entry).await?;
        Ok::<Response, Problem>(page(
            "Sign-in did not work",
            &format!("{why}. Try again, or ask an administrator."),
            "/#/signed-out",
        ))
    };
    if let Some(e) = q.error {
        return failed(format!("the sign-in provider said {e}")).await;
    }
    let (Some(code), Some(state)) = (q.code, q.state) else {
        return failed("the sign-in provider sent no code".into()).await;
    };
    if cookie_value(&headers, SIGN_IN_COOKIE) != Some(state.as_str()) {
        return failed("this sign-in was not started from this browser".into()).await;
    }
    let started: Option<(String, String, String)> = sqlx::query_as(
        "DELETE FROM intake.sign_ins WHERE state = $1 AND created_at > now() - interval '10 minutes'
         RETURNING verifier, nonce, return_to",
    )
    .bind(&state)
    .fetch_optional(&s.pool)
    .await
    .map_err(Problem::from)?;
    let Some((verifier, nonce, return_to)) = started else {
        return failed("the sign-in expired".into()).await;
    };
    let (oidc, meta) = s.provider().await?;
    let exchanged = s
        .http
        .post(&meta.token_endpoint)
        .basic_auth(&oidc.client_id, Some(&oidc.client_secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", s.callback_url().as_str()),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await;
    let tokens: serde_json::Value = match exchanged {
        Ok(r) if r.status().is_success() => r.json().await.unwrap_or_default(),
        Ok(r) => return failed(format!("the provider refused the code ({})", r.status())).await,
        Err(e) => {
            tracing::warn!(error = %e, "token exchange failed");
            return Err(Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the sign-in provider cannot be reached; try again shortly",
            ));
        }
    };
    let Some(id_token) = tokens.get("id_token").and_then(|v| v.as_str()) else {
        return failed("the provider sent no ID token".into()).await;
    };
    let claims = match s.verify_id_token(oidc, id_token, &nonce).await {
        Ok(c) => c,
        Err(e) => return failed(format!("the ID token is not valid: {e}")).await,
    };
    let account = match s.account_for(oidc, &claims).await? {
        Ok(a) => a,
        Err(why) => return failed(why).await,
    };
    let cookie = s.start(&account, Some(id_token.to_string())).await?;
    let who = Principal {
        sub: account.sub.clone(),
        role: account.role.parse().unwrap_or_default(),
        facility: account.facility.clone(),
        ..Default::default()
    };
    s.audit
        .record(Audit::by(&who, &address, "sign-in", "session"))
        .await?;
    let mut res = page("Signed in", "You are signed in to careloop.", &return_to);
    res.headers_mut().append(header::SET_COOKIE, cookie);
    res.headers_mut().append(
        header::SET_COOKIE,
        s.set_cookie(SIGN_IN_COOKIE, "", "Lax", Some(0)),
    );
    Ok(res)
}

impl Sessions {
    async fn verify_id_token(
        &self,
        oidc: &OidcSettings,
        id_token: &str,
        nonce: &str,
    ) -> Result<serde_json::Value, String> {
        let jws = jose::decode(id_token)?;
        let kid = jws.header.kid.as_deref().ok_or("no kid")?;
        let keys = (*self.provider_keys)
            .as_ref()
            .ok_or("no provider")?
            .keys(kid)
            .await?;
        let [key] = keys.as_slice() else {
            return Err("the token's kid is not one of the provider's keys".into());
        };
        jws.verify(key, &["RS256", "RS384", "ES256", "ES384"])?;
        let c = &jws.claims;
        if c.get("iss")
            .and_then(|v| v.as_str())
            .map(|i| i.trim_end_matches('/'))
            != Some(oidc.issuer.as_str())
        {
            return Err("wrong issuer".into());
        }
        let aud_ok = match c.get("aud") {
            Some(serde_json::Value::String(a)) => *a == oidc.client_id,
            Some(serde_json::Value::Array(a)) => {
                a.iter().any(|v| v.as_str() == Some(&oidc.client_id))
            }
            _ => false,
        };
        if !aud_ok {
            return Err("not for this client".into());
        }
        if c.get("exp").and_then(|v| v.as_i64()).unwrap_or(0) <= Utc::now().timestamp() {
            return Err("expired".into());
        }
        if c.get("nonce").and_then(|v| v.as_str()) != Some(nonce) {
            return Err("wrong nonce".into());
        }
        Ok(jws.claims)
    }

    /// Who the signed-in person is in careloop: the account an administrator keeps
    /// for their `sub`, else the provider's claims; refused without a role.
    async fn account_for(
        &self,
        oidc: &OidcSettings,
        claims: &serde_json::Value,
    ) -> Result<Result<Account, String>, Problem> {
        let claim = |name: &str| {
            claims
                .get(name)
                .and_then(|v| v.as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let Some(sub) = claim("sub") else {
            return Ok(Err("the ID token has no subject".into()));
        };
        if let Some(mut kept) = staff::find(&self.pool, &sub).await.map_err(Problem::from)? {
            kept.name = kept.name.or_else(|| claim(&oidc.name_claim));
            return Ok(Ok(kept));
        }
        let Some(role) = claim(&oidc.role_claim) else {
            return Ok(Err(format!(
                "careloop has no role for {sub}: an administrator gives one"
            )));
        };
        let Ok(parsed) = role.parse::<Role>() else {
            return Ok(Err(format!("the role {role:?} is not one of careloop's")));
        };
        let account = Account {
            sub,
            name: claim(&oidc.name_claim),
            role: parsed.as_str().to_string(),
            facility: claim(&oidc.facility_claim),
            peer_id: claim(&oidc.peer_claim),
        };
        if parsed == Role::Hospital && account.facility.is_none() {
            return Ok(Err("a hospital liaison needs a facility".into()));
        }
        if parsed == Role::Peer && account.peer_id.is_none() {
            return Ok(Err("a peer's account needs their roster entry".into()));
        }
        Ok(Ok(account))
    }
}

/// `GET /session/dev-people` (dev only): the demo people one may sign in as.
async fn dev_people(State(s): State<Sessions>) -> Result<Response, Problem> {
    if !s.dev() {
        return Err(Problem::not_found(
            "the demo sign-in exists only in dev mode",
        ));
    }
    let people = staff::list(&s.pool).await.map_err(Problem::from)?;
    Ok(no_store(Json(serde_json::json!({ "people": people }))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DevSignIn {
    sub: String,
}

/// `POST /session/dev` (dev only): sign in as a demo person.
async fn dev_sign_in(
    State(s): State<Sessions>,
    address: ClientAddress,
    headers: HeaderMap,
    Json(body): Json<DevSignIn>,
) -> Result<Response, Problem> {
    if !s.dev() {
        return Err(Problem::not_found(
            "the demo sign-in exists only in dev mode",
        ));
    }
    s.same_origin(&headers)?;
    let Some(account) = staff::find(&s.pool, &body.sub)
        .await
        .map_err(Problem::from)?
    else {
        return Err(Problem::invalid("sub", "no such demo person"));
    };
    let cookie = s.start(&account, None).await?;
    let who = Principal {
        sub: account.sub.clone(),
        role: account.role.parse().unwrap_or_default(),
        facility: account.facility.clone(),
        client_id: Some("dev-sign-in".into()),
        ..Default::default()
    };
    s.audit
        .record(Audit::by(&who, &address, "sign-in", "session"))
        .await?;
    let mut res = no_store(Json(
        serde_json::json!({"signed_in": true, "user": account}),
    ));
    res.headers_mut().insert(header::SET_COOKIE, cookie);
    Ok(res)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_paths_stay_on_careloop() {
        assert_eq!(safe_return(Some("/#/queue")), "/#/queue");
        assert_eq!(safe_return(Some("//evil.example/")), "/");
        assert_eq!(safe_return(Some("https://evil.example/")), "/");
        assert_eq!(safe_return(None), "/");
    }

    #[test]
    fn cookies_are_read_by_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; careloop_session=abc; b=2"),
        );
        assert_eq!(cookie_value(&h, COOKIE), Some("abc"));
        assert_eq!(cookie_value(&h, "missing"), None);
    }
}
