-- Referred people's encounters, for the measures of program impact: inpatient stays
-- (sharing their admission's id, with the end once known) and outpatient visits.
CREATE TABLE {schema}.measure_encounters (
    encounter_id text PRIMARY KEY,
    person_ref   text NOT NULL,
    facility     text NOT NULL,
    -- inpatient | outpatient
    class        text NOT NULL,
    started_at   timestamptz NOT NULL,
    ended_at     timestamptz
);
CREATE INDEX measure_encounters_by_person ON {schema}.measure_encounters (person_ref, started_at);
