//! SMART backend services clients: a hospital system registered for one facility,
//! with the public keys it signs its client assertions with (a JWKS URL, fetched and
//! cached, or a JWKS given inline) and the scopes it may be granted. An administrator
//! registers and revokes them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use careloop_access::{Needs, Role};
use careloop_web::jose::{Jwk, Jwks};
use careloop_web::jwks::{KeySource, RemoteJwks};
use careloop_web::{ApiJson, Authenticated, Problem, RouteRule};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::audit::{Audit, ClientAddress};
use crate::facilities::Registry;

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct Client {
    pub client_id: String,
    pub facility: String,
    pub name: String,
    pub jwks_url: Option<String>,
    pub jwks: Option<serde_json::Value>,
    pub scopes: String,
    pub created_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// The registry, with one cached key set per JWKS URL.
#[derive(Clone)]
pub struct Clients {
    pub pool: PgPool,
    remote: Arc<Mutex<HashMap<String, Arc<RemoteJwks>>>>,
}

impl Clients {
    pub fn new(pool: PgPool) -> Self {
        Clients {
            pool,
            remote: Default::default(),
        }
    }

    pub async fn get(&self, client_id: &str) -> sqlx::Result<Option<Client>> {
        sqlx::query_as(
            "SELECT client_id, facility, name, jwks_url, jwks, scopes, created_at, revoked_at
             FROM intake.smart_clients WHERE client_id = $1",
        )
        .bind(client_id)
        .fetch_optional(&self.pool)
        .await
    }

    /// The client's keys with `kid` (its JWKS URL is fetched again when the kid is
    /// new to the cache).
    pub async fn keys(&self, client: &Client, kid: &str) -> Result<Vec<Jwk>, String> {
        if let Some(url) = &client.jwks_url {
            let remote = {
                let mut map = self.remote.lock().unwrap_or_else(|e| e.into_inner());
                map.entry(url.clone())
                    .or_insert_with(|| Arc::new(RemoteJwks::new(url.clone())))
                    .clone()
            };
            return remote.keys(kid).await;
        }
        let jwks: Jwks = client
            .jwks
            .clone()
            .map(serde_json::from_value)
            .transpose()
            .map_err(|_| "the client's registered JWKS is not valid".to_string())?
            .unwrap_or_default();
        jwks.keys(kid).await
    }
}

/// The access rule of each route here (enforced by the access layer).
pub const RULES: &[RouteRule] = &[
    RouteRule::token("GET", "/v1/clients", &[Needs::read("Client")]),
    RouteRule::token("POST", "/v1/clients", &[Needs::write("Client")]),
    RouteRule::token(
        "POST",
        "/v1/clients/{client_id}/revoke",
        &[Needs::write("Client")],
    ),
];

#[derive(Clone)]
pub struct ClientsApi {
    pub clients: Clients,
    pub registry: Registry,
    pub audit: Audit,
}

pub fn routes(state: ClientsApi) -> Router {
    Router::new()
        .route("/v1/clients", get(list).post(register))
        .route("/v1/clients/{client_id}/revoke", post(revoke))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientRequest {
    client_id: Option<String>,
    facility: String,
    name: String,
    jwks_url: Option<String>,
    jwks: Option<Jwks>,
    scopes: Vec<String>,
}

/// The scopes a hospital's system may be granted: `system/<Resource>.<access>`.
fn valid_scope(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("system/") else {
        return false;
    };
    let Some((resource, access)) = rest.rsplit_once('.') else {
        return false;
    };
    !resource.is_empty()
        && (resource == "*" || resource.chars().all(|c| c.is_ascii_alphanumeric()))
        && (["read", "write", "*"].contains(&access)
            || (!access.is_empty() && access.chars().all(|c| "cruds".contains(c))))
}

async fn register(
    State(s): State<ClientsApi>,
    principal: Authenticated,
    address: ClientAddress,
    ApiJson(body): ApiJson<ClientRequest>,
) -> Result<(StatusCode, Json<serde_json::Value>), Problem> {
    principal.require(&[Role::Admin])?;
    if !s.registry.is_registered(&body.facility).await? {
        return Err(Problem::invalid(
            "facility",
            "no such facility: register the facility first",
        ));
    }
    if body.name.trim().is_empty() {
        return Err(Problem::invalid("name", "name must not be empty"));
    }
    match (&body.jwks_url, &body.jwks) {
        (Some(url), None) => {
            if !(url.starts_with("https://") || url.starts_with("http://")) || url.len() > 2000 {
                return Err(Problem::invalid(
                    "jwks_url",
                    "jwks_url must be an http(s) URL",
                ));
            }
        }
        (None, Some(jwks)) => jwks.validate().map_err(|e| Problem::invalid("jwks", e))?,
        _ => {
            return Err(Problem::invalid(
                "jwks_url",
                "give the client's public keys as jwks_url or jwks (one of them)",
            ));
        }
    }
    if body.scopes.is_empty() {
        return Err(Problem::invalid("scopes", "at least one scope is needed"));
    }
    if let Some((i, _)) = body
        .scopes
        .iter()
        .enumerate()
        .find(|(_, s)| !valid_scope(s))
    {
        return Err(Problem::invalid(
            format!("scopes[{i}]"),
            "scopes are system/<Resource>.<read|write|*> (or SMART v2 letters cruds)",
        ));
    }
    let client_id = body
        .client_id
        .clone()
        .filter(|c| !c.trim().is_empty())
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    if client_id.len() > 200 || !client_id.chars().all(|c| c.is_ascii_graphic()) {
        return Err(Problem::invalid(
            "client_id",
            "client_id must be 1-200 visible ASCII characters",
        ));
    }
    let inserted = sqlx::query(
        "INSERT INTO intake.smart_clients (client_id, facility, name, jwks_url, jwks, scopes)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (client_id) DO NOTHING",
    )
    .bind(&client_id)
    .bind(&body.facility)
    .bind(body.name.trim())
    .bind(&body.jwks_url)
    .bind(
        body.jwks
            .as_ref()
            .map(serde_json::to_value)
            .transpose()
            .map_err(Problem::from)?,
    )
    .bind(body.scopes.join(" "))
    .execute(&s.clients.pool)
    .await
    .map_err(Problem::from)?
    .rows_affected();
    if inserted == 0 {
        return Err(Problem::conflict(
            "a client with this client_id is registered already",
        ));
    }
    let mut entry = Audit::by(&principal, &address, "create", "client");
    entry.detail = Some(format!("client {client_id} for {}", body.facility));
    s.audit.record(entry).await?;
    Ok((
        StatusCode::CREATED,
        Json(serde_json::json!({"client_id": client_id, "facility": body.facility})),
    ))
}

async fn list(
    State(s): State<ClientsApi>,
    principal: Authenticated,
) -> Result<Json<serde_json::Value>, Problem> {
    principal.require(&[Role::Admin])?;
    let rows: Vec<Client> = sqlx::query_as(
        "SELECT client_id, facility, name, jwks_url, jwks, scopes, created_at, revoked_at
         FROM intake.smart_clients ORDER BY facility, name, client_id",
    )
    .fetch_all(&s.clients.pool)
    .await
    .map_err(Problem::from)?;
    Ok(Json(
        serde_json::json!({ "items": rows, "next_cursor": null }),
    ))
}

async fn revoke(
    State(s): State<ClientsApi>,
    principal: Authenticated,
    address: ClientAddress,
    Path(client_id): Path<String>,
) -> Result<Json<serde_json::Value>, Problem> {
    principal.require(&[Role::Admin])?;
    let revoked = sqlx::query(
        "UPDATE intake.smart_clients SET revoked_at = COALESCE(revoked_at, now())
         WHERE client_id = $1",
    )
    .bind(&client_id)
    .execute(&s.clients.pool)
    .await
    .map_err(Problem::from)?
    .rows_affected();
    if revoked == 0 {
        return Err(Problem::not_found(format!("no client {client_id}")));
    }
    let mut entry = Audit::by(&principal, &address, "update", "client");
    entry.detail = Some(format!("client {client_id} revoked"));
    s.audit.record(entry).await?;
    Ok(Json(
        serde_json::json!({"client_id": client_id, "revoked": true}),
    ))
}

#[cfg(test)]
mod tests {
    use super::valid_scope;

    #[test]
    fn only_system_scopes_are_registered() {
        assert!(valid_scope("system/ServiceRequest.write"));
        assert!(valid_scope("system/Task.rs"));
        assert!(valid_scope("system/*.read"));
        assert!(!valid_scope("user/Task.read"));
        assert!(!valid_scope("system/Task"));
        assert!(!valid_scope("system/Ta sk.read"));
    }
}
