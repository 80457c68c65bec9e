//! HTTP subscriptions for systems without NATS: `GET /events/stream` as Server-Sent Events.
//!
//! Every connection is fed by the process's one `Hub` (`crate::hub`). A connection first
//! catches up from its resume position by paging through the log itself, then switches to
//! the hub; because positions are gapless and commit-ordered, "deliver everything after the
//! last position sent" is all the bookkeeping it needs, and any hole between catch-up and
//! the live feed is read from the log.
//!
//! Writers never wait for subscribers: the hub never blocks on a slow connection. A
//! connection that falls further behind than the broadcast buffer is disconnected with an
//! `event: disconnect` that says why and from which position to resume (`Last-Event-ID`,
//! which `EventSource` clients send on their own when they reconnect). Each event is
//! filtered by the caller's visibility before it is sent. A connection also ends, the same
//! way, when the token that opened it expires (`token-expired`): the caller is authorized
//! once, at the start, so a grant revoked or narrowed since takes effect at the latest
//! when the client reconnects with a fresh token.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use serde_json::json;
use tokio::sync::broadcast;

use amtsbuch_domain::EventRecord;
use amtsbuch_infra::{AnyStore, EventStore, RecordedEvent};

use crate::hub::{ClientSlot, Hub, LiveEvent};
use crate::metrics::Metrics;

/// Events read per page while a connection catches up.
const CATCH_UP_PAGE: usize = 500;

/// Who may see which event: the caller's visibility rule.
pub type Visibility = Arc<dyn Fn(&EventRecord) -> bool + Send + Sync>;

