-- Who owns each durable NATS consumer a Fachverfahren set up (`PUT /subscriptions/nats/{name}`).
--
-- One row per consumer (`name`) of a JetStream stream (`stream`): `owner` is the token
-- subject (`sub`) of the Fachverfahren that set it up. Only that Fachverfahren may change
-- the consumer's filters later; another Fachverfahren of the same authority, whose token
-- may cover other services, is refused. Ownership is recorded here, when the consumer is
-- created, rather than read from the consumer's name: the name only says which authority
-- it belongs to, not which of the authority's systems.
--
-- Consumers an operator sets up have no row; only operators change them. Operational
-- state, not audit data: an operator who hands a name to another system deletes its row.
-- `created_at` follows the read-model convention (RFC 3339 text, six fractional digits).
CREATE TABLE nats_consumers (
    stream      TEXT NOT NULL CHECK (stream <> ''),
    name        TEXT NOT NULL CHECK (name <> ''),
    owner       TEXT NOT NULL CHECK (owner <> ''),
    created_at  TEXT NOT NULL,
    PRIMARY KEY (stream, name)
);
