//! The namespace that prefixes every NATS name (stream, subjects, consumers), so
//! several careloop installations, or parallel tests, share one NATS server safely.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace(String);

impl Namespace {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The JetStream stream holding every integration event of this namespace.
    pub fn stream_name(&self) -> String {
        format!("{}_EVENTS", self.0.to_uppercase())
    }

    /// The subject of one integration event emitted by `service`.
    pub fn event_subject(&self, service: &str, event_type: &str) -> String {
        format!("{}.events.{service}.{event_type}", self.0)
    }

    /// All events emitted by `service`.
    pub fn service_filter(&self, service: &str) -> String {
        format!("{}.events.{service}.>", self.0)
    }

    /// All events of this namespace.
    pub fn all_events(&self) -> String {
        format!("{}.events.>", self.0)
    }

    /// The durable consumer name of `consumer` (a service) reading `source`'s events.
    pub fn durable_name(&self, consumer: &str, source: &str) -> String {
        format!("{}_{consumer}_from_{source}", self.0)
    }
}

impl TryFrom<&str> for Namespace {
    type Error = String;

    fn try_from(value: &str) -> Result<Self, Self::Error> {
        let ok = !value.is_empty()
            && value.len() <= 40
            && value.starts_with(|c: char| c.is_ascii_lowercase())
            && value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if ok {
            Ok(Namespace(value.to_string()))
        } else {
            Err(format!(
                "must be 1-40 characters a-z, 0-9, '_' or '-', starting with a letter; got {value:?}"
            ))
        }
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
