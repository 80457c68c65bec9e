-- The event log of Amtsbuch: one row per event, append-only.
--
-- `record` holds the RFC 8785 canonical JSON bytes of the event record verbatim (bytea,
-- not jsonb, because jsonb would re-serialize them and break every hash). The other
-- columns duplicate fields of the record for indexing only; hashes cover `record` alone.
CREATE TABLE events (
    -- 1-based, gapless, commit-ordered: leaf `position - 1` of the Merkle tree.
    position        BIGINT      PRIMARY KEY CHECK (position > 0),
    event_id        UUID        NOT NULL UNIQUE,
    stream_id       TEXT        NOT NULL,
    category        TEXT        NOT NULL,
    -- 1-based version within the stream.
    stream_version  BIGINT      NOT NULL CHECK (stream_version > 0),
    event_type      TEXT        NOT NULL,
    tenant          TEXT,
    recorded_at     TIMESTAMPTZ NOT NULL,
    record          BYTEA       NOT NULL,
    -- SHA-256(0x00 || record): the RFC 6962 leaf hash.
    leaf_hash       BYTEA       NOT NULL CHECK (octet_length(leaf_hash) = 32),
    -- SHA-256("amtsbuch/chain/v1" || 0x00 || previous chain_hash || leaf_hash).
    chain_hash      BYTEA       NOT NULL CHECK (octet_length(chain_hash) = 32),
    UNIQUE (stream_id, stream_version)
);

-- Reading a category in log order (projections, subscriptions by category).
CREATE INDEX events_category_position ON events (category, position);

-- The head of the log: one row, locked by every appending transaction. Holding this row
-- lock until commit is what makes positions commit-ordered: the next writer can only take
-- the lock, and so its positions, after the previous writer's rows are visible.
CREATE TABLE log_head (
    id          BOOLEAN     PRIMARY KEY DEFAULT TRUE CHECK (id),
    position    BIGINT      NOT NULL,
    chain_hash  BYTEA       NOT NULL CHECK (octet_length(chain_hash) = 32),
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO log_head (id, position, chain_hash) VALUES (TRUE, 0, decode(repeat('00', 32), 'hex'));

-- Append-only, enforced by the database: no role, including the service's own, can update
-- or delete an event row or truncate the table without first disabling these triggers.
CREATE FUNCTION amtsbuch_forbid_event_change() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the Amtsbuch event log is append-only: % on events is forbidden', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;

CREATE TRIGGER events_forbid_update_delete
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION amtsbuch_forbid_event_change();

CREATE TRIGGER events_forbid_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION amtsbuch_forbid_event_change();

-- The head may only move forward, and only together with new events.
CREATE FUNCTION amtsbuch_forbid_head_rewind() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' OR NEW.position < OLD.position THEN
        RAISE EXCEPTION 'the Amtsbuch log head only moves forward'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER log_head_forward_only
    BEFORE UPDATE OR DELETE ON log_head
    FOR EACH ROW EXECUTE FUNCTION amtsbuch_forbid_head_rewind();
