-- The writer's probe: one row the group-commit writer rewrites to learn whether it can
-- write again after an append batch failed (a full disk, a lost connection). Its count
-- changes at every probe, so each probe really writes; a write that changes nothing would
-- succeed even on a full disk and prove nothing. Operational state, not audit data.
CREATE TABLE writer_probe (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    probes  BIGINT  NOT NULL CHECK (probes >= 0)
);
