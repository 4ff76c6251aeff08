//! The peer-assignment service alone, for the distributed deployment.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    careloop_backbone::host::run_one(careloop_peer_assignment::PeerAssignmentService::new).await
}
