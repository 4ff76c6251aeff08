-- The coordinator's and hospital's view of referrals, fed from referral events.
CREATE TABLE {schema}.referrals (
    referral_id          text PRIMARY KEY,
    person_ref           text NOT NULL,
    facility             text NOT NULL,
    status               text NOT NULL,
    priority             text NOT NULL,
    peer_id              text,
    waitlisted           boolean NOT NULL DEFAULT false,
    discharged_at        timestamptz NOT NULL,
    first_contact_due_at timestamptz NOT NULL,
    received_at          timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL
);
CREATE INDEX referrals_by_facility_status ON {schema}.referrals (facility, status, updated_at);
CREATE INDEX referrals_by_status ON {schema}.referrals (status, updated_at);

-- Every change of every referral, in order, for the timeline.
CREATE TABLE {schema}.referral_timeline (
    referral_id text NOT NULL,
    sequence    bigint NOT NULL,
    at          timestamptz NOT NULL,
    event       text NOT NULL,
    status      text NOT NULL,
    actor       text,
    detail      jsonb NOT NULL DEFAULT '{}',
    PRIMARY KEY (referral_id, sequence)
);
