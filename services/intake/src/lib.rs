//! The intake service is the hospital edge and the PHI vault: it takes referrals in,
//! keeps the person's identifying details (names, birth date, phone, identifiers) to
//! itself, and emits ReferralSubmitted with only a random `person_ref`. It closes the
//! loop with the hospital: referral status changes go to the facility's webhook.

pub mod api;
pub mod closed_loop;
pub mod domain;
pub mod identity;
pub mod integration;

use std::sync::Arc;

use careloop_backbone::db::Migration;
use careloop_backbone::store::{self, Cqrs};
use careloop_backbone::{Backbone, Consumer, ProjectionRunner, Relay, Service, Shutdown};

use domain::{Admission, Person, ReferralSubmission};

pub const SERVICE: &str = "intake";
pub const SCHEMA: &str = "intake";

const MIGRATIONS: &[Migration] = &[
    Migration {
        name: "0001_person_vault",
        sql: include_str!("../migrations/0001_person_vault.sql"),
    },
    Migration {
        name: "0002_closed_loop",
        sql: include_str!("../migrations/0002_closed_loop.sql"),
    },
];

#[derive(Clone)]
pub struct IntakeService {
    backbone: Backbone,
    persons: Arc<Cqrs<Person>>,
    submissions: Arc<Cqrs<ReferralSubmission>>,
    admissions: Arc<Cqrs<Admission>>,
}

impl IntakeService {
    pub fn new(backbone: &Backbone) -> Self {
        IntakeService {
            persons: store::cqrs(backbone.pool.clone(), SCHEMA, ()),
            submissions: store::cqrs(backbone.pool.clone(), SCHEMA, ()),
            admissions: store::cqrs(backbone.pool.clone(), SCHEMA, ()),
            backbone: backbone.clone(),
        }
    }
}

impl Service for IntakeService {
    fn name(&self) -> &'static str {
        SERVICE
    }

    fn schema(&self) -> &'static str {
        SCHEMA
    }

    fn migrations(&self) -> &'static [Migration] {
        MIGRATIONS
    }

    fn routes(&self) -> axum::Router {
        api::routes(api::AppState {
            pool: self.backbone.pool.clone(),
            persons: self.persons.clone(),
            submissions: self.submissions.clone(),
            admissions: self.admissions.clone(),
        })
        .merge(closed_loop::api::routes(self.backbone.pool.clone()))
    }

    fn relay(&self) -> Relay {
        let b = &self.backbone;
        Relay::new(
            b.pool.clone(),
            b.js.clone(),
            b.namespace.clone(),
            SERVICE,
            SCHEMA,
            Arc::new(integration::Mapper),
        )
    }

    fn consumers(&self) -> Vec<Consumer> {
        let b = &self.backbone;
        vec![Consumer::new(
            b.pool.clone(),
            b.js.clone(),
            b.namespace.clone(),
            SERVICE,
            SCHEMA,
            "referral",
            Arc::new(closed_loop::deliveries::StatusChanges),
        )]
    }

    fn workers(&self, shutdown: &Shutdown) -> Vec<tokio::task::JoinHandle<()>> {
        let dispatcher = closed_loop::dispatcher::Dispatcher::new(
            self.backbone.pool.clone(),
            self.backbone.settings.webhook_retry_base,
        );
        vec![tokio::spawn(dispatcher.run(shutdown.clone()))]
    }

    fn projections(&self) -> Vec<ProjectionRunner> {
        vec![]
    }
}
