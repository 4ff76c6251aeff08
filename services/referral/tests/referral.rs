//! The referral service's consumers, through their public entry point
//! (`Consumer::process`), against the real Postgres: out-of-order rules.

use std::time::Duration;

use careloop_backbone::store;
use careloop_backbone::{Backbone, Disposition, Service};
use careloop_events::{Payload, v1};
use careloop_referral::ReferralService;
use careloop_referral::domain::{Referral, Status};
use careloop_test_support::{TestEnv, envelope};
use chrono::{DateTime, Utc};

fn t(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

fn submitted(referral_id: &str, person_ref: &str) -> Payload {
    Payload::ReferralSubmitted(v1::ReferralSubmitted {
        referral_id: referral_id.into(),
        person_ref: person_ref.into(),
        facility: "st-marys".into(),
        discharged_at: Some(careloop_events::timestamp(t("2026-11-20T15:30:00Z"))),
        priority: v1::Priority::Urgent as i32,
        matching: Some(v1::MatchingInputs {
            language: "en".into(),
            ..Default::default()
        }),
        ..Default::default()
    })
}

/// Guarantee: a revoked consent cancels every referral submitted before it, also one
/// whose ReferralSubmitted is handled after the ConsentRevoked (the two come from
/// different aggregates of intake and may be handled in either order); a referral
/// submitted after the revocation stands.
#[tokio::test]
async fn a_consent_revoked_before_its_referral_is_handled_still_cancels_it() {
    let env = TestEnv::new();
    let backbone = Backbone::connect(&env.settings).await.unwrap();
    let service = ReferralService::new(&backbone);
    careloop_backbone::db::migrate(&backbone.pool, service.schema(), service.migrations())
        .await
        .unwrap();
    let intake = service
        .consumers()
        .into_iter()
        .find(|c| c.source() == "intake")
        .unwrap();
    let deliver = |bytes: Vec<u8>| {
        let intake = intake.clone();
        async move {
            intake
                .process("test.events.intake.x", &bytes, 1, Duration::ZERO)
                .await
        }
    };

    let revoked = Payload::ConsentRevoked(v1::ConsentRevoked {
        person_ref: "p1".into(),
        revoked_at: Some(careloop_events::timestamp(t("2026-11-21T10:00:00Z"))),
        reason: "consent revoked: asked to stop".into(),
    });
    let revocation = envelope(revoked, ("Person", "p1"), 4, 0, t("2026-11-21T10:00:00Z"));
    assert_eq!(deliver(revocation).await, Disposition::Applied);

    let before = envelope(
        submitted("r-before", "p1"),
        ("ReferralSubmission", "r-before"),
        1,
        0,
        t("2026-11-21T09:00:00Z"),
    );
    assert_eq!(deliver(before).await, Disposition::Applied);
    let after = envelope(
        submitted("r-after", "p1"),
        ("ReferralSubmission", "r-after"),
        1,
        0,
        t("2026-11-21T11:00:00Z"),
    );
    assert_eq!(deliver(after).await, Disposition::Applied);

    let referrals = store::event_store::<Referral>(backbone.pool.clone(), "referral");
    let status = |id: &'static str| {
        let referrals = &referrals;
        async move { store::load(referrals, id).await.unwrap().status }
    };
    assert_eq!(status("r-before").await, Status::Cancelled);
    assert_eq!(status("r-after").await, Status::Received);
    backbone.pool.close().await;
}
