-- The identifier index of the person vault: any shared identifier (system + value)
-- finds the same person_ref. PHI stays in this schema and never leaves intake.
CREATE TABLE {schema}.person_identifiers (
    system     text NOT NULL,
    value      text NOT NULL,
    person_ref uuid NOT NULL,
    PRIMARY KEY (system, value)
);
CREATE INDEX person_identifiers_by_person ON {schema}.person_identifiers (person_ref);
