//! The vault against the real Postgres: each test in its own database.

use careloop_test_support::TestEnv;
use careloop_vault::{Erased, Keyring, Vault, VaultError};

async fn vault(env: &TestEnv, keyring: Keyring) -> (Vault, sqlx::PgPool) {
    let pool = careloop_backbone::db::connect(&env.settings.database_url, &env.settings.database)
        .await
        .unwrap();
    sqlx::raw_sql(careloop_vault::MIGRATION_SQL)
        .execute(&pool)
        .await
        .unwrap();
    (Vault::new(pool.clone(), keyring), pool)
}

/// Guarantee: what is sealed for a person opens for them until they are erased, and
/// never after, in this process or any other; nothing is sealed for them again.
#[tokio::test]
async fn erasing_a_person_makes_what_was_sealed_for_them_unreadable() {
    let env = TestEnv::new();
    let (vault, pool) = vault(&env, Keyring::local(&[1; 32], &[])).await;
    let sealed = vault.seal("p1", "Zebulon Quixote").await.unwrap();
    let other = vault.seal("p2", "Someone Else").await.unwrap();
    assert_eq!(
        vault.open("p1", &sealed).await.unwrap().as_deref(),
        Some("Zebulon Quixote")
    );
    assert_eq!(vault.erase("p1").await.unwrap(), Erased::Now);
    assert_eq!(vault.erase("p1").await.unwrap(), Erased::Already);
    assert_eq!(vault.open("p1", &sealed).await.unwrap(), None);
    assert!(matches!(
        vault.seal("p1", "again").await,
        Err(VaultError::Erased)
    ));
    assert!(vault.is_erased("p1").await.unwrap());
    // A second process (no cache) sees the same.
    let fresh = Vault::new(pool.clone(), Keyring::local(&[1; 32], &[]));
    assert_eq!(fresh.open("p1", &sealed).await.unwrap(), None);
    assert_eq!(
        fresh.open("p2", &other).await.unwrap().as_deref(),
        Some("Someone Else")
    );
    // Nothing of the key is left in the database.
    let left: (Option<Vec<u8>>, Option<String>) =
        sqlx::query_as("SELECT wrapped, kek_id FROM vault.person_keys WHERE person_ref = 'p1'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(left, (None, None));
}

/// Guarantee: rotating the key-encryption key re-wraps the data keys and the digest
/// secret, after which the old KEK is not needed; sealed values and identifier
/// digests stay as they were.
#[tokio::test]
async fn a_new_key_encryption_key_rewraps_every_key_and_the_old_one_can_go() {
    let env = TestEnv::new();
    let (old, pool) = vault(&env, Keyring::local(&[1; 32], &[])).await;
    let sealed = old.seal("p1", "+1-402-555-0199").await.unwrap();
    let digest = old.digest("urn:mrn", "MRN-1").await.unwrap();
    old.erase("p2").await.unwrap();

    // Only the new KEK: the old wrapping is named and refused.
    let alone = Vault::new(pool.clone(), Keyring::local(&[2; 32], &[]));
    let err = alone.open("p1", &sealed).await.unwrap_err().to_string();
    assert!(
        err.contains("CARELOOP_PREVIOUS_KEY_ENCRYPTION_KEYS"),
        "{err}"
    );

    let rotating = Vault::new(pool.clone(), Keyring::local(&[2; 32], &[[1; 32]]));
    let report = rotating.rewrap().await.unwrap();
    assert_eq!(
        (report.person_keys, report.secrets),
        (1, 1),
        "the erased key stays gone"
    );
    assert_eq!(
        rotating.rewrap().await.unwrap().person_keys,
        0,
        "nothing left to move"
    );

    let new = Vault::new(pool.clone(), Keyring::local(&[2; 32], &[]));
    assert_eq!(
        new.open("p1", &sealed).await.unwrap().as_deref(),
        Some("+1-402-555-0199")
    );
    assert_eq!(new.digest("urn:mrn", "MRN-1").await.unwrap(), digest);
    assert_ne!(new.digest("urn:mrn", "MRN-2").await.unwrap(), digest);
}
