//! The key vault, the sealing service and KEK files, as crypto-shredding relies on them.
//!
//! Each `async fn` below states one behaviour for any store; `on_both_adapters!` at the
//! bottom runs every one of them on PostgreSQL (a fresh schema per test) and on SQLite (a
//! fresh file per test). Each test gets two handles on its database, so that "another
//! process" can be played by the second one. The KEK file tests need no database.

use amtsbuch_testkit as common;

use std::path::{Path, PathBuf};

use amtsbuch_domain::event::{
    event_type_of, DomainEvent, EventParts, PartsError, Personal, SubjectId as Subject,
};
use amtsbuch_domain::merkle::leaf_hash;
use amtsbuch_domain::seal::{self, DataKey, Envelope, Kek, KeyId, SystemRandom, KEY_LEN};
use amtsbuch_domain::{
    base64, AppendRequest, EventRecord, EventType, ExpectedVersion, NewEvent, StreamId,
};
use amtsbuch_infra::kek::{generate_kek_file, load_kek_file, load_keyring, KekError, Keyring};
use amtsbuch_infra::sealer::{Sealer, SealerError};
use amtsbuch_infra::vault::{KeyVault, SubjectId, SubjectStatus, VaultError};
use amtsbuch_infra::{AnyStore, Direction, EventStore, RecordedEvent};
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use sqlx::Row;
use uuid::Uuid;

// ---------------------------------------------------------------------------------------
// Helpers

fn kek(id: &str, byte: u8) -> Kek {
    Kek::new(KeyId::parse(id).expect("kek id"), [byte; KEY_LEN])
}

/// A keyring of `(id, byte)` KEKs, the first being current.
fn keyring(keks: &[(&str, u8)]) -> Keyring {
    Keyring::new(keks.iter().map(|(id, b)| kek(id, *b)).collect()).expect("keyring")
}

fn vault(store: &AnyStore, keks: &[(&str, u8)]) -> KeyVault {
    KeyVault::new(store.clone(), keyring(keks))
}

const KEK_A: (&str, u8) = ("kek-a", 0xa1);
const KEK_B: (&str, u8) = ("kek-b", 0xb2);

fn subject() -> SubjectId {
    SubjectId::from(Subject(Uuid::now_v7()))
}

fn k1() -> KeyId {
    KeyId::parse("k1").expect("key id")
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

/// The events of a small domain of the tests' own: a register entry of a data subject,
/// opened with the holder's name (personal data) and closed again.
#[derive(Debug, Clone, PartialEq)]
enum EntryEvent {
    Opened {
        subject: Subject,
        name: Personal<String>,
    },
    Closed {
        subject: Subject,
    },
}

fn subject_of(subject: &SubjectId) -> Subject {
    Subject(Uuid::parse_str(subject.as_str()).expect("uuid"))
}

fn entry_stream(subject: &SubjectId) -> StreamId {
    StreamId::parse(&format!("entry-{}", subject.as_str())).expect("stream")
}

impl DomainEvent for EntryEvent {
    fn event_type(&self) -> &'static str {
        match self {
            Self::Opened { .. } => "EntryOpened",
            Self::Closed { .. } => "EntryClosed",
        }
    }

    fn stream_id(&self) -> StreamId {
        let subject = self
            .data_subject()
            .expect("every entry event has a subject");
        entry_stream(&SubjectId::from(subject))
    }

    fn occurred_at(&self) -> DateTime<Utc> {
        at("2026-03-01T10:00:00Z")
    }

    fn data_subject(&self) -> Option<Subject> {
        match self {
            Self::Opened { subject, .. } | Self::Closed { subject } => Some(*subject),
        }
    }

    fn carries_personal_data(event_type: &str) -> bool {
        event_type == "EntryOpened"
    }

    fn to_parts(&self) -> Result<EventParts, PartsError> {
        let name = self.event_type();
        let (subject, personal) = match self {
            Self::Opened { subject, name: n } => match n {
                Personal::Available(n) => (subject, Some(json!({ "name": n }))),
                Personal::Erased => return Err(PartsError::Erased { event_type: name }),
            },
            Self::Closed { subject } => (subject, None),
        };
        Ok(EventParts {
            event_type: event_type_of(name)?,
            data: json!({ "subject": subject.to_string() }),
            personal,
        })
    }

    fn from_parts(
        event_type: &EventType,
        data: &Value,
        personal: Option<&Value>,
    ) -> Result<Self, PartsError> {
        let subject = data["subject"]
            .as_str()
            .and_then(|s| Uuid::parse_str(s).ok())
            .map(Subject)
            .ok_or(PartsError::Data {
                event_type: "EntryOpened",
                message: "no subject".into(),
            })?;
        match event_type.as_str() {
            "EntryOpened" => Ok(Self::Opened {
                subject,
                name: match personal {
                    Some(p) => Personal::Available(p["name"].as_str().unwrap_or("").to_owned()),
                    None => Personal::Erased,
                },
            }),
            "EntryClosed" => Ok(Self::Closed { subject }),
            other => Err(PartsError::UnknownEventType(other.to_owned())),
        }
    }
}

