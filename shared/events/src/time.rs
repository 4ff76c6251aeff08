//! Conversions between chrono times and protobuf `Timestamp`s.

use chrono::{DateTime, Utc};

pub fn timestamp(t: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: t.timestamp_subsec_nanos() as i32,
    }
}

/// A missing or out-of-range timestamp reads as the Unix epoch, so a consumer never
/// panics on a message from a newer or broken producer.
pub fn from_timestamp(t: Option<&prost_types::Timestamp>) -> DateTime<Utc> {
    t.and_then(|t| DateTime::from_timestamp(t.seconds, t.nanos.max(0) as u32))
        .unwrap_or_default()
}
