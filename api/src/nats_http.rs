//! Durable NATS consumers for Fachverfahren: `PUT /subscriptions/nats/{name}`.
//!
//! A Fachverfahren must receive exactly the events of its authority and of the services it
//! handles. The relay publishes every event to `<prefix>.<category>.<authority>.<event-type>.<service>`
//! (`amtsbuch_domain::subject`), so those events are selected on the NATS server by filter
//! subjects, and this route sets up a durable pull consumer whose filters come from the
//! caller's token — never from the request — so a Fachverfahren cannot widen what it
//! receives. Operators may set up and change any consumer, with filters of their choice.
//!
//! A consumer's name says which authority it belongs to: `<authority>-<name>`, where
//! `<name>` has no `-`, so the authority is everything before the last `-`. A Fachverfahren
//! may set up consumers of its own authority only. A mere prefix would not do: authority
//! ids may contain `-`, and `lra` is a prefix of `lra-meissen`, so the Fachverfahren of
//! `lra` could otherwise rewrite `lra-meissen-wohngeld`, or take that name before
//! `lra-meissen` sets it up.
//!
//! Which of the authority's systems owns a consumer is not in its name but recorded: the
//! token subject (`sub`) of the Fachverfahren that set it up, in `nats_consumers`, written
//! before the consumer is created. Only that Fachverfahren may change it later. Two systems
//! of one authority may handle different services, so one of them rewriting the other's
//! consumer with its own filters would send it events its token does not cover, and starve
//! the other of its own. A consumer that exists without a recorded owner (an operator's, or
//! one set up before owners were recorded) is left to operators.
//! Who may connect to NATS at all, and read which consumer, is NATS's own authorization
//! (accounts and permissions); docs/FACHVERFAHREN.md shows the set-up.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use amtsbuch_domain::access::Role;
use amtsbuch_domain::subject::fachverfahren_filters;
use amtsbuch_infra::relay::{self, ConsumerName, DeliverFrom, RelayError};
use amtsbuch_infra::Db;
use chrono::Utc;

use crate::auth::Caller;
use crate::dto::ProblemDoc;
use crate::problem::Problem;
use crate::state::AppState;

/// Where a new consumer starts; an existing consumer keeps its progress.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConsumerRequest {
    /// `all` (default): every event the stream holds; `new`: only events published from
    /// now on. Ignored when `after` is given.
    #[serde(default)]
    start: Option<Start>,
    /// Start after this log position, e.g. the last event handled before a migration.
    #[serde(default)]
    after: Option<u64>,
    /// Operators only: the filter subjects. A Fachverfahren's filters come from its token.
    #[serde(default)]
    filter_subjects: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Start {
    All,
    New,
}

/// The consumer as set up.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsumerView {
    /// The JetStream stream.
    pub stream: String,
    /// The durable consumer's name.
    pub consumer: String,
    /// What it receives.
    pub filter_subjects: Vec<String>,
    /// Events waiting for it right now.
    pub pending: u64,
}

fn relay_problem(e: RelayError) -> Problem {
    match e {
        RelayError::ConsumerName(_) | RelayError::Filter(_) | RelayError::Config(_) => {
            Problem::bad_request("invalid-consumer", e.to_string())
        }
        RelayError::Unsupported(detail) => Problem::new(
            StatusCode::NOT_IMPLEMENTED,
            "nats-unsupported",
            "Not supported by this NATS server",
            detail,
        ),
        RelayError::Stream { .. } => Problem::new(
            StatusCode::CONFLICT,
            "nats-stream",
            "The event stream cannot be used",
            e.to_string(),
        ),
        RelayError::Nats(_) | RelayError::Store(_) | RelayError::Undeliverable { .. } => Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "nats-unavailable",
            "NATS is unavailable",
            "NATS cannot be reached right now; retry later (or follow GET /events/stream meanwhile)",
        ),
    }
}

/// The authority a consumer name belongs to: what comes before its last `-`, if both
/// parts are non-empty. Names without `-` belong to no authority (only operators set them
/// up).
fn owner(name: &ConsumerName) -> Option<&str> {
    name.as_str()
        .rsplit_once('-')
        .filter(|(authority, own)| !authority.is_empty() && !own.is_empty())
        .map(|(authority, _)| authority)
}

/// The recorded owner of the consumer `name` of `stream`, if it has one.
async fn recorded_owner(
    db: &Db,
    stream: &str,
    name: &ConsumerName,
) -> Result<Option<String>, Problem> {
    let row = db
        .fetch_optional(
            "SELECT owner FROM nats_consumers WHERE stream = $1 AND name = $2",
            &[stream.into(), name.as_str().into()],
        )
        .await?;
    Ok(row.map(|r| r.get::<String>("owner")).transpose()?)
}

