-- The applications whose fee is due under their payment policy and not requested yet
-- (projection `payments_fees_due`, projections/src/payments/fees_due.rs): what the payment
-- policy requests once a fee schedule is set, and what operators see waiting for one.
-- Instants are TEXT in the record format. The applicant is a pseudonymous subject id.
CREATE TABLE payments_fees_due (
    application_id TEXT   PRIMARY KEY,
    applicant      TEXT   NOT NULL,
    leika          TEXT   NOT NULL,
    authority      TEXT   NOT NULL,
    -- before_submission or after_decision.
    policy         TEXT   NOT NULL,
    -- due (the fee is due now) or drafted (after_decision, not decided yet).
    stage          TEXT   NOT NULL,
    created_at     TEXT   NOT NULL,
    -- From when the fee is due: the draft's creation or the decision.
    due_from       TEXT,
    last_position  INTEGER NOT NULL CHECK (last_position > 0)
);

CREATE INDEX payments_fees_due_schedule ON payments_fees_due (leika, authority, stage, last_position);
