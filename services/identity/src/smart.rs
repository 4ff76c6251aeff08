//! SMART Backend Services (SMART App Launch 2.x, `client-confidential-asymmetric`):
//! how a hospital's system gets an access token.
//!
//! `POST /auth/token` takes `grant_type=client_credentials` with a `private_key_jwt`
//! client assertion and answers an ES256 access token of at most five minutes for the
//! client's facility, with the scopes asked for (each must be registered for the
//! client). The assertion must be signed (RS384 or ES384) by exactly one of the
//! client's registered keys, named by `kid`; its `iss` and `sub` must both be the
//! client id, its `aud` this endpoint's URL, its `exp` in the future and at most five
//! minutes ahead, its `jti` unused, and a `jku`, if given, the registered JWKS URL.
//! Refusals follow RFC 6749 (`invalid_client`, `invalid_scope`, ...); every decision
//! goes to the audit log. careloop's public keys are at `/.well-known/jwks.json` and
//! what it supports at `/.well-known/smart-configuration`.

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use careloop_access::{Principal, Role};
use careloop_web::jose;
use careloop_web::{Problem, RouteRule};
use chrono::Utc;
use serde::Deserialize;

use crate::audit::{Audit, ClientAddress, Entry};
use crate::clients::{Client, Clients};
use crate::keys::MAX_TOKEN_TTL;
use crate::tokens::TokenIssuer;

pub const TOKEN_PATH: &str = "/auth/token";
const ASSERTION_TYPE: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";
/// Assertion algorithms SMART asks servers to support.
const ALGS: &[&str] = &["RS384", "ES384"];

/// The access rule of each route here: open (the token endpoint authenticates the
/// client itself; discovery and keys are public).
pub const RULES: &[RouteRule] = &[
    RouteRule::open("GET", "/.well-known/smart-configuration"),
    RouteRule::open("GET", "/.well-known/jwks.json"),
    RouteRule::open("POST", TOKEN_PATH),
];

#[derive(Clone)]
pub struct Smart {
    pub clients: Clients,
    pub tokens: TokenIssuer,
    pub audit: Audit,
}

pub fn routes(state: Smart) -> Router {
    Router::new()
        .route("/.well-known/smart-configuration", get(configuration))
        .route("/.well-known/jwks.json", get(jwks))
        .route(TOKEN_PATH, post(token))
        .with_state(state)
}

async fn configuration(State(s): State<Smart>) -> Json<serde_json::Value> {
    let base = &s.tokens.issuer;
    Json(serde_json::json!({
        "issuer": base,
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "token_endpoint": format!("{base}{TOKEN_PATH}"),
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ALGS,
        "grant_types_supported": ["client_credentials"],
        "scopes_supported": [
            "system/ServiceRequest.write", "system/Task.read", "system/Consent.write",
            "system/Patient.read", "system/Encounter.write", "system/Subscription.read",
            "system/Subscription.write"
        ],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": ["client-confidential-asymmetric", "permission-v1", "permission-v2"],
    }))
}

async fn jwks(State(s): State<Smart>) -> Result<Response, Problem> {
    let keys = s.tokens.keys.jwks().await.map_err(|e| {
        tracing::error!(error = %format!("{e:#}"), "the signing keys cannot be read");
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the signing keys cannot be read now",
        )
    })?;
    let mut res = Json(keys).into_response();
    res.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=60"),
    );
    Ok(res)
}

#[derive(Debug, Deserialize)]
struct TokenRequest {
    grant_type: Option<String>,
    scope: Option<String>,
    client_assertion_type: Option<String>,
    client_assertion: Option<String>,
}

/// An RFC 6749 error answer.
struct OAuthError {
    status: StatusCode,
    error: &'static str,
    description: String,
}

