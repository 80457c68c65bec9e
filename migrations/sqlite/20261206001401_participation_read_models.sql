-- The participation read models (projection `participation` in
-- `projections/src/participation/`): procedures with their search columns, rounds and
-- gatherings for the calendar, contributions with their moderation state, the public
-- moderation log, and registrations; embedded SQLite store, the same tables as the
-- PostgreSQL schema with INTEGER for BIGINT and BOOLEAN, and FTS5 for the full text.
--
-- Like every read model they are derived from the log and can be rebuilt from it. They
-- hold no personal data: what participants wrote stays sealed in the events, and the
-- public texts of comments are opened from the log when they are shown. Participants
-- appear only as pseudonymous ids, which no public answer shows; reporters not even
-- that. Timestamps are TEXT in RFC 3339 UTC with six fractional digits, like every read
-- model; positions are integers in micro-degrees (WGS84 × 10^6), because read models
-- store no floating point.

-- One row per procedure.
CREATE TABLE participation_procedures (
    procedure_id     TEXT    PRIMARY KEY,
    -- The organiser's authority: who may act on the procedure.
    authority        TEXT    NOT NULL,
    format           TEXT    NOT NULL,
    title            TEXT    NOT NULL,
    -- JSON array of topic tokens.
    topics           TEXT    NOT NULL,
    -- AGS of the region.
    region           TEXT    NOT NULL,
    -- The recorded status: draft, announced, evaluating, decided, archived, cancelled.
    -- "active" is announced with opens_at reached, decided at query time.
    status           TEXT    NOT NULL,
    -- The stage of a land-use plan: of its latest round, or satzungsbeschluss.
    stage            TEXT,
    -- GeoJSON, and its bounding box in micro-degrees.
    geometry         TEXT,
    min_lon          INTEGER,
    min_lat          INTEGER,
    max_lon          INTEGER,
    max_lat          INTEGER,
    accepts_late     INTEGER NOT NULL,
    report_threshold INTEGER NOT NULL,
    -- The survey's questions (JSON), for a survey.
    survey           TEXT,
    drafted_at       TEXT    NOT NULL,
    announced_at     TEXT,
    -- Start of the first round and end of the last: the participation period.
    opens_at         TEXT,
    closes_at        TEXT,
    decided_at       TEXT,
    decision         TEXT,
    cancelled_at     TEXT,
    cancel_reason    TEXT,
    -- Contributions that count publicly: neither hidden nor withdrawn.
    contributions    INTEGER NOT NULL DEFAULT 0,
    last_position    INTEGER NOT NULL CHECK (last_position > 0)
);

-- Full text over title and topics (FTS5; SQLite has no German stemmer, so words are
-- matched as given, case and diacritics folded, and each query word also as a prefix).
-- Its rowid is the procedure row's, kept in step by the triggers below.
CREATE VIRTUAL TABLE participation_procedures_fts USING fts5(
    body,
    tokenize = 'unicode61 remove_diacritics 2'
);

CREATE TRIGGER participation_procedures_fts_insert AFTER INSERT ON participation_procedures
BEGIN
    INSERT INTO participation_procedures_fts (rowid, body)
    VALUES (new.rowid, new.title || ' ' || new.topics);
END;

CREATE TRIGGER participation_procedures_fts_update AFTER UPDATE OF title, topics
    ON participation_procedures
BEGIN
    DELETE FROM participation_procedures_fts WHERE rowid = old.rowid;
    INSERT INTO participation_procedures_fts (rowid, body)
    VALUES (new.rowid, new.title || ' ' || new.topics);
END;

CREATE TRIGGER participation_procedures_fts_delete AFTER DELETE ON participation_procedures
BEGIN
    DELETE FROM participation_procedures_fts WHERE rowid = old.rowid;
END;
CREATE INDEX participation_procedures_status ON participation_procedures (status, opens_at);
CREATE INDEX participation_procedures_region ON participation_procedures (region);
CREATE INDEX participation_procedures_authority ON participation_procedures (authority);
CREATE INDEX participation_procedures_period ON participation_procedures (opens_at, closes_at);

-- The topics of each procedure, for the topic filter.
CREATE TABLE participation_topics (
    procedure_id     TEXT    NOT NULL,
    topic            TEXT    NOT NULL,
    PRIMARY KEY (topic, procedure_id)
);

