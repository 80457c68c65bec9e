//! Procedures as this node last folded them, so that a contribution, a report or a
//! registration does not read and fold its procedure's whole stream again.
//!
//! A folded procedure is never trusted as it is: each use reads the procedure's stream
//! from the last event folded in, so one round trip returns that event (whose id must be
//! the one remembered) and every event appended after it, on this node or any other. The
//! state used is therefore exactly the state a full read would give — with several API
//! nodes too —, only without re-reading and re-opening the events it already knew. An
//! event id that differs (another database behind the same process, as in tests and the
//! bench) makes the node fold the stream from the start again.
//!
//! Procedures hold no personal data (what participants write lives in the contributions'
//! streams), so nothing sealed is kept in memory here.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};

use uuid::Uuid;

use amtsbuch_domain::participation::procedure::{ProcedureEvent, ProcedureState};
use amtsbuch_domain::participation::ProcedureId;
use amtsbuch_domain::Decider;
use amtsbuch_infra::store::MAX_PAGE;
use amtsbuch_infra::{Direction, EventStore};

use crate::command::{load, open};
use crate::problem::Problem;
use crate::AppState;

/// At most this many procedures are kept; beyond it the memory starts again empty.
const MAX_KEPT: usize = 50_000;

#[derive(Debug, Clone)]
struct Folded {
    state: ProcedureState,
    /// The stream's version the state was folded to.
    version: u64,
    /// The id of the event at `version`.
    last_event: Uuid,
}

static FOLDED: LazyLock<Mutex<HashMap<ProcedureId, Folded>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

fn kept(pid: ProcedureId) -> Option<Folded> {
    FOLDED
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get(&pid)
        .cloned()
}

fn keep(pid: ProcedureId, folded: Folded) {
    let mut all = FOLDED.lock().unwrap_or_else(PoisonError::into_inner);
    if all.len() >= MAX_KEPT && !all.contains_key(&pid) {
        all.clear();
    }
    let newer = all.get(&pid).is_none_or(|k| k.version <= folded.version);
    if newer {
        all.insert(pid, folded);
    }
}

/// The procedure's current state and its stream's version, as `command::current` gives
/// them, from what this node folded before and the events appended since.
pub async fn procedure(
    state: &AppState,
    pid: ProcedureId,
) -> Result<(ProcedureState, u64), Problem> {
    let stream = pid.stream_id();
    if let Some(known) = kept(pid) {
        let page = state
            .store
            .read_stream(&stream, known.version, Direction::Forwards, MAX_PAGE)
            .await?;
        let same = match page.first() {
            Some(first) => {
                first.record().map_err(|e| Problem::internal(&e))?.event_id == known.last_event
            }
            None => false,
        };
        if same && page.len() < MAX_PAGE {
            let mut folded = known;
            for e in &page[1..] {
                let stored = open::<ProcedureEvent>(state, e).await?;
                folded.state = ProcedureState::evolve(folded.state, &stored.event);
                folded.version += 1;
                folded.last_event = stored.event_id;
            }
            if page.len() > 1 {
                keep(pid, folded.clone());
            }
            return Ok((folded.state, folded.version));
        }
    }
    let (events, version) = load::<ProcedureEvent>(state, &stream).await?;
    let folded = ProcedureState::fold(events.iter().map(|e| &e.event));
    if let Some(last) = events.last() {
        keep(
            pid,
            Folded {
                state: folded.clone(),
                version,
                last_event: last.event_id,
            },
        );
    }
    Ok((folded, version))
}
