//! The follow-up service's consumers, through their public entry point
//! (`Consumer::process`), against the real Postgres: out-of-order rules; and how its
//! read model finds a batch's rows.

use std::time::Duration;

use careloop_backbone::store;
use careloop_backbone::{Backbone, Disposition, Service};
use careloop_events::{Payload, v1};
use careloop_follow_up::FollowUpService;
use careloop_follow_up::domain::{FollowUpPlan, PlanState};
use careloop_test_support::plans::rows_read;
use careloop_test_support::{TestEnv, envelope};
use chrono::{DateTime, Utc};

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn ts(s: &str) -> Option<prost_types::Timestamp> {
    Some(careloop_events::timestamp(t(s)))
}

/// The follow-up service on a fresh database, its schema migrated (drop the env last).
async fn migrated() -> (TestEnv, Backbone, FollowUpService) {
    let env = TestEnv::new();
    let backbone = Backbone::connect(&env.settings).await.unwrap();
    let service = FollowUpService::new(&backbone);
    careloop_backbone::db::migrate(&backbone.pool, service.schema(), service.migrations())
        .await
        .unwrap();
    (env, backbone, service)
}

/// Guarantee: an admission reported before the follow-up plan exists is still linked
/// to it as a readmission (pausing it), and an A11 that cancels that admission
/// unlinks it and resumes the plan; the admission and the assignment come from
/// different services, in either order.
#[tokio::test]
async fn an_admission_before_its_plan_links_and_a_cancelled_admission_unlinks() {
    let (_env, backbone, service) = migrated().await;
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

/// Guarantee: refreshing where a batch's plans stand reads those plans' own
/// check-ins and no others, whatever the table's statistics. The late flag was once
/// planned as a scan of every late check-in of every plan, hashed, at each batch of
/// the read model: under 100 referrals a second it grew to 12 ms a batch.
#[tokio::test]
async fn a_plans_standing_is_read_from_its_own_check_ins() {
    let (_env, backbone, _service) = migrated().await;
    let plans = |from: u32, to: u32| {
        format!(
            "INSERT INTO followups (referral_id, peer_id, person_ref, facility, priority,
                 discharged_at, ends_at, state, started_at, updated_at)
             SELECT 'r' || g, 'p', 'x', 'f', 'routine', now(), now(), 'active', now(), now()
             FROM generate_series({from}, {to}) g;
             INSERT INTO checkpoints (referral_id, name, window_start, due_at, overdue)
             SELECT 'r' || g, n, now(), now() + interval '1 day', n = 'day_7'
             FROM generate_series({from}, {to}) g, unnest(ARRAY['day_7', 'day_30']) n;"
        )
    };
    let mut conn = backbone.pool.acquire().await.unwrap();
    // Statistics taken while the tables were small, then the tables grown.
    sqlx::raw_sql(&format!(
        "SET search_path = follow_up;
         ALTER TABLE followups SET (autovacuum_enabled = off);
         ALTER TABLE checkpoints SET (autovacuum_enabled = off);
         {} ANALYZE followups; ANALYZE checkpoints; {}",
        plans(1, 5),
        plans(6, 5000)
    ))
    .execute(&mut *conn)
    .await
    .unwrap();

    let read = rows_read(
        &mut conn,
        "checkpoints",
        careloop_follow_up::read_model::REFRESH_STANDING,
        "text[], timestamptz",
        "ARRAY['r7', 'r4000', 'missing'], NULL",
    )
    .await;
    // Two plans, two check-ins each, looked at for the next one and for a late one.
    assert!(read <= 8.0, "the refresh read {read} check-ins for 2 plans");
    let (next, overdue): (Option<String>, bool) =
        sqlx::query_as("SELECT next_checkpoint, overdue FROM followups WHERE referral_id = 'r7'")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
    assert_eq!((next.as_deref(), overdue), (Some("day_30"), true));

    // The setup does make the late flag as it was written read every late check-in.
    let as_it_was = careloop_follow_up::read_model::REFRESH_STANDING.replace(
        "COALESCE((SELECT true FROM checkpoints c
                        WHERE c.referral_id = f.referral_id AND c.met_at IS NULL
                          AND c.overdue LIMIT 1), false)",
        "EXISTS (SELECT 1 FROM checkpoints c
                 WHERE c.referral_id = f.referral_id AND c.met_at IS NULL AND c.overdue)",
    );
    assert_ne!(as_it_was, careloop_follow_up::read_model::REFRESH_STANDING);
    let read = rows_read(
        &mut conn,
        "checkpoints",
        &as_it_was,
        "text[], timestamptz",
        "ARRAY['r7', 'r4000', 'missing'], NULL",
    )
    .await;
    assert!(
        read >= 1000.0,
        "the old refresh read {read}: the setup no longer shows the plan"
    );
}
