//! Given/when/then tests of peer practice on the plan: billed units from a contact's
//! minutes, what signing needs, locking and addenda, and the person's goals.

use super::tests::{Given, contact, record, started, t, when};
use super::*;
use crate::domain::{Billing, Channel, Documentation, GoalReviewKind, Place, SupportType};
use careloop_config::Rounding;

fn h0038(attested: bool) -> Billing {
    Billing {
        service_code: "H0038".into(),
        modifiers: vec!["HQ".into()],
        unit_minutes: 15,
        rounding: Rounding::EightMinute,
        units: 99,
        attested_by: attested.then(|| "peer-1".into()),
        attested_at: attested.then(|| t("2026-11-03T10:00:00Z")),
    }
}

/// A reached in-person contact at home from 09:00 to `ended`, billed as H0038.
fn billed(id: &str, ended: &str, attested: bool) -> crate::domain::Contact {
    let mut c = contact(id, "2026-11-03T09:00:00Z", ContactOutcome::Reached);
    c.channel = Channel::InPerson;
    c.documentation = Documentation {
        duration_minutes: None,
        ended_at: Some(t(ended)),
        place: Some(Place::Home),
        billing: Some(h0038(attested)),
    };
    c
}

fn documentation_of(events: &[FollowUpEvent], id: &str) -> Documentation {
    events
        .iter()
        .find_map(|e| match e {
            FollowUpEvent::ContactRecorded { contact, .. } if contact.contact_id == id => {
                Some(contact.documentation.clone())
            }
            _ => None,
        })
        .expect("the contact was recorded")
}

async fn refused(given: Vec<FollowUpEvent>, cmd: FollowUpCommand) -> FollowUpError {
    Given::with(())
        .given(given)
        .when_async(cmd)
        .await
        .inspect_result()
        .unwrap_err()
}

fn sign(id: &str) -> FollowUpCommand {
    FollowUpCommand::SignContact {
        contact_id: id.into(),
        signed_by: "Sam (coordinator)".into(),
        now: t("2026-11-04T09:00:00Z"),
    }
}

#[tokio::test]
async fn a_contacts_minutes_come_from_its_end_and_its_units_from_the_8_minute_rule() {
    let mut given = started().await;
    // 09:00 to 09:37 is 37 minutes: 2 units; the units given are recomputed.
    let events = when(
        given.clone(),
        record(billed("c1", "2026-11-03T09:37:00Z", true)),
    )
    .await;
    let doc = documentation_of(&events, "c1");
    assert_eq!(doc.duration_minutes, Some(37));
    assert_eq!(doc.billing.unwrap().units, 2);
    given.extend(events);
    let events = when(given, record(billed("c2", "2026-11-03T09:38:00Z", true))).await;
    assert_eq!(documentation_of(&events, "c2").billing.unwrap().units, 3);
}

#[tokio::test]
async fn documentation_that_contradicts_itself_is_refused_by_field() {
    let given = started().await;
    let mut c = billed("c1", "2026-11-03T08:59:00Z", true);
    let e = refused(given.clone(), record(c.clone())).await;
    assert!(matches!(e, FollowUpError::Invalid("ended_at", _)), "{e:?}");
    c.documentation.ended_at = Some(t("2026-11-03T09:30:00Z"));
    c.documentation.duration_minutes = Some(20);
    let e = refused(given.clone(), record(c.clone())).await;
    assert!(
        matches!(e, FollowUpError::Invalid("duration_minutes", _)),
        "{e:?}"
    );
    c.documentation.duration_minutes = None;
    c.channel = Channel::Phone;
    let e = refused(given, record(c)).await;
    assert!(matches!(e, FollowUpError::Invalid("place", _)), "{e:?}");
}