fn opened(subject: &SubjectId) -> EntryEvent {
    EntryEvent::Opened {
        subject: subject_of(subject),
        name: Personal::Available("Anna Müller".into()),
    }
}

fn closed(subject: &SubjectId) -> EntryEvent {
    EntryEvent::Closed {
        subject: subject_of(subject),
    }
}

/// Whether two keys are the same: what one seals, the other opens.
fn same_key(a: &DataKey, b: &DataKey) -> bool {
    let stream = StreamId::parse("probe-1").expect("stream");
    let event_type = EventType::parse("Probe").expect("type");
    let envelope = Envelope {
        event_id: Uuid::nil(),
        stream_id: &stream,
        event_type: &event_type,
    };
    let sealed = seal::seal_random(
        &json!({"probe": true}),
        a,
        &k1(),
        "probe",
        &envelope,
        &SystemRandom::new(),
    )
    .expect("seal");
    seal::open(&sealed, b, &envelope).is_ok()
}

/// Appends one event and returns it as stored.
async fn append(store: &AnyStore, stream: StreamId, event: NewEvent) -> RecordedEvent {
    let id = event.event_id;
    store
        .append(AppendRequest {
            stream,
            expected: ExpectedVersion::Any,
            events: vec![event],
        })
        .await
        .expect("append");
    store
        .event_by_id(id)
        .await
        .expect("read")
        .expect("the event is stored")
}

/// A raw (non-GDPR) event with personal data sealed by the server, appended.
async fn append_raw(store: &AnyStore, sealer: &Sealer, subject: &SubjectId) -> RecordedEvent {
    let stream = StreamId::parse(&format!("note-{subject}")).expect("stream");
    let mut event = NewEvent::new(
        EventType::parse("Noted").expect("type"),
        json!({"topic": "x"}),
    );
    let envelope = Envelope {
        event_id: event.event_id,
        stream_id: &stream,
        event_type: &event.event_type,
    };
    event.sealed = Some(
        sealer
            .seal_value(subject, &envelope, &personal())
            .await
            .expect("seal value"),
    );
    append(store, stream, event).await
}

fn personal() -> Value {
    json!({"phone": "+49 351 000000", "name": "Anna Müller"})
}

/// Runs one statement on either database; the SQL must need no parameters.
async fn exec(store: &AnyStore, sql: &str) -> Result<u64, sqlx::Error> {
    match store {
        AnyStore::Postgres(s) => Ok(sqlx::query(sql).execute(s.pool()).await?.rows_affected()),
        AnyStore::Sqlite(s) => Ok(sqlx::query(sql).execute(s.pool()).await?.rows_affected()),
    }
}

async fn count(store: &AnyStore, sql: &str) -> i64 {
    match store {
        AnyStore::Postgres(s) => sqlx::query(sql)
            .fetch_one(s.pool())
            .await
            .expect("count")
            .get(0),
        AnyStore::Sqlite(s) => sqlx::query(sql)
            .fetch_one(s.pool())
            .await
            .expect("count")
            .get(0),
    }
}

async fn rows_of(store: &AnyStore, subject: &SubjectId) -> i64 {
    count(
        store,
        &format!("SELECT COUNT(*) FROM subject_keys WHERE subject = '{subject}'"),
    )
    .await
}

