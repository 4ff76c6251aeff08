//! The follow-up service's consumers, through their public entry point
//! (`Consumer::process`), against the real Postgres: out-of-order rules.

use std::time::Duration;

use careloop_backbone::store;
use careloop_backbone::{Backbone, Disposition, Service};
use careloop_events::{Payload, v1};
use careloop_follow_up::FollowUpService;
use careloop_follow_up::domain::{FollowUpPlan, PlanState};
use careloop_test_support::{TestEnv, envelope};
use chrono::{DateTime, Utc};

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn ts(s: &str) -> Option<prost_types::Timestamp> {
    Some(careloop_events::timestamp(t(s)))
}

/// Guarantee: an admission reported before the follow-up plan exists is still linked
/// to it as a readmission (pausing it), and an A11 that cancels that admission
/// unlinks it and resumes the plan; the admission and the assignment come from
/// different services, in either order.
#[tokio::test]
async fn an_admission_before_its_plan_links_and_a_cancelled_admission_unlinks() {
    let env = TestEnv::new();
    let backbone = Backbone::connect(&env.settings).await.unwrap();
    let service = FollowUpService::new(&backbone);
    careloop_backbone::db::migrate(&backbone.pool, service.schema(), service.migrations())
        .await
        .unwrap();
    let consumer = |source: &str| {
        service
            .consumers()
            .into_iter()
            .find(|c| c.source() == source)
            .unwrap()
    };
    let (intake, assignments) = (consumer("intake"), consumer("peer-assignment"));

    let admitted = Payload::AdmissionRecorded(v1::AdmissionRecorded {
        admission_id: "a1".into(),
        person_ref: "p1".into(),
        facility: "st-marys".into(),
        admitted_at: ts("2026-11-25T09:00:00Z"),
        unit: "inpatient-psychiatry".into(),
    });
    let bytes = envelope(
        admitted,
        ("Admission", "a1"),
        1,
        0,
        t("2026-11-25T09:05:00Z"),
    );
    let applied = intake.process("x", &bytes, 1, Duration::ZERO).await;
    assert_eq!(applied, Disposition::Applied);

    let assigned = Payload::PeerAssigned(v1::PeerAssigned {
        referral_id: "r1".into(),
        peer_id: "peer-1".into(),
        person_ref: "p1".into(),
        facility: "st-marys".into(),
        discharged_at: ts("2026-11-20T15:30:00Z"),
        priority: v1::Priority::Asap as i32,
        first_contact_due_at: ts("2026-11-21T15:30:00Z"),
        attempt: 1,
        reason: String::new(),
        actor: String::new(),
    });
    let bytes = envelope(
        assigned,
        ("Assignment", "r1"),
        4,
        0,
        t("2026-11-26T09:00:00Z"),
    );
    let applied = assignments.process("x", &bytes, 1, Duration::ZERO).await;
    assert_eq!(applied, Disposition::Applied);

    let plans = store::event_store::<FollowUpPlan>(backbone.pool.clone(), "follow_up");
    let plan = store::load(&plans, "r1").await.unwrap();
    assert_eq!(
        plan.state,
        PlanState::Paused,
        "the earlier admission pauses the plan"
    );

    let cancelled = Payload::AdmissionCancelled(v1::AdmissionCancelled {
        admission_id: "a1".into(),
        person_ref: "p1".into(),
        reason: "admission cancelled by the hospital".into(),
    });
    let bytes = envelope(
        cancelled,
        ("Admission", "a1"),
        2,
        1,
        t("2026-11-26T10:00:00Z"),
    );
    let applied = intake.process("x", &bytes, 1, Duration::ZERO).await;
    assert_eq!(applied, Disposition::Applied);
    let plan = store::load(&plans, "r1").await.unwrap();
    assert_eq!(
        plan.state,
        PlanState::Active,
        "the cancelled admission unpauses it"
    );

    let kinds: Vec<String> = sqlx::query_scalar(
        "SELECT event_type FROM follow_up.events
         WHERE aggregate_type = 'FollowUpPlan' AND aggregate_id = 'r1' ORDER BY sequence",
    )
    .fetch_all(&backbone.pool)
    .await
    .unwrap();
    assert_eq!(
        kinds,
        ["PlanStarted", "ReadmissionLinked", "ReadmissionUnlinked"]
    );
    backbone.pool.close().await;
}

/// The measures, hosted with the plans, read each plan's ContactRecorded event from
/// the same event store: the stored shape must stay readable to them.
#[test]
fn the_measures_read_the_contacts_follow_up_stores() {
    use careloop_follow_up::domain::{Channel, Contact, FollowUpEvent, SupportType};
    let event = FollowUpEvent::ContactRecorded {
        peer_id: "peer-1".into(),
        contact: Contact {
            contact_id: "c1".into(),
            occurred_at: t("2026-11-21T16:00:00Z"),
            channel: Channel::Phone,
            outcome: careloop_events::ContactOutcome::Reached,
            support_types: vec![SupportType::Emotional],
            documentation: careloop_follow_up::domain::Documentation {
                duration_minutes: Some(20),
                ..Default::default()
            },
            notes: None,
            goal_ids: Vec::new(),
        },
    };
    let stored = careloop_backbone::StoredEvent::of(
        "FollowUpPlan",
        "r1",
        2,
        t("2026-11-21T16:01:00Z"),
        &event,
    );
    let contact = careloop_measures::read_model::recorded_contact(&stored)
        .unwrap()
        .unwrap();
    assert_eq!(contact.contact_id, "c1");
    assert_eq!(contact.outcome, careloop_events::ContactOutcome::Reached);
}
