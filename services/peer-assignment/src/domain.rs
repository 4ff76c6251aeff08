//! Two aggregates: the Peer (profile and caseload, whose capacity is never exceeded)
//! and the Assignment of one referral (proposal, assignment or waitlist).

mod assignment;
mod peer;

pub use assignment::{
    Assignment, AssignmentCommand, AssignmentError, AssignmentEvent, AssignmentRequest,
};
pub use peer::{
    Availability, Certification, Peer, PeerCommand, PeerError, PeerEvent, PeerPatch, PeerProfile,
};
