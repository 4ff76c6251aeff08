-- Follow-up plans (the peers' worklists and the coordinators' overdue list), their
-- check-ins, every contact attempt and linked readmissions.
CREATE TABLE {schema}.followups (
    referral_id      text PRIMARY KEY,
    peer_id          text NOT NULL,
    person_ref       text NOT NULL,
    facility         text NOT NULL,
    priority         text NOT NULL,
    discharged_at    timestamptz NOT NULL,
    ends_at          timestamptz NOT NULL,
    -- active | paused | closed
    state            text NOT NULL,
    outcome          text,
    close_reason     text,
    first_reached_at timestamptz,
    attempts         int NOT NULL DEFAULT 0,
    -- The earliest unmet check-in, and whether an unmet one is overdue.
    next_checkpoint  text,
    next_due_at      timestamptz,
    overdue          boolean NOT NULL DEFAULT false,
    started_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);
CREATE INDEX followups_worklist ON {schema}.followups (peer_id, next_due_at);
CREATE INDEX followups_by_due ON {schema}.followups (next_due_at) WHERE state = 'active';
CREATE INDEX followups_ending ON {schema}.followups (ends_at) WHERE state = 'active';

CREATE TABLE {schema}.checkpoints (
    referral_id  text NOT NULL,
    name         text NOT NULL,
    window_start timestamptz NOT NULL,
    due_at       timestamptz NOT NULL,
    met_at       timestamptz,
    met_by       text,
    overdue      boolean NOT NULL DEFAULT false,
    PRIMARY KEY (referral_id, name)
);
CREATE INDEX checkpoints_open ON {schema}.checkpoints (due_at) WHERE met_at IS NULL AND NOT overdue;

CREATE TABLE {schema}.contacts (
    contact_id       text PRIMARY KEY,
    referral_id      text NOT NULL,
    peer_id          text NOT NULL,
    occurred_at      timestamptz NOT NULL,
    channel          text NOT NULL,
    outcome          text NOT NULL,
    support_types    text[] NOT NULL,
    duration_minutes int,
    recorded_at      timestamptz NOT NULL
);
CREATE INDEX contacts_by_referral ON {schema}.contacts (referral_id, occurred_at);

CREATE TABLE {schema}.readmissions (
    referral_id  text NOT NULL,
    admission_id text NOT NULL,
    admitted_at  timestamptz NOT NULL,
    linked_at    timestamptz NOT NULL,
    PRIMARY KEY (referral_id, admission_id)
);

-- Which plans belong to which person, written by the PeerAssigned consumer in the
-- same transaction as its processed record, so an admission finds the plans it may
-- be a readmission for.
CREATE TABLE {schema}.plans_by_person (
    person_ref    text NOT NULL,
    referral_id   text NOT NULL,
    discharged_at timestamptz NOT NULL,
    PRIMARY KEY (person_ref, referral_id)
);
