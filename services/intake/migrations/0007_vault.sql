-- The identifier index keeps keyed digests (HMAC-SHA-256 of system and value under a
-- vault secret) instead of identifiers. Rows of person_identifiers written before
-- this are moved here at start (identity::upgrade_clear_identifiers) and deleted.
CREATE TABLE {schema}.person_identifier_digests (
    digest     bytea PRIMARY KEY,
    person_ref uuid NOT NULL
);
CREATE INDEX person_identifier_digests_by_person
    ON {schema}.person_identifier_digests (person_ref);

-- People exempt from erasure by the retention period (a litigation hold, an
-- investigation). The reason is an administrator's, free of PHI.
CREATE TABLE {schema}.legal_holds (
    person_ref uuid PRIMARY KEY,
    reason     text NOT NULL,
    placed_by  text NOT NULL,
    placed_at  timestamptz NOT NULL DEFAULT now()
);

-- Finding a person's last activity (retention) and a facility's referrals of a
-- person without scanning every event.
CREATE INDEX events_person_ref ON {schema}.events ((payload->'ReferralSubmitted'->>'person_ref'))
    WHERE aggregate_type = 'ReferralSubmission';
