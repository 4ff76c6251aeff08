//! Given/when/then tests of the FollowUpPlan: window edges, overdue once, the failure
//! rule, back-entry after closing, readmission pauses, reassignment and reopening.

use super::*;
use crate::domain::{Channel, Contact, PlanStart, Protocol, SupportType};
use careloop_events::Priority;
use chrono::Duration;
use cqrs_es::test::TestFramework;

pub(super) type Given = TestFramework<FollowUpPlan>;

pub(super) fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

const DISCHARGED: &str = "2026-11-01T12:00:00Z";

fn protocol() -> Protocol {
    Protocol {
        checkins: vec![Duration::days(7), Duration::days(14), Duration::days(30)],
        ends_after: Duration::days(30),
        failed_after_attempts: 3,
        failed_after: Duration::days(5),
    }
}

pub(super) fn start() -> FollowUpCommand {
    FollowUpCommand::Start(Box::new(PlanStart {
        peer_id: "peer-1".into(),
        person_ref: "p1".into(),
        facility: "st-marys".into(),
        priority: Priority::Asap,
        discharged_at: t(DISCHARGED),
        first_contact_due_at: t("2026-11-02T12:00:00Z"),
        protocol: protocol(),
        attempt: 1,
    }))
}

/// The events of a started plan, produced by the aggregate itself.
pub(super) async fn started() -> Vec<FollowUpEvent> {
    Given::with(())
        .given_no_previous_events()
        .when_async(start())
        .await
        .inspect_result()
        .unwrap()
}

pub(super) fn contact(id: &str, at: &str, outcome: ContactOutcome) -> Contact {
    Contact {
        contact_id: id.into(),
        occurred_at: t(at),
        channel: Channel::Phone,
        outcome,
        support_types: vec![SupportType::Emotional],
        documentation: Default::default(),
        notes: None,
        goal_ids: Vec::new(),
    }
}

pub(super) fn record(c: Contact) -> FollowUpCommand {
    FollowUpCommand::RecordContact {
        contact: c,
        by_peer: None,
        now: t("2026-12-31T00:00:00Z"),
    }
}

fn names(events: &[FollowUpEvent]) -> Vec<String> {
    events
        .iter()
        .map(|e| match e {
            FollowUpEvent::CheckpointMet { checkpoint, .. } => format!("met {checkpoint}"),
            FollowUpEvent::FollowUpOverdue { checkpoint, .. } => {
                format!("overdue {checkpoint}")
            }
            FollowUpEvent::FollowUpClosed { outcome, .. } => format!("closed {outcome:?}"),
            other => cqrs_es::DomainEvent::event_type(other),
        })
        .collect()
}

pub(super) async fn when(given: Vec<FollowUpEvent>, cmd: FollowUpCommand) -> Vec<FollowUpEvent> {
    Given::with(())
        .given(given)
        .when_async(cmd)
        .await
        .inspect_result()
        .unwrap()
}

#[tokio::test]
async fn the_plan_follows_the_protocol() {
    let events = started().await;
    let FollowUpEvent::PlanStarted {
        checkpoints,
        ends_at,
        ..
    } = &events[0]
    else {
        panic!("{events:?}")
    };
    let plan: Vec<(&str, &str, &str)> = vec![
        ("first_contact", DISCHARGED, "2026-11-02T12:00:00Z"),
        ("day_7", DISCHARGED, "2026-11-08T12:00:00Z"),
        ("day_14", "2026-11-08T12:00:00Z", "2026-11-15T12:00:00Z"),
        ("day_30", "2026-11-15T12:00:00Z", "2026-12-01T12:00:00Z"),
    ];
    for (c, (name, start, due)) in checkpoints.iter().zip(plan) {
        assert_eq!(
            (c.name.as_str(), c.window_start, c.due_at),
            (name, t(start), t(due))
        );
    }
    assert_eq!(*ends_at, t("2026-12-01T12:00:00Z"));
}

/// Windows are (start, due]: a reach exactly at day 7 meets day 7; one second
/// later it meets day 14.
#[tokio::test]
async fn windows_hold_at_their_exact_edges() {
    let given = started().await;
    let at_edge = when(
        given.clone(),
        record(contact(
            "c1",
            "2026-11-08T12:00:00Z",
            ContactOutcome::Reached,
        )),
    )
    .await;
    assert_eq!(
        names(&at_edge),
        ["ContactRecorded", "met first_contact", "met day_7"]
    );
    let after = when(
        given,
        record(contact(
            "c1",
            "2026-11-08T12:00:01Z",
            ContactOutcome::Reached,
        )),
    )
    .await;
    assert_eq!(
        names(&after),
        ["ContactRecorded", "met first_contact", "met day_14"]
    );
}

#[tokio::test]
async fn an_unreached_attempt_meets_nothing() {
    let given = started().await;
    let e = when(
        given,
        record(contact(
            "c1",
            "2026-11-02T09:00:00Z",
            ContactOutcome::NoAnswer,
        )),
    )
    .await;
    assert_eq!(names(&e), ["ContactRecorded"]);
}

