//! The peer-assignment service owns the roster of peers (profile, availability,
//! capacity) and the assignment of each referral to a peer, or to the waitlist.
//!
//! Consumes the referral service's events (ReferralReceived to match; cancelled,
//! rejected, entered in error or closed referrals free their peer's slot); emits
//! PeerAssigned, PeerUnassigned and AssignmentWaitlisted.

pub mod api;
pub mod domain;
pub mod integration;
pub mod matching;
pub mod metrics;
pub mod ranking;
pub mod read_model;
pub mod waitlist;

use std::sync::Arc;

use careloop_backbone::db::Migration;
use careloop_backbone::store::{self, Cqrs};
use careloop_backbone::{Backbone, Consumer, Metadata, ProjectionRunner, Relay, Service, Shutdown};

use domain::{Assignment, Peer, PeerCommand, PeerProfile};

pub const SERVICE: &str = "peer-assignment";
pub const SCHEMA: &str = "peer_assignment";

/// The read models' tables, after the backbone's (tests set a database up with them).
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        name: "0001_peer_assignment_read_model",
        sql: include_str!("../migrations/0001_read_model.sql"),
    },
    Migration {
        name: "0002_certifications",
        sql: include_str!("../migrations/0002_certifications.sql"),
    },
    Migration {
        name: "0003_waitlist_queue",
        sql: include_str!("../migrations/0003_waitlist_queue.sql"),
    },
];

#[derive(Clone)]
pub struct PeerAssignmentService {
    backbone: Backbone,
    peers: Arc<Cqrs<Peer>>,
    matcher: Arc<matching::Matcher>,
}

impl PeerAssignmentService {
    pub fn new(backbone: &Backbone) -> Self {
        let pool = backbone.pool.clone();
        let peers: Arc<Cqrs<Peer>> = store::cqrs(pool.clone(), SCHEMA, ());
        let matcher = Arc::new(matching::Matcher {
            pool: pool.clone(),
            peers: peers.clone(),
            assignments: store::cqrs::<Assignment>(pool.clone(), SCHEMA, ()),
            assignment_store: Arc::new(store::event_store(pool, SCHEMA)),
            weights: backbone.settings.match_weights,
        });
        PeerAssignmentService {
            peers,
            matcher,
            backbone: backbone.clone(),
        }
    }

    pub fn waitlist(&self) -> waitlist::WaitlistWorker {
        waitlist::WaitlistWorker {
            pool: self.backbone.pool.clone(),
            matcher: self.matcher.clone(),
        }
    }

    /// Registers a small demo roster when no peer was ever registered. Returns the
    /// peers it added (id, name).
    pub async fn seed_demo_roster(&self) -> anyhow::Result<Vec<(String, String)>> {
        if read_model::any_peer_registered(&self.backbone.pool).await? {
            return Ok(Vec::new());
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
        let mut added = Vec::new();
        let today = chrono::Utc::now().date_naive();
        for (n, (name, languages, gender, lived, regions)) in demo.into_iter().enumerate() {
            // One demo certification comes due within the month, for the coordinators'
            // list of expiries.
            let valid_for = if n == 1 { 20 } else { 300 + 30 * n as i64 };
            let profile = PeerProfile {
                name: name.into(),
                languages: languages.iter().map(|s| s.to_string()).collect(),
                gender: Some(gender.into()),
                lived_experience: lived.iter().map(|s| s.to_string()).collect(),
                regions: regions.iter().map(|s| s.to_string()).collect(),
                modes: vec!["phone".into(), "in_person".into()],
                max_caseload: 12,
                certification: Some(domain::Certification {
                    issuer: "Nebraska Certified Peer Support Specialist board".into(),
                    number: format!("CPSS-{:04}", 1017 + n),
                    expires_on: today + chrono::Duration::days(valid_for),
                }),
            };
            let id = uuid::Uuid::new_v4().to_string();
            store::execute(&self.peers, &id, PeerCommand::Register(profile), &meta)
                .await
                .map_err(store::into_anyhow)?;
            added.push((id, name.to_string()));
        }
        Ok(added)
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
            matcher: self.matcher.clone(),
            caseload_norm: self.backbone.settings.caseload_norm,
        })
    }

    fn route_rules(&self) -> Vec<careloop_web::RouteRule> {
        api::RULES.to_vec()
    }

    fn relay(&self) -> Option<Relay> {
        Some(
            self.backbone
                .relay(SERVICE, SCHEMA, Arc::new(integration::Mapper)),
        )
    }

    fn consumers(&self) -> Vec<Consumer> {
        let b = &self.backbone;
        vec![b.consumer(
            SERVICE,
            SCHEMA,
            "referral",
            Arc::new(matching::ReferralEvents(self.matcher.clone())),
        )]
    }

    fn workers(&self, shutdown: &Shutdown) -> Vec<tokio::task::JoinHandle<()>> {
        vec![tokio::spawn(self.waitlist().run(shutdown.clone()))]
    }

    fn projections(&self) -> Vec<ProjectionRunner> {
        vec![
            self.backbone
                .projection(SCHEMA, Arc::new(read_model::Roster)),
        ]
    }
}
