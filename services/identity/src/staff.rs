//! Staff accounts an administrator keeps: a sign-in subject (the OpenID provider's
//! `sub`) and the role, facility (for a hospital liaison) and roster entry (for a
//! peer) careloop gives it. A peer's account is linked to exactly one roster entry,
//! and a roster entry to at most one account. With no account, the provider's claims
//! decide (see `docs/security.md`).

use axum::extract::{Path, State};
use axum::routing::{get, put};
use axum::{Json, Router};
use careloop_access::{Needs, Role};
use careloop_web::{ApiJson, Authenticated, Problem, RouteRule};
use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use crate::audit::{Audit, ClientAddress};
use crate::facilities::Registry;

#[derive(Debug, Clone, Serialize, Deserialize, sqlx::FromRow, PartialEq)]
pub struct Account {
    pub sub: String,
    pub name: Option<String>,
    pub role: String,
    pub facility: Option<String>,
    pub peer_id: Option<String>,
}

pub async fn find(pool: &PgPool, sub: &str) -> sqlx::Result<Option<Account>> {
    sqlx::query_as(
        "SELECT sub, name, role, facility, peer_id FROM intake.staff_accounts WHERE sub = $1",
    )
    .bind(sub)
    .fetch_optional(pool)
    .await
}

pub async fn list(pool: &PgPool) -> sqlx::Result<Vec<Account>> {
    sqlx::query_as(
        "SELECT sub, name, role, facility, peer_id FROM intake.staff_accounts
         ORDER BY role, name, sub",
    )
    .fetch_all(pool)
    .await
}

/// Creates or changes an account; refused when the roster entry is another
/// account's.
pub async fn save(pool: &PgPool, a: &Account) -> Result<(), Problem> {
    let saved = sqlx::query(
        "INSERT INTO intake.staff_accounts (sub, name, role, facility, peer_id)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (sub) DO UPDATE SET name = $2, role = $3, facility = $4, peer_id = $5,
             updated_at = now()",
    )
    .bind(&a.sub)
    .bind(&a.name)
    .bind(&a.role)
    .bind(&a.facility)
    .bind(&a.peer_id)
    .execute(pool)
    .await;
    match saved {
        Ok(_) => Ok(()),
        Err(sqlx::Error::Database(d)) if d.code().as_deref() == Some("23505") => Err(
            Problem::conflict("this roster entry is linked to another account already")
                .with_field("peer_id"),
        ),
        Err(e) => Err(Problem::internal(e)),
    }
}

/// The access rule of each route here (enforced by the access layer).
pub const RULES: &[RouteRule] = &[
    RouteRule::token("GET", "/v1/staff", &[Needs::read("Account")]),
    RouteRule::token("PUT", "/v1/staff/{sub}", &[Needs::write("Account")]),
];

#[derive(Clone)]
pub struct StaffApi {
    pub pool: PgPool,
    pub registry: Registry,
    pub audit: Audit,
}

pub fn routes(state: StaffApi) -> Router {
    Router::new()
        .route("/v1/staff", get(index))
        .route("/v1/staff/{sub}", put(upsert))
        .with_state(state)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountRequest {
    name: Option<String>,
    role: Role,
    facility: Option<String>,
    peer_id: Option<String>,
}

async fn index(
    State(s): State<StaffApi>,
    principal: Authenticated,
) -> Result<Json<serde_json::Value>, Problem> {
    principal.require(&[Role::Admin])?;
    let rows = list(&s.pool).await.map_err(Problem::from)?;
    Ok(Json(
        serde_json::json!({ "items": rows, "next_cursor": null }),
    ))
}

async fn upsert(
    State(s): State<StaffApi>,
    principal: Authenticated,
    address: ClientAddress,
    Path(sub): Path<String>,
    ApiJson(body): ApiJson<AccountRequest>,
) -> Result<Json<Account>, Problem> {
    principal.require(&[Role::Admin])?;
    if sub.trim().is_empty() || sub.len() > 255 {
        return Err(Problem::invalid("sub", "sub must be 1-255 characters"));
    }
    let facility = body.facility.filter(|f| !f.trim().is_empty());
    let peer_id = body.peer_id.filter(|p| !p.trim().is_empty());
    match body.role {
        Role::Hospital => {
            let Some(f) = &facility else {
                return Err(Problem::invalid(
                    "facility",
                    "a hospital liaison needs a facility",
                ));
            };
            if !s.registry.is_registered(f).await? {
                return Err(Problem::invalid("facility", "no such facility"));
            }
        }
        Role::Peer if peer_id.is_none() => {
            return Err(Problem::invalid(
                "peer_id",
                "a peer's account is linked to their roster entry (peer_id)",
            ));
        }
        _ => {}
    }
    let account = Account {
        sub: sub.clone(),
        name: body
            .name
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty()),
        role: body.role.as_str().to_string(),
        facility: facility.filter(|_| body.role == Role::Hospital),
        peer_id: peer_id.filter(|_| body.role == Role::Peer),
    };
    save(&s.pool, &account).await?;
    let mut entry = Audit::by(&principal, &address, "update", "account");
    entry.detail = Some(format!("account {sub} is {}", account.role));
    s.audit.record(entry).await?;
    Ok(Json(account))
}