/// Rows anywhere in the table that hold any part of a wrapped key.
async fn rows_with_material(store: &AnyStore) -> i64 {
    count(
        store,
        "SELECT COUNT(*) FROM subject_keys WHERE kek_id IS NOT NULL OR alg IS NOT NULL \
         OR nonce IS NOT NULL OR wrapped_key IS NOT NULL",
    )
    .await
}

async fn kek_of(store: &AnyStore, subject: &SubjectId) -> Option<String> {
    let sql = format!("SELECT kek_id FROM subject_keys WHERE subject = '{subject}'");
    match store {
        AnyStore::Postgres(s) => sqlx::query(&sql)
            .fetch_one(s.pool())
            .await
            .expect("row")
            .get(0),
        AnyStore::Sqlite(s) => sqlx::query(&sql)
            .fetch_one(s.pool())
            .await
            .expect("row")
            .get(0),
    }
}

// ---------------------------------------------------------------------------------------
// The suite

async fn creates_a_key_on_first_use(store: AnyStore, _other: AnyStore) {
    let vault = vault(&store, &[KEK_A]);
    let s = subject();
    assert_eq!(vault.status(&s).await, Ok(SubjectStatus::None));
    assert!(matches!(
        vault.key(&s, &k1()).await,
        Err(VaultError::NoKey { .. })
    ));

    let (id, first) = vault.key_for_sealing(&s).await.expect("first use");
    assert_eq!(id, k1());
    assert!(matches!(
        vault.status(&s).await,
        Ok(SubjectStatus::Active { key_id, .. }) if key_id == k1()
    ));
    let (again_id, again) = vault.key_for_sealing(&s).await.expect("second use");
    assert_eq!(again_id, k1());
    assert!(same_key(&first, &again), "the stored key is reused");
    let opened = vault.key(&s, &k1()).await.expect("key").expect("live");
    assert!(same_key(&first, &opened));

    assert_eq!(rows_of(&store, &s).await, 1);
    assert_eq!(kek_of(&store, &s).await.as_deref(), Some("kek-a"));
    // Another subject gets a key of its own.
    let (_, foreign) = vault.key_for_sealing(&subject()).await.expect("other");
    assert!(!same_key(&first, &foreign));
}

async fn concurrent_first_uses_end_with_one_key(store: AnyStore, other: AnyStore) {
    // Two vaults on two connections to one database stand for two processes.
    let vaults = [vault(&store, &[KEK_A]), vault(&other, &[KEK_A])];
    let s = subject();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let vault = vaults[i % 2].clone();
            let s = s.clone();
            tokio::spawn(async move { vault.key_for_sealing(&s).await })
        })
        .collect();
    let mut keys = Vec::new();
    for task in tasks {
        let (id, key) = task.await.expect("task").expect("key for sealing");
        assert_eq!(id, k1());
        keys.push(key);
    }
    assert!(
        keys.iter().all(|k| same_key(&keys[0], k)),
        "every task seals with the one stored key"
    );
    assert_eq!(rows_of(&store, &s).await, 1);
}

async fn sealed_events_round_trip_through_the_log(store: AnyStore, _other: AnyStore) {
    let sealer = Sealer::new(vault(&store, &[KEK_A]));
    let s = subject();

    // An event without personal data needs no key and makes none.
    let requested = closed(&s);
    let encoded = sealer
        .seal_event(&requested, Uuid::now_v7())
        .await
        .expect("seal");
    assert_eq!(encoded.event.sealed, None);
    assert_eq!(sealer.vault().status(&s).await, Ok(SubjectStatus::None));

    let event = opened(&s);
    let encoded = sealer
        .seal_event(&event, Uuid::now_v7())
        .await
        .expect("seal");
    let stored = append(&store, encoded.stream_id, encoded.event).await;
    let text = String::from_utf8(stored.bytes.clone()).expect("utf8");
    assert!(!text.contains("Müller"), "no plaintext in the log: {text}");
    let record = stored.record().expect("record");
    assert_eq!(
        record.sealed.as_ref().map(|x| x.subject.as_str()),
        Some(s.as_str())
    );
    assert_eq!(sealer.open_record::<EntryEvent>(&record).await, Ok(event));

    // Read through a stream as well, after a second event of the stream.
    let encoded = sealer
        .seal_event(&requested, Uuid::now_v7())
        .await
        .expect("seal");
    append(&store, encoded.stream_id, encoded.event).await;
    let stream = store
        .read_stream(&entry_stream(&s), 1, Direction::Forwards, 10)
        .await
        .expect("read");
    let mut events = Vec::new();
    for e in &stream {
        events.push(
            sealer
                .open_record::<EntryEvent>(&e.record().expect("record"))
                .await
                .expect("open"),
        );
    }
    assert_eq!(events, vec![opened(&s), requested]);
}

