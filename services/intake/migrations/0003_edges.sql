-- The FHIR Task that tracks each referral, mirrored from the referral service's
-- status events (GET /fhir/Task).
CREATE TABLE {schema}.referral_tasks (
    referral_id  text PRIMARY KEY,
    person_ref   text,
    facility     text NOT NULL,
    status       text NOT NULL,
    reason       text,
    authored_on  timestamptz,
    last_updated timestamptz NOT NULL
);
CREATE INDEX referral_tasks_updated ON {schema}.referral_tasks (facility, last_updated);

-- HL7 v2 messages already handled, by sender and control id (MSH-10), with the
-- acknowledgement sent: a repeat gets the same ACK and no second effect.
CREATE TABLE {schema}.hl7_messages (
    sender      text NOT NULL,
    control_id  text NOT NULL,
    message_type text NOT NULL,
    ack         text,
    received_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sender, control_id)
);