#[tokio::test]
async fn signing_needs_complete_documentation_and_locks_the_contact() {
    let mut given = started().await;
    // Seven minutes, not attested: two things missing, named by field.
    given.extend(
        when(
            given.clone(),
            record(billed("c1", "2026-11-03T09:07:00Z", false)),
        )
        .await,
    );
    match refused(given.clone(), sign("c1")).await {
        FollowUpError::Incomplete(m) => {
            let fields: Vec<_> = m.iter().map(|m| m.field).collect();
            assert_eq!(fields, ["ended_at", "billing.attested"]);
            assert!(
                m[0].reason.contains("7 minutes make no unit of H0038"),
                "{m:?}"
            );
        }
        other => panic!("{other:?}"),
    }
    // The peer corrects it; now it signs.
    let fixed = FollowUpCommand::DocumentContact {
        contact_id: "c1".into(),
        documentation: billed("c1", "2026-11-03T09:25:00Z", true).documentation,
        by_peer: Some("peer-1".into()),
        now: t("2026-11-04T08:00:00Z"),
    };
    given.extend(when(given.clone(), fixed.clone()).await);
    let signed = when(given.clone(), sign("c1")).await;
    assert!(
        matches!(&signed[..], [FollowUpEvent::ContactSigned { signed_by, .. }] if signed_by == "Sam (coordinator)")
    );
    given.extend(signed);
    // Locked: no correction, no second signature; an addendum is kept beside it.
    assert_eq!(
        refused(given.clone(), fixed).await,
        FollowUpError::ContactLocked
    );
    assert_eq!(
        refused(given.clone(), sign("c1")).await,
        FollowUpError::ContactLocked
    );
    let addendum = FollowUpCommand::AddAddendum {
        contact_id: "c1".into(),
        addendum_id: "a1".into(),
        text: "sealed:v1:…".into(),
        by_peer: Some("peer-1".into()),
        added_by: "peer-1".into(),
        now: t("2026-11-05T08:00:00Z"),
    };
    let added = when(given.clone(), addendum.clone()).await;
    assert_eq!(added.len(), 1);
    given.extend(added);
    // The same addendum again (a retry) adds nothing.
    assert!(when(given, addendum).await.is_empty());
}

#[tokio::test]
async fn an_unsigned_contact_takes_corrections_not_addenda_and_others_are_not_billable() {
    let mut given = started().await;
    let mut text = billed("t1", "2026-11-03T09:30:00Z", true);
    text.channel = Channel::Text;
    text.documentation.place = None;
    let mut missed = billed("m1", "2026-11-03T09:30:00Z", true);
    missed.outcome = ContactOutcome::NoAnswer;
    given.extend(when(given.clone(), record(text)).await);
    given.extend(when(given.clone(), record(missed)).await);
    for (id, field) in [("t1", "channel"), ("m1", "outcome")] {
        match refused(given.clone(), sign(id)).await {
            FollowUpError::Incomplete(m) => assert_eq!(m[0].field, field),
            other => panic!("{other:?}"),
        }
    }
    let addendum = FollowUpCommand::AddAddendum {
        contact_id: "t1".into(),
        addendum_id: "a1".into(),
        text: "x".into(),
        by_peer: None,
        added_by: "x".into(),
        now: t("2026-11-05T08:00:00Z"),
    };
    assert_eq!(
        refused(given.clone(), addendum).await,
        FollowUpError::ContactNotSigned
    );
    // A contact not billed signs with nothing more.
    let plain = contact("p1", "2026-11-03T11:00:00Z", ContactOutcome::Reached);
    given.extend(when(given.clone(), record(plain)).await);
    assert_eq!(when(given, sign("p1")).await.len(), 1);
}

