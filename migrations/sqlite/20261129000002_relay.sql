-- The NATS relay's durable progress (embedded store): per JetStream stream the relay feeds,
-- the highest log position up to which JetStream acknowledged every event. Same shape and
-- rules as the PostgreSQL schema: written only after the acknowledgements, moved only
-- forward by the relay, and not append-only, since it is a cursor rather than audit data.
CREATE TABLE relay_state (
    name        TEXT    PRIMARY KEY CHECK (name <> ''),
    position    INTEGER NOT NULL CHECK (position >= 0),
    updated_at  TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
