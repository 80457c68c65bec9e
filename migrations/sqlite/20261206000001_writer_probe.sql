-- The writer's probe (embedded store): one row the group-commit writer rewrites to learn
-- whether it can write again after an append batch failed, e.g. after a full disk. Its
-- count changes at every probe, so each probe really writes pages: SQLite skips writing a
-- row whose bytes do not change, and such a write would succeed on a full disk too. Same
-- shape as the PostgreSQL schema; operational state, not audit data.
CREATE TABLE writer_probe (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    probes  INTEGER NOT NULL CHECK (probes >= 0)
);
