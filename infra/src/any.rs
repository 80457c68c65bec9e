//! Choosing an adapter from a database URL, and dispatching to it.
//!
//! The service and the CLI take one `--database-url`; `postgres://` selects PostgreSQL and
//! `sqlite:` (or a bare file path) the embedded store. An enum rather than a trait object
//! keeps `EventStore`'s async methods static and costs one match per call.

use amtsbuch_domain::{AppendOutcome, AppendRequest, Category, RequestPlan, StreamId};
use tokio::sync::watch;
use uuid::Uuid;

use crate::postgres::ConnectionBudget;
use crate::store::{Direction, EventStore, Head, RecordedEvent, StoreError};
use crate::{PgStore, SqliteStore};

/// The default embedded store, relative to the working directory.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/amtsbuch.db";

macro_rules! dispatch {
    ($self:ident, $s:ident => $e:expr) => {
        match $self {
            AnyStore::Postgres($s) => $e,
            AnyStore::Sqlite($s) => $e,
        }
    };
}

/// Either adapter.
#[derive(Debug, Clone)]
pub enum AnyStore {
    Postgres(PgStore),
    Sqlite(SqliteStore),
}

impl AnyStore {
    /// Open the store a URL names, running migrations.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_within(url, ConnectionBudget::DEFAULT).await
    }

    /// `open`, holding at most `budget` connections on PostgreSQL (SQLite needs no
    /// budget: its connections are file handles of this process).
    pub async fn open_within(url: &str, budget: ConnectionBudget) -> Result<Self, StoreError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = crate::postgres::parse_url(url)?;
            Ok(Self::Postgres(
                PgStore::connect_within(options, budget).await?,
            ))
        } else if url.starts_with("sqlite:") {
            Ok(Self::Sqlite(SqliteStore::open(url).await?))
        } else {
            Err(StoreError::Unavailable(format!(
                "unsupported database URL {:?}: use postgres://… or sqlite://PATH",
                redact(url)
            )))
        }
    }

    /// Since when appends fail as a whole, if they do now: the writer could not write its
    /// last batch, and no write has worked since (it probes every second while idle).
    pub fn writer_fault(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        dispatch!(self, s => s.writer_fault())
    }

    /// Refuse appends whose records are longer than `limit` bytes (`AppendError::TooLarge`);
    /// returns the limit before. The relay sets it to what its NATS server can carry.
    pub fn set_max_record_bytes(&self, limit: usize) -> usize {
        dispatch!(self, s => s.set_max_record_bytes(limit))
    }

    /// This store as it followed the log before it had a tail and a background pool (see
    /// `PgStore::without_tail`); only for comparisons.
    pub fn without_tail(self) -> Self {
        match self {
            Self::Postgres(s) => Self::Postgres(s.without_tail()),
            Self::Sqlite(s) => Self::Sqlite(s.without_tail()),
        }
    }

    /// Which adapter this is, for logs and the CLI.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Postgres(_) => "postgresql",
            Self::Sqlite(_) => "sqlite",
        }
    }
}

/// A URL with any password replaced, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

impl EventStore for AnyStore {
    async fn append(&self, request: AppendRequest) -> Result<AppendOutcome, StoreError> {
        dispatch!(self, s => s.append(request).await)
    }

    async fn append_many(
        &self,
        requests: Vec<AppendRequest>,
    ) -> Result<Vec<RequestPlan>, StoreError> {
        dispatch!(self, s => s.append_many(requests).await)
    }

    async fn read_stream(
        &self,
        stream: &StreamId,
        from: u64,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        dispatch!(self, s => s.read_stream(stream, from, direction, limit).await)
    }

    async fn read_all(&self, after: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        dispatch!(self, s => s.read_all(after, limit).await)
    }

    async fn read_category(
        &self,
        category: &Category,
        after: u64,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        dispatch!(self, s => s.read_category(category, after, limit).await)
    }

    async fn event_by_id(&self, id: Uuid) -> Result<Option<RecordedEvent>, StoreError> {
        dispatch!(self, s => s.event_by_id(id).await)
    }

    async fn head(&self) -> Result<Head, StoreError> {
        dispatch!(self, s => s.head().await)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        dispatch!(self, s => s.ping().await)
    }

    fn head_watch(&self) -> watch::Receiver<u64> {
        dispatch!(self, s => s.head_watch())
    }

    fn tail(&self) -> Option<crate::tail::LogTail> {
        dispatch!(self, s => s.tail())
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite://data/a.db"), "sqlite://data/a.db");
    }
}
