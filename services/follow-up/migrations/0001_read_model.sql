-- Follow-up plans (the peer's worklist) and every contact attempt.
CREATE TABLE {schema}.followups (
    referral_id          text PRIMARY KEY,
    peer_id              text NOT NULL,
    facility             text NOT NULL,
    priority             text NOT NULL,
    discharged_at        timestamptz NOT NULL,
    first_contact_due_at timestamptz NOT NULL,
    first_reached_at     timestamptz,
    attempts             int NOT NULL DEFAULT 0,
    started_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL
);
CREATE INDEX followups_worklist ON {schema}.followups (peer_id, first_contact_due_at);

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