/// The SSE response for one connection that has seen everything up to `after`, ending at
/// `until` (when the caller's token expires).
fn stream(
    hub: &Hub,
    after: u64,
    visible: Visibility,
    slot: ClientSlot,
    until: Option<tokio::time::Instant>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let conn = Connection {
        store: hub.store().clone(),
        live: hub.live(),
        after,
        visible,
        phase: Phase::CatchUp,
        pending: Vec::new().into_iter(),
        metrics: hub.metrics().clone(),
        _slot: slot,
        until,
        #[cfg(test)]
        after_read: None,
    };
    let events = stream::unfold(conn, |mut c| async move {
        let next = c.next_until().await?;
        Some((Ok(next), c))
    });
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

enum Phase {
    /// Paging through the log from the resume position.
    CatchUp,
    /// Taking events from the hub.
    Live,
    /// The connection ends after the pending events.
    Closing,
    Done,
}

struct Connection {
    store: AnyStore,
    live: broadcast::Receiver<Arc<LiveEvent>>,
    /// The last position this connection has dealt with (sent or filtered out).
    after: u64,
    visible: Visibility,
    phase: Phase,
    pending: std::vec::IntoIter<Event>,
    metrics: Metrics,
    _slot: ClientSlot,
    /// When the caller's token expires: the connection ends then, and the client resumes
    /// with a fresh token (and `Last-Event-ID`), so that a grant revoked or narrowed since
    /// is in force.
    until: Option<tokio::time::Instant>,
    /// Tests: awaited once, right after the next catch-up read, before its page is taken.
    #[cfg(test)]
    after_read: Option<futures_util::future::BoxFuture<'static, ()>>,
}

impl Connection {
    /// `next`, or the `disconnect` frame once the token has expired. Frames already taken
    /// from the log go out first: the position a disconnect names has been delivered.
    async fn next_until(&mut self) -> Option<Event> {
        let Some(until) = self.until else {
            return self.next().await;
        };
        if self.pending.len() > 0 {
            return self.next().await;
        }
        let expired = tokio::select! {
            biased;
            () = tokio::time::sleep_until(until) => None,
            next = self.next() => Some(next),
        };
        match expired {
            Some(next) => next,
            None => {
                self.until = None;
                self.metrics.count(
                    "amtsbuch_sse_disconnects_total",
                    "Server-Sent-Events subscriptions ended by the server, by reason.",
                    &[("reason", "token-expired")],
                    1,
                );
                Some(self.disconnect(
                    "token-expired",
                    &format!("the token of this subscription has expired; reconnect with a fresh token and Last-Event-ID: {} to resume", self.after),
                ))
            }
        }
    }

    /// The next SSE frame, or `None` when the connection is over.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.pending.next() {
                return Some(e);
            }
            match self.phase {
                Phase::Done => return None,
                Phase::Closing => {
                    self.phase = Phase::Done;
                    continue;
                }
                Phase::CatchUp => {
                    // The live feed from here on, taken *before* the read: an event the hub
                    // sends after this point is in this receiver, and one it sent before
                    // was committed before the read began, so the read has it. Taken after
                    // the read, an event committed and sent in between would be in
                    // neither, and wait for the next append to be noticed as a gap.
                    // Starting from the hub's tail also keeps a long catch-up from
                    // counting as falling behind.
                    let live = self.live.resubscribe();
                    let read = self.store.read_all(self.after, CATCH_UP_PAGE).await;
                    #[cfg(test)]
                    if let Some(pause) = self.after_read.take() {
                        pause.await;
                    }
                    if let Some(disconnect) = self.caught_up(read, live) {
                        return Some(disconnect);
                    }
                }
                Phase::Live => match self.live.recv().await {
                    Ok(live) => {
                        let p = live.event.position;
                        if p <= self.after {
                            continue;
                        }
                        if p > self.after + 1 {
                            // Events arrived between our last read and the first broadcast we
                            // received: read the hole from the log, then come back.
                            self.phase = Phase::CatchUp;
                            continue;
                        }
                        let frames =
                            self.deliver(std::iter::once((&live.event, live.record.clone())));
                        self.pending = frames.into_iter();
                    }
                    Err(broadcast::error::RecvError::Lagged(missed)) => {
                        self.metrics.count(
                            "amtsbuch_sse_disconnects_total",
                            "Server-Sent-Events subscriptions ended by the server, by reason.",
                            &[("reason", "slow-consumer")],
                            1,
                        );
                        return Some(self.disconnect(
                            "slow-consumer",
                            &format!("this subscription fell {missed} events behind the live log and was disconnected so that it cannot hold the server back; reconnect with Last-Event-ID: {} to resume", self.after),
                        ));
                    }
                    Err(broadcast::error::RecvError::Closed) => {
                        return Some(self.disconnect(
                            "shutting-down",
                            "the server is shutting down; reconnect to resume",
                        ));
                    }
                },
            }
        }
    }

    /// Take a page of the catch-up read: its frames become pending, and a short page
    /// (the log's end) switches to `live`, the feed taken before the read. A failed read
    /// ends the connection with the returned frame.
    fn caught_up(
        &mut self,
        read: Result<Vec<RecordedEvent>, amtsbuch_infra::StoreError>,
        live: broadcast::Receiver<Arc<LiveEvent>>,
    ) -> Option<Event> {
        let page = match read {
            Ok(page) => page,
            Err(e) => return Some(self.disconnect("store-unavailable", &e.to_string())),
        };
        if page.len() < CATCH_UP_PAGE {
            self.phase = Phase::Live;
            self.live = live;
        }
        let frames = self.deliver(page.iter().filter_map(|e| e.record().ok().map(|r| (e, r))));
        self.pending = frames.into_iter();
        // A record that cannot be read is skipped (and logged by the hub), never re-read
        // for ever.
        if let Some(last) = page.last() {
            self.after = self.after.max(last.position);
        }
        None
    }

    /// Frames for the visible events of `events`; every event advances the position.
    fn deliver<'a>(
        &mut self,
        events: impl Iterator<Item = (&'a RecordedEvent, EventRecord)>,
    ) -> Vec<Event> {
        let mut frames = Vec::new();
        for (event, record) in events {
            self.after = event.position;
            if !(self.visible)(&record) {
                continue;
            }
            match serde_json::to_string(&crate::http::record_json(event, &record)) {
                Ok(body) => frames.push(
                    Event::default()
                        .id(event.position.to_string())
                        .event("event")
                        .data(body),
                ),
                Err(e) => {
                    tracing::error!(position = event.position, error = %e, "cannot render event for SSE");
                }
            }
        }
        frames
    }

    fn disconnect(&mut self, reason: &str, detail: &str) -> Event {
        self.phase = Phase::Closing;
        // The id moves the client's Last-Event-ID past events it was not shown.
        Event::default()
            .id(self.after.to_string())
            .event("disconnect")
            .data(
                json!({ "reason": reason, "detail": detail, "last_event_id": self.after })
                    .to_string(),
            )
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamQuery {
    after: Option<String>,
}

/// One Server-Sent Events frame of `GET /events/stream`, as an event-stream parser hands it
/// over; for the document only.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct SseFrame {
    /// `event`, or `disconnect` for the last frame.
    #[schema(pattern = "^(event|disconnect)$")]
    event: String,
    /// The event's position; on `disconnect`, the position to resume after.
    #[schema(pattern = "^[0-9]+$")]
    id: String,
    /// `event`: the event (an `EventView`) as JSON; `disconnect`: `{"reason", "detail",
    /// "last_event_id"}`.
    #[schema(content_media_type = "application/json")]
    data: String,
}