async fn raw_events_with_personal_data_round_trip(store: AnyStore, _other: AnyStore) {
    let sealer = Sealer::new(vault(&store, &[KEK_A]));
    let s = subject();
    let stored = append_raw(&store, &sealer, &s).await;
    assert!(!String::from_utf8_lossy(&stored.bytes).contains("Müller"));
    let record = stored.record().expect("record");
    assert_eq!(
        sealer.open_section(&record).await,
        Ok(Some(Personal::Available(personal())))
    );
    let mut plain = record.clone();
    plain.sealed = None;
    assert_eq!(sealer.open_section(&plain).await, Ok(None));
}

async fn destroying_a_subject_shreds_its_personal_data(store: AnyStore, other: AnyStore) {
    let sealer = Sealer::new(vault(&store, &[KEK_A]));
    let s = subject();
    let bystander = subject();
    let event = opened(&s);
    let encoded = sealer
        .seal_event(&event, Uuid::now_v7())
        .await
        .expect("seal");
    let account_event = append(&store, encoded.stream_id, encoded.event).await;
    let raw_event = append_raw(&store, &sealer, &s).await;
    let (_, bystander_key) = sealer
        .vault()
        .key_for_sealing(&bystander)
        .await
        .expect("bystander");

    // Destroyed through another handle: no process may keep using the key afterwards.
    let destroyed = vault(&other, &[KEK_A]).destroy(&s).await.expect("destroy");
    assert_eq!(destroyed.key_ids, vec!["k1".to_owned()]);
    assert_eq!(destroyed.held, vec!["k1".to_owned()]);
    assert!(destroyed.was_present);

    let v = sealer.vault();
    assert!(matches!(v.key(&s, &k1()).await, Ok(None)));
    assert_eq!(
        v.status(&s).await,
        Ok(SubjectStatus::Erased { at: destroyed.at })
    );
    let EntryEvent::Opened { subject, .. } = event else {
        unreachable!("opened() opens an entry")
    };
    let erased = EntryEvent::Opened {
        subject,
        name: Personal::Erased,
    };
    let record = account_event.record().expect("record");
    assert_eq!(sealer.open_record::<EntryEvent>(&record).await, Ok(erased));
    assert_eq!(
        sealer
            .open_section(&raw_event.record().expect("record"))
            .await,
        Ok(Some(Personal::Erased))
    );

    let refused: Result<KeyId, VaultError> = Err(VaultError::Erased {
        subject: s.clone(),
        at: destroyed.at,
    });
    assert_eq!(v.key_for_sealing(&s).await.map(|(id, _)| id), refused);
    assert_eq!(
        sealer.seal_event(&opened(&s), Uuid::now_v7()).await,
        Err(SealerError::Vault(VaultError::Erased {
            subject: s.clone(),
            at: destroyed.at
        }))
    );

    // Idempotent: nothing more to destroy, same instant of erasure.
    let again = v.destroy(&s).await.expect("destroy again");
    assert_eq!(again.key_ids, Vec::<String>::new());
    assert!(!again.was_present);
    // An erasure interrupted after the destroy still records which keys the subject had.
    assert_eq!(again.held, vec!["k1".to_owned()]);
    assert_eq!(again.at, destroyed.at);

    // The tombstone holds no key material; only the bystander's row does.
    assert_eq!(rows_of(&store, &s).await, 1);
    assert_eq!(rows_with_material(&store).await, 1);
    let (_, still) = v.key_for_sealing(&bystander).await.expect("bystander");
    assert!(same_key(&bystander_key, &still));

    // The log is unchanged: same bytes, same leaf hashes, an intact chain.
    for before in [&account_event, &raw_event] {
        let after = store
            .event_by_id(before.record().expect("record").event_id)
            .await
            .expect("read")
            .expect("still there");
        assert_eq!(&after, before);
        assert_eq!(after.leaf_hash, leaf_hash(&after.bytes));
    }
    common::verified_chain(&store).await;

    // The database keeps tombstones: no resurrection, no deletion.
    let resurrect = format!(
        "UPDATE subject_keys SET destroyed_at = NULL, kek_id = 'kek-a', alg = 'A256GCM', \
         nonce = 'x', wrapped_key = 'x' WHERE subject = '{s}'"
    );
    assert!(exec(&store, &resurrect).await.is_err());
    assert!(exec(
        &store,
        &format!("DELETE FROM subject_keys WHERE subject = '{s}'")
    )
    .await
    .is_err());
    assert_eq!(rows_of(&store, &s).await, 1);
}

