//! `Idempotency-Key` on POSTs that create something: the same key with the same body
//! gets the same answer without doing the work again; the same key with another body
//! is refused (422). Keys live in the owning service's schema, scoped to the client
//! ([`Principal::idempotency_scope`]: a hospital's facility and registered client, a
//! member of staff's account), never to one token, so a client that renews its token
//! and retries still finds its key.
//!
//! A claim is a lease: if the request that claimed a key never finished (the process
//! died, the client went away), a retry after [`LEASE`] takes the key over; before
//! that, a retry is answered `409` with `Retry-After` (the seconds left on the lease),
//! which clients must treat as "retry", never as a failure. Handlers derive the ids
//! they create from the key ([`Key::derived_id`]) and stamp the events they record
//! with it ([`Key::request_id`]), so a retry that takes over redoes the same work
//! instead of creating a second record, and answers what the first attempt would have
//! ([`Key::wrote`]).

use axum::http::{HeaderMap, StatusCode};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::{Principal, Problem};

pub const HEADER: &str = "idempotency-key";

/// How long an unfinished claim blocks retries of the same key.
pub const LEASE: std::time::Duration = std::time::Duration::from_secs(30);

/// What a request with an `Idempotency-Key` should do.
pub enum Claim {
    /// First time: do the work, then [`Key::complete`].
    Fresh(Key),
    /// Seen before with the same body: replay this answer.
    Replay(StatusCode, serde_json::Value),
}

pub struct Key {
    schema: String,
    scope: String,
    key: String,
    /// This request took over an unfinished claim: the first attempt may have done
    /// some or all of the work.
    pub taken_over: bool,
}

/// Claims the request's key for `principal`. `None` when the request has no key.
pub async fn claim(
    pool: &PgPool,
    schema: &str,
    principal: &Principal,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Option<Claim>, Problem> {
    let scope = principal.idempotency_scope();
    let scope = scope.as_str();
    let Some(key) = headers.get(HEADER) else {
        return Ok(None);
    };
    let key = key
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 200)
        .ok_or_else(|| {
            Problem::bad_request("Idempotency-Key must be 1-200 visible ASCII characters")
                .with_field("Idempotency-Key")
        })?
        .to_string();
    let hash = format!("{:x}", Sha256::digest(body));
    let table = format!("{schema}.idempotency_keys");
    let inserted = sqlx::query(&format!(
        "INSERT INTO {table} (scope, key, request_hash) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
    ))
    .bind(scope)
    .bind(&key)
    .bind(&hash)
    .execute(pool)
    .await
    .map_err(Problem::from)?
    .rows_affected();
    let fresh = |key, taken_over| {
        Ok(Some(Claim::Fresh(Key {
            schema: schema.to_string(),
            scope: scope.to_string(),
            key,
            taken_over,
        })))
    };
    if inserted == 1 {
        return fresh(key, false);
    }
    // An unfinished claim past its lease with the same body: take it over.
    let taken_over = sqlx::query(&format!(
        "UPDATE {table} SET created_at = now()
         WHERE scope = $1 AND key = $2 AND request_hash = $3 AND status IS NULL
           AND created_at < now() - $4 * interval '1 second'"
    ))
    .bind(scope)
    .bind(&key)
    .bind(&hash)
    .bind(LEASE.as_secs_f64())
    .execute(pool)
    .await
    .map_err(Problem::from)?
    .rows_affected();
    if taken_over == 1 {
        tracing::info!("an unfinished Idempotency-Key claim taken over by a retry");
        return fresh(key, true);
    }
    let (stored_hash, status, response, age): (
        String,
        Option<i32>,
        Option<serde_json::Value>,
        f64,
    ) = sqlx::query_as(&format!(
        "SELECT request_hash, status, response,
                extract(epoch FROM now() - created_at)::float8
         FROM {table} WHERE scope = $1 AND key = $2"
    ))
    .bind(scope)
    .bind(&key)
    .fetch_one(pool)
    .await
    .map_err(Problem::from)?;
    if stored_hash != hash {
        return Err(Problem::invalid(
            "Idempotency-Key",
            "this Idempotency-Key was used before with a different request body",
        ));
    }
    match (status, response) {
        (Some(status), Some(body)) => Ok(Some(Claim::Replay(
            StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK),
            body,
        ))),
        _ => {
            let left = (LEASE.as_secs_f64() - age)
                .ceil()
                .clamp(1.0, LEASE.as_secs_f64());
            Err(Problem::conflict(
                "a request with this Idempotency-Key is still in progress (or was cut off): retry after Retry-After seconds with the same key; this is not a failure",
            )
            .with_extension("retryable", true)
            .retry_after(left as u32))
        }
    }
}

impl Key {
    /// A stable id for what this request creates: the same key always gives the same
    /// id, so work redone after a takeover finds what the first attempt wrote.
    pub fn derived_id(&self) -> uuid::Uuid {
        uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_URL,
            format!(
                "careloop:{}.idempotency_keys:{}:{}",
                self.schema, self.scope, self.key
            )
            .as_bytes(),
        )
    }

    /// What the events this request records carry as their `request_id`.
    pub fn request_id(&self) -> String {
        self.derived_id().to_string()
    }

    /// Whether aggregate `aggregate_type`/`aggregate_id` has an event this request
    /// (this key, any attempt) recorded: after a takeover, "already there" then means
    /// "done by the first attempt", answered as the first attempt would have been.
    pub async fn wrote(
        &self,
        pool: &PgPool,
        aggregate_type: &str,
        aggregate_id: &str,
    ) -> Result<bool, Problem> {
        Ok(sqlx::query_scalar(&format!(
            "SELECT EXISTS (SELECT 1 FROM {}.events
                            WHERE aggregate_type = $1 AND aggregate_id = $2
                              AND metadata->>'request_id' = $3)",
            self.schema
        ))
        .bind(aggregate_type)
        .bind(aggregate_id)
        .bind(self.request_id())
        .fetch_one(pool)
        .await?)
    }

    /// Stores the answer so a retry gets it back.
    pub async fn complete(
        self,
        pool: &PgPool,
        status: StatusCode,
        response: &serde_json::Value,
    ) -> Result<(), Problem> {
        sqlx::query(&format!(
            "UPDATE {}.idempotency_keys SET status = $3, response = $4
             WHERE scope = $1 AND key = $2",
            self.schema
        ))
        .bind(&self.scope)
        .bind(&self.key)
        .bind(status.as_u16() as i32)
        .bind(response)
        .execute(pool)
        .await
        .map_err(Problem::from)?;
        Ok(())
    }

    /// Frees the key after a refused request, so a corrected retry may use it.
    pub async fn release(self, pool: &PgPool) {
        let _ = sqlx::query(&format!(
            "DELETE FROM {}.idempotency_keys WHERE scope = $1 AND key = $2 AND status IS NULL",
            self.schema
        ))
        .bind(&self.scope)
        .bind(&self.key)
        .execute(pool)
        .await;
    }
}
