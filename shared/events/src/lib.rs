//! Integration events exchanged between careloop services (`careloop.events.v1`).
//!
//! Generated from `proto/` at build time; the `contract` module (re-exported here) holds the plain
//! Rust values services share (statuses, priorities, outcomes, matching inputs) with
//! their conversions. Every message on NATS is one [`v1::Envelope`]
//! whose `payload` is one of the event messages; none of them carries PHI.

pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/careloop.events.v1.rs"));
}

mod contract;
mod time;

pub use contract::{
    Channel, ContactOutcome, MatchingInputs, PlanOutcome, Priority, READMISSION_WINDOW_DAYS,
    ReferralStatus, is_readmission, readmission_window,
};
pub use time::{from_timestamp, timestamp};

pub use v1::envelope::Payload;

impl Payload {
    /// The event's message name, which is also the last token of its NATS subject.
    pub fn event_type(&self) -> &'static str {
        match self {
            Payload::ReferralSubmitted(_) => "ReferralSubmitted",
            Payload::AdmissionRecorded(_) => "AdmissionRecorded",
            Payload::ConsentRevoked(_) => "ConsentRevoked",
            Payload::PersonErased(_) => "PersonErased",
            Payload::AdmissionCancelled(_) => "AdmissionCancelled",
            Payload::ReferralWithdrawn(_) => "ReferralWithdrawn",
            Payload::EncounterRecorded(_) => "EncounterRecorded",
            Payload::ReferralReceived(_) => "ReferralReceived",
            Payload::ReferralAccepted(_) => "ReferralAccepted",
            Payload::ReferralRejected(_) => "ReferralRejected",
            Payload::ReferralStatusChanged(_) => "ReferralStatusChanged",
            Payload::ReferralCancelled(_) => "ReferralCancelled",
            Payload::PeerAssigned(_) => "PeerAssigned",
            Payload::PeerUnassigned(_) => "PeerUnassigned",
            Payload::AssignmentWaitlisted(_) => "AssignmentWaitlisted",
            Payload::ContactRecorded(_) => "ContactRecorded",
            Payload::FollowUpOverdue(_) => "FollowUpOverdue",
            Payload::FollowUpClosed(_) => "FollowUpClosed",
            Payload::ReadmissionLinked(_) => "ReadmissionLinked",
            Payload::ReadmissionUnlinked(_) => "ReadmissionUnlinked",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::v1::*;
    use prost::Message;

    #[test]
    fn an_envelope_round_trips_through_protobuf() {
        let env = Envelope {
            event_id: uuid::Uuid::new_v4().to_string(),
            event_type: "PeerAssigned".into(),
            aggregate_sequence: 3,
            previous_sequence: 1,
            payload: Some(envelope::Payload::PeerAssigned(PeerAssigned {
                referral_id: "r".into(),
                peer_id: "p".into(),
                priority: Priority::Asap as i32,
                ..Default::default()
            })),
            ..Default::default()
        };
        let bytes = env.encode_to_vec();
        assert_eq!(Envelope::decode(bytes.as_slice()).unwrap(), env);
    }
}
