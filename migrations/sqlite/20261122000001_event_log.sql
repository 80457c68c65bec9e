-- The event log of Amtsbuch (embedded SQLite store): one row per event, append-only.
--
-- Same shape as the PostgreSQL schema. `record` holds the canonical JSON bytes verbatim;
-- the other columns duplicate record fields for indexing. SQLite serializes writers, and
-- all appends of a process go through one writer connection, so positions taken inside an
-- IMMEDIATE transaction are commit-ordered.
CREATE TABLE events (
    position        INTEGER PRIMARY KEY CHECK (position > 0),
    event_id        BLOB    NOT NULL UNIQUE,
    stream_id       TEXT    NOT NULL,
    category        TEXT    NOT NULL,
    stream_version  INTEGER NOT NULL CHECK (stream_version > 0),
    event_type      TEXT    NOT NULL,
    tenant          TEXT,
    recorded_at     TEXT    NOT NULL,
    record          BLOB    NOT NULL,
    leaf_hash       BLOB    NOT NULL CHECK (length(leaf_hash) = 32),
    chain_hash      BLOB    NOT NULL CHECK (length(chain_hash) = 32),
    UNIQUE (stream_id, stream_version)
);

CREATE INDEX events_category_position ON events (category, position);

CREATE TABLE log_head (
    id          INTEGER PRIMARY KEY CHECK (id = 1),
    position    INTEGER NOT NULL,
    chain_hash  BLOB    NOT NULL CHECK (length(chain_hash) = 32)
);
INSERT INTO log_head (id, position, chain_hash) VALUES (1, 0, zeroblob(32));

-- Append-only, enforced by the database.
CREATE TRIGGER events_forbid_update
    BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'the Amtsbuch event log is append-only: UPDATE on events is forbidden'); END;

CREATE TRIGGER events_forbid_delete
    BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'the Amtsbuch event log is append-only: DELETE on events is forbidden'); END;

CREATE TRIGGER log_head_forward_only
    BEFORE UPDATE ON log_head
    WHEN NEW.position < OLD.position
    BEGIN SELECT RAISE(ABORT, 'the Amtsbuch log head only moves forward'); END;

CREATE TRIGGER log_head_no_delete
    BEFORE DELETE ON log_head
    BEGIN SELECT RAISE(ABORT, 'the Amtsbuch log head cannot be deleted'); END;
