-- The applications domain's read models.

-- Projection `applications_inbox`: one row per application from its submission on (a
-- draft never has one), as of its last event. Instants are TEXT in the record format.
CREATE TABLE applications_inbox (
    application_id TEXT   PRIMARY KEY,
    authority      TEXT   NOT NULL,
    -- The service's LeiKa key.
    leika          TEXT   NOT NULL,
    -- The applicant's municipality key (AGS), the events' tenant.
    tenant         TEXT   NOT NULL,
    status         TEXT   NOT NULL,
    submitted_at   TEXT   NOT NULL,
    -- The due date of the open information request.
    due_at         TEXT,
    file_number    TEXT,
    last_position  INTEGER NOT NULL CHECK (last_position > 0)
);

CREATE INDEX applications_inbox_page ON applications_inbox (authority, submitted_at, application_id);
CREATE INDEX applications_inbox_due ON applications_inbox (authority, status, due_at);
