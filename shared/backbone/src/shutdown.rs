//! A cloneable shutdown signal: background loops finish the message in hand, then stop.

use tokio::sync::watch;

#[derive(Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// Triggers every [`Shutdown`] made from it.
pub struct ShutdownTrigger(watch::Sender<bool>);

impl Shutdown {
    pub fn new() -> (ShutdownTrigger, Shutdown) {
        let (tx, rx) = watch::channel(false);
        (ShutdownTrigger(tx), Shutdown(rx))
    }

    pub fn is_triggered(&self) -> bool {
        *self.0.borrow()
    }

    /// Resolves once shutdown is triggered (or the trigger is dropped).
    pub async fn wait(&mut self) {
        let _ = self.0.wait_for(|v| *v).await;
    }
}

impl ShutdownTrigger {
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

/// Runs `pass` every `interval` until shutdown; a failed pass is logged and retried
/// at the next tick. For background checks that work from state (deadlines, metric
/// snapshots), so a missed tick only delays them.
pub async fn every<F, Fut>(
    what: &'static str,
    interval: std::time::Duration,
    mut shutdown: Shutdown,
    mut pass: F,
) where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    while !shutdown.is_triggered() {
        if let Err(e) = pass().await {
            tracing::warn!(error = %format!("{e:#}"), "{what} failed; will retry");
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.wait() => {}
        }
    }
}

/// Runs `work` until it succeeds once, retrying with backoff (1 s doubling to a
/// minute), or until shutdown. For one-time work at start (upgrading data written by
/// an older careloop) that must not wait for a periodic tick to be retried.
pub async fn until_done<F, Fut>(what: &'static str, mut shutdown: Shutdown, mut work: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let mut retries = careloop_backoff::Backoff::new(
        std::time::Duration::from_secs(1),
        std::time::Duration::from_secs(60),
    )
    .start();
    while !shutdown.is_triggered() {
        match work().await {
            Ok(()) => return,
            Err(e) => tracing::warn!(error = %format!("{e:#}"), "{what} failed; will retry"),
        }
        tokio::select! {
            _ = retries.wait() => {}
            _ = shutdown.wait() => {}
        }
    }
}
