//! How the follow-up service reacts to other services' events.

use std::sync::Arc;

use careloop_backbone::store::{self, Cqrs};
use careloop_backbone::{EventHandler, Incoming};
use careloop_events::{Payload, from_timestamp, v1};
use sqlx::PgConnection;

use crate::domain::{FollowUpCommand, FollowUpPlan};

pub struct Handlers {
    pub cqrs: Arc<Cqrs<FollowUpPlan>>,
}

#[async_trait::async_trait]
impl EventHandler for Handlers {
    async fn handle(&self, event: &Incoming, _tx: &mut PgConnection) -> anyhow::Result<()> {
        let Payload::PeerAssigned(a) = &event.payload else {
            return Ok(());
        };
        let priority = match v1::Priority::try_from(a.priority) {
            Ok(v1::Priority::Asap) => "asap",
            Ok(v1::Priority::Urgent) => "urgent",
            _ => "routine",
        };
        let command = FollowUpCommand::Start {
            peer_id: a.peer_id.clone(),
            facility: a.facility.clone(),
            priority: priority.to_string(),
            discharged_at: from_timestamp(a.discharged_at.as_ref()),
            first_contact_due_at: from_timestamp(a.first_contact_due_at.as_ref()),
        };
        let meta = event.metadata(crate::SERVICE);
        store::tolerate_refusal(store::execute(&self.cqrs, &a.referral_id, command, &meta).await)
    }
}
