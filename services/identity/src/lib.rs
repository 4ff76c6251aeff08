//! Identity and access: who may do what in careloop, and the record of what they did.
//!
//! - [`facilities`]: the facility registry (hospitals, with the HL7 codes that name
//!   them); nothing creates a facility implicitly;
//! - [`clients`] and [`smart`]: hospitals' systems, registered per facility with
//!   their public keys, get short-lived access tokens by SMART Backend Services
//!   (`private_key_jwt`) at careloop's token endpoint;
//! - [`keys`] and [`tokens`]: careloop's rotating ES256 signing keys (sealed at rest)
//!   and the access tokens it signs; the public keys at `/.well-known/jwks.json`;
//! - [`sessions`] and [`staff`]: staff sign in to the console through the
//!   organisation's OpenID Connect provider (or, in dev mode, as a demo person); an
//!   administrator keeps their accounts;
//! - [`audit`]: the append-only audit log of PHI access, sign-ins and token decisions.
//!
//! A crate of its own, hosted by the intake service (in its process and schema): the
//! edge where hospitals and staff come in, next to the PHI vault whose reads it
//! audits. The trust model is in `docs/security.md`.

pub mod audit;
pub mod clients;
pub mod facilities;
pub mod keys;
pub mod sessions;
pub mod smart;
pub mod staff;
pub mod tokens;

use std::sync::Arc;

use axum::Router;
use careloop_backbone::db::Migration;
use careloop_backbone::store;
use careloop_backbone::{Backbone, Metadata, ProjectionRunner};
use careloop_web::RouteRule;
use careloop_web::jwks::KeySource;

/// The schema identity's tables and events live in (its host's).
pub const SCHEMA: &str = "intake";

/// Identity's migrations, applied in the hosting service's schema after its own.
pub const MIGRATIONS: [Migration; 1] = [Migration {
    name: "identity_0001",
    sql: include_str!("../migrations/0001_identity.sql"),
}];

#[derive(Clone)]
pub struct Identity {
    backbone: Backbone,
    pub keys: Arc<keys::KeyStore>,
    pub registry: facilities::Registry,
    pub clients: clients::Clients,
    pub audit: audit::Audit,
    pub sessions: sessions::Sessions,
}

impl Identity {
    pub fn new(backbone: &Backbone) -> Self {
        let settings = &backbone.settings.identity;
        let pool = backbone.pool.clone();
        let kek = settings.key_encryption_key_or_dev();
        let keys = Arc::new(keys::KeyStore::new(
            pool.clone(),
            &kek,
            settings.key_rotation,
        ));
        let audit = audit::Audit::new(pool.clone(), SCHEMA);
        let tokens = tokens::TokenIssuer {
            keys: keys.clone(),
            issuer: settings.public_url.clone(),
        };
        Identity {
            registry: facilities::Registry {
                pool: pool.clone(),
                facilities: store::cqrs(pool.clone(), SCHEMA, ()),
                store: Arc::new(store::event_store(pool.clone(), SCHEMA)),
                read_model: backbone.projection(SCHEMA, Arc::new(facilities::Facilities)),
            },
            clients: clients::Clients::new(pool.clone()),
            sessions: sessions::Sessions::new(pool, settings.clone(), tokens, audit.clone()),
            keys,
            audit,
            backbone: backbone.clone(),
        }
    }

    pub fn tokens(&self) -> tokens::TokenIssuer {
        self.sessions.tokens.clone()
    }

    pub fn routes(&self) -> Router {
        let pool = self.backbone.pool.clone();
        facilities::routes(self.registry.clone())
            .merge(clients::routes(clients::ClientsApi {
                clients: self.clients.clone(),
                registry: self.registry.clone(),
                audit: self.audit.clone(),
            }))
            .merge(smart::routes(smart::Smart {
                clients: self.clients.clone(),
                tokens: self.tokens(),
                audit: self.audit.clone(),
            }))
            .merge(staff::routes(staff::StaffApi {
                pool: pool.clone(),
                registry: self.registry.clone(),
                audit: self.audit.clone(),
            }))
            .merge(sessions::routes(self.sessions.clone()))
            .merge(audit::routes(pool))
    }

    pub fn route_rules(&self) -> Vec<RouteRule> {
        [
            facilities::RULES,
            clients::RULES,
            smart::RULES,
            staff::RULES,
            sessions::RULES,
            audit::RULES,
        ]
        .concat()
    }

    pub fn projections(&self) -> Vec<ProjectionRunner> {
        vec![
            self.registry.read_model.clone(),
            self.backbone.projection(SCHEMA, Arc::new(audit::AuditLog)),
        ]
    }

    pub fn key_source(&self) -> Arc<dyn KeySource> {
        self.keys.clone()
    }

    /// `careloop dev`'s demo: two facilities with their HL7 codes, and a staff account
    /// for a coordinator, an administrator, each facility's liaison and each of
    /// `peers` (roster id, name). Registering again changes nothing.
    pub async fn seed_demo(&self, peers: &[(String, String)]) -> anyhow::Result<()> {
        let meta = Metadata::new("demo-identity").actor("careloop dev");
        for (id, name, codes) in [
            (
                "st-marys",
                "St. Mary's Hospital",
                ["ST MARYS", "ST. MARY'S"],
            ),
            ("mercy", "Mercy Medical Center", ["MERCY", "MERCY MEDICAL"]),
        ] {
            let profile = facilities::FacilityProfile {
                name: name.into(),
                hl7_senders: codes
                    .iter()
                    .map(|c| facilities::Hl7Sender {
                        application: None,
                        facility: c.to_string(),
                    })
                    .collect(),
            };
            self.registry
                .save(id, profile, false, &meta)
                .await
                .map_err(|p| anyhow::anyhow!("{p}"))?;
        }
        let pool = &self.backbone.pool;
        let account =
            |sub: &str, name: &str, role: &str, facility: Option<&str>, peer: Option<&str>| {
                staff::Account {
                    sub: sub.into(),
                    name: Some(name.into()),
                    role: role.into(),
                    facility: facility.map(String::from),
                    peer_id: peer.map(String::from),
                }
            };
        let mut accounts = vec![
            account(
                "demo-coordinator",
                "Casey Morgan (coordinator)",
                "coordinator",
                None,
                None,
            ),
            account(
                "demo-admin",
                "Avery Patel (administrator)",
                "admin",
                None,
                None,
            ),
            account(
                "demo-liaison-st-marys",
                "Robin Hale (St. Mary's liaison)",
                "hospital",
                Some("st-marys"),
                None,
            ),
            account(
                "demo-liaison-mercy",
                "Dana Cruz (Mercy liaison)",
                "hospital",
                Some("mercy"),
                None,
            ),
        ];
        for (peer_id, name) in peers {
            let sub = format!("demo-peer-{}", &peer_id[..8.min(peer_id.len())]);
            accounts.push(account(
                &sub,
                &format!("{name} (peer)"),
                "peer",
                None,
                Some(peer_id),
            ));
        }
        for a in &accounts {
            if staff::find(pool, &a.sub).await?.is_none() {
                staff::save(pool, a)
                    .await
                    .map_err(|p| anyhow::anyhow!("{p}"))?;
            }
        }
        Ok(())
    }
}