impl OAuthError {
    fn new(error: &'static str, description: impl Into<String>) -> Self {
        let status = if error == "invalid_client" {
            StatusCode::UNAUTHORIZED
        } else {
            StatusCode::BAD_REQUEST
        };
        OAuthError {
            status,
            error,
            description: description.into(),
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({"error": self.error, "error_description": self.description});
        let mut res = (self.status, Json(body)).into_response();
        no_store(&mut res);
        res
    }
}

fn no_store(res: &mut Response) {
    res.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    res.headers_mut()
        .insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

async fn token(
    State(s): State<Smart>,
    address: ClientAddress,
    form: Result<Form<TokenRequest>, axum::extract::rejection::FormRejection>,
) -> Response {
    let (client, outcome) = match form {
        Ok(Form(request)) => decide(&s, request).await,
        Err(_) => (
            None,
            Err(OAuthError::new(
                "invalid_request",
                "the body must be application/x-www-form-urlencoded",
            )),
        ),
    };
    let mut entry = Entry {
        at: Utc::now(),
        sub: client.as_ref().map(|c| c.client_id.clone()),
        role: Some(Role::Hospital.as_str().into()),
        facility: client.as_ref().map(|c| c.facility.clone()),
        client_id: client.as_ref().map(|c| c.client_id.clone()),
        action: "token".into(),
        resource: "token".into(),
        address: address.0,
        outcome: "success".into(),
        ..Default::default()
    };
    match outcome {
        Ok((body, granted)) => {
            entry.detail = Some(format!("granted {granted}"));
            if let Err(p) = s.audit.record(entry).await {
                return p.into_response();
            }
            let mut res = Json(body).into_response();
            no_store(&mut res);
            res
        }
        Err(e) => {
            entry.outcome = "refused".into();
            entry.detail = Some(format!("{}: {}", e.error, e.description));
            if let Err(p) = s.audit.record(entry).await {
                return p.into_response();
            }
            e.into_response()
        }
    }
}

type Decision = Result<(serde_json::Value, String), OAuthError>;

/// Checks the request and its assertion; the client, when it is known.
async fn decide(s: &Smart, r: TokenRequest) -> (Option<Client>, Decision) {
    if r.grant_type.as_deref() != Some("client_credentials") {
        let e = OAuthError::new(
            "unsupported_grant_type",
            "grant_type must be client_credentials",
        );
        return (None, Err(e));
    }
    if r.client_assertion_type.as_deref() != Some(ASSERTION_TYPE) {
        let e = OAuthError::new(
            "invalid_client",
            format!("client_assertion_type must be {ASSERTION_TYPE}"),
        );
        return (None, Err(e));
    }
    let Some(assertion) = r.client_assertion.as_deref() else {
        return (
            None,
            Err(OAuthError::new(
                "invalid_client",
                "client_assertion is missing",
            )),
        );
    };
    let jws = match jose::decode(assertion) {
        Ok(j) => j,
        Err(e) => return (None, Err(OAuthError::new("invalid_client", e))),
    };
    let claim = |name: &str| jws.claims.get(name).and_then(|v| v.as_str());
    let Some(client_id) = claim("iss") else {
        return (
            None,
            Err(OAuthError::new(
                "invalid_client",
                "the assertion has no iss",
            )),
        );
    };
    let client = match s.clients.get(client_id).await {
        Ok(Some(c)) => c,
        Ok(None) => {
            return (
                None,
                Err(OAuthError::new("invalid_client", "no such client")),
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "client registry unavailable");
            let e = OAuthError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                error: "temporarily_unavailable",
                description: "the client registry cannot be read now; retry".into(),
            };
            return (None, Err(e));
        }
    };
    let decision = check(s, &client, &jws, r.scope.as_deref()).await;
    (Some(client), decision)
}

async fn check(s: &Smart, client: &Client, jws: &jose::Compact, scope: Option<&str>) -> Decision {
    let invalid = |why: &str| Err(OAuthError::new("invalid_client", why.to_string()));
    if client.revoked_at.is_some() {
        return invalid("the client was revoked");
    }
    let claim = |name: &str| jws.claims.get(name).and_then(|v| v.as_str());
    if claim("sub") != Some(client.client_id.as_str()) {
        return invalid("the assertion's sub must equal its iss (the client id)");
    }
    let token_url = format!("{}{TOKEN_PATH}", s.tokens.issuer);
    let aud_ok = match jws.claims.get("aud") {
        Some(serde_json::Value::String(a)) => *a == token_url,
        Some(serde_json::Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(&token_url)),
        _ => false,
    };
    if !aud_ok {
        return invalid(&format!("the assertion's aud must be {token_url}"));
    }
    let now = Utc::now().timestamp();
    let Some(exp) = jws.claims.get("exp").and_then(|v| v.as_i64()) else {
        return invalid("the assertion has no exp");
    };
    if exp <= now {
        return invalid("the assertion has expired");
    }
    if exp > now + MAX_TOKEN_TTL.as_secs() as i64 {
        return invalid("the assertion's exp is more than five minutes ahead");
    }
    let Some(jti) = claim("jti").filter(|j| !j.is_empty() && j.len() <= 256) else {
        return invalid("the assertion has no jti");
    };
    if let Some(jku) = &jws.header.jku
        && client.jwks_url.as_deref() != Some(jku.as_str())
    {
        return invalid("the assertion's jku is not the client's registered JWKS URL");
    }
    let Some(kid) = jws.header.kid.as_deref() else {
        return invalid("the assertion names no key (kid)");
    };
    let keys = match s.clients.keys(client, kid).await {
        Ok(k) => k,
        Err(e) => {
            tracing::warn!(client = %client.client_id, error = %e, "client keys unavailable");
            return invalid("the client's keys cannot be read");
        }
    };
    let key = match keys.as_slice() {
        [one] => one,
        [] => return invalid("the assertion's kid is not among the client's keys"),
        _ => return invalid("the assertion's kid names more than one of the client's keys"),
    };
    if let Err(e) = jws.verify(key, ALGS) {
        return invalid(&e);
    }
    // A jti is used once; it is kept until the assertion would have expired.
    let fresh = sqlx::query(
        "WITH gone AS (DELETE FROM intake.client_assertions WHERE expires_at < now())
         INSERT INTO intake.client_assertions (client_id, jti, expires_at)
         VALUES ($1, $2, to_timestamp($3)) ON CONFLICT DO NOTHING",
    )
    .bind(&client.client_id)
    .bind(jti)
    .bind(exp as f64)
    .execute(&s.clients.pool)
    .await;
    match fresh {
        Ok(r) if r.rows_affected() == 1 => {}
        Ok(_) => return invalid("the assertion's jti was used before"),
        Err(e) => {
            tracing::error!(error = %e, "the assertion log is unavailable");
            return Err(OAuthError {
                status: StatusCode::SERVICE_UNAVAILABLE,
                error: "temporarily_unavailable",
                description: "cannot check the assertion now; retry".into(),
            });
        }
    }
    let registered: Vec<&str> = client.scopes.split_whitespace().collect();
    let requested: Vec<&str> = scope.unwrap_or_default().split_whitespace().collect();
    if requested.is_empty() {
        return Err(OAuthError::new("invalid_scope", "scope is required"));
    }
    if let Some(s) = requested.iter().find(|s| !registered.contains(s)) {
        return Err(OAuthError::new(
            "invalid_scope",
            format!("{s} is not registered for this client"),
        ));
    }
    let granted = requested.join(" ");
    let who = Principal {
        sub: client.client_id.clone(),
        role: Role::Hospital,
        facility: Some(client.facility.clone()),
        scope: Some(granted.clone()),
        client_id: Some(client.client_id.clone()),
        name: Some(client.name.clone()),
        ..Default::default()
    };
    let issued = s.tokens.issue(&who, MAX_TOKEN_TTL).await.map_err(|e| {
        tracing::error!(error = %format!("{e:#}"), "could not sign a token");
        OAuthError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            error: "temporarily_unavailable",
            description: "cannot sign a token now; retry".into(),
        }
    })?;
    Ok((
        serde_json::json!({
            "access_token": issued.access_token,
            "token_type": "bearer",
            "expires_in": issued.expires_in,
            "scope": granted,
        }),
        granted,
    ))
}
