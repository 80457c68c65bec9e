-- The verifiable ledger (embedded store): signed checkpoints, interior Merkle nodes at
-- levels that are multiples of 4, and the compact range as of the latest checkpoint.
-- Same shape and rules as the PostgreSQL schema.
CREATE TABLE checkpoints (
    size        INTEGER PRIMARY KEY CHECK (size > 0),
    root        BLOB    NOT NULL CHECK (length(root) = 32),
    note        TEXT    NOT NULL,
    signed_at   TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE merkle_nodes (
    level   INTEGER NOT NULL CHECK (level > 0 AND level % 4 = 0),
    idx     INTEGER NOT NULL CHECK (idx >= 0),
    hash    BLOB    NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (level, idx)
);

CREATE TABLE ledger_state (
    id              INTEGER PRIMARY KEY CHECK (id = 1),
    size            INTEGER NOT NULL,
    compact_range   BLOB    NOT NULL
);

CREATE TRIGGER checkpoints_forbid_update
    BEFORE UPDATE ON checkpoints
    BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only: UPDATE is forbidden'); END;
CREATE TRIGGER checkpoints_forbid_delete
    BEFORE DELETE ON checkpoints
    BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only: DELETE is forbidden'); END;
CREATE TRIGGER merkle_nodes_forbid_update
    BEFORE UPDATE ON merkle_nodes
    BEGIN SELECT RAISE(ABORT, 'merkle nodes are append-only: UPDATE is forbidden'); END;
CREATE TRIGGER merkle_nodes_forbid_delete
    BEFORE DELETE ON merkle_nodes
    BEGIN SELECT RAISE(ABORT, 'merkle nodes are append-only: DELETE is forbidden'); END;
