-- Projection `subject_index` (projections/src/gdpr/subjects.rs): every position of the log
-- that concerns a data subject — sealed under its key, in its account stream, or a
-- consent, disclosure, retention or erasure event naming it — for the Art. 15 access
-- export. Pseudonymous account ids and positions only.
CREATE TABLE gdpr_subject_events (
    subject     TEXT   NOT NULL,
    position    BIGINT NOT NULL CHECK (position > 0),
    PRIMARY KEY (subject, position)
);