async fn erasing_a_subject_without_a_key_is_remembered(store: AnyStore, _other: AnyStore) {
    let vault = vault(&store, &[KEK_A]);
    let s = subject();
    let destroyed = vault.destroy(&s).await.expect("destroy");
    assert!(!destroyed.was_present);
    assert!(destroyed.key_ids.is_empty());
    assert!(destroyed.held.is_empty());
    assert_eq!(
        vault.status(&s).await,
        Ok(SubjectStatus::Erased { at: destroyed.at })
    );
    assert!(matches!(
        vault.key_for_sealing(&s).await,
        Err(VaultError::Erased { .. })
    ));
    assert_eq!(rows_with_material(&store).await, 0);
}

async fn an_erasure_racing_first_uses_leaves_no_key(store: AnyStore, other: AnyStore) {
    let vaults = [vault(&store, &[KEK_A]), vault(&other, &[KEK_A])];
    for _ in 0..10 {
        let s = subject();
        let users: Vec<_> = (0..6)
            .map(|i| {
                let vault = vaults[i % 2].clone();
                let s = s.clone();
                tokio::spawn(async move { vault.key_for_sealing(&s).await.map(|(id, _)| id) })
            })
            .collect();
        let eraser = {
            let vault = vaults[1].clone();
            let s = s.clone();
            tokio::spawn(async move { vault.destroy(&s).await })
        };
        for user in users {
            // Each use either came before the erasure or was refused by it.
            match user.await.expect("task") {
                Ok(id) => assert_eq!(id, k1()),
                Err(VaultError::Erased { .. }) => {}
                Err(e) => panic!("unexpected {e:?}"),
            }
        }
        let destroyed = eraser.await.expect("task").expect("destroy");
        assert_eq!(
            vaults[0].status(&s).await,
            Ok(SubjectStatus::Erased { at: destroyed.at })
        );
        assert_eq!(
            count(
                &store,
                &format!(
                    "SELECT COUNT(*) FROM subject_keys WHERE subject = '{s}' \
                     AND wrapped_key IS NOT NULL"
                )
            )
            .await,
            0
        );
    }
}

