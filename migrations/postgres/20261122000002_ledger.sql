-- The verifiable ledger: signed checkpoints over the Merkle tree of the log, and the
-- interior nodes of that tree kept to serve proofs.
--
-- The tree is built incrementally by one ledger task per database (guarded by an advisory
-- lock): it reads new events in position order, adds their leaf hashes to a compact range,
-- and at each checkpoint stores, in one transaction, the new interior nodes, the compact
-- range, and the signed checkpoint. Nothing is ever recomputed from scratch.

-- Signed C2SP checkpoints, one per tree size. Sizes only grow; a size is signed once.
CREATE TABLE checkpoints (
    size        BIGINT      PRIMARY KEY CHECK (size > 0),
    root        BYTEA       NOT NULL CHECK (octet_length(root) = 32),
    -- The signed note exactly as issued.
    note        TEXT        NOT NULL,
    signed_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Roots of perfect subtrees at levels that are multiples of 4 (16, 256, 4096, … leaves).
-- Level 0 (the leaves) is `events.leaf_hash`; levels in between are recomputed from at most
-- 8 stored nodes, which keeps this table at about 1/15 of the events.
CREATE TABLE merkle_nodes (
    level   BIGINT NOT NULL CHECK (level > 0 AND level % 4 = 0),
    idx     BIGINT NOT NULL CHECK (idx >= 0),
    hash    BYTEA  NOT NULL CHECK (octet_length(hash) = 32),
    PRIMARY KEY (level, idx)
);

-- The compact range (right edge of the tree) as of the latest checkpoint: where the ledger
-- task resumes after a restart.
CREATE TABLE ledger_state (
    id              BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    size            BIGINT  NOT NULL,
    -- The range's nodes, largest subtree first, 32 bytes each.
    compact_range   BYTEA   NOT NULL
);

CREATE TRIGGER checkpoints_forbid_update_delete
    BEFORE UPDATE OR DELETE ON checkpoints
    FOR EACH ROW EXECUTE FUNCTION amtsbuch_forbid_event_change();
CREATE TRIGGER checkpoints_forbid_truncate
    BEFORE TRUNCATE ON checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION amtsbuch_forbid_event_change();
CREATE TRIGGER merkle_nodes_forbid_update_delete
    BEFORE UPDATE OR DELETE ON merkle_nodes
    FOR EACH ROW EXECUTE FUNCTION amtsbuch_forbid_event_change();
