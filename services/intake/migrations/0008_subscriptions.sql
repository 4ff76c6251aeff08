-- FHIR Subscriptions (R4 Backport IG) on careloop's Task topic: what each subscriber
-- asked for, and each notification due, numbered per subscription.
CREATE TABLE {schema}.fhir_subscriptions (
    id                 uuid PRIMARY KEY,
    -- The facility that subscribed: only its Tasks are notified.
    facility           text NOT NULL,
    -- requested (until the handshake succeeds) | active | error | off
    status             text NOT NULL DEFAULT 'requested',
    endpoint           text NOT NULL,
    -- channel.header: sent with every notification (e.g. Authorization).
    headers            text[] NOT NULL DEFAULT '{}',
    -- empty | id-only | full-resource
    content            text NOT NULL,
    filter_owner       text,
    filter_requester   text,
    filter_status      text[],
    heartbeat_secs     int,
    timeout_secs       int NOT NULL DEFAULT 10,
    -- The number of the last event notification queued: numbers never repeat or skip.
    events_since_start bigint NOT NULL DEFAULT 0,
    last_sent_at       timestamptz,
    error              text,
    -- The Subscription as created (served back with the current status).
    resource           jsonb NOT NULL,
    created_at         timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX fhir_subscriptions_by_facility ON {schema}.fhir_subscriptions (facility)
    WHERE status IN ('requested', 'active', 'error');

CREATE TABLE {schema}.fhir_notifications (
    id              bigserial PRIMARY KEY,
    subscription_id uuid NOT NULL REFERENCES {schema}.fhir_subscriptions (id) ON DELETE CASCADE,
    -- handshake | heartbeat | event-notification
    kind            text NOT NULL,
    event_number    bigint,
    -- The ReferralTask event behind an event notification (queued once).
    event_id        text,
    referral_id     text,
    task_version    int,
    occurred_at     timestamptz,
    -- pending | delivered | failed
    state           text NOT NULL DEFAULT 'pending',
    attempts        int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    last_error      text,
    UNIQUE (subscription_id, event_id)
);
CREATE INDEX fhir_notifications_due ON {schema}.fhir_notifications (next_attempt_at, id)
    WHERE state = 'pending';
CREATE INDEX fhir_notifications_by_subscription
    ON {schema}.fhir_notifications (subscription_id, id) WHERE state = 'pending';