#[tokio::test]
async fn goals_are_the_persons_own_linked_from_contacts_and_reviewed() {
    let mut given = started().await;
    let set = FollowUpCommand::SetGoal {
        goal_id: "g1".into(),
        words: "sealed:words".into(),
        support_types: vec![SupportType::Instrumental],
        by_peer: Some("peer-1".into()),
        now: t("2026-11-02T09:00:00Z"),
    };
    given.extend(when(given.clone(), set.clone()).await);
    assert!(when(given.clone(), set).await.is_empty(), "set once");
    // A contact names goals of the plan only.
    let mut c = contact("c1", "2026-11-03T09:00:00Z", ContactOutcome::Reached);
    c.goal_ids = vec!["g2".into()];
    assert_eq!(
        refused(given.clone(), record(c.clone())).await,
        FollowUpError::UnknownGoal("g2".into())
    );
    c.goal_ids = vec!["g1".into()];
    given.extend(when(given.clone(), record(c)).await);
    let review = |kind, words: Option<&str>| FollowUpCommand::ReviewGoal {
        goal_id: "g1".into(),
        review_id: format!("r-{kind:?}-{}", words.unwrap_or("")),
        kind,
        words: words.map(str::to_string),
        note: None,
        by_peer: Some("peer-1".into()),
        reviewed_by: "peer-1".into(),
        now: t("2026-11-10T09:00:00Z"),
    };
    let e = refused(given.clone(), review(GoalReviewKind::Changed, None)).await;
    assert!(matches!(e, FollowUpError::Invalid("words", _)));
    let e = refused(given.clone(), review(GoalReviewKind::Met, Some("x"))).await;
    assert!(matches!(e, FollowUpError::Invalid("words", _)));
    given.extend(
        when(
            given.clone(),
            review(GoalReviewKind::Changed, Some("sealed:new")),
        )
        .await,
    );
    let met = when(given.clone(), review(GoalReviewKind::Met, None)).await;
    assert!(matches!(
        &met[..],
        [FollowUpEvent::GoalReviewed {
            kind: GoalReviewKind::Met,
            ..
        }]
    ));
    // A retried review (the same id) is recorded once; a goal not on the plan is
    // not found.
    given.extend(met);
    assert!(
        when(given.clone(), review(GoalReviewKind::Met, None))
            .await
            .is_empty()
    );
    let mut elsewhere = review(GoalReviewKind::Met, None);
    if let FollowUpCommand::ReviewGoal { goal_id, .. } = &mut elsewhere {
        *goal_id = "g9".into();
    }
    assert_eq!(
        refused(given.clone(), elsewhere).await,
        FollowUpError::GoalNotFound("g9".into())
    );
    // Another peer cannot touch the person's goals.
    let mut other = review(GoalReviewKind::Progress, None);
    if let FollowUpCommand::ReviewGoal { by_peer, .. } = &mut other {
        *by_peer = Some("peer-2".into());
    }
    assert_eq!(refused(given, other).await, FollowUpError::NotYourReferral);
}

/// A started plan that completed.
async fn completed() -> Vec<FollowUpEvent> {
    let mut given = started().await;
    given.push(FollowUpEvent::FollowUpClosed {
        outcome: PlanOutcome::Completed,
        reason: "every check-in met".into(),
        reopenable: false,
    });
    given
}

fn start_caring(now: &str) -> FollowUpCommand {
    FollowUpCommand::StartCaringContacts {
        every: chrono::Duration::days(30),
        count: 3,
        by_peer: Some("peer-1".into()),
        now: t(now),
    }
}

