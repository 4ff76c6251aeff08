-- Which incarnation of the namespace's JetStream stream this service's relay last
-- published to (the stream's creation time). A stream found with another one was
-- lost and created again: the relay publishes every event again (relay.rs).
CREATE TABLE {schema}.stream_marks (
    stream      text PRIMARY KEY,
    incarnation text NOT NULL,
    marked_at   timestamptz NOT NULL DEFAULT now()
);
