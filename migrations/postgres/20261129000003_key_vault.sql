-- The key vault: each data subject's data keys, stored only wrapped under a key-encryption
-- key (KEK) from the operator's configuration.
--
-- Personal data in the log is sealed under the subject's data key (AES-256-GCM). Erasing a
-- subject (Art. 17 GDPR) destroys its keys here: the wrapped key material is set to NULL
-- and the row stays as a tombstone, so the vault can tell "erased" from "never had a key",
-- and a subject once erased never gets a new key. The event log itself is never touched.
--
-- This table is NOT part of the audit-proof log: it is updated in place on purpose. The
-- old row versions that PostgreSQL keeps until VACUUM, the WAL and backups still hold the
-- wrapped key after a destroy; they are unreadable without the KEK that wrapped them, which
-- is why KEKs are rotated (re-wrap every live key under a new KEK, then destroy the old one).
CREATE TABLE subject_keys (
    -- Pseudonymous id of the data subject (the account UUID as text).
    subject      TEXT        NOT NULL CHECK (length(subject) BETWEEN 1 AND 64),
    -- Version of the subject's data key, as sealed sections name it (`k1`).
    key_id       TEXT        NOT NULL CHECK (length(key_id) BETWEEN 1 AND 64),
    -- The wrapping (`WrappedKey`): the KEK that wrapped the key, the algorithm, the base64
    -- nonce, and the base64 wrapped key with its tag. All NULL once the key is destroyed.
    kek_id       TEXT,
    alg          TEXT,
    nonce        TEXT,
    wrapped_key  TEXT,
    created_at   TIMESTAMPTZ NOT NULL,
    -- When the key was destroyed; NULL while it lives.
    destroyed_at TIMESTAMPTZ,
    PRIMARY KEY (subject, key_id),
    -- A live key has all of its wrapping, a destroyed one none of it: the database itself
    -- refuses a tombstone that still holds key material.
    CONSTRAINT subject_keys_material_iff_live CHECK (
        (destroyed_at IS NULL
            AND kek_id IS NOT NULL AND alg IS NOT NULL
            AND nonce IS NOT NULL AND wrapped_key IS NOT NULL)
        OR
        (destroyed_at IS NOT NULL
            AND kek_id IS NULL AND alg IS NULL
            AND nonce IS NULL AND wrapped_key IS NULL)
    )
);

-- Re-wrapping after a KEK rotation looks for live keys under other KEKs.
CREATE INDEX subject_keys_live_by_kek ON subject_keys (kek_id) WHERE destroyed_at IS NULL;

-- Tombstones are final and rows are never deleted: a deleted tombstone would let the
-- subject get a fresh key and make its erasure look like "never had a key". A live row may
-- only be re-wrapped or destroyed; its subject, version and creation time never change.
CREATE FUNCTION amtsbuch_subject_keys_guard() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP IN ('DELETE', 'TRUNCATE') THEN
        RAISE EXCEPTION 'subject keys are destroyed, never deleted'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF OLD.destroyed_at IS NOT NULL THEN
        RAISE EXCEPTION 'a destroyed subject key cannot be changed or restored'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    IF NEW.subject IS DISTINCT FROM OLD.subject
        OR NEW.key_id IS DISTINCT FROM OLD.key_id
        OR NEW.created_at IS DISTINCT FROM OLD.created_at THEN
        RAISE EXCEPTION 'the subject, version and creation time of a key never change'
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER subject_keys_guard
    BEFORE UPDATE OR DELETE ON subject_keys
    FOR EACH ROW EXECUTE FUNCTION amtsbuch_subject_keys_guard();

CREATE TRIGGER subject_keys_forbid_truncate
    BEFORE TRUNCATE ON subject_keys
    FOR EACH STATEMENT EXECUTE FUNCTION amtsbuch_subject_keys_guard();
