-- The closed loop with the hospital: where each facility wants status changes pushed,
-- what is due to be sent, and every attempt made.
CREATE TABLE {schema}.facility_webhooks (
    facility   text PRIMARY KEY,
    url        text NOT NULL,
    secret     text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE {schema}.webhook_deliveries (
    id              bigserial PRIMARY KEY,
    event_id        text NOT NULL UNIQUE,
    facility        text NOT NULL,
    referral_id     text NOT NULL,
    status          text NOT NULL,
    body            text NOT NULL,
    -- pending | delivered | failed (gave up after the last attempt)
    state           text NOT NULL DEFAULT 'pending',
    attempts        int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_due ON {schema}.webhook_deliveries (next_attempt_at, id)
    WHERE state = 'pending';
CREATE INDEX webhook_deliveries_by_facility ON {schema}.webhook_deliveries (facility, id);

CREATE TABLE {schema}.webhook_attempts (
    delivery_id bigint NOT NULL REFERENCES {schema}.webhook_deliveries (id),
    attempt     int NOT NULL,
    at          timestamptz NOT NULL DEFAULT now(),
    status_code int,
    error       text,
    duration_ms int NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);
