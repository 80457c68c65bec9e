//! The sealing service: puts events into log envelopes with their personal data sealed
//! under the subject's key from the [`KeyVault`], and reads them back.
//!
//! `domain::event` knows how an event of any domain splits into non-personal `data` and a
//! personal part, and `domain::seal` how to encrypt; this module adds the one thing they
//! cannot know: which key to use, and whether it still exists. Reading a record whose subject was erased gives
//! the event with [`Personal::Erased`] in place of its personal data; a key that exists but
//! does not open the section is an integrity failure and is never passed off as erasure.
//!
//! Events that are not domain events (the raw append API, where an operator sends a
//! `personal` value beside `data`) use [`Sealer::seal_value`] and [`Sealer::open_section`].

use amtsbuch_domain::event::{
    decode, encode, DomainEvent, Encoded, EnvelopeError, Personal, Sealing,
};
use amtsbuch_domain::seal::{self, DataKey, Envelope, KeyId, SealError, SystemRandom};
use amtsbuch_domain::{EventRecord, SealedSection};
use serde_json::Value;
use uuid::Uuid;

use crate::vault::{KeyVault, SubjectId, VaultError};

/// Why sealing or opening failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealerError {
    /// From the vault: the subject is erased (when sealing), the key version is unknown,
    /// a key does not unwrap, or the database failed.
    #[error(transparent)]
    Vault(#[from] VaultError),
    /// The record's sealed section does not open under its subject's existing key, or
    /// names no valid subject or key version: the record or the key was changed.
    #[error("the sealed section of event {event_id} cannot be opened: {reason}")]
    Integrity { event_id: Uuid, reason: String },
    /// The event does not fit its envelope, or the record does not fit the event type.
    #[error(transparent)]
    Envelope(EnvelopeError),
    /// The personal value cannot be sealed (not canonical JSON, or the random source failed).
    #[error("cannot seal the personal data: {0}")]
    Seal(SealError),
}

/// Seals and opens personal data with keys from a [`KeyVault`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Sealer {
    vault: KeyVault,
    rng: SystemRandom,
}

impl Sealer {
    pub fn new(vault: KeyVault) -> Self {
        Self {
            vault,
            rng: SystemRandom::new(),
        }
    }

    pub fn vault(&self) -> &KeyVault {
        &self.vault
    }

    /// Puts `event` into a log envelope with id `event_id`, its personal part (if its type
    /// has one) sealed under the subject's current key, which is created on first use.
    /// Refused with [`VaultError::Erased`] when the subject was erased.
    pub async fn seal_event<E: DomainEvent>(
        &self,
        event: &E,
        event_id: Uuid,
    ) -> Result<Encoded, SealerError> {
        if !E::carries_personal_data(event.event_type()) {
            return encode(event, event_id, None, &self.rng).map_err(SealerError::Envelope);
        }
        let Some(subject) = event.data_subject() else {
            return Err(SealerError::Envelope(EnvelopeError::NoSubject(
                event.event_type(),
            )));
        };
        let (key_id, key) = self
            .vault
            .key_for_sealing(&SubjectId::from(subject))
            .await?;
        let sealing = Sealing {
            key_id: &key_id,
            key: &key,
        };
        encode(event, event_id, Some(sealing), &self.rng).map_err(SealerError::Envelope)
    }

    /// Reads an event back from a stored record. When the subject's key is destroyed, the
    /// event holds [`Personal::Erased`] in place of its personal data.
    pub async fn open_record<E: DomainEvent>(
        &self,
        record: &EventRecord,
    ) -> Result<E, SealerError> {
        let key = match &record.sealed {
            Some(section) if E::carries_personal_data(record.event_type.as_str()) => {
                self.key_for(record, section).await?
            }
            // Whatever else is wrong (a section where none belongs, none where one does),
            // decode names it; no key is needed for that.
            _ => None,
        };
        decode::<E>(record, key.as_ref()).map_err(|e| match e {
            EnvelopeError::Seal(reason) if key.is_some() => SealerError::Integrity {
                event_id: record.event_id,
                reason: reason.to_string(),
            },
            other => SealerError::Envelope(other),
        })
    }

    /// Seals `personal` for the record `envelope` describes, under the current key of
    /// `subject` (created on first use). Refused with [`VaultError::Erased`] when the
    /// subject was erased.
    pub async fn seal_value(
        &self,
        subject: &SubjectId,
        envelope: &Envelope<'_>,
        personal: &Value,
    ) -> Result<SealedSection, SealerError> {
        let (key_id, key) = self.vault.key_for_sealing(subject).await?;
        // Derived, not random: a retried append must produce the same bytes.
        seal::seal_derived(personal, &key, &key_id, subject.as_str(), envelope)
            .map_err(SealerError::Seal)
    }

    /// The personal value of a record's sealed section: `None` when the record has none,
    /// [`Personal::Erased`] when its subject's key is destroyed.
    pub async fn open_section(
        &self,
        record: &EventRecord,
    ) -> Result<Option<Personal<Value>>, SealerError> {
        let Some(section) = &record.sealed else {
            return Ok(None);
        };
        let Some(key) = self.key_for(record, section).await? else {
            return Ok(Some(Personal::Erased));
        };
        let envelope = Envelope {
            event_id: record.event_id,
            stream_id: &record.stream_id,
            event_type: &record.event_type,
        };
        seal::open(section, &key, &envelope)
            .map(|value| Some(Personal::Available(value)))
            .map_err(|e| SealerError::Integrity {
                event_id: record.event_id,
                reason: e.to_string(),
            })
    }

    /// The key a sealed section names, or `None` when it was destroyed.
    async fn key_for(
        &self,
        record: &EventRecord,
        section: &SealedSection,
    ) -> Result<Option<DataKey>, SealerError> {
        let invalid = |what: &str| SealerError::Integrity {
            event_id: record.event_id,
            reason: format!("the section names no valid {what}"),
        };
        let subject = SubjectId::parse(&section.subject).map_err(|_| invalid("subject"))?;
        let key_id = KeyId::parse(&section.key_id).map_err(|_| invalid("key version"))?;
        Ok(self.vault.key(&subject, &key_id).await?)
    }
}
