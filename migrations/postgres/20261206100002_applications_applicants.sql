-- Projection `applications_applicants`: which applications an applicant made, drafts
-- included, for the Art. 15 access export.
CREATE TABLE applications_applicants (
    application_id TEXT   PRIMARY KEY,
    -- The applicant: the Servicekonto account's UUID.
    applicant      TEXT   NOT NULL,
    created_at     TEXT   NOT NULL,
    last_position  BIGINT NOT NULL CHECK (last_position > 0)
);

CREATE INDEX applications_applicants_applicant ON applications_applicants (applicant, created_at);
