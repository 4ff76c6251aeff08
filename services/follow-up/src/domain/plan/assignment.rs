//! Who holds the plan: it starts when a peer is assigned (from the protocol), moves
//! with its history to another peer, is reopened for a rerouted referral, and is
//! held by nobody after a hand-back until a new peer takes it.

use cqrs_es::event_sink::EventSink;

use super::{FIRST_CONTACT, FollowUpError, FollowUpPlan, PlanState, closed};
use crate::domain::{CheckpointPlan, FollowUpCommand, FollowUpEvent, PlanStart};
use careloop_events::PlanOutcome;

impl FollowUpPlan {
    /// Commands before any plan exists: a start, or a cancel that keeps a late
    /// assignment from starting one.
    pub(super) async fn before_start(
        &mut self,
        command: FollowUpCommand,
        sink: &EventSink<Self>,
    ) -> Result<(), FollowUpError> {
        match command {
            FollowUpCommand::Start(start) => {
                sink.write(plan_started(&start), self).await;
                Ok(())
            }
            // The referral closed before any peer took it (the events came through
            // different consumers): a late assignment must not start a plan.
            FollowUpCommand::Cancel { reason, reopenable } => {
                sink.write(closed(PlanOutcome::Cancelled, reason, reopenable), self)
                    .await;
                Ok(())
            }
            _ => Err(FollowUpError::NoPlan),
        }
    }

    /// A PeerAssigned for a plan that exists: a redelivery changes nothing, a new
    /// peer takes the plan with its history, and a rerouted referral assigned again
    /// reopens a plan closed by its rejection.
    pub(super) async fn start_again(&mut self, start: PlanStart, sink: &EventSink<Self>) {
        if self.state == PlanState::Closed {
            if self.reopenable && start.attempt > self.attempt {
                let e = if self.discharged_at.is_none() {
                    // Rejected before any peer took it: the plan starts now.
                    plan_started(&start)
                } else {
                    FollowUpEvent::PlanReopened {
                        peer_id: start.peer_id,
                        attempt: start.attempt,
                    }
                };
                sink.write(e, self).await;
            }
            return;
        }
        if start.peer_id != self.peer_id {
            let e = FollowUpEvent::PlanReassigned {
                from_peer: self.peer_id.clone(),
                to_peer: start.peer_id,
            };
            sink.write(e, self).await;
        }
    }

    /// The peer gave the referral back. A closed plan keeps its peer: they may still
    /// back-enter contacts.
    pub(super) async fn unassign(&mut self, peer_id: String, sink: &EventSink<Self>) {
        let open = self.state != PlanState::Closed;
        if open && self.peer_id == peer_id && !peer_id.is_empty() {
            sink.write(FollowUpEvent::PlanUnassigned { peer_id }, self)
                .await;
        }
    }
}

/// The plan a new assignment starts, from the protocol.
fn plan_started(s: &PlanStart) -> FollowUpEvent {
    let mut checkpoints = vec![CheckpointPlan {
        name: FIRST_CONTACT.into(),
        window_start: s.discharged_at,
        due_at: s.first_contact_due_at,
    }];
    let mut window_start = s.discharged_at;
    for offset in &s.protocol.checkins {
        let due_at = s.discharged_at + *offset;
        checkpoints.push(CheckpointPlan {
            name: format!("day_{}", offset.num_days()),
            window_start,
            due_at,
        });
        window_start = due_at;
    }
    FollowUpEvent::PlanStarted {
        peer_id: s.peer_id.clone(),
        person_ref: s.person_ref.clone(),
        facility: s.facility.clone(),
        priority: s.priority,
        discharged_at: s.discharged_at,
        ends_at: s.discharged_at + s.protocol.ends_after,
        checkpoints,
        failed_after_attempts: s.protocol.failed_after_attempts,
        failed_after_secs: s.protocol.failed_after.num_seconds(),
        attempt: s.attempt,
    }
}
