-- Identity, hosted in the intake service's schema: careloop's signing keys, the SMART
-- backend clients of registered facilities, staff accounts and console sessions,
-- and the read models of the facility registry and the audit log.

-- careloop's ES256 signing keys. The private key is sealed (AES-256-GCM) with the
-- key-encryption key, which is never in the database.
CREATE TABLE {schema}.signing_keys (
    kid           text PRIMARY KEY,
    sealed_key    bytea NOT NULL,
    public_jwk    jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    -- New tokens are signed with the newest key until then ...
    sign_until    timestamptz NOT NULL,
    -- ... and it stays in the published JWKS until every token it signed expired.
    publish_until timestamptz NOT NULL
);

-- SMART backend services clients: each a hospital system of one facility.
CREATE TABLE {schema}.smart_clients (
    client_id  text PRIMARY KEY,
    facility   text NOT NULL,
    name       text NOT NULL,
    jwks_url   text,
    jwks       jsonb,
    scopes     text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    CHECK (jwks_url IS NOT NULL OR jwks IS NOT NULL)
);

-- Client assertions already used, until they expire: a jti is accepted once.
CREATE TABLE {schema}.client_assertions (
    client_id  text NOT NULL,
    jti        text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (client_id, jti)
);

-- Staff accounts an administrator keeps: the provider's subject and what it may do.
-- A peer's account is linked to exactly one roster entry.
CREATE TABLE {schema}.staff_accounts (
    sub        text PRIMARY KEY,
    name       text,
    role       text NOT NULL,
    facility   text,
    peer_id    text UNIQUE,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Console sessions: the cookie holds a random token, the table only its hash.
CREATE TABLE {schema}.sessions (
    id_hash        text PRIMARY KEY,
    sub            text NOT NULL,
    name           text,
    role           text NOT NULL,
    facility       text,
    peer_id        text,
    csrf           text NOT NULL,
    id_token       text,
    created_at     timestamptz NOT NULL,
    last_active_at timestamptz NOT NULL,
    expires_at     timestamptz NOT NULL
);

-- Sign-ins under way: the state sent to the provider, its PKCE verifier and nonce.
CREATE TABLE {schema}.sign_ins (
    state      text PRIMARY KEY,
    verifier   text NOT NULL,
    nonce      text NOT NULL,
    return_to  text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

-- The facility registry (read model of the Facility events).
CREATE TABLE {schema}.facilities (
    facility_id   text PRIMARY KEY,
    name          text NOT NULL,
    hl7_senders   jsonb NOT NULL DEFAULT '[]',
    registered_at timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);

-- The audit log (read model of the AuditEntry events). References only, never PHI.
CREATE TABLE {schema}.audit_log (
    entry_id    text PRIMARY KEY,
    at          timestamptz NOT NULL,
    sub         text,
    role        text,
    facility    text,
    client_id   text,
    action      text NOT NULL,
    resource    text NOT NULL,
    person_ref  text,
    referral_id text,
    address     text,
    outcome     text NOT NULL,
    detail      text
);
CREATE INDEX audit_log_by_time ON {schema}.audit_log (at, entry_id);
CREATE INDEX audit_log_by_person ON {schema}.audit_log (person_ref, at);
CREATE INDEX audit_log_by_sub ON {schema}.audit_log (sub, at);
