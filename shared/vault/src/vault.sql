-- The PHI vault's keys. Nothing here is readable without the key-encryption key,
-- which never enters the database.
CREATE SCHEMA IF NOT EXISTS vault;

-- One data key per person, wrapped by the key-encryption key named by kek_id.
-- Erasing a person destroys the wrapped key (crypto-shredding): the row stays, so
-- the person_ref is never given a new key and nothing sealed before opens again.
CREATE TABLE IF NOT EXISTS vault.person_keys (
    person_ref text PRIMARY KEY,
    kek_id     text,
    wrapped    bytea,
    created_at timestamptz NOT NULL DEFAULT now(),
    erased_at  timestamptz,
    CHECK ((wrapped IS NULL) = (erased_at IS NOT NULL)),
    CHECK ((wrapped IS NULL) = (kek_id IS NULL))
);

-- The vault's own secrets (the identifier digest key), wrapped the same way.
CREATE TABLE IF NOT EXISTS vault.secrets (
    name       text PRIMARY KEY,
    kek_id     text NOT NULL,
    wrapped    bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