#[tokio::test]
async fn overdue_fires_once_just_after_the_due_time() {
    let given = started().await;
    let at_due = FollowUpCommand::CheckDeadlines {
        now: t("2026-11-02T12:00:00Z"),
    };
    assert!(when(given.clone(), at_due).await.is_empty());
    let after = FollowUpCommand::CheckDeadlines {
        now: t("2026-11-02T12:00:01Z"),
    };
    let e = when(given.clone(), after.clone()).await;
    assert_eq!(names(&e), ["overdue first_contact"]);
    let mut again = given;
    again.extend(e);
    assert!(when(again, after).await.is_empty(), "exactly once");
}

#[tokio::test]
async fn meeting_every_check_in_completes_the_plan() {
    let mut given = started().await;
    for (id, at) in [
        ("c1", "2026-11-03T12:00:00Z"),
        ("c2", "2026-11-10T12:00:00Z"),
    ] {
        given.extend(
            when(
                given.clone(),
                record(contact(id, at, ContactOutcome::Reached)),
            )
            .await,
        );
    }
    let e = when(
        given,
        record(contact(
            "c3",
            "2026-11-20T12:00:00Z",
            ContactOutcome::Reached,
        )),
    )
    .await;
    assert_eq!(
        names(&e),
        ["ContactRecorded", "met day_30", "closed Completed"]
    );
}

#[tokio::test]
async fn unreachable_after_n_attempts_over_m_days_fails_the_plan() {
    let mut given = started().await;
    for (id, at) in [
        ("a1", "2026-11-02T12:00:00Z"),
        ("a2", "2026-11-04T12:00:00Z"),
    ] {
        given.extend(
            when(
                given.clone(),
                record(contact(id, at, ContactOutcome::NoAnswer)),
            )
            .await,
        );
    }
    // The third attempt, but only 4 days after the first: not yet.
    let early = when(
        given.clone(),
        record(contact(
            "a3",
            "2026-11-06T11:59:59Z",
            ContactOutcome::Unreachable,
        )),
    )
    .await;
    assert_eq!(names(&early), ["ContactRecorded"]);
    let on_time = when(
        given,
        record(contact(
            "a3",
            "2026-11-07T12:00:00Z",
            ContactOutcome::Unreachable,
        )),
    )
    .await;
    assert_eq!(names(&on_time), ["ContactRecorded", "closed Failed"]);
}

/// Back-entry: a contact recorded after the plan closed still counts at its
/// occurred_at, and does not reopen or close anything.
#[tokio::test]
async fn a_contact_entered_after_closing_counts_at_its_time() {
    let mut given = started().await;
    given.extend(
        when(
            given.clone(),
            FollowUpCommand::Cancel {
                reason: "referral cancelled".into(),
                reopenable: false,
            },
        )
        .await,
    );
    let e = when(
        given,
        record(contact(
            "late",
            "2026-11-05T12:00:00Z",
            ContactOutcome::Reached,
        )),
    )
    .await;
    assert_eq!(
        names(&e),
        ["ContactRecorded", "met first_contact", "met day_7"]
    );
}

#[tokio::test]
async fn a_readmission_pauses_deadlines_until_resumed() {
    let mut given = started().await;
    let link = FollowUpCommand::LinkReadmission {
        admission_id: "adm-1".into(),
        admitted_at: t("2026-11-05T00:00:00Z"),
    };
    let linked = when(given.clone(), link.clone()).await;
    assert_eq!(names(&linked), ["ReadmissionLinked"]);
    given.extend(linked);
    assert!(when(given.clone(), link).await.is_empty(), "linked once");
    let late = FollowUpCommand::CheckDeadlines {
        now: t("2026-11-20T00:00:00Z"),
    };
    assert!(when(given.clone(), late.clone()).await.is_empty(), "paused");
    given.extend(
        when(
            given.clone(),
            FollowUpCommand::Resume {
                reason: "discharged".into(),
            },
        )
        .await,
    );
    assert_eq!(
        names(&when(given, late).await),
        ["overdue first_contact", "overdue day_7", "overdue day_14"]
    );
}

#[tokio::test]
async fn a_cancelled_admission_unpauses_the_plan() {
    let mut given = started().await;
    given.extend(
        when(
            given.clone(),
            FollowUpCommand::LinkReadmission {
                admission_id: "adm-1".into(),
                admitted_at: t("2026-11-05T00:00:00Z"),
            },
        )
        .await,
    );
    let e = when(
        given.clone(),
        FollowUpCommand::UnlinkReadmission {
            admission_id: "adm-1".into(),
        },
    )
    .await;
    assert_eq!(
        e,
        [FollowUpEvent::ReadmissionUnlinked {
            admission_id: "adm-1".into(),
            resumed: true
        }]
    );
    let unknown = FollowUpCommand::UnlinkReadmission {
        admission_id: "other".into(),
    };
    assert!(when(given, unknown).await.is_empty());
}