/// Follow the log as Server-Sent Events: every event the caller may see, in position
/// order, from `Last-Event-ID` (or `after`) on; live once caught up.
#[utoipa::path(get, path = "/events/stream", tag = "subscriptions",
    security(("bearer" = ["authority", "fachverfahren", "auditor", "operator"])),
    params(
        ("Last-Event-ID" = Option<u64>, Header, minimum = 0, maximum = 9007199254740991_i64, description = "Resume after this position (sent by EventSource clients on reconnect)"),
        ("after" = Option<u64>, Query, minimum = 0, maximum = 9007199254740991_i64, description = "Start after this position when there is no Last-Event-ID (default: 0, the whole log)")),
    responses(
        (status = 200, description = "`text/event-stream`: `event: event` frames with `id` = position and the event (`EventView`) as JSON data; a final `event: disconnect` says why the server ended the stream and where to resume. The schema describes one frame", body = SseFrame, content_type = "text/event-stream"),
        (status = 400, description = "Invalid position", body = crate::dto::ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "A position beyond the end of this log (`beyond-the-log`): it was not sent by this log", body = crate::dto::ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "This server serves its maximum of subscriptions", body = crate::dto::ProblemDoc, content_type = "application/problem+json")))]
pub async fn subscribe(
    axum::extract::State(state): axum::extract::State<crate::state::AppState>,
    crate::auth::Caller(principal): crate::auth::Caller,
    expiry: Option<axum::Extension<crate::auth::TokenExpiry>>,
    headers: axum::http::HeaderMap,
    query: Result<axum::extract::Query<StreamQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<axum::response::Response, crate::problem::Problem> {
    use crate::problem::Problem;
    use axum::response::IntoResponse;
    let axum::extract::Query(q) =
        query.map_err(|e| Problem::bad_request("invalid-query", e.body_text()))?;
    let position = |name: &str, raw: &str| {
        raw.trim()
            .parse::<u64>()
            .ok()
            .filter(|p| *p <= amtsbuch_domain::record::MAX_SAFE_INTEGER)
            .ok_or_else(|| {
                Problem::bad_request(
                    "invalid-query",
                    format!("{name} must be a log position (an integer from 0 to 2^53 − 1), got {raw:?}"),
                )
            })
    };
    // Both are checked, though Last-Event-ID wins: a malformed `after` is refused, not
    // silently ignored.
    let after = q
        .after
        .as_deref()
        .map(|a| position("after", a))
        .transpose()?;
    let after = match headers.get("last-event-id") {
        Some(v) => position(
            "Last-Event-ID",
            v.to_str().map_err(|_| {
                Problem::bad_request("invalid-query", "Last-Event-ID must be ASCII digits")
            })?,
        )?,
        None => after.unwrap_or(0),
    };
    // Positions only grow, so a client cannot have been sent one beyond the head: its
    // position belongs to another log (a restored backup, another environment). Waiting
    // for the log to grow past it would silently skip every event up to it.
    let head = state.store.head().await?.position;
    if after > head {
        return Err(Problem::new(
            axum::http::StatusCode::CONFLICT,
            "beyond-the-log",
            "The position is beyond the end of this log",
            format!("the resume position {after} is beyond the end of this log ({head}); it was not sent by this log, so resume from a position it sent or from 0"),
        ));
    }
    let slot = state.hub.admit().ok_or_else(|| {
        Problem::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "too-many-subscriptions",
            "Too many subscriptions",
            "this server serves its maximum number of event streams; retry later or use another server",
        )
    })?;
    let visible: Visibility = Arc::new(move |record: &EventRecord| principal.may_see(record));
    // The guard leaves the token's expiry; without it (a handler called outside the
    // router) the connection has no end of its own.
    let until = expiry.map(|axum::Extension(crate::auth::TokenExpiry(at))| {
        let left = (at - chrono::Utc::now()).to_std().unwrap_or_default();
        tokio::time::Instant::now() + left
    });
    Ok(stream(&state.hub, after, visible, slot, until).into_response())
}

