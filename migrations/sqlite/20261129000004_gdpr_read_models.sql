-- The GDPR read models: consents, disclosures, the Art. 30 processing overview, accounts
-- and retention holds (projections in `projections/src/gdpr/`); embedded SQLite store,
-- the same tables as the PostgreSQL schema with INTEGER for BIGINT.
--
-- Like every read model they are derived from the log and can be rebuilt from it. They
-- hold no personal data: only pseudonymous ids (account, consent, disclosure and hold
-- UUIDs), data categories, purposes, recipients, legal bases, statuses and instants.
-- Master data and identity pseudonyms stay sealed in the events, and nothing here is ever
-- decrypted. Sets (categories, purposes, recipients, key ids) are JSON arrays as text, in
-- the one spelling the events use. Timestamps are TEXT in RFC 3339 UTC with six
-- fractional digits, like every read model (see 20261129000001_projections.sql).

-- Projection `consents`: one row per consent stream, as of its last event.
CREATE TABLE gdpr_consents (
    consent_id      TEXT   PRIMARY KEY,
    -- The data subject (account id).
    subject         TEXT   NOT NULL,
    stream_id       TEXT   NOT NULL UNIQUE,
    -- W3C DPV status after the last event: given, renewed, withdrawn, revoked, expired.
    -- Expiry is a matter of time; queries about an instant compare the instants.
    status          TEXT   NOT NULL,
    -- The current scope (after any narrowing), as JSON arrays.
    categories      TEXT   NOT NULL,
    purposes        TEXT   NOT NULL,
    recipients      TEXT   NOT NULL,
    legal_basis     TEXT   NOT NULL,
    legal_reference TEXT   NOT NULL,
    -- The notice version of the current term.
    notice_version  TEXT   NOT NULL,
    given_at        TEXT   NOT NULL,
    -- Start and expiry of the current term (given or last renewed).
    term_from       TEXT   NOT NULL,
    expires_at      TEXT,
    -- Withdrawal or revocation (the first one counts); the controller's reason code for
    -- a revocation.
    ended_at        TEXT,
    end_reason      TEXT,
    -- Events applied to the consent: its stream version when folded from the start.
    version         INTEGER NOT NULL CHECK (version > 0),
    last_position   INTEGER NOT NULL CHECK (last_position > 0)
);

-- A subject's consents (the DPO's replay and every disclosure check start here).
CREATE INDEX gdpr_consents_subject ON gdpr_consents (subject, given_at);
-- Consents that expire soon. Whether one is still valid is decided by its instants
-- (ended_at, term_from), not by `status`, which only says what the last event did: a
-- withdrawal may take effect after the instant asked about.
CREATE INDEX gdpr_consents_expiring ON gdpr_consents (expires_at) WHERE expires_at IS NOT NULL;

-- Projection `disclosures`: one row per disclosure decision, granted or denied.
CREATE TABLE gdpr_disclosures (
    disclosure_id   TEXT   PRIMARY KEY,
    subject         TEXT   NOT NULL,
    recipient       TEXT   NOT NULL,
    purpose         TEXT   NOT NULL,
    categories      TEXT   NOT NULL,
    -- The instant of the use, at which the consents were judged.
    occurred_at     TEXT   NOT NULL,
    decision        TEXT   NOT NULL CHECK (decision IN ('granted', 'denied')),
    -- For a grant under consent: the consent and its version when it was checked.
    consent_id      TEXT,
    consent_version INTEGER,
    -- For a grant: the legal basis (the consent's art6_1_a / art9_2_a, or another basis
    -- art6_1_b … art6_1_e with its provision in legal_reference). NULL when denied.
    legal_basis     TEXT,
    legal_reference TEXT,
    -- Why no consent covered the request: the denial reason, or for a grant under another
    -- basis the result of the consent check; the code and the whole reason as JSON.
    reason_code     TEXT,
    reason          TEXT,
    position        INTEGER NOT NULL CHECK (position > 0)
);

CREATE INDEX gdpr_disclosures_subject ON gdpr_disclosures (subject, position);
CREATE INDEX gdpr_disclosures_consent ON gdpr_disclosures (consent_id, position);

-- Projection `processing_overview`: the Art. 30 GDPR counts, one row per purpose, data
-- category, recipient, legal basis and kind (consent_given, disclosure_granted,
-- disclosure_denied); legal_basis is 'none' for denials. A consent or disclosure with
-- several categories, purposes or recipients counts once in each combination.
CREATE TABLE gdpr_processing_overview (
    purpose     TEXT   NOT NULL,
    category    TEXT   NOT NULL,
    recipient   TEXT   NOT NULL,
    legal_basis TEXT   NOT NULL,
    kind        TEXT   NOT NULL,
    count       INTEGER NOT NULL CHECK (count > 0),
    -- Effective instants of the first and the latest counted event.
    first_at    TEXT   NOT NULL,
    last_at     TEXT   NOT NULL,
    PRIMARY KEY (purpose, category, recipient, legal_basis, kind)
);

-- Projection `accounts`: one row per Servicekonto, without master data.
CREATE TABLE gdpr_accounts (
    account_id            TEXT   PRIMARY KEY,
    kind                  TEXT   NOT NULL,
    -- eIDAS level of the account: the highest of its current identity links.
    trust_level           TEXT,
    status                TEXT   NOT NULL,
    opened_at             TEXT   NOT NULL,
    -- Set for a temporary identification.
    expires_at            TEXT,
    deletion_requested_at TEXT,
    deleted_at            TEXT,
    deletion_reason       TEXT,
    last_position         INTEGER NOT NULL CHECK (last_position > 0)
);

-- Temporary identifications by expiry, for the erasure sweeper.
CREATE INDEX gdpr_accounts_expiring ON gdpr_accounts (expires_at) WHERE expires_at IS NOT NULL;

-- The identity links behind `trust_level`: method and level only, never the pseudonym.
CREATE TABLE gdpr_account_links (
    account_id  TEXT   NOT NULL,
    link_id     TEXT   NOT NULL,
    method      TEXT   NOT NULL,
    level       TEXT   NOT NULL,
    -- low = 1, substantial = 2, high = 3, so the highest level is an ORDER BY away.
    level_rank  INTEGER NOT NULL CHECK (level_rank BETWEEN 1 AND 3),
    linked_at   TEXT   NOT NULL,
    PRIMARY KEY (account_id, link_id)
);

-- Also projection `accounts`: the first SubjectErased of each subject.
CREATE TABLE gdpr_erasures (
    subject     TEXT   PRIMARY KEY,
    erased_at   TEXT   NOT NULL,
    -- The destroyed key versions, as a JSON array.
    key_ids     TEXT   NOT NULL,
    position    INTEGER NOT NULL CHECK (position > 0)
);

-- Projection `retention_holds`: one row per hold.
CREATE TABLE gdpr_retention_holds (
    hold_id       TEXT   PRIMARY KEY,
    subject       TEXT   NOT NULL,
    reason        TEXT   NOT NULL,
    -- The stream the duty attaches to (a payment, a procedure).
    source        TEXT   NOT NULL,
    placed_at     TEXT   NOT NULL,
    -- The hold's `until`: it is active for placed_at <= t < ends_at unless released.
    ends_at       TEXT   NOT NULL,
    released_at   TEXT,
    last_position INTEGER NOT NULL CHECK (last_position > 0)
);

CREATE INDEX gdpr_retention_holds_subject ON gdpr_retention_holds (subject, ends_at);
