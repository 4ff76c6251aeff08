//! The facility registry: the hospitals careloop serves. An administrator registers
//! each (its id, display name, and the HL7 v2 sending application/facility codes that
//! identify it in MSH-3/MSH-4); nothing creates a facility implicitly. Referrals,
//! admissions and HL7 messages are taken only for registered facilities, so metric
//! labels and every facility field carry registered ids only.
//!
//! The Facility aggregate keeps the registrations as events; the `facilities` read
//! model (rebuilt by `careloop replay facilities`) answers the lookups.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use careloop_access::{Needs, Role};
use careloop_backbone::store::{self, Cqrs};
use careloop_backbone::{Metadata, Projection, ProjectionRunner, StoredEvent, rows};
use careloop_web::{ApiJson, Authenticated, CorrelationId, Problem, RouteRule};
use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, AggregateError, DomainEvent};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};

/// How a facility's messages name it over HL7 v2: MSH-4 (sending facility) and,
/// optionally, MSH-3 (sending application). Compared without regard to case.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hl7Sender {
    #[serde(default)]
    pub application: Option<String>,
    pub facility: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FacilityProfile {
    pub name: String,
    #[serde(default)]
    pub hl7_senders: Vec<Hl7Sender>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct Facility {
    pub profile: Option<FacilityProfile>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum FacilityCommand {
    Register(FacilityProfile),
    Update(FacilityProfile),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FacilityEvent {
    FacilityRegistered(FacilityProfile),
    FacilityUpdated(FacilityProfile),
}

impl DomainEvent for FacilityEvent {
    fn event_type(&self) -> String {
        match self {
            FacilityEvent::FacilityRegistered(_) => "FacilityRegistered",
            FacilityEvent::FacilityUpdated(_) => "FacilityUpdated",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FacilityError {
    #[error("this facility is registered already")]
    AlreadyRegistered,
    #[error("no such facility")]
    NotFound,
}

impl From<FacilityError> for Problem {
    fn from(e: FacilityError) -> Problem {
        match e {
            FacilityError::AlreadyRegistered => Problem::conflict(e.to_string()),
            FacilityError::NotFound => Problem::not_found(e.to_string()),
        }
    }
}

impl Aggregate for Facility {
    const TYPE: &'static str = "Facility";
    type Command = FacilityCommand;
    type Event = FacilityEvent;
    type Error = FacilityError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match (command, &self.profile) {
            (FacilityCommand::Register(p), None) => {
                sink.write(FacilityEvent::FacilityRegistered(p), self).await
            }
            (FacilityCommand::Register(p), Some(current)) => {
                // Registering the same facility the same way again changes nothing.
                if *current != p {
                    return Err(FacilityError::AlreadyRegistered);
                }
            }
            (FacilityCommand::Update(_), None) => return Err(FacilityError::NotFound),
            (FacilityCommand::Update(p), Some(current)) => {
                if *current != p {
                    sink.write(FacilityEvent::FacilityUpdated(p), self).await
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            FacilityEvent::FacilityRegistered(p) | FacilityEvent::FacilityUpdated(p) => {
                self.profile = Some(p)
            }
        }
    }
}

/// The `facilities` read model.
pub struct Facilities;

#[async_trait::async_trait]
impl Projection for Facilities {
    fn name(&self) -> &'static str {
        "facilities"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["intake.facilities"]
    }

    fn event_types(&self) -> Option<&'static [&'static str]> {
        Some(&["FacilityRegistered", "FacilityUpdated"])
    }

    /// A registration or an update sets the profile; the registration time stays the
    /// first one (`careloop_backbone::rows::fold`).
    async fn apply(&self, events: &[StoredEvent], tx: &mut PgConnection) -> anyhow::Result<()> {
        rows::fold(tx, "facilities", "facility_id", events, |row, e| {
            let (FacilityEvent::FacilityRegistered(p) | FacilityEvent::FacilityUpdated(p)) =
                e.decode::<FacilityEvent>()?;
            *row = Some(StoredFacility {
                facility_id: e.aggregate_id.clone(),
                name: p.name,
                hl7_senders: p.hl7_senders,
                registered_at: row
                    .as_ref()
                    .map_or(e.recorded_at, |r: &StoredFacility| r.registered_at),
                updated_at: e.recorded_at,
            });
            Ok(())
        })
        .await
    }
}

/// Every column of `facilities`, as the projection holds a row.
#[derive(Debug, Serialize, Deserialize)]
struct StoredFacility {
    facility_id: String,
    name: String,
    hl7_senders: Vec<Hl7Sender>,
    #[serde(serialize_with = "rows::micros")]
    registered_at: DateTime<Utc>,
    #[serde(serialize_with = "rows::micros")]
    updated_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct FacilityRow {
    pub facility_id: String,
    pub name: String,
    pub hl7_senders: serde_json::Value,
}

/// Lookups on the registry.
#[derive(Clone)]
pub struct Registry {
    pub pool: PgPool,
    pub facilities: Arc<Cqrs<Facility>>,
    pub store: Arc<store::EventStore<Facility>>,
    pub read_model: ProjectionRunner,
}

impl Registry {
    pub async fn list(&self) -> sqlx::Result<Vec<FacilityRow>> {
        sqlx::query_as(
            "SELECT facility_id, name, hl7_senders FROM intake.facilities ORDER BY name, facility_id",
        )
        .fetch_all(&self.pool)
        .await
    }

    pub async fn get(&self, id: &str) -> sqlx::Result<Option<FacilityRow>> {
        sqlx::query_as(
            "SELECT facility_id, name, hl7_senders FROM intake.facilities WHERE facility_id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
    }

    /// Whether `id` is registered, from the event store itself (so a facility is
    /// known the moment its registration commits, read model or not).
    pub async fn is_registered(&self, id: &str) -> Result<bool, Problem> {
        let facility: Facility = store::load(&self.store, id)
            .await
            .map_err(store::to_problem)?;
        Ok(facility.profile.is_some())
    }

    /// The registered facility an HL7 message's MSH-3/MSH-4 name, if any.
    pub async fn by_hl7_sender(
        &self,
        application: &str,
        facility: &str,
    ) -> sqlx::Result<Option<String>> {
        sqlx::query_scalar(
            "SELECT f.facility_id FROM intake.facilities f,
                    jsonb_array_elements(f.hl7_senders) s
             WHERE upper(trim(s->>'facility')) = upper(trim($2))
               AND (s->>'application' IS NULL OR s->>'application' = ''
                    OR upper(trim(s->>'application')) = upper(trim($1)))
             ORDER BY (s->>'application' IS NULL OR s->>'application' = '') LIMIT 1",
        )
        .bind(application)
        .bind(facility)
        .fetch_optional(&self.pool)
        .await
    }

    /// Registers (or, when `update`, changes) a facility; HL7 sender codes must not
    /// name another facility already.
    pub async fn save(
        &self,
        id: &str,
        profile: FacilityProfile,
        update: bool,
        meta: &Metadata,
    ) -> Result<(), Problem> {
        for (i, s) in profile.hl7_senders.iter().enumerate() {
            let owner = self
                .by_hl7_sender(s.application.as_deref().unwrap_or(""), &s.facility)
                .await
                .map_err(Problem::from)?;
            if owner.as_deref().is_some_and(|o| o != id) {
                return Err(Problem::invalid(
                    format!("hl7_senders[{i}]"),
                    "these HL7 codes identify another facility already",
                ));
            }
        }
        let command = if update {
            FacilityCommand::Update(profile)
        } else {
            FacilityCommand::Register(profile)
        };
        store::execute(&self.facilities, id, command, meta)
            .await
            .map_err(|e| match e {
                AggregateError::UserError(e) => e.into(),
                other => store::to_problem::<FacilityError>(other),
            })
    }
}

/// The access rule of each route here (enforced by the access layer).
pub const RULES: &[RouteRule] = &[
    RouteRule::token("GET", "/v1/facilities", &[Needs::read("Organization")]),
    RouteRule::token("POST", "/v1/facilities", &[Needs::write("Organization")]),
    RouteRule::token(
        "GET",
        "/v1/facilities/{facility}",
        &[Needs::read("Organization")],
    ),
    RouteRule::token(
        "PUT",
        "/v1/facilities/{facility}",
        &[Needs::write("Organization")],
    ),
];

pub fn routes(registry: Registry) -> Router {
    Router::new()
        .route("/v1/facilities", get(list).post(register))
        .route("/v1/facilities/{facility}", get(show).put(update))
        .with_state(registry)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FacilityRequest {
    id: Option<String>,
    name: String,
    #[serde(default)]
    hl7_senders: Vec<Hl7Sender>,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn profile(body: FacilityRequest) -> Result<FacilityProfile, Problem> {
    if body.name.trim().is_empty() || body.name.len() > 200 {
        return Err(Problem::invalid("name", "name must be 1-200 characters"));
    }
    let mut senders = Vec::new();
    for (i, s) in body.hl7_senders.into_iter().enumerate() {
        let facility = s.facility.trim().to_string();
        if facility.is_empty() || facility.len() > 180 {
            return Err(Problem::invalid(
                format!("hl7_senders[{i}].facility"),
                "MSH-4 code must be 1-180 characters",
            ));
        }
        senders.push(Hl7Sender {
            application: s
                .application
                .map(|a| a.trim().to_string())
                .filter(|a| !a.is_empty()),
            facility,
        });
    }
    Ok(FacilityProfile {
        name: body.name.trim().to_string(),
        hl7_senders: senders,
    })
}

async fn list(
    State(r): State<Registry>,
    principal: Authenticated,
) -> Result<Json<serde_json::Value>, Problem> {
    principal.require(&[Role::Admin, Role::Coordinator, Role::Hospital])?;
    let mut rows = r.list().await.map_err(Problem::from)?;
    // A hospital sees its own facility only.
    rows.retain(|f| principal.may_see_facility(&f.facility_id));
    Ok(Json(
        serde_json::json!({ "items": rows, "next_cursor": null }),
    ))
}

async fn show(
    State(r): State<Registry>,
    principal: Authenticated,
    Path(id): Path<String>,
) -> Result<Json<FacilityRow>, Problem> {
    principal.require(&[Role::Admin, Role::Coordinator, Role::Hospital])?;
    if !principal.may_see_facility(&id) {
        return Err(Problem::forbidden("another facility"));
    }
    r.get(&id)
        .await
        .map_err(Problem::from)?
        .map(Json)
        .ok_or_else(|| Problem::not_found(format!("no facility {id}")))
}

async fn register(
    State(r): State<Registry>,
    principal: Authenticated,
    CorrelationId(correlation): CorrelationId,
    ApiJson(body): ApiJson<FacilityRequest>,
) -> Result<(axum::http::StatusCode, Json<serde_json::Value>), Problem> {
    principal.require(&[Role::Admin])?;
    let id = body.id.clone().unwrap_or_default();
    if !valid_id(&id) {
        return Err(Problem::invalid(
            "id",
            "id must be 1-64 characters a-z, 0-9 or '-' (e.g. st-marys)",
        ));
    }
    let profile = profile(body)?;
    let meta = Metadata::new(correlation).actor(principal.actor());
    r.save(&id, profile, false, &meta).await?;
    Ok((
        axum::http::StatusCode::CREATED,
        Json(serde_json::json!({ "facility_id": id })),
    ))
}

async fn update(
    State(r): State<Registry>,
    principal: Authenticated,
    CorrelationId(correlation): CorrelationId,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<FacilityRequest>,
) -> Result<Json<serde_json::Value>, Problem> {
    principal.require(&[Role::Admin])?;
    if body.id.as_deref().is_some_and(|b| b != id) {
        return Err(Problem::invalid(
            "id",
            "the id in the body differs from the path",
        ));
    }
    let profile = profile(body)?;
    let meta = Metadata::new(correlation).actor(principal.actor());
    r.save(&id, profile, true, &meta).await?;
    Ok(Json(serde_json::json!({ "facility_id": id })))
}