#[tokio::test]
async fn caring_contacts_follow_a_completed_plan_are_met_in_turn_and_stop_for_good() {
    // Only after a completed plan.
    let e = refused(started().await, start_caring("2026-12-01T00:00:00Z")).await;
    assert!(matches!(e, FollowUpError::Caring(_)), "{e:?}");
    let mut given = completed().await;
    let begun = when(given.clone(), start_caring("2026-12-01T00:00:00Z")).await;
    match &begun[..] {
        [FollowUpEvent::CaringContactsStarted { due, .. }] => assert_eq!(
            due,
            &[
                t("2026-12-31T00:00:00Z"),
                t("2027-01-30T00:00:00Z"),
                t("2027-03-01T00:00:00Z")
            ]
        ),
        other => panic!("{other:?}"),
    }
    given.extend(begun);
    assert!(
        when(given.clone(), start_caring("2026-12-02T00:00:00Z"))
            .await
            .is_empty()
    );
    // A contact from before the series makes none; the next ones make them in turn.
    let early = contact("c0", "2026-11-20T09:00:00Z", ContactOutcome::Reached);
    let events = when(given.clone(), record(early)).await;
    let made = |events: &[FollowUpEvent]| {
        events
            .iter()
            .filter(|e| matches!(e, FollowUpEvent::CaringContactMade { .. }))
            .count()
    };
    assert_eq!(made(&events), 0, "{events:?}");
    given.extend(events);
    let record_at = |id: &str, at: &str| record(contact(id, at, ContactOutcome::LeftMessage));
    let events = when(given.clone(), record_at("c1", "2026-12-20T09:00:00Z")).await;
    assert!(matches!(
        &events[1],
        FollowUpEvent::CaringContactMade { n: 1, .. }
    ));
    given.extend(events);
    // The person asks to stop: nothing more is made, and it never starts again.
    let stop = FollowUpCommand::StopCaringContacts {
        reason: "the person asked to stop".into(),
        by_peer: Some("peer-1".into()),
        now: t("2026-12-21T00:00:00Z"),
    };
    given.extend(when(given.clone(), stop.clone()).await);
    assert!(when(given.clone(), stop).await.is_empty(), "stopped once");
    let events = when(given.clone(), record_at("c2", "2026-12-22T09:00:00Z")).await;
    assert_eq!(made(&events), 0, "{events:?}");
    let e = refused(given, start_caring("2027-01-01T00:00:00Z")).await;
    assert!(matches!(e, FollowUpError::Caring(_)), "{e:?}");
}

#[tokio::test]
async fn a_stop_before_any_series_keeps_one_from_starting() {
    // Consent revoked after the plan completed, before caring contacts began.
    let mut given = completed().await;
    let stop = FollowUpCommand::StopCaringContacts {
        reason: "the person's consent was revoked".into(),
        by_peer: None,
        now: t("2026-12-01T00:00:00Z"),
    };
    let stopped = when(given.clone(), stop).await;
    assert!(matches!(
        &stopped[..],
        [FollowUpEvent::CaringContactsStopped { .. }]
    ));
    given.extend(stopped);
    let e = refused(given, start_caring("2026-12-02T00:00:00Z")).await;
    assert!(matches!(e, FollowUpError::Caring(_)), "{e:?}");
}

#[tokio::test]
async fn only_the_peer_who_made_a_contact_attests_it() {
    let mut given = started().await;
    given.extend(
        when(
            given.clone(),
            record(billed("c1", "2026-11-03T09:30:00Z", false)),
        )
        .await,
    );
    // The plan moves to another peer, who tries to attest the first peer's contact.
    given.push(FollowUpEvent::PlanReassigned {
        from_peer: "peer-1".into(),
        to_peer: "peer-2".into(),
    });
    let mut doc = billed("c1", "2026-11-03T09:30:00Z", true).documentation;
    if let Some(b) = doc.billing.as_mut() {
        b.attested_by = Some("peer-2".into());
    }
    let by_new_peer = FollowUpCommand::DocumentContact {
        contact_id: "c1".into(),
        documentation: doc,
        by_peer: Some("peer-2".into()),
        now: t("2026-11-04T08:00:00Z"),
    };
    let e = refused(given, by_new_peer).await;
    assert!(
        matches!(e, FollowUpError::Invalid("billing.attested", _)),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_billed_contact_needs_its_end_time_not_only_a_duration() {
    let mut given = started().await;
    let mut c = billed("c1", "2026-11-03T09:30:00Z", true);
    c.documentation.ended_at = None;
    c.documentation.duration_minutes = Some(30);
    given.extend(when(given.clone(), record(c)).await);
    match refused(given, sign("c1")).await {
        FollowUpError::Incomplete(m) => assert_eq!(m[0].field, "ended_at"),
        other => panic!("{other:?}"),
    }
}
