//! Contact documentation for billing and supervision: a contact's minutes come from
//! its start and end, its billed units from the service code's rounding; the peer
//! attests it; a supervisor signs it, after which it is locked and a change is an
//! addendum kept beside the original. [`missing`] is the one rule of what a billable
//! contact needs, used by signing here and by the billing export's exceptions.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use serde::Serialize;

use super::{FollowUpError, FollowUpPlan};
use crate::domain::{Channel, Documentation, FollowUpEvent};

/// Something a billable contact lacks, by the request field that would supply it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Missing {
    pub field: &'static str,
    pub reason: String,
}

/// What keeps a billable contact from being signed and billed; empty when nothing
/// does (and for a contact that is not billed).
pub fn missing(reached: bool, channel: Channel, doc: &Documentation) -> Vec<Missing> {
    let Some(billing) = &doc.billing else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut lacks = |field, reason: String| out.push(Missing { field, reason });
    if !reached {
        lacks(
            "outcome",
            "only a contact that reached the person is billable".into(),
        );
    }
    // A billed contact documents its start and its end, not only a duration.
    match (doc.ended_at, doc.duration_minutes) {
        (Some(_), Some(minutes)) if billing.units == 0 => lacks(
            "ended_at",
            format!(
                "{minutes} minutes make no unit of {} ({} minutes, {})",
                billing.service_code,
                billing.unit_minutes,
                rule_name(billing),
            ),
        ),
        (Some(_), Some(_)) => {}
        _ => lacks("ended_at", "the time the contact ended is not given".into()),
    }
    if channel == Channel::InPerson && doc.place.is_none() {
        lacks(
            "place",
            "an in-person contact needs its place: home, community or clinic".into(),
        );
    }
    if channel == Channel::Text {
        lacks(
            "channel",
            "a text message is not a billable peer support contact".into(),
        );
    }
    if billing.attested_at.is_none() {
        lacks(
            "billing.attested",
            "the peer has not attested the service".into(),
        );
    }
    out
}

/// `eight-minute rule`, `whole-units rule`, `any-part rule`.
fn rule_name(billing: &crate::domain::Billing) -> String {
    crate::domain::events_wire_name(&billing.rounding).replace('_', "-") + " rule"
}

/// Checks and completes documentation as given for a contact that began at
/// `occurred_at`: the minutes from the end time, and the billed units from them.
pub(super) fn completed(
    occurred_at: DateTime<Utc>,
    channel: Channel,
    mut doc: Documentation,
    now: DateTime<Utc>,
) -> Result<Documentation, FollowUpError> {
    let invalid = |field, reason: &str| Err(FollowUpError::Invalid(field, reason.into()));
    if let Some(ended_at) = doc.ended_at {
        if ended_at <= occurred_at {
            return invalid("ended_at", "the contact ends before it began");
        }
        if ended_at > now {
            return invalid("ended_at", "ended_at is in the future");
        }
        let minutes = (ended_at - occurred_at).num_minutes();
        if minutes > 24 * 60 {
            return invalid("ended_at", "a contact lasts at most 24 hours");
        }
        let minutes = minutes as u32;
        if doc.duration_minutes.is_some_and(|d| d != minutes) {
            return invalid(
                "duration_minutes",
                "duration_minutes disagrees with ended_at; give one of them",
            );
        }
        doc.duration_minutes = Some(minutes);
    }
    if doc.place.is_some() && channel != Channel::InPerson {
        return invalid("place", "only an in-person contact has a place");
    }
    if let Some(billing) = &mut doc.billing {
        billing.units = billing
            .rounding
            .units(doc.duration_minutes.unwrap_or(0), billing.unit_minutes);
    }
    Ok(doc)
}

/// An addendum as the command gives it.
pub(super) struct Addendum {
    pub addendum_id: String,
    pub text: String,
    pub added_by: String,
    pub now: DateTime<Utc>,
}

impl FollowUpPlan {
    pub(super) async fn document_contact(
        &mut self,
        contact_id: String,
        documentation: Documentation,
        by_peer: Option<String>,
        now: DateTime<Utc>,
        sink: &EventSink<Self>,
    ) -> Result<(), FollowUpError> {
        self.check_peer(by_peer.as_ref())?;
        let attempt = self.attempt(&contact_id)?;
        if attempt.signed {
            return Err(FollowUpError::ContactLocked);
        }
        // Only the peer who made the contact attests it (the plan may have moved on).
        let attester = documentation
            .billing
            .as_ref()
            .and_then(|b| b.attested_by.as_ref());
        if attester.is_some_and(|p| *p != attempt.peer_id) {
            return Err(FollowUpError::Invalid(
                "billing.attested",
                "only the peer who provided the service attests to it".into(),
            ));
        }
        let documentation = completed(attempt.occurred_at, attempt.channel, documentation, now)?;
        if documentation == attempt.documentation {
            return Ok(());
        }
        let e = FollowUpEvent::ContactDocumented {
            contact_id,
            documentation,
        };
        sink.write(e, self).await;
        Ok(())
    }

    pub(super) async fn sign_contact(
        &mut self,
        contact_id: String,
        signed_by: String,
        now: DateTime<Utc>,
        sink: &EventSink<Self>,
    ) -> Result<(), FollowUpError> {
        let attempt = self.attempt(&contact_id)?;
        if attempt.signed {
            return Err(FollowUpError::ContactLocked);
        }
        let lacking = missing(attempt.reached, attempt.channel, &attempt.documentation);
        if !lacking.is_empty() {
            return Err(FollowUpError::Incomplete(lacking));
        }
        let e = FollowUpEvent::ContactSigned {
            contact_id,
            signed_by,
            signed_at: now,
        };
        sink.write(e, self).await;
        Ok(())
    }

    pub(super) async fn add_addendum(
        &mut self,
        contact_id: String,
        addendum: Addendum,
        by_peer: Option<String>,
        sink: &EventSink<Self>,
    ) -> Result<(), FollowUpError> {
        self.check_peer(by_peer.as_ref())?;
        let attempt = self.attempt(&contact_id)?;
        if !attempt.signed {
            return Err(FollowUpError::ContactNotSigned);
        }
        if attempt.addenda.contains(&addendum.addendum_id) {
            return Ok(());
        }
        let e = FollowUpEvent::ContactAddendumAdded {
            contact_id,
            addendum_id: addendum.addendum_id,
            text: addendum.text,
            added_by: addendum.added_by,
            added_at: addendum.now,
        };
        sink.write(e, self).await;
        Ok(())
    }

    fn attempt(&self, contact_id: &str) -> Result<&super::Attempt, FollowUpError> {
        self.attempts
            .iter()
            .find(|a| a.contact_id == contact_id)
            .ok_or_else(|| FollowUpError::UnknownContact(contact_id.to_string()))
    }
}
