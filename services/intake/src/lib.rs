//! The intake service is the hospital edge and the PHI vault: it takes referrals in
//! (REST, FHIR R4, HL7 v2), keeps the person's identifying details (names, birth date,
//! phone, identifiers) to itself, and emits ReferralSubmitted with only a random
//! `person_ref`. It closes the loop with the hospital: it mirrors each referral's
//! status ([`tasks`]) as a FHIR Task and pushes each change to the facility's webhook
//! ([`closed_loop`]). It hosts identity and access (`careloop-identity`): the
//! facility registry, SMART clients and careloop's token endpoint, staff sign-in and
//! sessions, and the audit log of every PHI access.

pub mod api;
#[cfg(test)]
mod channel_parity;
pub mod closed_loop;
pub mod contact_card;
pub mod domain;
pub mod erasure;
pub mod fhir;
pub mod fuzz;
pub mod hl7;
pub mod identity;
pub mod integration;
pub mod reception;
pub mod retention;
pub mod sealing;
pub mod subscriptions;
pub mod tasks;

use std::sync::Arc;

use careloop_backbone::db::Migration;
use careloop_backbone::store::{self, Cqrs};
use careloop_backbone::{Backbone, Consumer, ProjectionRunner, Relay, Service, Shutdown};

use domain::{Admission, Person, ReferralSubmission, ReferralTask};

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
    Migration {
        name: "0003_edges",
        sql: include_str!("../migrations/0003_edges.sql"),
    },
    Migration {
        name: "0004_contact_card",
        sql: include_str!("../migrations/0004_contact_card.sql"),
    },
    Migration {
        name: "0005_hl7_message_hash",
        sql: include_str!("../migrations/0005_hl7_message_hash.sql"),
    },
    Migration {
        name: "0006_referral_tasks_from_events",
        sql: include_str!("../migrations/0006_referral_tasks_from_events.sql"),
    },
    // Identity, hosted here (see careloop_identity::MIGRATIONS).
    careloop_identity::MIGRATIONS[0],
    // The vault's keys (schema `vault`, shared with follow-up; idempotent).
    Migration {
        name: "vault_0001",
        sql: careloop_vault::MIGRATION_SQL,
    },
    Migration {
        name: "0007_vault",
        sql: include_str!("../migrations/0007_vault.sql"),
    },
    Migration {
        name: "0008_subscriptions",
        sql: include_str!("../migrations/0008_subscriptions.sql"),
    },
    Migration {
        name: "0009_last_holder",
        sql: include_str!("../migrations/0009_last_holder.sql"),
    },
];

#[derive(Clone)]
pub struct IntakeService {
    /// Where the MLLP listener listens, once it does.
    mllp_addr: Arc<std::sync::OnceLock<std::net::SocketAddr>>,
    backbone: Backbone,
    persons: Arc<Cqrs<Person>>,
    submissions: Arc<Cqrs<ReferralSubmission>>,
    admissions: Arc<Cqrs<Admission>>,
    encounters: Arc<Cqrs<domain::Encounter>>,
    tasks: Arc<Cqrs<ReferralTask>>,
    identity: careloop_identity::Identity,
    vault: careloop_vault::Vault,
    seal: Arc<sealing::IntakeSeal>,
}

impl IntakeService {
    pub fn new(backbone: &Backbone) -> Self {
        let vault = careloop_vault::Vault::new(
            backbone.pool.clone(),
            careloop_vault::Keyring::from_settings(&backbone.settings.identity),
        );
        let seal = Arc::new(sealing::IntakeSeal {
            vault: vault.clone(),
        });
        IntakeService {
            persons: store::sealed_cqrs(backbone.pool.clone(), SCHEMA, (), seal.clone()),
            submissions: store::sealed_cqrs(backbone.pool.clone(), SCHEMA, (), seal.clone()),
            admissions: store::cqrs(backbone.pool.clone(), SCHEMA, ()),
            encounters: store::cqrs(backbone.pool.clone(), SCHEMA, ()),
            tasks: store::cqrs(backbone.pool.clone(), SCHEMA, ()),
            identity: careloop_identity::Identity::new(backbone),
            vault,
            seal,
            mllp_addr: Default::default(),
            backbone: backbone.clone(),
        }
    }
}

impl IntakeService {
    /// The address the HL7 v2 MLLP listener is bound to (after the service started).
    pub fn mllp_addr(&self) -> Option<std::net::SocketAddr> {
        self.mllp_addr.get().copied()
    }

