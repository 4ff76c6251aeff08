//! careloop as one process: all four services on one HTTP port. `careloop dev` runs
//! this; so do the end-to-end tests, which start exactly what `careloop dev` starts.

pub mod bench;
pub mod cli;
pub mod dev;
pub mod frontdoor;
pub mod routes;

use std::future::Future;
use std::sync::Arc;

use careloop_backbone::{Backbone, Host, ProjectionRunner, Service};
use careloop_config::Settings;
use careloop_follow_up::FollowUpService;
use careloop_intake::IntakeService;
use careloop_peer_assignment::PeerAssignmentService;
use careloop_referral::ReferralService;
use tokio::net::TcpListener;

pub struct Application {
    host: Host,
    intake: IntakeService,
    peer_assignment: PeerAssignmentService,
}

impl Application {
    /// Connects to Postgres and NATS, creates the database if missing and applies
    /// every service's migrations.
    pub async fn build(settings: &Settings) -> anyhow::Result<Self> {
        let backbone = Backbone::connect(settings).await?;
        let peer_assignment = PeerAssignmentService::new(&backbone);
        let intake = IntakeService::new(&backbone);
        let services: Vec<Arc<dyn Service>> = vec![
            Arc::new(intake.clone()),
            Arc::new(ReferralService::new(&backbone)),
            Arc::new(peer_assignment.clone()),
            Arc::new(FollowUpService::new(&backbone)),
        ];
        let host = Host::new(backbone, services);
        host.migrate().await?;
        Ok(Application {
            host,
            intake,
            peer_assignment,
        })
    }

    pub fn backbone(&self) -> &Backbone {
        &self.host.backbone
    }

    pub fn services(&self) -> &[Arc<dyn Service>] {
        &self.host.services
    }

    /// Every read model of every service, for `careloop replay`.
    pub fn projections(&self) -> Vec<ProjectionRunner> {
        self.host
            .services
            .iter()
            .flat_map(|s| s.projections())
            .collect()
    }

    /// A handle on the intake service (its MLLP address once serving).
    pub fn intake(&self) -> IntakeService {
        self.intake.clone()
    }

    /// `careloop dev`'s demo: a roster of four peers (when none was ever registered),
    /// two facilities, and a staff account for each demo person. Returns how many
    /// peers it added.
    pub async fn seed_demo(&self) -> anyhow::Result<usize> {
        let peers = self.peer_assignment.seed_demo_roster().await?;
        self.intake.identity().seed_demo(&peers).await?;
        Ok(peers.len())
    }

    /// Serves until `signal` resolves, then drains.
    pub async fn serve(
        self,
        listener: TcpListener,
        signal: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        self.host.serve(listener, signal).await
    }
}
