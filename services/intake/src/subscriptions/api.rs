//! `POST /fhir/Subscription`, `GET` and `DELETE /fhir/Subscription/{id}`,
//! `GET /fhir/Subscription/{id}/$status`: a hospital's subscriptions to its Tasks.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use careloop_web::{Authenticated, Problem, Role};
use serde_json::{Value, json};
use sqlx::PgPool;
use uuid::Uuid;

use super::resource::{NewSubscription, Status};
use crate::fhir::api::{FhirState, fhir};

use crate::fhir::outcome::OperationOutcome;

/// The most live subscriptions one facility holds.
pub const MAX_PER_FACILITY: i64 = 20;

#[derive(sqlx::FromRow)]
struct Stored {
    id: Uuid,
    facility: String,
    status: String,
    error: Option<String>,
    events_since_start: i64,
    resource: Value,
}

fn not_found(id: &str) -> OperationOutcome {
    Problem::not_found(format!("no Subscription/{id}")).into()
}

/// The subscription `id`, for a principal who may see it (its facility's hospital,
/// an administrator).
async fn stored(
    pool: &PgPool,
    p: &careloop_web::Principal,
    id: &str,
) -> Result<Stored, OperationOutcome> {
    p.require(&[Role::Hospital, Role::Admin])?;
    let uuid = Uuid::parse_str(id).map_err(|_| not_found(id))?;
    let s: Stored = sqlx::query_as(
        "SELECT id, facility, status, error, events_since_start, resource
         FROM intake.fhir_subscriptions WHERE id = $1",
    )
    .bind(uuid)
    .fetch_optional(pool)
    .await
    .map_err(Problem::from)?
    .ok_or_else(|| not_found(id))?;
    if !p.may_see_facility(&s.facility) {
        return Err(Problem::forbidden("this Subscription belongs to another facility").into());
    }
    Ok(s)
}

/// The Subscription as served: as created, with its id and current status.
fn render(s: &Stored) -> Value {
    let mut r = s.resource.clone();
    r["id"] = json!(s.id.to_string());
    r["status"] = json!(s.status);
    match &s.error {
        Some(e) => r["error"] = json!(e),
        None => {
            if let Some(o) = r.as_object_mut() {
                o.remove("error");
            }
        }
    }
    r
}

/// `POST /fhir/Subscription` (a hospital, for its own Tasks): stored as `requested`;
/// the handshake is sent at once and makes it `active`.
pub async fn create(
    State(s): State<FhirState>,
    principal: Result<Authenticated, Problem>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Response, OperationOutcome> {
    let p = principal?;
    p.require(&[Role::Hospital])?;
    let facility = p
        .facility
        .clone()
        .ok_or_else(|| Problem::forbidden("the token names no facility"))?;
    let resource = crate::fhir::api::parse(&headers, &body, "Subscription")?;
    let new = NewSubscription::try_from(&resource)?;
    crate::closed_loop::destination::resolve(&new.endpoint, &s.webhook_allowed_hosts)
        .await
        .map_err(|why| OperationOutcome::invalid("Subscription.channel.endpoint", why))?;
    let live: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM intake.fhir_subscriptions WHERE facility = $1 AND status <> 'off'",
    )
    .bind(&facility)
    .fetch_one(&s.pool)
    .await
    .map_err(Problem::from)?;
    if live >= MAX_PER_FACILITY {
        return Err(OperationOutcome::invalid(
            "Subscription",
            format!("a facility holds at most {MAX_PER_FACILITY} subscriptions; delete one first"),
        ));
    }
    let id = Uuid::new_v4();
    let mut kept = resource.clone();
    if let Some(o) = kept.as_object_mut() {
        o.remove("id");
        o.remove("meta");
    }
    let mut tx = s.pool.begin().await.map_err(Problem::from)?;
    sqlx::query(
        "INSERT INTO intake.fhir_subscriptions (id, facility, endpoint, headers, content,
             filter_owner, filter_requester, filter_status, heartbeat_secs, timeout_secs, resource)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(id)
    .bind(&facility)
    .bind(&new.endpoint)
    .bind(&new.headers)
    .bind(new.content.as_str())
    .bind(&new.owner)
    .bind(&new.requester)
    .bind(&new.statuses)
    .bind(new.heartbeat_secs.map(|n| n as i32))
    .bind(new.timeout_secs as i32)
    .bind(&kept)
    .execute(&mut *tx)
    .await
    .map_err(Problem::from)?;
    sqlx::query(
        "INSERT INTO intake.fhir_notifications (subscription_id, kind) VALUES ($1, 'handshake')",
    )
    .bind(id)
    .execute(&mut *tx)
    .await
    .map_err(Problem::from)?;
    tx.commit().await.map_err(Problem::from)?;
    let created = stored(&s.pool, &p, &id.to_string()).await?;
    let mut res = fhir(StatusCode::CREATED, render(&created));
    if let Ok(v) = header::HeaderValue::from_str(&format!("Subscription/{id}")) {
        res.headers_mut().insert(header::LOCATION, v);
    }
    Ok(res)
}

/// `GET /fhir/Subscription/{id}`
pub async fn read(
    State(s): State<FhirState>,
    principal: Result<Authenticated, Problem>,
    Path(id): Path<String>,
) -> Result<Response, OperationOutcome> {
    let p = principal?;
    let sub = stored(&s.pool, &p, &id).await?;
    Ok(fhir(StatusCode::OK, render(&sub)))
}

/// `DELETE /fhir/Subscription/{id}`: no more notifications; what was queued goes.
pub async fn delete(
    State(s): State<FhirState>,
    principal: Result<Authenticated, Problem>,
    Path(id): Path<String>,
) -> Result<Response, OperationOutcome> {
    let p = principal?;
    let sub = stored(&s.pool, &p, &id).await?;
    sqlx::query("DELETE FROM intake.fhir_subscriptions WHERE id = $1")
        .bind(sub.id)
        .execute(&s.pool)
        .await
        .map_err(Problem::from)?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `GET /fhir/Subscription/{id}/$status`: a searchset with the SubscriptionStatus.
pub async fn status(
    State(s): State<FhirState>,
    principal: Result<Authenticated, Problem>,
    Path(id): Path<String>,
) -> Result<Response, OperationOutcome> {
    let p = principal?;
    let sub = stored(&s.pool, &p, &id).await?;
    let url = format!("{}/fhir/Subscription/{}", s.public_url, sub.id);
    let parameters = Status {
        subscription_url: &url,
        status: &sub.status,
        kind: "query-status",
        events_since_start: sub.events_since_start,
        event: None,
        error: sub.error.as_deref(),
    }
    .parameters();
    Ok(fhir(
        StatusCode::OK,
        json!({"resourceType": "Bundle", "type": "searchset", "total": 1,
               "link": [{"relation": "self", "url": format!("{url}/$status")}],
               "entry": [{"fullUrl": format!("urn:uuid:{}", parameters["id"].as_str().unwrap_or_default()),
                          "resource": parameters, "search": {"mode": "match"}}]}),
    ))
}
