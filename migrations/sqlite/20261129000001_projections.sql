-- Read models (projections) and the checkpoints that say how far each has applied the log
-- (embedded SQLite store; the same tables as the PostgreSQL schema).
--
-- Read models are derived data: they can be dropped and rebuilt from the events at any
-- time (`rebuild`), so unlike the log they are updated and deleted freely. Each table
-- belongs to exactly one projection, which writes it only inside the runner's batch
-- transaction together with its checkpoint, so a read model always reflects exactly the
-- events up to its checkpoint.
--
-- The same SQL text runs on PostgreSQL and SQLite, so these tables keep to types both
-- handle alike: integers are INTEGER (BIGINT on PostgreSQL), and timestamps are TEXT in
-- RFC 3339 UTC with exactly six fractional digits (`2026-11-22T13:31:00.000000Z`, as in
-- the event records), whose text order is their time order.

-- One row per projection: every event up to `position` is reflected in its read model.
-- Every batch runs in BEGIN IMMEDIATE, holding the database's write lock (PostgreSQL locks
-- this row instead), re-reads the row and moves it in the batch's transaction; a rebuild
-- sets it to 0 in the transaction that clears the read model.
CREATE TABLE projection_checkpoints (
    name        TEXT    PRIMARY KEY,
    position    INTEGER NOT NULL CHECK (position >= 0),
    updated_at  TEXT    NOT NULL
);

-- The stream catalogue (projection `streams`): one row per stream of the log.
CREATE TABLE streams (
    stream_id       TEXT    PRIMARY KEY,
    category        TEXT    NOT NULL,
    -- The stream's current version (its number of events).
    version         INTEGER NOT NULL CHECK (version > 0),
    -- Position of the stream's first event: the listing order and pagination key, which
    -- no later event changes.
    first_position  INTEGER NOT NULL UNIQUE CHECK (first_position > 0),
    last_position   INTEGER NOT NULL CHECK (last_position >= first_position),
    last_event_type TEXT    NOT NULL,
    -- Authority and tenant of the latest event that names one.
    authority       TEXT,
    tenant          TEXT,
    -- recorded_at of the first and of the latest event.
    created_at      TEXT    NOT NULL,
    updated_at      TEXT    NOT NULL
);

-- Listing one category or one authority's streams in creation order.
CREATE INDEX streams_category ON streams (category, first_position);
CREATE INDEX streams_authority ON streams (authority, first_position);
