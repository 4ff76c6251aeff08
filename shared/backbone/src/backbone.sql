-- The backbone tables of one service, in its own schema.

-- postgres-es's events table plus outbox columns filled in by Postgres. `txid` is the
-- inserting transaction's id: readers only take rows whose transaction is older than
-- every transaction still running, so a late commit is never skipped (bigserial
-- positions alone can commit out of order).
CREATE TABLE {schema}.events (
    aggregate_type text NOT NULL,
    aggregate_id   text NOT NULL,
    sequence       bigint CHECK (sequence >= 0) NOT NULL,
    event_type     text NOT NULL,
    event_version  text NOT NULL,
    payload        json NOT NULL,
    metadata       json NOT NULL,
    event_id       uuid NOT NULL DEFAULT gen_random_uuid() UNIQUE,
    position       bigserial NOT NULL,
    txid           xid8 NOT NULL DEFAULT pg_current_xact_id(),
    recorded_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);
CREATE INDEX events_commit_order ON {schema}.events (txid, position);

-- Required by postgres-es; careloop uses the plain event store, never snapshots.
CREATE TABLE {schema}.snapshots (
    aggregate_type   text NOT NULL,
    aggregate_id     text NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0) NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          json NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id)
);

-- Wakes the relay and projections as soon as events commit (they also poll).
CREATE FUNCTION {schema}.notify_events() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('careloop_events', '{schema}');
    RETURN NULL;
END $$;
CREATE TRIGGER events_notify AFTER INSERT ON {schema}.events
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.notify_events();

-- How far the relay and each projection have read the events table.
CREATE TABLE {schema}.cursors (
    name       text PRIMARY KEY,
    txid       xid8 NOT NULL DEFAULT '0',
    position   bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- The processed record of each consumer, per source aggregate: the last applied
-- aggregate sequence. Written in the same transaction as the handler's effect.
CREATE TABLE {schema}.consumer_positions (
    consumer       text NOT NULL,
    aggregate_type text NOT NULL,
    aggregate_id   text NOT NULL,
    last_sequence  bigint NOT NULL,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, aggregate_type, aggregate_id)
);

-- Messages that kept failing: kept whole, with the last error, never dropped.
CREATE TABLE {schema}.dead_letters (
    id                 bigserial PRIMARY KEY,
    consumer           text NOT NULL,
    subject            text NOT NULL,
    event_id           text,
    event_type         text,
    aggregate_type     text,
    aggregate_id       text,
    aggregate_sequence bigint,
    message            bytea NOT NULL,
    error              text NOT NULL,
    deliveries         bigint NOT NULL,
    dead_at            timestamptz NOT NULL DEFAULT now()
);

-- Idempotency-Key answers for POSTs that create something.
CREATE TABLE {schema}.idempotency_keys (
    scope        text NOT NULL,
    key          text NOT NULL,
    request_hash text NOT NULL,
    status       int,
    response     jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (scope, key)
);

-- Handler failures per message, counted by careloop (not by JetStream deliveries, which
-- also count the waits for an earlier event): at max_deliver the message is dead-lettered.
CREATE TABLE {schema}.consumer_failures (
    consumer   text NOT NULL,
    event_id   text NOT NULL,
    failures   int NOT NULL,
    last_error text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
