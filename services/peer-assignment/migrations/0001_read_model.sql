-- The roster as matching reads it, with each peer's live caseload count.
CREATE TABLE {schema}.peers (
    peer_id          text PRIMARY KEY,
    name             text NOT NULL,
    languages        text[] NOT NULL,
    gender           text,
    lived_experience text[] NOT NULL,
    regions          text[] NOT NULL,
    modes            text[] NOT NULL,
    max_caseload     int NOT NULL,
    availability     text NOT NULL,
    active_count     int NOT NULL DEFAULT 0,
    registered_at    timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);

-- Where each referral stands in assignment.
CREATE TABLE {schema}.assignments (
    referral_id text PRIMARY KEY,
    status      text NOT NULL,
    peer_id     text,
    priority    text NOT NULL,
    requested_at timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE INDEX assignments_waitlist ON {schema}.assignments (status, requested_at);
