//! The PHI vault's keys: how careloop keeps people's details unreadable at rest and
//! makes them unreadable for ever when a person is erased.
//!
//! - [`kek`]: the key-encryption key (KEK), held outside the database (an
//!   environment secret or file here; a KMS behind the same trait in production).
//!   It only wraps other keys; rotating it re-wraps them and touches no event.
//! - [`cipher`]: AES-256-GCM sealing of one field under one person's data key, bound
//!   to that person (a sealed value moved onto another person does not open).
//! - [`vault`]: the per-person data keys (`vault.person_keys`, wrapped), the keyed
//!   digest (HMAC-SHA-256) that finds a person by identifier without storing it, and
//!   erasure: destroying a person's data key (crypto-shredding) leaves every value
//!   sealed under it, in events, read models, backups and replicas, unreadable.
//!
//! Guarantee: no PHI field is written in the clear by a service that seals through
//! the vault; how it fails: a KEK that is lost makes every person unreadable (keep it
//! as you keep the database's backups, apart from them). Each use of a person's key
//! reads its row, so an erasure holds at once in every process.

pub mod cipher;
pub mod kek;
pub mod vault;

pub use cipher::{DataKey, is_sealed};
pub use kek::{KeyEncryptionKey, Keyring, LocalKek};
pub use vault::{Erased, RewrapReport, Vault, VaultError};

/// The vault's tables, in the schema `vault` shared by the services that seal (each
/// applies it through its own migrations; every statement is idempotent).
pub const MIGRATION_SQL: &str = include_str!("vault.sql");