#[cfg(test)]
mod tests {
    use amtsbuch_domain::{AppendRequest, EventType, ExpectedVersion, NewEvent, StreamId};
    use amtsbuch_testkit_api::{Adapter, TestDb};
    use futures_util::FutureExt;

    use super::*;
    use crate::hub::HubLimits;

    async fn append_one(store: &AnyStore) -> u64 {
        let outcome = store
            .append(AppendRequest {
                stream: StreamId::parse("note-1").expect("stream"),
                expected: ExpectedVersion::Any,
                events: vec![NewEvent::new(
                    EventType::parse("Noted").expect("type"),
                    json!({}),
                )],
            })
            .await
            .expect("append");
        outcome.last_position
    }

    /// An event committed (and sent by the hub) while the last catch-up read is on its way
    /// back is delivered at once, not only when another event is appended after it.
    async fn an_event_at_the_end_of_the_catch_up_is_not_held_back(adapter: Adapter) {
        let db = TestDb::fresh(adapter).await;
        let first = append_one(&db.store).await;
        let hub = Hub::spawn(db.store.clone(), HubLimits::default(), Metrics::new())
            .await
            .expect("hub");
        let mut sent = hub.live();
        let store = db.store.clone();
        // The worst moment: the read has its page (up to `first`), the next event is
        // committed and the hub has sent it before the connection goes live.
        let between = async move {
            let second = append_one(&store).await;
            loop {
                let live = sent.recv().await.expect("the hub sends");
                if live.event.position == second {
                    break;
                }
            }
        }
        .boxed();
        let mut connection = Connection {
            store: db.store.clone(),
            live: hub.live(),
            after: 0,
            visible: Arc::new(|_| true),
            phase: Phase::CatchUp,
            pending: Vec::new().into_iter(),
            metrics: Metrics::new(),
            _slot: hub.admit().expect("slot"),
            until: None,
            after_read: Some(between),
        };
        let _first = connection.next().await.expect("the first event");
        assert_eq!(connection.after, first);
        let next = tokio::time::timeout(Duration::from_secs(3), connection.next()).await;
        assert!(
            next.is_ok_and(|frame| frame.is_some()),
            "the event committed at the end of the catch-up was not sent"
        );
        assert_eq!(connection.after, first + 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pg_an_event_at_the_end_of_the_catch_up_is_not_held_back() {
        an_event_at_the_end_of_the_catch_up_is_not_held_back(Adapter::Postgres).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_an_event_at_the_end_of_the_catch_up_is_not_held_back() {
        an_event_at_the_end_of_the_catch_up_is_not_held_back(Adapter::Sqlite).await;
    }
}
