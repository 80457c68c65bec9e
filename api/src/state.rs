//! What every handler shares: `AppState` — the store, the ledger's configuration
//! (`LedgerInfo`), the token verifier, the metrics, the live feed, the link to NATS
//! (`NatsLink`), the sealer, and the domain modules' own values (`ModuleValues`).
//!
//! It is a module of its own so that the route modules (`http`, `ledger_http`,
//! `nats_http`, `sse`, and every domain module's) all depend on it and none of them on
//! another: the state
//! names their shared types, so those live here or in a module that imports no routes
//! (`hub`, `auth`, `metrics`).

use tokio::sync::{watch, OnceCell};

use amtsbuch_infra::relay::{self, Blocked, RelayConfig, RelayError, RelayHandle};
use amtsbuch_infra::AnyStore;

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    pub store: AnyStore,
    /// The signing configuration, when this server signs checkpoints.
    pub ledger: Option<LedgerInfo>,
    /// Checks bearer tokens.
    pub auth: std::sync::Arc<crate::auth::Authenticator>,
    pub metrics: crate::metrics::Metrics,
    /// The live feed behind `GET /events/stream`.
    pub hub: crate::hub::Hub,
    /// The NATS distribution, when this server relays to NATS.
    pub nats: Option<std::sync::Arc<NatsLink>>,
    /// Seals and opens personal data; `None` when no key-encryption key is configured.
    pub sealer: Option<amtsbuch_infra::sealer::Sealer>,
    /// What domain modules keep for their handlers, one value per type: the configuration
    /// their jobs read from `serve`'s flags (`crate::module::Jobs`), for instance.
    pub modules: ModuleValues,
}

/// Values the domain modules keep in the state, one per type, shared by every clone of the
/// state: a module's `Jobs::spawn` puts its configuration here and its handlers read it.
/// The core never looks inside; each module keeps a type of its own here.
#[derive(Clone, Default)]
pub struct ModuleValues(std::sync::Arc<std::sync::RwLock<axum::http::Extensions>>);

impl std::fmt::Debug for ModuleValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ModuleValues")
    }
}

impl ModuleValues {
    /// Keeps `value`, replacing the value of its type kept before.
    pub fn insert<T: Clone + Send + Sync + 'static>(&self, value: T) {
        self.0
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(value);
    }

    /// The value of type `T`, if one is kept.
    pub fn get<T: Clone + Send + Sync + 'static>(&self) -> Option<T> {
        self.0
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get::<T>()
            .cloned()
    }
}

impl AppState {
    /// The state of a server on `store`, with fresh metrics and a live feed for
    /// subscriptions.
    pub async fn new(
        store: AnyStore,
        ledger: Option<LedgerInfo>,
        auth: std::sync::Arc<crate::auth::Authenticator>,
    ) -> Result<Self, amtsbuch_infra::StoreError> {
        let metrics = crate::metrics::Metrics::new();
        let hub = crate::hub::Hub::spawn(
            store.clone(),
            crate::hub::HubLimits::default(),
            metrics.clone(),
        )
        .await?;
        Ok(Self {
            store,
            ledger,
            auth,
            metrics,
            hub,
            nats: None,
            sealer: None,
            modules: ModuleValues::default(),
        })
    }
}

impl axum::extract::FromRef<AppState> for std::sync::Arc<crate::auth::Authenticator> {
    fn from_ref(state: &AppState) -> Self {
        state.auth.clone()
    }
}

/// What the HTTP layer knows of the ledger's configuration.
#[derive(Debug, Clone)]
pub struct LedgerInfo {
    pub origin: String,
    /// The verifier keys (C2SP vkeys) of every signing key.
    pub vkeys: Vec<String>,
}

/// What the HTTP layer needs of the NATS distribution.
#[derive(Debug)]
pub struct NatsLink {
    pub config: RelayConfig,
    context: OnceCell<async_nats::jetstream::Context>,
    /// The event this process's relay is stuck at, if it runs one (for `/readyz`).
    blocked: Option<watch::Receiver<Option<Blocked>>>,
}

impl NatsLink {
    pub fn new(config: RelayConfig) -> Self {
        Self {
            config,
            context: OnceCell::new(),
            blocked: None,
        }
    }

    /// Report `relay`'s state too: readiness fails while it cannot publish an event.
    pub fn watching(mut self, relay: &RelayHandle) -> Self {
        self.blocked = Some(relay.blocked());
        self
    }

    /// The event this process's relay cannot publish, while it cannot.
    pub fn blocked(&self) -> Option<Blocked> {
        self.blocked.as_ref().and_then(|b| b.borrow().clone())
    }

    /// The JetStream context, connected on first use (NATS may be down when the server
    /// starts; appends and the relay do not wait for it).
    pub(crate) async fn context(&self) -> Result<&async_nats::jetstream::Context, RelayError> {
        self.context
            .get_or_try_init(|| relay::connect(&self.config))
            .await
    }
}
