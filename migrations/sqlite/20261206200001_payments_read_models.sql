-- The payments domain's read models (projection `payments_receivables`). Instants are
-- TEXT in the record format, days TEXT as YYYY-MM-DD, amounts integer euro cents.

-- One row per receivable as of its last event; `state` is the folded receivable (JSON,
-- without personal data) the next event is applied to.
CREATE TABLE payments_receivables (
    receivable_id  TEXT    PRIMARY KEY,
    mandant        TEXT    NOT NULL,
    bewirtschafter TEXT    NOT NULL,
    kassenzeichen  TEXT    NOT NULL,
    -- The payer's pseudonymous subject id.
    payer          TEXT    NOT NULL,
    application_id TEXT,
    status         TEXT    NOT NULL,
    gross_cents    INTEGER  NOT NULL,
    balance_cents  INTEGER  NOT NULL,
    due_date       TEXT    NOT NULL,
    -- The day it was last paid in full, for the daily report.
    paid_on        TEXT,
    -- Mismatches detected: its entries on the worklist.
    mismatches     INTEGER  NOT NULL,
    -- The stream's version as of the row.
    version        INTEGER  NOT NULL,
    requested_at   TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    last_position  INTEGER  NOT NULL CHECK (last_position > 0)
);

-- A Kassenzeichen is unique per Mandant: reconciliation finds a line's receivable here.
CREATE UNIQUE INDEX payments_receivables_kassenzeichen ON payments_receivables (mandant, kassenzeichen);
CREATE INDEX payments_receivables_payer ON payments_receivables (payer, due_date);
CREATE INDEX payments_receivables_bewirtschafter ON payments_receivables (bewirtschafter, due_date);
CREATE INDEX payments_receivables_paid_on ON payments_receivables (mandant, paid_on);

-- Each receivable's lines.
CREATE TABLE payments_receivable_lines (
    receivable_id   TEXT    NOT NULL,
    line_no         INTEGER  NOT NULL,
    haushaltsstelle TEXT    NOT NULL,
    gross_cents     INTEGER  NOT NULL,
    PRIMARY KEY (receivable_id, line_no)
);

CREATE INDEX payments_receivable_lines_haushaltsstelle ON payments_receivable_lines (haushaltsstelle);

-- The worklist: one row per ReconciliationMismatchDetected, by its log position.
CREATE TABLE payments_mismatches (
    position       INTEGER  PRIMARY KEY,
    receivable_id  TEXT    NOT NULL,
    mandant        TEXT    NOT NULL,
    bewirtschafter TEXT    NOT NULL,
    kassenzeichen  TEXT    NOT NULL,
    entry          TEXT    NOT NULL,
    source         TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    expected_cents INTEGER  NOT NULL,
    found_cents    INTEGER  NOT NULL,
    booking_date   TEXT    NOT NULL,
    detected_at    TEXT    NOT NULL
);

CREATE INDEX payments_mismatches_mandant ON payments_mismatches (mandant, position);

-- Which receivable each refund belongs to.
CREATE TABLE payments_refunds (
    refund_id     TEXT PRIMARY KEY,
    receivable_id TEXT NOT NULL
);
