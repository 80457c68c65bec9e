-- The payment policy's process manager (api/src/payments/policy.rs): how far it has
-- followed the log. It moves only forward, after the events up to it were handled; what
-- the manager records is safe to repeat, so a checkpoint lost in a crash costs a rerun.
CREATE TABLE payments_policy_checkpoints (
    name     TEXT   PRIMARY KEY,
    position BIGINT NOT NULL CHECK (position >= 0)
);