#[tokio::test]
async fn an_admission_after_thirty_days_is_not_a_readmission() {
    let given = started().await;
    let link = FollowUpCommand::LinkReadmission {
        admission_id: "adm-2".into(),
        admitted_at: t("2026-12-01T12:00:01Z"),
    };
    assert!(when(given, link).await.is_empty());
}

#[tokio::test]
async fn the_plan_ends_at_day_thirty() {
    let mut given = started().await;
    given.extend(
        when(
            given.clone(),
            record(contact(
                "c1",
                "2026-11-03T12:00:00Z",
                ContactOutcome::Reached,
            )),
        )
        .await,
    );
    let end = FollowUpCommand::CheckDeadlines {
        now: t("2026-12-01T12:00:00Z"),
    };
    let e = when(given, end).await;
    assert_eq!(names(&e), ["overdue day_14", "closed Completed"]);
}

#[tokio::test]
async fn a_new_peer_takes_the_plan_with_its_history() {
    let given = started().await;
    let mut reassign = start();
    if let FollowUpCommand::Start(s) = &mut reassign {
        s.peer_id = "peer-2".into();
    }
    let e = when(given.clone(), reassign).await;
    assert_eq!(
        e,
        [FollowUpEvent::PlanReassigned {
            from_peer: "peer-1".into(),
            to_peer: "peer-2".into()
        }]
    );
    assert!(
        when(given, start()).await.is_empty(),
        "a redelivery changes nothing"
    );
}

#[tokio::test]
async fn a_cancel_before_the_plan_keeps_a_late_assignment_from_starting_it() {
    let closed = when(
        vec![],
        FollowUpCommand::Cancel {
            reason: "referral cancelled".into(),
            reopenable: false,
        },
    )
    .await;
    assert_eq!(names(&closed), ["closed Cancelled"]);
    assert!(when(closed, start()).await.is_empty());
}

#[tokio::test]
async fn a_rerouted_referral_reopens_its_plan_for_the_new_peer() {
    let mut given = started().await;
    given.extend(
        when(
            given.clone(),
            FollowUpCommand::Cancel {
                reason: "referral rejected".into(),
                reopenable: true,
            },
        )
        .await,
    );
    let mut again = start();
    if let FollowUpCommand::Start(s) = &mut again {
        s.peer_id = "peer-2".into();
        s.attempt = 2;
    }
    let e = when(given.clone(), again).await;
    assert_eq!(
        e,
        [FollowUpEvent::PlanReopened {
            peer_id: "peer-2".into(),
            attempt: 2
        }]
    );
    assert!(
        when(given, start()).await.is_empty(),
        "the same attempt does not"
    );
}

#[tokio::test]
async fn a_peer_who_gave_the_referral_back_cannot_record_on_it() {
    let mut given = started().await;
    given.extend(
        when(
            given.clone(),
            FollowUpCommand::Unassign {
                peer_id: "peer-1".into(),
            },
        )
        .await,
    );
    Given::with(())
        .given(given)
        .when_async(FollowUpCommand::RecordContact {
            contact: contact("c", "2026-11-02T00:00:00Z", ContactOutcome::Reached),
            by_peer: Some("peer-1".into()),
            now: t("2026-11-03T00:00:00Z"),
        })
        .await
        .then_expect_error(FollowUpError::NotYourReferral);
}

#[tokio::test]
async fn contact_rules() {
    let given = started().await;
    let before = FollowUpCommand::RecordContact {
        contact: contact("c", "2026-11-01T11:59:59Z", ContactOutcome::Reached),
        by_peer: None,
        now: t("2026-11-03T00:00:00Z"),
    };
    Given::with(())
        .given(given.clone())
        .when_async(before)
        .await
        .then_expect_error(FollowUpError::ContactBeforeDischarge(t(DISCHARGED)));
    let future = FollowUpCommand::RecordContact {
        contact: contact("c", "2026-11-04T00:00:00Z", ContactOutcome::Reached),
        by_peer: None,
        now: t("2026-11-03T00:00:00Z"),
    };
    Given::with(())
        .given(given.clone())
        .when_async(future)
        .await
        .then_expect_error(FollowUpError::ContactInFuture);
    let other_peer = FollowUpCommand::RecordContact {
        contact: contact("c", "2026-11-02T00:00:00Z", ContactOutcome::Reached),
        by_peer: Some("peer-2".into()),
        now: t("2026-11-03T00:00:00Z"),
    };
    Given::with(())
        .given(given)
        .when_async(other_peer)
        .await
        .then_expect_error(FollowUpError::NotYourReferral);
    Given::with(())
        .given_no_previous_events()
        .when_async(record(contact(
            "c",
            "2026-11-02T00:00:00Z",
            ContactOutcome::Reached,
        )))
        .await
        .then_expect_error(FollowUpError::NoPlan);
}
