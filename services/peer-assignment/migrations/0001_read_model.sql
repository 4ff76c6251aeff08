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
    -- active | on_leave | inactive
    availability     text NOT NULL,
    -- For a peer on leave: when they take referrals again.
    available_from   timestamptz,
    active_count     int NOT NULL DEFAULT 0,
    registered_at    timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);

-- Where each referral stands in assignment; the waitlist is status = 'waitlisted',
-- served by priority and then by when it first waited.
CREATE TABLE {schema}.assignments (
    referral_id   text PRIMARY KEY,
    person_ref    text NOT NULL,
    status        text NOT NULL,
    peer_id       text,
    priority      text NOT NULL,
    requested_at  timestamptz NOT NULL,
    waitlisted_at timestamptz,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX assignments_waitlist ON {schema}.assignments (priority, waitlisted_at, referral_id)
    WHERE status = 'waitlisted';
CREATE INDEX assignments_by_peer ON {schema}.assignments (peer_id) WHERE status = 'assigned';

-- Every peer who ever held a referral: continuity for the person's next referral.
CREATE TABLE {schema}.assignment_history (
    referral_id text NOT NULL,
    person_ref  text NOT NULL,
    peer_id     text NOT NULL,
    assigned_at timestamptz NOT NULL,
    PRIMARY KEY (referral_id, peer_id, assigned_at)
);
CREATE INDEX assignment_history_by_person ON {schema}.assignment_history (person_ref);
