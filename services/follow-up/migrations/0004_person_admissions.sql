-- Admissions of referred people, kept by the AdmissionRecorded consumer (in the same
-- transaction as its processed record), so a plan that starts after an admission
-- was reported still links it.
CREATE TABLE {schema}.person_admissions (
    admission_id text PRIMARY KEY,
    person_ref   text NOT NULL,
    admitted_at  timestamptz NOT NULL
);
CREATE INDEX person_admissions_by_person ON {schema}.person_admissions (person_ref, admitted_at);
