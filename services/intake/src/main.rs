//! The intake service alone, for the distributed deployment.

#[global_allocator]
static ALLOCATOR: careloop_backbone::Allocator = careloop_backbone::Allocator;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    careloop_backbone::host::run_one(careloop_intake::IntakeService::new).await
}
