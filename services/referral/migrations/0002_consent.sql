-- Which referrals belong to which person, and whose consent was revoked when,
-- written by the intake consumer in the same transaction as its processed record:
-- a revocation cancels every referral of the person, also one submitted just before
-- it whose events arrive in the other order.
CREATE TABLE {schema}.person_referrals (
    person_ref   text NOT NULL,
    referral_id  text NOT NULL,
    submitted_at timestamptz NOT NULL,
    PRIMARY KEY (person_ref, referral_id)
);

CREATE TABLE {schema}.revoked_consents (
    person_ref text PRIMARY KEY,
    revoked_at timestamptz NOT NULL,
    reason     text NOT NULL
);
