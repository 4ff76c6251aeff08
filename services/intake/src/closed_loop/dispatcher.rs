//! Sends due webhook deliveries: signed, with a timeout, retried with exponential
//! backoff (base × 2^(attempt-1), at most an hour apart) until delivered or until
//! `MAX_ATTEMPTS`, when the delivery is marked failed and stays visible.
//!
//! Deliveries are claimed with `FOR UPDATE SKIP LOCKED` and a lease, so several
//! instances share the work without sending one delivery twice at the same time.

use std::time::{Duration, Instant};

use careloop_backbone::Shutdown;
use careloop_backoff::Backoff;
use sqlx::PgPool;

use super::signature;

pub const MAX_ATTEMPTS: i32 = 12;

/// A failed delivery as the delivery log says it: the kind of failure, never the
/// transport's own message (it would tell a hospital about careloop's network).
fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "no answer within 10 s".into()
    } else if e.is_connect() {
        "could not connect".into()
    } else {
        "the request failed".into()
    }
}

#[derive(Clone)]
pub struct Dispatcher {
    pub pool: PgPool,
    pub http: reqwest::Client,
    pub retry_base: Duration,
    /// Hosts allowed although not public (see [`super::destination`]).
    pub allowed_hosts: Vec<String>,
}

impl Dispatcher {
    pub fn new(pool: PgPool, retry_base: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .user_agent("careloop-webhooks/1")
            // A redirect would go where the address check never looked.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("HTTP client");
        Dispatcher {
            pool,
            http,
            retry_base,
            allowed_hosts: Vec::new(),
        }
    }

    /// Sends the deliveries due now; returns how many it attempted.
    ///
    /// Deliveries are claimed with a lease (their next attempt moved a minute ahead)
    /// in a short transaction, sent with no transaction open (an open transaction
    /// would hold back every outbox reader on the server while a hospital endpoint is
    /// slow), and each result is recorded in a transaction of its own. A process that
    /// dies mid-send leaves the lease to expire: the delivery is sent again, and the
    /// receiver recognises it by `event_id` and `Careloop-Delivery`.
    pub async fn run_once(&self) -> anyhow::Result<usize> {
        let due: Vec<(i64, String, i32, String, String)> = sqlx::query_as(
            "WITH claimed AS (
                 UPDATE intake.webhook_deliveries d
                 SET next_attempt_at = now() + interval '60 seconds'
                 WHERE d.id IN (
                     SELECT id FROM intake.webhook_deliveries
                     WHERE state = 'pending' AND next_attempt_at <= now()
                     ORDER BY next_attempt_at, id
                     LIMIT 20
                     FOR UPDATE SKIP LOCKED)
                 RETURNING d.id, d.body, d.attempts, d.facility)
             SELECT c.id, c.body, c.attempts, w.url, w.secret
             FROM claimed c JOIN intake.facility_webhooks w ON w.facility = c.facility
             ORDER BY c.id",
        )
        .fetch_all(&self.pool)
        .await?;
        for (id, body, attempts, url, secret) in &due {
            self.send(*id, body, attempts + 1, url, secret).await?;
        }
        Ok(due.len())
    }

    async fn send(
        &self,
        id: i64,
        body: &str,
        attempt: i32,
        url: &str,
        secret: &str,
    ) -> anyhow::Result<()> {
        let started = Instant::now();
        let header = signature::sign(secret, chrono::Utc::now().timestamp(), body);
        // Checked again now (DNS may have changed since the webhook was configured),
        // and sent to the very address checked.
        let result = match super::destination::resolve(url, &self.allowed_hosts).await {
            Err(why) => Err(format!("not sent: {why}")),
            Ok((host, addr)) => {
                let client = if host.parse::<std::net::IpAddr>().is_ok() {
                    self.http.clone()
                } else {
                    reqwest::Client::builder()
                        .timeout(Duration::from_secs(10))
                        .user_agent("careloop-webhooks/1")
                        .redirect(reqwest::redirect::Policy::none())
                        .resolve(&host, addr)
                        .build()
                        .map_err(|e| anyhow::anyhow!("HTTP client: {e}"))?
                };
                client
                    .post(url)
                    .header("Content-Type", "application/json")
                    .header(signature::HEADER, header)
                    .header("Careloop-Delivery", id.to_string())
                    .body(body.to_string())
                    .send()
                    .await
                    .map_err(|e| describe(&e))
            }
        };
        let elapsed = started.elapsed().as_millis() as i32;
        let (code, error) = match &result {
            Ok(res) if res.status().is_success() => (Some(res.status().as_u16() as i32), None),
            Ok(res) => (
                Some(res.status().as_u16() as i32),
                Some(format!("answered {}", res.status())),
            ),
            Err(e) => (None, Some(e.clone())),
        };
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO intake.webhook_attempts (delivery_id, attempt, status_code, error, duration_ms)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .bind(attempt)
        .bind(code)
        .bind(&error)
        .bind(elapsed)
        .execute(&mut *tx)
        .await?;
        if error.is_none() {
            sqlx::query(
                "UPDATE intake.webhook_deliveries SET state = 'delivered', attempts = $2,
                    delivered_at = now() WHERE id = $1",
            )
            .bind(id)
            .bind(attempt)
            .execute(&mut *tx)
            .await?;
        } else {
            let state = if attempt >= MAX_ATTEMPTS {
                "failed"
            } else {
                "pending"
            };
            let delay = self.backoff(attempt);
            tracing::warn!(delivery = id, attempt, state, "webhook delivery failed");
            sqlx::query(
                "UPDATE intake.webhook_deliveries SET state = $2, attempts = $3,
                    next_attempt_at = now() + $4 * interval '1 millisecond' WHERE id = $1",
            )
            .bind(id)
            .bind(state)
            .bind(attempt)
            .bind(delay.as_millis() as f64)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The wait after the `attempt`-th failure: the base doubling, at most an hour.
    pub fn backoff(&self, attempt: i32) -> Duration {
        Backoff::new(self.retry_base, Duration::from_secs(3600)).delay(attempt.max(1) as u32)
    }

    pub async fn run(self, mut shutdown: Shutdown) {
        while !shutdown.is_triggered() {
            let sent = match self.run_once().await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), "webhook dispatch failed; will retry");
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
