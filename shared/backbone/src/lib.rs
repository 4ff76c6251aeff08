//! The event backbone every careloop service stands on.
//!
//! - [`db`]: the service's Postgres schema, its migrations and the backbone tables
//!   (events with outbox columns, cursors, consumer positions, dead letters).
//! - [`store`]: cqrs-es over the service's events table (postgres-es loads, one
//!   statement appends a command's events); commands retried on
//!   optimistic-concurrency conflicts; [`recent`]: the aggregates just written, kept
//!   so the next command on one skips its load.
//! - [`outbox`]: reads committed events in commit-safe order (xid8 snapshot cursor).
//! - [`relay`]: publishes the outbox to JetStream, exactly once in effect.
//! - [`consumer`]: durable pull consumers that apply events idempotently, in
//!   per-aggregate order, and dead-letter what keeps failing.
//! - [`projection`]: read models fed from the outbox with a stored position, and replay;
//!   [`rows`]: whole read-model rows in and out a batch at a time.
//! - [`nats`]: the namespaced stream; [`metrics`]: backbone health gauges.

pub mod consumer;
pub mod db;
pub mod host;
pub mod metrics;
pub mod nats;
pub mod operations;
pub mod outbox;
pub mod projection;
pub mod recent;
pub mod relay;
pub mod rows;
pub mod shutdown;
pub mod store;

pub use consumer::{Chain, Consumer, Disposition, EventHandler, Incoming};
pub use host::{AbortOnDrop, Backbone, Host, Service};
pub use outbox::StoredEvent;
pub use projection::{Projection, ProjectionRunner};
pub use relay::{IntegrationMapper, Relay};
pub use shutdown::Shutdown;
pub use store::{Cqrs, Metadata};

/// The allocator of every careloop binary, each of which names it as its
/// `#[global_allocator]`: mimalloc rather than the system's. careloop allocates and
/// frees many small buffers for every event (rows, JSON, protobuf, statements), and
/// under load glibc's malloc and free took about a tenth of its CPU; with mimalloc
/// `careloop bench` used about a tenth less CPU per referral (README, Performance).
pub use mimalloc::MiMalloc as Allocator;
