//! What changed, live: the read models announce each committed batch on the
//! `careloop_changes` channel (`shared/backbone/src/projection.rs`); one LISTEN
//! connection per process hears them and fans them out to the open consoles.

use std::time::Duration;

use careloop_backbone::projection::CHANGES;
use sqlx::PgPool;
use tokio::sync::broadcast;

/// One announcement: `{"read_model": "referrals", "ids": [...]}`.
#[derive(Clone)]
pub struct Changes {
    tx: broadcast::Sender<String>,
}

impl Changes {
    /// Listens on `pool`'s database until the process ends, reconnecting when the
    /// connection drops.
    pub fn listen(pool: PgPool) -> Self {
        let (tx, _) = broadcast::channel(1024);
        let sender = tx.clone();
        tokio::spawn(async move {
            loop {
                match sqlx::postgres::PgListener::connect_with(&pool).await {
                    Ok(mut l) => {
                        if l.listen(CHANGES).await.is_ok() {
                            while let Ok(n) = l.recv().await {
                                let _ = sender.send(n.payload().to_string());
                            }
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "change notifications unavailable"),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        });
        Changes { tx }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.tx.subscribe()
    }
}
