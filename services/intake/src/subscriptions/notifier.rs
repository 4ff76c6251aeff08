//! Sends FHIR subscription notifications: the handshake of a new subscription, its
//! heartbeats, and its event notifications in event-number order, each at least once
//! (claimed with a lease, like webhook deliveries), retried with backoff. After
//! [`MAX_FAILURES`] failed attempts in a row a subscription goes to `error`; careloop
//! keeps retrying at the longest interval, and the first success makes it `active`
//! again, so nothing queued is dropped. A claim's lease (2 minutes) outlasts the
//! longest send (60 s): each subscription has one notification in flight at a time.

use std::time::Duration;

use careloop_backbone::Shutdown;
use careloop_backoff::Backoff;
use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

use super::resource::{Content, Status};
use crate::fhir::history;

/// Failed attempts in a row after which a subscription is in `error`.
pub const MAX_FAILURES: i32 = 5;

#[derive(Clone)]
pub struct Notifier {
    pub pool: PgPool,
    pub retry_base: Duration,
    /// Hosts allowed although not public (as for webhooks).
    pub allowed_hosts: Vec<String>,
    /// careloop's public URL: notifications name `{this}/fhir/Subscription/{id}`.
    pub public_url: String,
}

/// One notification claimed for sending, with its subscription.
#[derive(sqlx::FromRow)]
struct Due {
    id: i64,
    subscription_id: Uuid,
    kind: String,
    event_number: Option<i64>,
    referral_id: Option<String>,
    task_version: Option<i32>,
    occurred_at: Option<DateTime<Utc>>,
    attempts: i32,
    endpoint: String,
    headers: Vec<String>,
    content: String,
    timeout_secs: i32,
    events_since_start: i64,
}

