-- The key vault (embedded store): each data subject's data keys, stored only wrapped under
-- a key-encryption key (KEK). Same shape and rules as the PostgreSQL schema; timestamps are
-- RFC 3339 UTC text with six fractional digits, like the event log's.
--
-- Destroying a key sets its wrapping to NULL and keeps the row as a tombstone. This table is
-- not part of the audit-proof log and is updated in place. Old copies of a wrapped key can
-- remain in free pages, the WAL and backups; they are unreadable without the KEK that
-- wrapped them, which is why KEKs are rotated.
CREATE TABLE subject_keys (
    subject      TEXT NOT NULL CHECK (length(subject) BETWEEN 1 AND 64),
    key_id       TEXT NOT NULL CHECK (length(key_id) BETWEEN 1 AND 64),
    kek_id       TEXT,
    alg          TEXT,
    nonce        TEXT,
    wrapped_key  TEXT,
    created_at   TEXT NOT NULL,
    destroyed_at TEXT,
    PRIMARY KEY (subject, key_id),
    CONSTRAINT subject_keys_material_iff_live CHECK (
        (destroyed_at IS NULL
            AND kek_id IS NOT NULL AND alg IS NOT NULL
            AND nonce IS NOT NULL AND wrapped_key IS NOT NULL)
        OR
        (destroyed_at IS NOT NULL
            AND kek_id IS NULL AND alg IS NULL
            AND nonce IS NULL AND wrapped_key IS NULL)
    )
) WITHOUT ROWID;

CREATE INDEX subject_keys_live_by_kek ON subject_keys (kek_id) WHERE destroyed_at IS NULL;

-- Tombstones are final and rows are never deleted (see the PostgreSQL migration).
CREATE TRIGGER subject_keys_forbid_delete
    BEFORE DELETE ON subject_keys
    BEGIN SELECT RAISE(ABORT, 'subject keys are destroyed, never deleted'); END;

CREATE TRIGGER subject_keys_tombstones_are_final
    BEFORE UPDATE ON subject_keys
    WHEN OLD.destroyed_at IS NOT NULL
    BEGIN SELECT RAISE(ABORT, 'a destroyed subject key cannot be changed or restored'); END;

CREATE TRIGGER subject_keys_identity_is_fixed
    BEFORE UPDATE ON subject_keys
    WHEN NEW.subject IS NOT OLD.subject
        OR NEW.key_id IS NOT OLD.key_id
        OR NEW.created_at IS NOT OLD.created_at
    BEGIN SELECT RAISE(ABORT, 'the subject, version and creation time of a key never change'); END;
