-- Peer practice: each contact's documentation for billing and supervision, the
-- addenda kept beside a signed contact, and the person's recovery goals with their
-- reviews. Words and notes are sealed under the person's data key.
ALTER TABLE {schema}.contacts
    ADD COLUMN ended_at  timestamptz,
    ADD COLUMN place     text,
    -- The Billing of the contact (code, modifiers, unit, rounding, units, attestation).
    ADD COLUMN billing   jsonb,
    ADD COLUMN goal_ids  text[] NOT NULL DEFAULT '{}',
    ADD COLUMN signed_by text,
    ADD COLUMN signed_at timestamptz;
-- The billing export reads billed contacts by the date of service.
CREATE INDEX contacts_billed ON {schema}.contacts (occurred_at) WHERE billing IS NOT NULL;

CREATE TABLE {schema}.contact_addenda (
    addendum_id text PRIMARY KEY,
    contact_id  text NOT NULL,
    referral_id text NOT NULL,
    text        text NOT NULL,
    added_by    text NOT NULL,
    added_at    timestamptz NOT NULL
);
CREATE INDEX contact_addenda_by_referral ON {schema}.contact_addenda (referral_id, added_at);

CREATE TABLE {schema}.goals (
    referral_id   text NOT NULL,
    goal_id       text NOT NULL,
    words         text NOT NULL,
    support_types text[] NOT NULL,
    -- progress | met | set_aside
    status        text NOT NULL,
    set_at        timestamptz NOT NULL,
    reviewed_at   timestamptz,
    PRIMARY KEY (referral_id, goal_id)
);

CREATE TABLE {schema}.goal_reviews (
    referral_id text NOT NULL,
    goal_id     text NOT NULL,
    seq         int NOT NULL,
    kind        text NOT NULL,
    words       text,
    note        text,
    reviewed_by text NOT NULL,
    reviewed_at timestamptz NOT NULL,
    PRIMARY KEY (referral_id, goal_id, seq)
);
