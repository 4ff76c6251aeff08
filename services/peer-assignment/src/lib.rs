//! The peer-assignment service owns the roster of peers (profile, capacity) and the
//! assignment of each referral to a peer, or to the waitlist.
//!
//! Consumes ReferralReceived (referral); emits PeerAssigned and AssignmentWaitlisted.

pub mod api;
pub mod domain;
pub mod integration;
pub mod matching;
pub mod read_model;

use std::sync::Arc;

use careloop_backbone::db::Migration;
use careloop_backbone::store::{self, Cqrs};
use careloop_backbone::{Backbone, Consumer, Metadata, ProjectionRunner, Relay, Service};

use domain::{Assignment, Peer, PeerCommand, PeerProfile};

pub const SERVICE: &str = "peer-assignment";
pub const SCHEMA: &str = "peer_assignment";

const MIGRATIONS: &[Migration] = &[Migration {
    name: "0001_peer_assignment_read_model",
    sql: include_str!("../migrations/0001_read_model.sql"),
}];

#[derive(Clone)]
pub struct PeerAssignmentService {
    backbone: Backbone,
    peers: Arc<Cqrs<Peer>>,
    assignments: Arc<Cqrs<Assignment>>,
}

impl PeerAssignmentService {
    pub fn new(backbone: &Backbone) -> Self {
        PeerAssignmentService {
            peers: store::cqrs(backbone.pool.clone(), SCHEMA, ()),
            assignments: store::cqrs(backbone.pool.clone(), SCHEMA, ()),
            backbone: backbone.clone(),
        }
    }

    /// Registers a small demo roster when no peer was ever registered. Returns how
    /// many peers it added.
    pub async fn seed_demo_roster(&self) -> anyhow::Result<usize> {
        let any: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM peer_assignment.events WHERE aggregate_type = 'Peer' LIMIT 1",
        )
        .fetch_optional(&self.backbone.pool)
        .await?;
        if any.is_some() {
            return Ok(0);
        }
        let demo = [
            (
                "Jordan Lee",
                &["en", "es"][..],
                "male",
                &["depression", "veteran"][..],
                &["681"][..],
            ),
            (
                "Sam Okafor",
                &["en"][..],
                "female",
                &["bipolar", "lgbtq"][..],
                &["681", "680"][..],
            ),
            (
                "Maria Torres",
                &["es", "en"][..],
                "female",
                &["psychosis", "parent"][..],
                &["680"][..],
            ),
            (
                "Alex Chen",
                &["en", "zh"][..],
                "nonbinary",
                &["substance use", "youth"][..],
                &["681"][..],
            ),
        ];
        let meta = Metadata::new("demo-roster").actor("careloop dev");
        for (name, languages, gender, lived, regions) in demo {
            let profile = PeerProfile {
                name: name.into(),
                languages: languages.iter().map(|s| s.to_string()).collect(),
                gender: Some(gender.into()),
                lived_experience: lived.iter().map(|s| s.to_string()).collect(),
                regions: regions.iter().map(|s| s.to_string()).collect(),
                modes: vec!["phone".into(), "in_person".into()],
                max_caseload: 12,
            };
            let id = uuid::Uuid::new_v4().to_string();
            store::execute(&self.peers, &id, PeerCommand::Register(profile), &meta)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        Ok(demo.len())
    }
}

impl Service for PeerAssignmentService {
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
            peers: self.peers.clone(),
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
            "referral",
            Arc::new(matching::Matcher {
                pool: b.pool.clone(),
                peers: self.peers.clone(),
                assignments: self.assignments.clone(),
                assignment_store: Arc::new(store::event_store(b.pool.clone(), SCHEMA)),
            }),
        )]
    }

    fn projections(&self) -> Vec<ProjectionRunner> {
        vec![ProjectionRunner::new(
            self.backbone.pool.clone(),
            SCHEMA,
            Arc::new(read_model::Roster),
        )]
    }
}