async fn a_key_that_does_not_unwrap_is_an_integrity_failure(store: AnyStore, _other: AnyStore) {
    let sealer = Sealer::new(vault(&store, &[KEK_A]));
    let s = subject();
    let encoded = sealer
        .seal_event(&opened(&s), Uuid::now_v7())
        .await
        .expect("seal");
    let record = append(&store, encoded.stream_id, encoded.event)
        .await
        .record()
        .expect("record");

    // The same KEK id with other bytes: a wrong KEK.
    let wrong = Sealer::new(vault(&store, &[("kek-a", 0x01)]));
    assert!(matches!(
        wrong.vault().key(&s, &k1()).await,
        Err(VaultError::Integrity { .. })
    ));
    assert!(matches!(
        wrong.vault().key_for_sealing(&s).await,
        Err(VaultError::Integrity { .. })
    ));
    assert!(matches!(
        wrong.open_record::<EntryEvent>(&record).await,
        Err(SealerError::Vault(VaultError::Integrity { .. }))
    ));
    // A KEK that is not configured at all.
    match vault(&store, &[KEK_B]).key(&s, &k1()).await {
        Err(VaultError::Integrity { reason, .. }) => {
            assert!(reason.contains("kek-a"), "{reason}");
            assert!(reason.contains("not configured"), "{reason}");
        }
        other => panic!("expected an integrity failure, got {other:?}"),
    }

    // A wrapped key copied from another subject's row does not unwrap here.
    let donor = subject();
    sealer.vault().key_for_sealing(&donor).await.expect("donor");
    let copy = format!(
        "UPDATE subject_keys SET nonce = (SELECT nonce FROM subject_keys WHERE subject = '{donor}'), \
         wrapped_key = (SELECT wrapped_key FROM subject_keys WHERE subject = '{donor}') \
         WHERE subject = '{s}'"
    );
    assert_eq!(exec(&store, &copy).await.expect("tamper"), 1);
    assert!(matches!(
        sealer.vault().key(&s, &k1()).await,
        Err(VaultError::Integrity { .. })
    ));
    assert!(matches!(
        sealer.open_record::<EntryEvent>(&record).await,
        Err(SealerError::Vault(VaultError::Integrity { .. }))
    ));
}

async fn a_section_that_does_not_open_is_not_erasure(store: AnyStore, _other: AnyStore) {
    let sealer = Sealer::new(vault(&store, &[KEK_A]));
    let s = subject();
    let encoded = sealer
        .seal_event(&opened(&s), Uuid::now_v7())
        .await
        .expect("seal");
    let record = append(&store, encoded.stream_id, encoded.event)
        .await
        .record()
        .expect("record");
    let mut tampered: EventRecord = record.clone();
    if let Some(section) = tampered.sealed.as_mut() {
        let mut bytes = base64::decode(&section.ciphertext).expect("base64");
        bytes[0] ^= 1;
        section.ciphertext = base64::encode(&bytes);
    }
    assert!(matches!(
        sealer.open_record::<EntryEvent>(&tampered).await,
        Err(SealerError::Integrity { .. })
    ));
    assert!(matches!(
        sealer.open_section(&tampered).await,
        Err(SealerError::Integrity { .. })
    ));
    // A section naming a key version the vault never had.
    let mut unknown = record;
    if let Some(section) = unknown.sealed.as_mut() {
        section.key_id = "k9".into();
    }
    assert!(matches!(
        sealer.open_record::<EntryEvent>(&unknown).await,
        Err(SealerError::Vault(VaultError::NoKey { .. }))
    ));
}

async fn kek_rotation_rewraps_every_live_key(store: AnyStore, _other: AnyStore) {
    let old = vault(&store, &[KEK_A]);
    let subjects: Vec<SubjectId> = (0..3).map(|_| subject()).collect();
    let mut originals = Vec::new();
    for s in &subjects {
        originals.push(old.key_for_sealing(s).await.expect("key").1);
    }
    old.destroy(&subjects[2]).await.expect("destroy");
    // A key under a KEK nobody configures any more cannot be re-wrapped; it is reported.
    let orphan = subject();
    vault(&store, &[("kek-lost", 0x77)])
        .key_for_sealing(&orphan)
        .await
        .expect("orphan");

    let rotating = vault(&store, &[KEK_B, KEK_A]);
    let mut pages = 0;
    let report = rotating.rewrap_all(|_| pages += 1).await.expect("rewrap");
    assert!(pages >= 1);
    assert_eq!(report.kek_id.as_str(), "kek-b");
    assert_eq!(
        (
            report.to_do,
            report.already_current,
            report.rewrapped,
            report.skipped,
            report.failed
        ),
        (3, 0, 2, 0, 1)
    );
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].subject, orphan.as_str());
    assert_eq!(report.remaining, 1, "the orphan stays under its old KEK");
    for s in &subjects[..2] {
        assert_eq!(kek_of(&store, s).await.as_deref(), Some("kek-b"));
    }

    // Only the new KEK is needed now; the old one alone no longer opens anything.
    let new_only = vault(&store, &[KEK_B]);
    for (s, original) in subjects[..2].iter().zip(&originals) {
        let key = new_only.key(s, &k1()).await.expect("key").expect("live");
        assert!(same_key(original, &key));
    }
    assert!(matches!(new_only.key(&subjects[2], &k1()).await, Ok(None)));
    assert!(matches!(
        vault(&store, &[KEK_A]).key(&subjects[0], &k1()).await,
        Err(VaultError::Integrity { .. })
    ));

    // Running it again finds nothing more to do; new keys are wrapped under the new KEK.
    let again = rotating.rewrap_all(|_| {}).await.expect("rewrap again");
    assert_eq!(
        (again.to_do, again.already_current, again.rewrapped),
        (1, 2, 0)
    );
    let fresh = subject();
    rotating.key_for_sealing(&fresh).await.expect("fresh");
    assert_eq!(kek_of(&store, &fresh).await.as_deref(), Some("kek-b"));
}

