//! The follow-up service owns the FollowUpPlan of each referral: check-ins from the
//! follow-up protocol, the contact log, durable deadlines and readmissions, i.e. the
//! peer's worklist and the coordinator's overdue list.
//!
//! Consumes PeerAssigned and PeerUnassigned (peer-assignment), ReferralCancelled,
//! ReferralRejected and entered-in-error changes (referral), AdmissionRecorded and
//! AdmissionCancelled (intake); emits ContactRecorded, FollowUpClosed and
//! ReadmissionLinked. The [`readmissions`] process manager links admissions to plans.
//!
//! It also hosts the continuity-of-care measures (`careloop-measures`): their facts,
//! read model, report and metrics live in its process and schema.

pub mod api;
pub mod billing;
pub mod caring;
pub mod deadlines;
pub mod documentation;
pub mod domain;
pub mod goals;
pub mod handlers;
pub mod integration;
pub mod metrics;
pub mod notes;
pub mod read_model;
pub mod readmissions;

use std::sync::Arc;

use careloop_backbone::db::Migration;
use careloop_backbone::store::{self, Cqrs};
use careloop_backbone::{Backbone, Consumer, ProjectionRunner, Relay, Service, Shutdown};

use careloop_backbone::Chain;
use domain::FollowUpPlan;

pub const SERVICE: &str = "follow-up";
pub const SCHEMA: &str = "follow_up";

const MIGRATIONS: &[Migration] = &[
    // Follow-up's own, then the measures' it hosts (see careloop_measures::MIGRATIONS).
    Migration {
        name: "0001_follow_up_read_model",
        sql: include_str!("../migrations/0001_read_model.sql"),
    },
    Migration {
        name: "0002_measures",
        sql: include_str!("../migrations/0002_measures.sql"),
    },
    Migration {
        name: "0003_contact_notes",
        sql: include_str!("../migrations/0003_contact_notes.sql"),
    },
    Migration {
        name: "0004_person_admissions",
        sql: include_str!("../migrations/0004_person_admissions.sql"),
    },
    Migration {
        name: "0005_person_care_from_events",
        sql: include_str!("../migrations/0005_person_care_from_events.sql"),
    },
    Migration {
        name: "0006_peer_practice",
        sql: include_str!("../migrations/0006_peer_practice.sql"),
    },
    Migration {
        name: "0007_caring_contacts",
        sql: include_str!("../migrations/0007_caring_contacts.sql"),
    },
    careloop_measures::MIGRATIONS[0],
    careloop_measures::MIGRATIONS[1],
    // The vault's keys (schema `vault`, shared with intake; idempotent): contact
    // notes are sealed under the person's data key.
    Migration {
        name: "vault_0001",
        sql: careloop_vault::MIGRATION_SQL,
    },
];

#[derive(Clone)]
pub struct FollowUpService {
    backbone: Backbone,
    cqrs: Arc<Cqrs<FollowUpPlan>>,
    vault: careloop_vault::Vault,
}

impl FollowUpService {
    pub fn new(backbone: &Backbone) -> Self {
        FollowUpService {
            cqrs: store::cqrs(backbone.pool.clone(), SCHEMA, ()),
            vault: careloop_vault::Vault::new(
                backbone.pool.clone(),
                careloop_vault::Keyring::from_settings(&backbone.settings.identity),
            ),
            backbone: backbone.clone(),
        }
    }
}

impl FollowUpService {
    /// The deadline check (the service runs it every 15 s; tests run it with their
    /// own clock).
    pub fn deadline_check(&self) -> deadlines::DeadlineCheck {
        deadlines::DeadlineCheck {
            pool: self.backbone.pool.clone(),
            cqrs: self.cqrs.clone(),
        }
    }
}

impl Service for FollowUpService {
    fn name(&self) -> &'static str {
        SERVICE
    }

    fn schema(&self) -> &'static str {
        SCHEMA
    }

    fn holds_phi(&self) -> bool {
        true
    }

    fn migrations(&self) -> &'static [Migration] {
        MIGRATIONS
    }

    fn routes(&self) -> axum::Router {
        api::routes(api::AppState {
            pool: self.backbone.pool.clone(),
            cqrs: self.cqrs.clone(),
            vault: self.vault.clone(),
            service_codes: Arc::new(self.backbone.settings.service_codes.clone()),
            caring_contacts: self.backbone.settings.protocol.caring_contacts,
        })
        .merge(careloop_measures::api::routes(self.backbone.pool.clone()))
    }

    fn route_rules(&self) -> Vec<careloop_web::RouteRule> {
        [
            api::RULES,
            documentation::RULES,
            goals::RULES,
            billing::RULES,
            caring::RULES,
            careloop_measures::api::RULES,
        ]
        .concat()
    }

    fn relay(&self) -> Option<Relay> {
        Some(
            self.backbone
                .relay(SERVICE, SCHEMA, Arc::new(integration::Mapper)),
        )
    }

    fn consumers(&self) -> Vec<Consumer> {
        let b = &self.backbone;
        let readmissions = readmissions::ReadmissionLinker {
            people: store::cqrs(b.pool.clone(), SCHEMA, ()),
            people_store: Arc::new(store::event_store(b.pool.clone(), SCHEMA)),
            plans: self.cqrs.clone(),
        };
        let follow_up = Arc::new(handlers::Handlers {
            cqrs: self.cqrs.clone(),
            readmissions,
            protocol: (&b.settings.protocol).into(),
        });
        let measures = Arc::new(careloop_measures::recorder::recorder(
            b.pool.clone(),
            SCHEMA,
            SERVICE,
        ));
        let handler = Arc::new(Chain(vec![measures, follow_up]));
        ["peer-assignment", "referral", "intake"]
            .into_iter()
            .map(|source| b.consumer(SERVICE, SCHEMA, source, handler.clone()))
            .collect()
    }

    fn workers(&self, shutdown: &Shutdown) -> Vec<tokio::task::JoinHandle<()>> {
        vec![
            tokio::spawn(
                self.deadline_check()
                    .run(std::time::Duration::from_secs(15), shutdown.clone()),
            ),
            tokio::spawn(careloop_measures::metrics::run(
                self.backbone.pool.clone(),
                std::time::Duration::from_secs(15),
                shutdown.clone(),
            )),
            tokio::spawn(seal_clear_notes(
                self.backbone.pool.clone(),
                self.vault.clone(),
                shutdown.clone(),
            )),
        ]
    }

    fn projections(&self) -> Vec<ProjectionRunner> {
        vec![
            self.backbone
                .projection(SCHEMA, Arc::new(read_model::FollowUps)),
            self.backbone
                .projection(SCHEMA, Arc::new(careloop_measures::read_model::Measures)),
        ]
    }
}

/// Seals contact notes kept in the clear before the vault, once, retrying until it
/// succeeds or the service stops.
async fn seal_clear_notes(pool: sqlx::PgPool, vault: careloop_vault::Vault, shutdown: Shutdown) {
    careloop_backbone::shutdown::until_done("sealing clear contact notes", shutdown, || async {
        let n = notes::upgrade_clear_notes(&pool, &vault).await?;
        if n > 0 {
            tracing::info!(sealed = n, "contact notes written in the clear sealed");
        }
        Ok(())
    })
    .await
}
