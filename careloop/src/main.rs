//! The `careloop` command. See `careloop help`.

#[global_allocator]
static ALLOCATOR: careloop_backbone::Allocator = careloop_backbone::Allocator;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Err(e) = careloop_app::cli::run(args).await {
        eprintln!("careloop: {e:#}");
        std::process::exit(1);
    }
}