-- One row per round.
CREATE TABLE participation_rounds (
    round_id          TEXT    PRIMARY KEY,
    procedure_id      TEXT    NOT NULL,
    stage             TEXT,
    starts_at         TEXT    NOT NULL,
    ends_at           TEXT    NOT NULL,
    -- JSON array of {sha256, size, title}.
    documents         TEXT    NOT NULL,
    preclusion_notice INTEGER NOT NULL,
    position          INTEGER NOT NULL CHECK (position > 0)
);

CREATE INDEX participation_rounds_procedure ON participation_rounds (procedure_id, starts_at);
CREATE INDEX participation_rounds_calendar ON participation_rounds (starts_at);

-- One row per contribution.
CREATE TABLE participation_contributions (
    contribution_id  TEXT    PRIMARY KEY,
    procedure_id     TEXT    NOT NULL,
    round_id         TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    -- The author's pseudonymous participant id; never shown publicly.
    author           TEXT    NOT NULL,
    late             INTEGER NOT NULL,
    submitted_at     TEXT    NOT NULL,
    -- Position of ContributionSubmitted: where the sealed text is read from.
    position         INTEGER NOT NULL CHECK (position > 0),
    -- The chosen survey options (JSON), for a survey answer.
    choices          TEXT,
    hidden           INTEGER NOT NULL DEFAULT 0,
    withdrawn        INTEGER NOT NULL DEFAULT 0,
    reports          INTEGER NOT NULL DEFAULT 0,
    supports         INTEGER NOT NULL DEFAULT 0,
    -- The published answer only (a draft is not public).
    answer_state     TEXT,
    answer_text      TEXT,
    -- The weighing; public once the procedure is decided.
    weighing         TEXT,
    last_position    INTEGER NOT NULL CHECK (last_position > 0)
);

CREATE INDEX participation_contributions_procedure
    ON participation_contributions (procedure_id, hidden, withdrawn, position);
CREATE INDEX participation_contributions_reported
    ON participation_contributions (reports) WHERE reports > 0;

-- The public moderation log: one row per report, hiding and unhiding. Reports carry
-- their reason only, never who reported.
CREATE TABLE participation_moderation_log (
    position         INTEGER PRIMARY KEY CHECK (position > 0),
    procedure_id     TEXT    NOT NULL,
    contribution_id  TEXT    NOT NULL,
    -- reported, hidden, unhidden
    action           TEXT    NOT NULL,
    -- A report's reason (spam, offensive, does_not_belong) or a moderator's text.
    reason           TEXT,
    -- For hidings: threshold or moderator.
    trigger          TEXT,
    at               TEXT    NOT NULL
);

CREATE INDEX participation_moderation_log_procedure
    ON participation_moderation_log (procedure_id, position);

-- One row per event or appointment slot.
CREATE TABLE participation_gatherings (
    gathering_id     TEXT    PRIMARY KEY,
    procedure_id     TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    title            TEXT    NOT NULL,
    starts_at        TEXT    NOT NULL,
    ends_at          TEXT    NOT NULL,
    capacity         INTEGER NOT NULL CHECK (capacity > 0),
    confirmed        INTEGER NOT NULL DEFAULT 0,
    waiting          INTEGER NOT NULL DEFAULT 0,
    last_position    INTEGER NOT NULL CHECK (last_position > 0)
);

CREATE INDEX participation_gatherings_procedure ON participation_gatherings (procedure_id);
CREATE INDEX participation_gatherings_calendar ON participation_gatherings (starts_at);

-- One row per registration: which gathering it belongs to and where it stands.
CREATE TABLE participation_registrations (
    registration_id  TEXT    PRIMARY KEY,
    gathering_id     TEXT    NOT NULL,
    -- The registrant's pseudonymous participant id; never shown publicly.
    registrant       TEXT    NOT NULL,
    -- confirmed, waiting, cancelled
    place            TEXT    NOT NULL,
    registered_at    TEXT    NOT NULL,
    last_position    INTEGER NOT NULL CHECK (last_position > 0)
);

CREATE INDEX participation_registrations_gathering
    ON participation_registrations (gathering_id, registered_at);
