-- The continuity-of-care measures read model: one row per referral's discharge,
-- every contact (reached or not) at its occurred_at, and every admission of a
-- referred person. Rebuilt from follow-up's own events (`careloop replay measures`).
CREATE TABLE {schema}.measure_discharges (
    referral_id   text PRIMARY KEY,
    person_ref    text,
    facility      text,
    discharged_at timestamptz,
    status        text,
    -- assigned | waitlisted | unassigned | released
    assignment    text,
    -- entered-in-error: excluded from every measure
    excluded      boolean NOT NULL DEFAULT false
);
CREATE INDEX measure_discharges_by_time ON {schema}.measure_discharges (discharged_at);
CREATE INDEX measure_discharges_by_person ON {schema}.measure_discharges (person_ref);

CREATE TABLE {schema}.measure_contacts (
    contact_id  text PRIMARY KEY,
    referral_id text NOT NULL,
    occurred_at timestamptz NOT NULL,
    reached     boolean NOT NULL
);
CREATE INDEX measure_contacts_reached ON {schema}.measure_contacts (referral_id, occurred_at) WHERE reached;

CREATE TABLE {schema}.measure_admissions (
    admission_id text PRIMARY KEY,
    person_ref   text NOT NULL,
    facility     text NOT NULL,
    admitted_at  timestamptz NOT NULL
);
CREATE INDEX measure_admissions_by_person ON {schema}.measure_admissions (person_ref, admitted_at);