/// Run `test` with two handles on a fresh database of `adapter`.
async fn with_two_handles<F, Fut>(adapter: common::Adapter, test: F)
where
    F: FnOnce(AnyStore, AnyStore) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let db = common::TestDb::fresh(adapter).await;
    let other = db.second_handle().await;
    test(db.store.clone(), other).await;
}

common::on_both_adapters!(
    using with_two_handles;
    creates_a_key_on_first_use,
    concurrent_first_uses_end_with_one_key,
    sealed_events_round_trip_through_the_log,
    raw_events_with_personal_data_round_trip,
    destroying_a_subject_shreds_its_personal_data,
    erasing_a_subject_without_a_key_is_remembered,
    an_erasure_racing_first_uses_leaves_no_key,
    a_key_that_does_not_unwrap_is_an_integrity_failure,
    a_section_that_does_not_open_is_not_erasure,
    kek_rotation_rewraps_every_live_key,
);

// ---------------------------------------------------------------------------------------
// KEK files

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).expect("chmod");
}

#[cfg(unix)]
fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

/// Writes a KEK file by hand, mode 0600.
fn write_kek(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    #[cfg(unix)]
    set_mode(&path, 0o600);
    path
}

/// Whether two KEKs are the same: what one wraps, the other unwraps.
fn same_kek(a: &Kek, b: &Kek) -> bool {
    let key = DataKey::generate(&SystemRandom::new()).expect("key");
    let wrapped = seal::wrap_random(&key, a, "probe", &k1(), &SystemRandom::new()).expect("wrap");
    seal::unwrap(&wrapped, b, "probe", &k1()).is_ok()
}

#[test]
fn a_generated_kek_file_loads_back() {
    let dir = common::TempDir::new();
    // In a directory that does not exist yet, as `--out keys/kek` in an empty directory.
    let path = dir.join("keys").join("kek-2026.kek");
    let id = KeyId::parse("kek-2026").expect("id");
    generate_kek_file(&path, &id).expect("generate");
    #[cfg(unix)]
    assert_eq!(mode_of(&path), 0o600);
    let text = std::fs::read_to_string(&path).expect("read");
    assert!(text
        .lines()
        .any(|l| l.starts_with("amtsbuch-kek v1 kek-2026 ")));
    assert!(text.lines().any(|l| l.starts_with('#')), "explains itself");

    let first = load_kek_file(&path).expect("load");
    assert_eq!(first.kek.id(), &id);
    assert_eq!(first.loose_mode, None);
    let second = load_kek_file(&path).expect("load again");
    assert!(same_kek(&first.kek, &second.kek));

    // Never overwritten.
    assert_eq!(
        generate_kek_file(&path, &id),
        Err(KekError::Exists { path: path.clone() })
    );
    assert_eq!(std::fs::read_to_string(&path).expect("read"), text);
    // Two generated KEKs differ.
    let other = dir.join("other.kek");
    generate_kek_file(&other, &id).expect("generate other");
    assert!(!same_kek(
        &first.kek,
        &load_kek_file(&other).expect("load").kek
    ));
}