    fn start_mllp(&self, shutdown: &Shutdown) -> Option<tokio::task::JoinHandle<()>> {
        let addr = self.backbone.settings.mllp_addr;
        let listener = std::net::TcpListener::bind(addr)
            .and_then(|l| l.set_nonblocking(true).map(|_| l))
            .and_then(tokio::net::TcpListener::from_std);
        let listener = match listener {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(%addr, error = %e, "HL7 MLLP listener not started (CARELOOP_MLLP_ADDR)");
                return None;
            }
        };
        if let Ok(a) = listener.local_addr() {
            let _ = self.mllp_addr.set(a);
            tracing::info!(addr = %a, "HL7 v2 MLLP listening");
        }
        let inbound = hl7::inbound::Inbound {
            pool: self.backbone.pool.clone(),
            reception: self.reception(),
        };
        let limits = hl7::mllp::Limits {
            read_timeout: self.backbone.settings.mllp_read_timeout,
            deadline: self.backbone.settings.request_timeout,
            ..Default::default()
        };
        Some(tokio::spawn(hl7::mllp::serve(
            listener,
            inbound,
            limits,
            shutdown.clone(),
        )))
    }

    /// Identity and access, hosted here.
    pub fn identity(&self) -> &careloop_identity::Identity {
        &self.identity
    }

    /// The reception every channel goes through.
    pub fn reception(&self) -> reception::Reception {
        reception::Reception {
            pool: self.backbone.pool.clone(),
            persons: self.persons.clone(),
            submissions: self.submissions.clone(),
            admissions: self.admissions.clone(),
            encounters: self.encounters.clone(),
            person_store: Arc::new(store::sealed_event_store(
                self.backbone.pool.clone(),
                SCHEMA,
                self.seal.clone(),
            )),
            facilities: self.identity.registry.clone(),
            audit: self.identity.audit.clone(),
            vault: self.vault.clone(),
        }
    }

    /// careloop's public URL, without a trailing slash (FHIR URLs are made from it).
    fn public_url(&self) -> String {
        let url = &self.backbone.settings.identity.public_url;
        url.trim_end_matches('/').to_string()
    }

    /// The PHI vault's keys.
    pub fn vault(&self) -> &careloop_vault::Vault {
        &self.vault
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
            reception: self.reception(),
        })
        .merge(closed_loop::api::routes(closed_loop::api::WebhookState {
            pool: self.backbone.pool.clone(),
            allowed_hosts: self.backbone.settings.webhook_allowed_hosts.clone(),
        }))
        .merge(contact_card::routes(contact_card::CardState {
            pool: self.backbone.pool.clone(),
            reception: self.reception(),
        }))
        .merge(erasure::routes(erasure::ErasureState {
            pool: self.backbone.pool.clone(),
            reception: self.reception(),
            retention: self.backbone.settings.retention.clone(),
        }))
        .merge(fhir::api::routes(fhir::api::FhirState {
            pool: self.backbone.pool.clone(),
            reception: self.reception(),
            public_url: self.public_url(),
            webhook_allowed_hosts: self.backbone.settings.webhook_allowed_hosts.clone(),
        }))
        .merge(self.identity.routes())
        .merge(careloop_console::routes(careloop_console::Console {
            sessions: self.identity.sessions.clone(),
            changes: careloop_console::Changes::listen(self.backbone.pool.clone()),
        }))
    }

    fn key_source(&self) -> Option<Arc<dyn careloop_web::jwks::KeySource>> {
        Some(self.identity.key_source())
    }

    fn holds_phi(&self) -> bool {
        true
    }

    fn route_rules(&self) -> Vec<careloop_web::RouteRule> {
        [
            api::RULES,
            closed_loop::api::RULES,
            contact_card::RULES,
            erasure::RULES,
            fhir::api::RULES,
            &self.identity.route_rules(),
            careloop_console::RULES,
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
        let mirror = Arc::new(tasks::mirror::TaskMirror {
            tasks: self.tasks.clone(),
        });
        ["referral", "peer-assignment"]
            .into_iter()
            .map(|source| b.consumer(SERVICE, SCHEMA, source, mirror.clone()))
            .collect()
    }

    fn workers(&self, shutdown: &Shutdown) -> Vec<tokio::task::JoinHandle<()>> {
        let mut dispatcher = closed_loop::dispatcher::Dispatcher::new(
            self.backbone.pool.clone(),
            self.backbone.settings.webhook_retry_base,
        );
        dispatcher.allowed_hosts = self.backbone.settings.webhook_allowed_hosts.clone();
        let retention = retention::Retention {
            pool: self.backbone.pool.clone(),
            reception: self.reception(),
            settings: self.backbone.settings.retention.clone(),
        };
        let notifier = subscriptions::notifier::Notifier {
            pool: self.backbone.pool.clone(),
            retry_base: self.backbone.settings.webhook_retry_base,
            allowed_hosts: self.backbone.settings.webhook_allowed_hosts.clone(),
            public_url: self.public_url(),
        };
        let mut tasks = vec![
            tokio::spawn(dispatcher.run(shutdown.clone())),
            tokio::spawn(notifier.run(shutdown.clone())),
            tokio::spawn(retention.run(shutdown.clone())),
            tokio::spawn(sealing::upgrade_at_start(
                self.backbone.pool.clone(),
                self.vault.clone(),
                shutdown.clone(),
            )),
        ];
        tasks.extend(self.start_mllp(shutdown));
        tasks
    }

    fn projections(&self) -> Vec<ProjectionRunner> {
        let mut runners = vec![
            self.backbone
                .projection(SCHEMA, Arc::new(tasks::read_model::Tasks)),
        ];
        runners.extend(self.identity.projections());
        runners
    }

    fn reactors(&self) -> Vec<ProjectionRunner> {
        vec![
            self.backbone
                .projection(SCHEMA, Arc::new(closed_loop::outbox::WebhookOutbox)),
        ]
    }
}