/// Make sure the Fachverfahren `subject` owns the consumer `name`: it does if it is
/// recorded as the owner, and becomes the owner of a name nobody has recorded and no
/// consumer uses yet. Any other case is refused (403) before NATS is touched.
async fn claim(
    state: &AppState,
    link: &crate::state::NatsLink,
    name: &ConsumerName,
    subject: &str,
) -> Result<(), Problem> {
    let stream = link.config.stream.as_str();
    let db = Db::new(&state.store);
    let taken = || {
        Problem::forbidden(format!(
            "consumer {} was set up by another Fachverfahren of this authority; only that system, or an operator, may change it",
            name.as_str()
        ))
    };
    match recorded_owner(&db, stream, name).await? {
        Some(owner) if owner == subject => return Ok(()),
        Some(_) => return Err(taken()),
        None => {}
    }
    let context = link.context().await.map_err(relay_problem)?;
    if relay::consumer_exists(context, stream, name)
        .await
        .map_err(relay_problem)?
    {
        return Err(Problem::forbidden(format!(
            "consumer {} exists without a recorded owner (an operator set it up, or it predates recorded owners); an operator may change it, or delete it so that its Fachverfahren sets it up again (with \"after\" to keep its place)",
            name.as_str()
        )));
    }
    // Two systems may claim a free name at once: the first row wins, and the other is
    // refused below.
    db.execute(
        "INSERT INTO nats_consumers (stream, name, owner, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (stream, name) DO NOTHING",
        &[
            stream.into(),
            name.as_str().into(),
            subject.into(),
            Utc::now().into(),
        ],
    )
    .await?;
    match recorded_owner(&db, stream, name).await? {
        Some(owner) if owner == subject => Ok(()),
        Some(_) => Err(taken()),
        None => Err(Problem::internal(
            &"the recorded owner of a consumer vanished",
        )),
    }
}

/// Create or update a durable pull consumer on the event stream.
#[utoipa::path(put, path = "/subscriptions/nats/{name}", tag = "subscriptions",
    security(("bearer" = ["fachverfahren", "operator"])),
    params(("name" = String, Path, pattern = "^[A-Za-z0-9_-]{1,64}$", description = "The durable consumer's name: 1 to 64 letters, digits, `-`, `_`; a Fachverfahren's is `<authority>-<name>` with no `-` in `<name>`")),
    request_body(content = Option<ConsumerRequest>, description = "Optional: where a new consumer starts"),
    responses(
        (status = 200, description = "The consumer exists with these filters", body = ConsumerView),
        (status = 400, description = "Invalid name or request", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 403, description = "Not a consumer of the caller's authority, a consumer another Fachverfahren set up (its owner is recorded) or one without a recorded owner, or filters from a Fachverfahren", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 409, description = "The JetStream stream cannot be used for the consumer (`nats-stream`)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 501, description = "This NATS server cannot filter as needed (several services need NATS 2.10)", body = ProblemDoc, content_type = "application/problem+json"),
        (status = 503, description = "NATS unreachable, or this server has no NATS distribution", body = ProblemDoc, content_type = "application/problem+json")))]
pub async fn put_consumer(
    State(state): State<AppState>,
    Caller(caller): Caller,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<ConsumerView>, Problem> {
    let Some(link) = state.nats.as_deref() else {
        return Err(Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "nats-disabled",
            "No NATS distribution",
            "this server was started without --nats-url; follow GET /events/stream instead",
        ));
    };
    let body = body.map_err(|e| Problem::bad_request("invalid-body", e.body_text()))?;
    let request: ConsumerRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ConsumerRequest::default()
    } else {
        crate::body::parse_json(&body, "{\"start\"?: \"all\"|\"new\", \"after\"?: position}")?
    };
    let name = ConsumerName::parse(&name).map_err(relay_problem)?;
    // Each role by its own rule (the guard left only fachverfahren and operator): explicit
    // filters are the operator's, for any consumer; without them, a Fachverfahren gets
    // its token's filters on a consumer of its own authority.
    let filters = match request.filter_subjects.clone() {
        Some(filters) if caller.has(Role::Operator) => filters,
        Some(_) => {
            return Err(Problem::forbidden(
                "a Fachverfahren's filters come from its token (authority and services); leave out \"filter_subjects\"",
            ))
        }
        None if caller.has(Role::Fachverfahren) => {
            let (Some(authority), services) = (caller.authority(), caller.services()) else {
                return Err(Problem::forbidden("the token names no authority"));
            };
            if owner(&name) != Some(authority.as_str()) {
                return Err(Problem::forbidden(format!(
                    "consumers of authority {authority} are named {authority}-<name>, where <name> has letters, digits and `_` but no `-` (e.g. {authority}-wohngeld); this name is not one of them"
                )));
            }
            let filters = fachverfahren_filters(&link.config.prefix, authority, services);
            claim(&state, link, &name, caller.subject()).await?;
            filters
        }
        None => {
            return Err(Problem::bad_request(
                "invalid-body",
                "an operator sets up a consumer with explicit \"filter_subjects\"",
            ))
        }
    };
    let start = match (request.after, request.start) {
        (Some(p), _) => DeliverFrom::After(p),
        (None, Some(Start::New)) => DeliverFrom::New,
        (None, _) => DeliverFrom::All,
    };
    let context = link.context().await.map_err(relay_problem)?;
    let info = relay::ensure_consumer(context, &link.config.stream, &name, &filters, start)
        .await
        .map_err(relay_problem)?;
    Ok(Json(ConsumerView {
        stream: link.config.stream.clone(),
        consumer: name.as_str().to_owned(),
        filter_subjects: filters,
        pending: info.num_pending,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_consumer_name_has_at_most_one_owner() {
        let owner_of = |name: &str| {
            let name = ConsumerName::parse(name).expect("name");
            owner(&name).map(str::to_owned)
        };
        assert_eq!(
            owner_of("lra-meissen-wohngeld").as_deref(),
            Some("lra-meissen")
        );
        // `lra` is a prefix of `lra-meissen`, but the name is not `lra`'s.
        assert_eq!(owner_of("lra-meissen").as_deref(), Some("lra"));
        assert_eq!(owner_of("lra-parken_2").as_deref(), Some("lra"));
        assert_eq!(
            owner_of("14612000-ordnungsamt-fv").as_deref(),
            Some("14612000-ordnungsamt")
        );
        for nobodys in ["ops_all", "lra-", "-wohngeld"] {
            assert_eq!(owner_of(nobodys), None, "{nobodys}");
        }
    }
}