#[test]
fn keyrings_load_in_order_with_distinct_ids() {
    let dir = common::TempDir::new();
    let a = dir.join("a.kek");
    let b = dir.join("b.kek");
    generate_kek_file(&a, &KeyId::parse("kek-a").expect("id")).expect("a");
    generate_kek_file(&b, &KeyId::parse("kek-b").expect("id")).expect("b");
    let ring = load_keyring(&[&b, &a]).expect("keyring");
    assert_eq!(ring.current().id().as_str(), "kek-b");
    assert_eq!(
        ring.ids().map(KeyId::as_str).collect::<Vec<_>>(),
        vec!["kek-b", "kek-a"]
    );
    assert!(ring.get(&KeyId::parse("kek-a").expect("id")).is_some());
    assert_eq!(
        format!("{ring:?}"),
        r#"Keyring { ids: [KeyId("kek-b"), KeyId("kek-a")] }"#
    );
    assert_eq!(
        load_keyring(&[&a, &a]).map(|_| ()),
        Err(KekError::DuplicateId {
            id: KeyId::parse("kek-a").expect("id")
        })
    );
    assert_eq!(
        load_keyring::<PathBuf>(&[]).map(|_| ()),
        Err(KekError::Empty)
    );
    let missing = dir.join("missing.kek");
    assert_eq!(
        load_keyring(&[&a, &missing]).map(|_| ()),
        Err(KekError::Missing { path: missing })
    );
}

#[cfg(unix)]
#[test]
fn kek_file_modes_are_checked() {
    let dir = common::TempDir::new();
    let path = dir.join("a.kek");
    generate_kek_file(&path, &KeyId::parse("kek-a").expect("id")).expect("generate");
    set_mode(&path, 0o644);
    assert_eq!(
        load_kek_file(&path)
            .expect("readable by others loads")
            .loose_mode,
        Some(0o644)
    );
    set_mode(&path, 0o640);
    assert_eq!(load_kek_file(&path).expect("load").loose_mode, Some(0o640));
    for writable in [0o620, 0o602, 0o666] {
        set_mode(&path, writable);
        assert_eq!(
            load_kek_file(&path).map(|l| l.loose_mode),
            Err(KekError::Mode {
                path: path.clone(),
                mode: writable
            }),
            "{writable:o}"
        );
    }
}

#[test]
fn malformed_kek_files_are_refused_without_quoting_the_key() {
    let dir = common::TempDir::new();
    let key = base64::encode(&[7u8; KEY_LEN]);
    let short = base64::encode(&[7u8; 16]);

    let ok = write_kek(
        &dir,
        "ok.kek",
        &format!("# a comment\n\n  amtsbuch-kek v1 kek-a {key}  \r\n# trailing\n"),
    );
    assert!(same_kek(
        &load_kek_file(&ok)
            .expect("comments and blank lines are fine")
            .kek,
        &kek("kek-a", 7)
    ));

    let cases = [
        ("short", format!("amtsbuch-kek v1 kek-a {short}\n"), "key"),
        (
            "not-base64",
            "amtsbuch-kek v1 kek-a !!!!\n".to_owned(),
            "key",
        ),
        (
            "version",
            format!("amtsbuch-kek v2 kek-a {key}\n"),
            "format",
        ),
        ("magic", format!("other-kek v1 kek-a {key}\n"), "format"),
        ("fields", format!("amtsbuch-kek v1 kek a {key}\n"), "format"),
        ("bad-id", format!("amtsbuch-kek v1 kek/a {key}\n"), "format"),
        (
            "two-lines",
            format!("amtsbuch-kek v1 kek-a {key}\namtsbuch-kek v1 kek-b {key}\n"),
            "format",
        ),
        ("empty", "# only a comment\n".to_owned(), "format"),
    ];
    for (name, text, kind) in cases {
        let path = write_kek(&dir, name, &text);
        let err = load_kek_file(&path).map(|_| ()).expect_err(name);
        match (kind, &err) {
            ("key", KekError::Key { .. }) | ("format", KekError::Format { .. }) => {}
            _ => panic!("{name}: expected a {kind} error, got {err:?}"),
        }
        let message = err.to_string();
        assert!(!message.contains(&key), "{name}: {message}");
        assert!(!message.contains(&short), "{name}: {message}");
    }
}