impl Notifier {
    /// Queues the heartbeats due, then sends the notifications due; how many it sent.
    pub async fn run_once(&self) -> anyhow::Result<usize> {
        sqlx::query(
            "INSERT INTO intake.fhir_notifications (subscription_id, kind)
             SELECT s.id, 'heartbeat' FROM intake.fhir_subscriptions s
             WHERE s.status = 'active' AND s.heartbeat_secs IS NOT NULL
               AND COALESCE(s.last_sent_at, s.created_at) < now() - s.heartbeat_secs * interval '1 second'
               AND NOT EXISTS (SELECT 1 FROM intake.fhir_notifications n
                               WHERE n.subscription_id = s.id AND n.state = 'pending')",
        )
        .execute(&self.pool)
        .await?;
        // The oldest pending notification of each subscription that may be sent now
        // (the handshake before anything else), with a lease.
        let due: Vec<Due> = sqlx::query_as(
            "WITH claimed AS (
                 UPDATE intake.fhir_notifications n
                 SET next_attempt_at = now() + interval '120 seconds'
                 WHERE n.id IN (
                     SELECT n.id FROM intake.fhir_notifications n
                     JOIN intake.fhir_subscriptions s ON s.id = n.subscription_id
                     WHERE n.state = 'pending' AND n.next_attempt_at <= now()
                       AND ((n.kind = 'handshake' AND s.status IN ('requested', 'error'))
                            OR (n.kind <> 'handshake' AND s.status IN ('active', 'error')))
                       AND NOT EXISTS (SELECT 1 FROM intake.fhir_notifications e
                                       WHERE e.subscription_id = n.subscription_id
                                         AND e.state = 'pending' AND e.id < n.id)
                     ORDER BY n.next_attempt_at, n.id
                     LIMIT 20
                     FOR UPDATE OF n SKIP LOCKED)
                 RETURNING n.*)
             SELECT c.id, c.subscription_id, c.kind, c.event_number, c.referral_id,
                    c.task_version, c.occurred_at, c.attempts, s.endpoint,
                    s.headers, s.content, s.timeout_secs, s.events_since_start
             FROM claimed c JOIN intake.fhir_subscriptions s ON s.id = c.subscription_id
             ORDER BY c.id",
        )
        .fetch_all(&self.pool)
        .await?;
        // Sent side by side (each subscription has at most one in flight, so order
        // holds), all within the lease: a slow endpoint holds up no other.
        let results = futures::future::join_all(due.iter().map(|d| self.send(d))).await;
        results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
        Ok(due.len())
    }

    async fn send(&self, d: &Due) -> anyhow::Result<()> {
        let subscription_url = format!(
            "{}/fhir/Subscription/{}",
            self.public_url, d.subscription_id
        );
        let task_url = d
            .referral_id
            .as_ref()
            .map(|id| format!("{}/fhir/Task/{id}", self.public_url));
        let event = match (d.event_number, d.occurred_at, &task_url) {
            (Some(n), Some(at), Some(url)) => Some((n, at, url.clone())),
            _ => None,
        };
        let status = Status {
            subscription_url: &subscription_url,
            status: if d.kind == "handshake" {
                "requested"
            } else {
                "active"
            },
            kind: &d.kind,
            events_since_start: d.event_number.unwrap_or(d.events_since_start),
            event,
            error: None,
        };
        let task = match (Content::parse(&d.content), &task_url, &d.referral_id) {
            (Some(Content::IdOnly), Some(url), _) => Some((url.clone(), None)),
            (Some(Content::FullResource), Some(url), Some(id)) => {
                let resource = history::one(&self.pool, id)
                    .await?
                    .and_then(|h| h.render(d.task_version.unwrap_or(1).max(1) as usize));
                Some((url.clone(), resource))
            }
            _ => None,
        };
        let body = status.bundle(task).to_string();
        let result = self.post(d, body).await;
        let attempt = d.attempts + 1;
        let mut tx = self.pool.begin().await?;
        match result {
            Ok(()) => {
                sqlx::query(
                    "UPDATE intake.fhir_notifications SET state = 'delivered', attempts = $2,
                        delivered_at = now(), last_error = NULL WHERE id = $1",
                )
                .bind(d.id)
                .bind(attempt)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "UPDATE intake.fhir_subscriptions SET last_sent_at = now(), status = 'active',
                        error = NULL WHERE id = $1 AND status <> 'off'",
                )
                .bind(d.subscription_id)
                .execute(&mut *tx)
                .await?;
            }
            Err(why) => {
                tracing::warn!(
                    notification = d.id,
                    attempt,
                    "subscription notification failed"
                );
                let delay = Backoff::new(self.retry_base, Duration::from_secs(3600))
                    .delay(attempt.max(1) as u32);
                sqlx::query(
                    "UPDATE intake.fhir_notifications SET attempts = $2, last_error = $3,
                        next_attempt_at = now() + $4 * interval '1 millisecond' WHERE id = $1",
                )
                .bind(d.id)
                .bind(attempt)
                .bind(&why)
                .bind(delay.as_millis() as f64)
                .execute(&mut *tx)
                .await?;
                if attempt >= MAX_FAILURES {
                    sqlx::query(
                        "UPDATE intake.fhir_subscriptions SET status = 'error', error = $2
                         WHERE id = $1 AND status <> 'off'",
                    )
                    .bind(d.subscription_id)
                    .bind(format!("{attempt} attempts in a row failed: {why}"))
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// POSTs `body` to the subscription's endpoint (checked as webhooks are, and sent
    /// to the address checked); the failure as the subscriber may be told it.
    async fn post(&self, d: &Due, body: String) -> Result<(), String> {
        let (host, addr) =
            crate::closed_loop::destination::resolve(&d.endpoint, &self.allowed_hosts).await?;
        let mut client = reqwest::Client::builder()
            .timeout(Duration::from_secs(d.timeout_secs.max(1) as u64))
            .user_agent("careloop-subscriptions/1")
            // A redirect would go where the address check never looked.
            .redirect(reqwest::redirect::Policy::none());
        if host.parse::<std::net::IpAddr>().is_err() {
            client = client.resolve(&host, addr);
        }
        let client = client.build().map_err(|_| "no HTTP client".to_string())?;
        let mut request = client
            .post(&d.endpoint)
            .header("Content-Type", "application/fhir+json")
            .body(body);
        for h in &d.headers {
            if let Some((name, value)) = h.split_once(':') {
                request = request.header(name.trim(), value.trim());
            }
        }
        match request.send().await {
            Ok(res) if res.status().is_success() => Ok(()),
            Ok(res) => Err(format!("answered {}", res.status())),
            Err(e) if e.is_timeout() => Err(format!("no answer within {} s", d.timeout_secs)),
            Err(e) if e.is_connect() => Err("could not connect".into()),
            Err(_) => Err("the request failed".into()),
        }
    }

    pub async fn run(self, mut shutdown: Shutdown) {
        while !shutdown.is_triggered() {
            let sent = match self.run_once().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "subscription notifications failed; will retry");
                    0
                }
            };
            if sent == 0 {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                    _ = shutdown.wait() => {}
                }
            }
        }
    }
}
