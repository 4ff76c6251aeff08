//! The closed loop by FHIR subscription (R4 Subscriptions Backport IG, as the SDOH
//! Clinical Care IG names it): a hospital subscribes to careloop's Task topic with a
//! `rest-hook` channel and is notified of each status change of its Tasks.
//!
//! - [`resource`]: the Subscription as a client sends it (topic, filters, channel,
//!   payload content, heartbeat period) and the notification Bundles careloop sends
//!   (a `history` Bundle whose first entry is the SubscriptionStatus `Parameters`);
//! - [`api`]: create, read, delete and `$status`;
//! - [`outbox`]: each TaskStatusChanged queues a notification for every matching
//!   subscription, numbered per subscription, in the same transaction that moves the
//!   closed loop's outbox position (the webhooks' outbox): nothing is lost or queued
//!   twice across a crash, and numbers never repeat or skip;
//! - [`notifier`]: sends the handshake at activation, heartbeats at the requested
//!   period and event notifications in order, at least once, retried with backoff; a
//!   subscription whose notifications keep failing goes to `error`.

pub mod api;
pub mod notifier;
pub mod outbox;
pub mod resource;

/// careloop's topic: a Task of the subscriber's facility changed status.
pub const TOPIC: &str = "http://careloop.dev/fhir/SubscriptionTopic/task-status";

/// The Backport IG's extensions and profiles.
pub const BACKPORT: &str = "http://hl7.org/fhir/uv/subscriptions-backport/StructureDefinition";
