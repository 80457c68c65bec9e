-- Who owns each durable NATS consumer a Fachverfahren set up (embedded store): per
-- JetStream stream and consumer name, the token subject (`sub`) of the Fachverfahren that
-- set it up, which alone may change its filters later. Same shape and rules as the
-- PostgreSQL schema: consumers an operator sets up have no row, and an operator who hands a
-- name to another system deletes its row.
CREATE TABLE nats_consumers (
    stream      TEXT NOT NULL CHECK (stream <> ''),
    name        TEXT NOT NULL CHECK (name <> ''),
    owner       TEXT NOT NULL CHECK (owner <> ''),
    created_at  TEXT NOT NULL,
    PRIMARY KEY (stream, name)
);
