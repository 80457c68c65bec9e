-- The NATS relay's durable progress.
--
-- One row per JetStream stream the relay feeds (`name` is the stream's name): `position` is
-- the highest log position up to which JetStream acknowledged every event, in order. It is
-- written only after those acknowledgements, and the relay only ever moves it forward. On
-- start the relay trusts the stream itself first (the `Amtsbuch-Position` header of its last
-- message) and falls back to this row when the stream cannot tell, e.g. after its messages
-- expired under a retention limit.
--
-- Unlike the event log this is an operational cursor, not audit data, so it is not
-- append-only: an operator who deliberately wants a stream refilled may delete its row.
CREATE TABLE relay_state (
    name        TEXT        PRIMARY KEY CHECK (name <> ''),
    position    BIGINT      NOT NULL CHECK (position >= 0),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
