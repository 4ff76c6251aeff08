//! The referral service owns the Referral: its lifecycle (FHIR Task statuses),
//! priority and due dates, and the timeline a coordinator or hospital reads.
//!
//! Consumes ReferralSubmitted, ReferralWithdrawn and ConsentRevoked (intake),
//! PeerAssigned, PeerUnassigned and AssignmentWaitlisted (peer-assignment), and
//! ContactRecorded, FollowUpClosed and ReadmissionLinked (follow-up); emits
//! ReferralReceived, ReferralAccepted, ReferralRejected, ReferralStatusChanged and
//! ReferralCancelled. The [`consent`] process manager cancels a person's referrals
//! when their consent is revoked.

pub mod api;
pub mod consent;
pub mod domain;
pub mod handlers;
pub mod integration;
pub mod overdue;
pub mod read_model;

use std::sync::Arc;

use careloop_backbone::db::Migration;
use careloop_backbone::store::{self, Cqrs};
use careloop_backbone::{Backbone, Consumer, ProjectionRunner, Relay, Service, Shutdown};

use domain::Referral;

pub const SERVICE: &str = "referral";
pub const SCHEMA: &str = "referral";

const MIGRATIONS: &[Migration] = &[
    Migration {
        name: "0001_referral_read_model",
        sql: include_str!("../migrations/0001_read_model.sql"),
    },
    Migration {
        name: "0002_consent",
        sql: include_str!("../migrations/0002_consent.sql"),
    },
    Migration {
        name: "0003_person_referrals_from_events",
        sql: include_str!("../migrations/0003_person_referrals_from_events.sql"),
    },
];

#[derive(Clone)]
pub struct ReferralService {
    backbone: Backbone,
    cqrs: Arc<Cqrs<Referral>>,
    http: reqwest::Client,
}

impl ReferralService {
    pub fn new(backbone: &Backbone) -> Self {
        ReferralService {
            cqrs: store::cqrs(backbone.pool.clone(), SCHEMA, ()),
            backbone: backbone.clone(),
            http: reqwest::Client::new(),
        }
    }
}

impl ReferralService {
    /// The deadline check (the service runs it every 15 s; tests run it with their
    /// own clock).
    pub fn overdue_check(&self) -> overdue::OverdueCheck {
        overdue::OverdueCheck {
            pool: self.backbone.pool.clone(),
            cqrs: self.cqrs.clone(),
        }
    }
}

impl Service for ReferralService {
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
            store: Arc::new(store::event_store(self.backbone.pool.clone(), SCHEMA)),
            reroute_after_reject: self.backbone.settings.reroute_after_reject,
            intake_url: Some(
                self.backbone
                    .settings
                    .identity
                    .public_url
                    .trim_end_matches('/')
                    .to_string(),
            ),
            http: self.http.clone(),
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
        let consent = consent::ConsentGuard {
            people: store::cqrs(b.pool.clone(), SCHEMA, ()),
            referrals: self.cqrs.clone(),
        };
        let handler = Arc::new(handlers::Handlers {
            cqrs: self.cqrs.clone(),
            consent,
            acceptance_due: b.settings.acceptance_due,
            first_contact_due: b.settings.first_contact_due,
        });
        ["intake", "peer-assignment", "follow-up"]
            .into_iter()
            .map(|source| b.consumer(SERVICE, SCHEMA, source, handler.clone()))
            .collect()
    }

    fn projections(&self) -> Vec<ProjectionRunner> {
        vec![
            self.backbone
                .projection(SCHEMA, Arc::new(read_model::Referrals)),
        ]
    }

    fn workers(&self, shutdown: &Shutdown) -> Vec<tokio::task::JoinHandle<()>> {
        vec![tokio::spawn(
            self.overdue_check()
                .run(std::time::Duration::from_secs(15), shutdown.clone()),
        )]
    }
}
