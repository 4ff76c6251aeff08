-- The coordinator queue and the hospital's view of referrals, fed from referral events.
CREATE TABLE {schema}.referrals (
    referral_id           text PRIMARY KEY,
    person_ref            text NOT NULL,
    facility              text NOT NULL,
    status                text NOT NULL,
    status_reason         text,
    priority              text NOT NULL,
    peer_id               text,
    waitlisted            boolean NOT NULL DEFAULT false,
    attempt               int NOT NULL DEFAULT 1,
    discharged_at         timestamptz NOT NULL,
    acceptance_due_at     timestamptz NOT NULL,
    first_contact_due_at  timestamptz NOT NULL,
    acceptance_overdue    boolean NOT NULL DEFAULT false,
    first_contact_overdue boolean NOT NULL DEFAULT false,
    received_at           timestamptz NOT NULL,
    updated_at            timestamptz NOT NULL
);
-- The queue pages by (updated_at, referral_id) under each filter.
CREATE INDEX referrals_page ON {schema}.referrals (updated_at, referral_id);
CREATE INDEX referrals_by_facility ON {schema}.referrals (facility, updated_at, referral_id);
CREATE INDEX referrals_by_status ON {schema}.referrals (status, updated_at, referral_id);
CREATE INDEX referrals_by_peer ON {schema}.referrals (peer_id, updated_at, referral_id);
CREATE INDEX referrals_overdue ON {schema}.referrals (updated_at, referral_id)
    WHERE acceptance_overdue OR first_contact_overdue;
-- The deadline check looks for open referrals by due time.
CREATE INDEX referrals_acceptance_due ON {schema}.referrals (acceptance_due_at)
    WHERE status = 'received' AND NOT acceptance_overdue;
CREATE INDEX referrals_first_contact_due ON {schema}.referrals (first_contact_due_at)
    WHERE status IN ('received', 'accepted') AND NOT first_contact_overdue;

-- Every change of every referral, in order, for the timeline.
CREATE TABLE {schema}.referral_timeline (
    referral_id text NOT NULL,
    sequence    bigint NOT NULL,
    at          timestamptz NOT NULL,
    event       text NOT NULL,
    status      text NOT NULL,
    actor       text,
    reason      text,
    detail      jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (referral_id, sequence)
);
