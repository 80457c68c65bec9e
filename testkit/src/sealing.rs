//! Appending a domain's events as the command path stores them, with their personal part
//! sealed under a test data key: for read-model tests that build histories with the
//! deciders and need no vault.

use amtsbuch_domain::event::DomainEvent;
use amtsbuch_domain::seal::{self, DataKey, Envelope, KeyId, Nonce};
use amtsbuch_domain::{AppendRequest, ExpectedVersion, NewEvent};
use amtsbuch_infra::{AnyStore, EventStore};
use uuid::Uuid;

/// A store with one test data key (`key_id`) and counted nonces.
#[derive(Debug)]
pub struct TestSealer {
    store: AnyStore,
    key: DataKey,
    /// The id every sealed part names.
    pub key_id: KeyId,
    nonce: u64,
}

impl TestSealer {
    pub fn new(store: AnyStore) -> Self {
        // A test data key; the service draws real ones from the vault.
        let mut bytes = [0u8; 32];
        bytes[..16].copy_from_slice(Uuid::now_v7().as_bytes());
        bytes[16..].copy_from_slice(Uuid::now_v7().as_bytes());
        Self {
            store,
            key: DataKey::from_bytes(bytes),
            key_id: KeyId::parse("test-k1").expect("key id"),
            nonce: 0,
        }
    }

    /// Puts an event into its envelope the way `event::encode` does, sealing its personal
    /// part under the test key, and appends it; returns its position.
    pub async fn append<E: DomainEvent>(&mut self, event: &E) -> u64 {
        let parts = event.to_parts().expect("parts");
        let stream = event.stream_id();
        let event_id = Uuid::now_v7();
        let sealed = match parts.personal {
            None => None,
            Some(personal) => {
                self.nonce += 1;
                let mut nonce = [0u8; 12];
                nonce[4..].copy_from_slice(&self.nonce.to_be_bytes());
                let envelope = Envelope {
                    event_id,
                    stream_id: &stream,
                    event_type: &parts.event_type,
                };
                Some(
                    seal::seal(
                        &personal,
                        &self.key,
                        &self.key_id,
                        &event.data_subject().expect("a subject").to_string(),
                        &envelope,
                        Nonce::from_bytes(nonce),
                    )
                    .expect("seal"),
                )
            }
        };
        let request = AppendRequest {
            stream,
            expected: ExpectedVersion::Any,
            events: vec![NewEvent {
                event_id,
                event_type: parts.event_type,
                schema_version: 1,
                data: parts.data,
                tenant: None,
                actor: None,
                correlation_id: None,
                causation_id: None,
                authority: None,
                service: None,
                occurred_at: Some(event.occurred_at()),
                sealed,
            }],
        };
        self.store
            .append(request)
            .await
            .expect("append")
            .last_position
    }
}
