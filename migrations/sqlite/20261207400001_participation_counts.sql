-- The public count of each participation procedure in a table of its own, kept by the
-- `participation` projection: incremented when a contribution is submitted, decremented
-- when it is hidden or withdrawn, incremented again when it is shown again. It used to be
-- a column of the procedure's row, recounted from the contributions at every contribution,
-- which rewrote the procedures' rows a million times for a million contributions. The
-- procedures' rows now change only when their procedure does. Embedded SQLite store: the
-- same as the PostgreSQL migration.
CREATE TABLE participation_counts (
    procedure_id     TEXT    PRIMARY KEY,
    -- Contributions that count publicly: neither hidden nor withdrawn.
    contributions    INTEGER NOT NULL DEFAULT 0
);

INSERT INTO participation_counts (procedure_id, contributions)
    SELECT procedure_id, contributions FROM participation_procedures;

ALTER TABLE participation_procedures DROP COLUMN contributions;

-- The search's order (the most recently opened first): a page is read in this order and
-- stops after its rows, its filters checked on the way, instead of sorting every match.
-- A rare word still goes through the full-text index and sorts its few matches; the
-- planner chooses by the statistics.
CREATE INDEX participation_procedures_listed
    ON participation_procedures (COALESCE(opens_at, drafted_at) DESC, procedure_id);
