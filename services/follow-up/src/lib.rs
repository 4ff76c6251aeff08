//! The follow-up service owns the FollowUpPlan of each referral: scheduled contacts,
//! the contact log and deadlines, i.e. the peer's worklist.
//!
//! Consumes PeerAssigned (peer-assignment); emits ContactRecorded.

pub mod api;
pub mod domain;
pub mod handlers;
pub mod integration;
pub mod read_model;

use std::sync::Arc;

use careloop_backbone::db::Migration;
use careloop_backbone::store::{self, Cqrs};
use careloop_backbone::{Backbone, Consumer, ProjectionRunner, Relay, Service};

use domain::FollowUpPlan;

pub const SERVICE: &str = "follow-up";
pub const SCHEMA: &str = "follow_up";

const MIGRATIONS: &[Migration] = &[Migration {
    name: "0001_follow_up_read_model",
    sql: include_str!("../migrations/0001_read_model.sql"),
}];

#[derive(Clone)]
pub struct FollowUpService {
    backbone: Backbone,
    cqrs: Arc<Cqrs<FollowUpPlan>>,
}

impl FollowUpService {
    pub fn new(backbone: &Backbone) -> Self {
        FollowUpService {
            cqrs: store::cqrs(backbone.pool.clone(), SCHEMA, ()),
            backbone: backbone.clone(),
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

    fn migrations(&self) -> &'static [Migration] {
        MIGRATIONS
    }

    fn routes(&self) -> axum::Router {
        api::routes(api::AppState {
            pool: self.backbone.pool.clone(),
            cqrs: self.cqrs.clone(),
        })
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
            "peer-assignment",
            Arc::new(handlers::Handlers {
                cqrs: self.cqrs.clone(),
            }),
        )]
    }

    fn projections(&self) -> Vec<ProjectionRunner> {
        vec![ProjectionRunner::new(
            self.backbone.pool.clone(),
            SCHEMA,
            Arc::new(read_model::FollowUps),
        )]
    }
}
