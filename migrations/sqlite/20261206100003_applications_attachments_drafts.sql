-- The sealed content of applications' attachments. Not a read model: the attachment route
-- writes a row before it appends the `AttachmentAdded` event that names the content by its
-- SHA-256, and no projection rebuilds it. The content is sealed (AES-256-GCM, a
-- `SealedSection` as JSON) under the application's data key, so destroying that key — an
-- expired draft, the applicant's erasure — makes it unreadable; the rows are deleted then.
CREATE TABLE applications_attachment_contents (
    application_id TEXT   NOT NULL,
    -- SHA-256 (hex) of the plain content, as `AttachmentAdded` names it.
    sha256         TEXT   NOT NULL,
    size           INTEGER NOT NULL CHECK (size > 0),
    sealed         TEXT   NOT NULL,
    stored_at      TEXT   NOT NULL,
    PRIMARY KEY (application_id, sha256)
);

-- Projection `applications_drafts`: every draft with the instant of its last edit and the
-- expiry already announced (NULL before the notice), for the draft sweeper. A draft leaves
-- the table when it is submitted or expires.
CREATE TABLE applications_drafts (
    application_id      TEXT   PRIMARY KEY,
    last_edit_at        TEXT   NOT NULL,
    announced_expiry_at TEXT,
    last_position       INTEGER NOT NULL CHECK (last_position > 0)
);

CREATE INDEX applications_drafts_last_edit ON applications_drafts (last_edit_at, application_id);
