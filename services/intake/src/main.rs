//! The intake service alone, for the distributed deployment.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    careloop_backbone::host::run_one(careloop_intake::IntakeService::new).await
}
