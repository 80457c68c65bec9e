//! Domain modules: how a business domain (consents, Anträge, Zahlungen, Beteiligung and others)
//! enters the service.
//!
//! A domain lives in a folder of its own in each crate — `domain/src/<d>/` (deciders and
//! events), `projections/src/<d>/` (read models), `api/src/<d>/` (routes and jobs) — and
//! its `api` folder exports one [`DomainModule`] value naming everything the core needs of
//! it: its routes with their OpenAPI description, its read models, the stream categories
//! only it may write, its background jobs with their flags, its `bench` subcommand, its
//! part of a data subject's access export (Art. 15 GDPR) and of the processing overview
//! (Art. 30), the retention duties that forbid erasing a subject (Art. 17 (3) (b)), and its
//! rows of the authorization test matrix. The registry
//! (`crate::domains::MODULES`) lists every module, one line each; the router, the
//! projection runner, `serve`, `bench`, the raw append route, the export, the overview
//! and the core's tests iterate it, so the core never names a domain.
//!
//! The values are `static`, so every part is a plain function pointer or static data.

use std::sync::Arc;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use serde_json::{Map, Value};
use utoipa_axum::router::OpenApiRouter;

use amtsbuch_domain::access::Role;
use amtsbuch_domain::event::SubjectId;
use amtsbuch_domain::newtype::id_of_stream;
use amtsbuch_domain::StreamId;
use amtsbuch_infra::EventStore;
use amtsbuch_projections::Projection;

use crate::problem::Problem;
use crate::AppState;

/// One business domain, as the service sees it. See the module docs.
pub struct DomainModule {
    /// The domain's name, as its folders are named.
    pub name: &'static str,
    /// Its routes, each with its `#[utoipa::path]` description (which also says who may
    /// call it), and the OpenAPI tags they use.
    pub routes: fn() -> OpenApiRouter<AppState>,
    /// Its read models; `serve` runs them and `projections rebuild` knows them.
    pub projections: fn() -> Vec<Arc<dyn Projection>>,
    /// The streams only its routes write.
    pub reserved: Option<Reserved>,
    /// What it runs in the background of `serve`.
    pub jobs: Option<Jobs>,
    /// Its subcommand of `amtsbuch bench`.
    pub bench: Option<Bench>,
    /// Its part of a data subject's access export.
    pub export: Option<ExportPart>,
    /// Its rows of the processing overview.
    pub processing: Option<ProcessingPart>,
    /// The retention duties it holds on data subjects, which forbid erasing them.
    pub retention: Option<RetentionPart>,
    /// How it shreds a data subject's personal data it sealed under keys of its own.
    pub erasure: Option<ErasurePart>,
    /// What it holds against another module's aggregate that must be settled before that
    /// aggregate may take a step its owner makes depend on it (a fee before a submission).
    pub obligations: Option<ObligationPart>,
    /// What the service's own tests need of it.
    pub tests: TestSupport,
}

impl std::fmt::Debug for DomainModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DomainModule")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Stream categories whose streams are written only by a module's own routes, which
/// decide each event against its aggregate's rules: an event appended around them (through
/// `POST /streams/{stream}/events`) could record what the rules forbid, and the module's
/// read models would believe it. A stream is reserved when it has one of the categories
/// and a UUID for its id, the form the module's own streams have.
#[derive(Debug, Clone, Copy)]
pub struct Reserved {
    pub categories: &'static [&'static str],
    /// The title of the `403 reserved-stream` problem.
    pub title: &'static str,
    /// Its detail; `{stream}` stands for the stream id.
    pub detail: &'static str,
}

impl Reserved {
    /// Whether `stream` is one of these.
    pub fn holds(&self, stream: &StreamId) -> bool {
        self.categories
            .iter()
            .any(|category| id_of_stream(category, stream).is_some())
    }

    /// The problem a raw append to one of these streams gets.
    pub fn problem(&self, stream: &StreamId) -> Problem {
        Problem::new(
            StatusCode::FORBIDDEN,
            "reserved-stream",
            self.title,
            self.detail.replace("{stream}", stream.as_str()),
        )
    }
}

/// Background jobs of `serve`, and the flags that tune them.
#[derive(Debug, Clone, Copy)]
pub struct Jobs {
    /// Adds the jobs' flags (with their `AMTSBUCH_*` environment fallbacks) to `serve`.
    pub args: fn(clap::Command) -> clap::Command,
    /// Starts the jobs with the flags `serve` was given. The tasks are aborted when the
    /// server stops; each takes a `Lease` if it must run once per database.
    pub spawn: fn(&AppState, &clap::ArgMatches) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>>,
}

/// A subcommand of `amtsbuch bench` that prints figures.
#[derive(Debug, Clone, Copy)]
pub struct Bench {
    /// The subcommand: its name (the module's, by convention) and flags.
    pub command: fn() -> clap::Command,
    /// Runs it with the flags given; the report to print.
    pub run: fn(clap::ArgMatches) -> BoxFuture<'static, anyhow::Result<String>>,
}

/// A module's members of a data subject's access export (Art. 15 GDPR).
#[derive(Debug, Clone, Copy)]
pub struct ExportPart {
    /// The read models the part is built from: the export waits until they have reached
    /// the log's head, so it misses nothing committed before the request.
    pub read_models: &'static [&'static str],
    /// The part's members of the export, for the subject, as the export stood at the
    /// given instant (`generated_at`). Every module names members of its own.
    pub build: BuildExport,
}

/// Builds a module's members of the access export.
pub type BuildExport = for<'a> fn(
    &'a AppState,
    SubjectId,
    DateTime<Utc>,
) -> BoxFuture<'a, Result<Map<String, Value>, Problem>>;

/// Lists a module's rows of the processing overview.
pub type ListRows = for<'a> fn(&'a AppState) -> BoxFuture<'a, Result<Vec<Value>, Problem>>;

/// A module's rows of the processing overview (Art. 30 GDPR).
#[derive(Debug, Clone, Copy)]
pub struct ProcessingPart {
    /// The read models the rows come from; the overview waits for them.
    pub read_models: &'static [&'static str],
    pub rows: ListRows,
}

/// A module's retention duties (Art. 17 (3) (b) GDPR): the holds a legal obligation of the
/// module's places on a data subject — an open procedure, a record that must be kept for a
/// period. The erasure of a subject asks every module and is refused while any reports an
/// active hold, naming each with its reason and end.
#[derive(Debug, Clone, Copy)]
pub struct RetentionPart {
    /// The read models the holds are found with; the erasure waits for them.
    pub read_models: &'static [&'static str],
    /// The subject's holds active at the given instant. The core fills in each hold's
    /// `module`.
    pub holds: ListHolds,
}

/// Lists a module's holds on a subject active at an instant.
pub type ListHolds =
    for<'a> fn(&'a AppState, SubjectId, DateTime<Utc>) -> BoxFuture<'a, Result<Vec<Hold>, Problem>>;

/// One active retention hold a module reports on a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    /// The module that holds it (filled in by [`subject_holds`]).
    pub module: &'static str,
    /// Why, in the module's words (`open_procedure`, `closed_procedure`, …).
    pub reason: String,
    /// When the duty ends; `None` while it is open-ended (a procedure not yet closed).
    pub until: Option<DateTime<Utc>>,
    /// What the duty attaches to: a stream of the module's (`application-<uuid>`).
    pub reference: String,
}

impl Hold {
    /// The hold as a member of the `retention-hold` problem's `holds`.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "module": self.module,
            "reason": self.reason,
            "until": self.until.as_ref().map(amtsbuch_domain::record::format_timestamp),
            "reference": self.reference,
        })
    }
}

/// Every hold any module reports on `subject` at `now`, once the read models they are found
/// with have caught up with the log; open-ended holds first, then the one ending last first.
pub async fn subject_holds(
    state: &AppState,
    modules: &[&DomainModule],
    subject: SubjectId,
    now: DateTime<Utc>,
) -> Result<Vec<Hold>, Problem> {
    let parts: Vec<(&'static str, RetentionPart)> = modules
        .iter()
        .filter_map(|m| Some((m.name, m.retention?)))
        .collect();
    let read_models: Vec<&str> = parts
        .iter()
        .flat_map(|(_, part)| part.read_models.iter().copied())
        .collect();
    crate::command::read_models_current(state, &read_models).await?;
    let mut holds = Vec::new();
    for (module, part) in parts {
        for mut hold in (part.holds)(state, subject, now).await? {
            hold.module = module;
            holds.push(hold);
        }
    }
    holds.sort_by(|a, b| match (a.until, b.until) {
        (None, None) => std::cmp::Ordering::Equal,
        (None, Some(_)) => std::cmp::Ordering::Less,
        (Some(_), None) => std::cmp::Ordering::Greater,
        (Some(a), Some(b)) => b.cmp(&a),
    });
    Ok(holds)
}

/// What a module holds against an aggregate of another module (by its stream): an
/// obligation such as a fee, each either settled or not. The module that owns the
/// aggregate decides which of its steps wait for the obligations to be settled, and asks
/// every module through [`stream_obligations`] without naming one; the module holding an
/// obligation decides what it is and when it counts as settled. Answers come from the
/// holder's own streams (not read models), so they never lag behind the log. Answering
/// only reads: the step that asks may still be refused (for the obligation or for any
/// other reason), and a refused step records nothing.
#[derive(Debug, Clone, Copy)]
pub struct ObligationPart {
    pub list: ListObligations,
}

/// Lists a module's obligations against the aggregate of a stream.
pub type ListObligations =
    for<'a> fn(&'a AppState, &'a StreamId) -> BoxFuture<'a, Result<Vec<Obligation>, Problem>>;

/// One obligation a module holds against an aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Obligation {
    /// The module that holds it (filled in by [`stream_obligations`]).
    pub module: &'static str,
    /// What it is, by a stream of the holder's (`receivable-<uuid>`), for the caller to act
    /// on (to pay it, say).
    pub reference: String,
    /// Whether it is settled.
    pub settled: bool,
    /// Why it is (not) settled, in the holder's words, for a problem's detail.
    pub detail: String,
}

impl Obligation {
    /// The obligation as a member of a problem's `obligations`.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "module": self.module,
            "reference": self.reference,
            "settled": self.settled,
            "detail": self.detail,
        })
    }
}

/// Every obligation any module holds against the aggregate of `stream`.
pub async fn stream_obligations(
    state: &AppState,
    modules: &[&DomainModule],
    stream: &StreamId,
) -> Result<Vec<Obligation>, Problem> {
    let mut all = Vec::new();
    for (module, part) in modules
        .iter()
        .filter_map(|m| Some((m.name, m.obligations?)))
    {
        for mut obligation in (part.list)(state, stream).await? {
            obligation.module = module;
            all.push(obligation);
        }
    }
    Ok(all)
}

/// How a module takes part in the erasure of a data subject (Art. 17 GDPR), for personal
/// data it seals under keys other than the subject's own (an application's, so that one
/// expired draft can be shredded alone): the erasure destroys the subject's own keys, and
/// asks each module to destroy the keys of what belongs to the subject. Runs after the
/// retention holds were checked (none is active), before the subject's keys are destroyed.
#[derive(Debug, Clone, Copy)]
pub struct ErasurePart {
    /// The read models the subject's data is found with; the erasure waits for them.
    pub read_models: &'static [&'static str],
    /// Whether the module holds anything of the subject (an unknown subject is not erased).
    pub knows: KnowsSubject,
    /// Shreds the module's personal data of the subject at the given instant; safe to
    /// repeat. What it shredded, by stream (`application-<uuid>`), for the answer.
    pub shred: ShredSubject,
}

/// Whether a module holds anything of a subject.
pub type KnowsSubject = for<'a> fn(&'a AppState, SubjectId) -> BoxFuture<'a, Result<bool, Problem>>;

/// Shreds a module's personal data of a subject.
pub type ShredSubject = for<'a> fn(
    &'a AppState,
    SubjectId,
    DateTime<Utc>,
) -> BoxFuture<'a, Result<Vec<String>, Problem>>;

/// Whether any module holds anything of `subject`, once their read models caught up.
pub async fn subject_known(
    state: &AppState,
    modules: &[&DomainModule],
    subject: SubjectId,
) -> Result<bool, Problem> {
    let parts: Vec<ErasurePart> = modules.iter().filter_map(|m| m.erasure).collect();
    let read_models: Vec<&str> = parts
        .iter()
        .flat_map(|part| part.read_models.iter().copied())
        .collect();
    crate::command::read_models_current(state, &read_models).await?;
    for part in parts {
        if (part.knows)(state, subject).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Asks every module to shred its personal data of `subject`, once the read models it is
/// found with have caught up: what each shredded, by module, leaving out modules that
/// shredded nothing.
pub async fn shred_subject(
    state: &AppState,
    modules: &[&DomainModule],
    subject: SubjectId,
    at: DateTime<Utc>,
) -> Result<Map<String, Value>, Problem> {
    let read_models: Vec<&str> = modules
        .iter()
        .filter_map(|m| m.erasure)
        .flat_map(|part| part.read_models.iter().copied())
        .collect();
    crate::command::read_models_current(state, &read_models).await?;
    let mut shredded = Map::new();
    for (module, part) in modules.iter().filter_map(|m| Some((m.name, m.erasure?))) {
        let streams = (part.shred)(state, subject, at).await?;
        if !streams.is_empty() {
            shredded.insert(module.to_owned(), streams.into());
        }
    }
    Ok(shredded)
}

/// What the service's own tests (`api/tests/access.rs`, `api/tests/openapi.rs`) need of
/// a module, so that they cover every registered module without naming one.
#[derive(Debug, Clone, Copy)]
pub struct TestSupport {
    /// Who may call each of the module's operations: its rows of the authorization
    /// matrix. Written out apart from the routes' annotations on purpose, so that a change
    /// of who may call a route is a change of this table too; the matrix test fails when
    /// an operation of the document has no row.
    pub access: &'static [AccessRow],
    /// Operations that change the sample data for good, in the order in which they must
    /// run after every other operation.
    pub last: &'static [(&'static str, &'static str)],
    /// The sample data: what makes each of the module's operations succeed.
    pub samples: &'static dyn Samples,
}

/// One row of the authorization matrix: an operation as documented, the roles that may
/// call it (`None`: everybody, without a token), and whose data it acts on.
#[derive(Debug, Clone, Copy)]
pub struct AccessRow {
    pub method: &'static str,
    pub path: &'static str,
    pub roles: Option<&'static [Role]>,
    pub target: Target,
}

impl AccessRow {
    /// An operation the roles `roles` may call, acting on `target`'s data.
    pub const fn roles(
        method: &'static str,
        path: &'static str,
        roles: &'static [Role],
        target: Target,
    ) -> Self {
        Self {
            method,
            path,
            roles: Some(roles),
            target,
        }
    }
}

/// Whose data an operation acts on, and how far each of its roles reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// No data subject of the caller's: the samples send the same request for every
    /// caller.
    Nobody,
    /// A data subject (an account, or what belongs to one) named in the path or body.
    /// The roles in `own_only` may act for their own account only, the operation's other
    /// roles for every subject.
    Subject { own_only: &'static [Role] },
    /// A data subject as in `Subject`, whose data does not exist for a caller it does not
    /// reach: the handler answers `404 not-found`, exactly as for data that does not exist,
    /// so that a refusal tells neither that it exists nor in what state.
    HiddenSubject { own_only: &'static [Role] },
}

/// The named sample values of the tests (ids, mostly): `account`, `consent`, …
pub type SampleValues = std::collections::BTreeMap<String, String>;

/// What a test needs to call the module's operations with data that makes them succeed.
pub trait Samples: Send + Sync + std::fmt::Debug {
    /// Values before anything is seeded (ids that need not exist). `citizen` is the
    /// account a citizen's test token is bound to.
    fn values(&self, citizen: &str) -> SampleValues;

    /// Seeds the data every operation of the module needs, through `app` (as the holder of
    /// `operator`, an operator's token) and `state`, and records its ids in `values`.
    fn seed<'a>(
        &'a self,
        app: &'a axum::Router,
        state: &'a AppState,
        operator: &'a str,
        values: &'a mut SampleValues,
    ) -> BoxFuture<'a, ()>;

    /// The value of the path parameter `param` of a route whose path begins with the
    /// segment `first`, if the route is the module's.
    fn param(&self, values: &SampleValues, first: &str, param: &str) -> Option<String>;

    /// The value of the path parameter `param` of the documented route `path` (all of it,
    /// `/accounts/{id}/deletion-request`), if the route is the module's. By default what
    /// `param` gives for the route's first segment; a module overrides it where routes under
    /// one segment need different samples.
    fn path_param(&self, values: &SampleValues, path: &str, param: &str) -> Option<String> {
        let first = path.split('/').nth(1).unwrap_or_default();
        self.param(values, first, param)
    }

    /// A valid body for the operation `method path`, if it is the module's and takes one.
    fn body(&self, values: &SampleValues, method: &str, path: &str) -> Option<Value>;

    /// The query (without `?`) the operations on `path` need to succeed, if the path is
    /// the module's and they need one. None, unless the module says so.
    fn query(&self, _values: &SampleValues, _path: &str) -> Option<String> {
        None
    }

    /// Request headers the operation `method path` needs to succeed (an idempotency key, a
    /// signature over the sample body), if it is the module's. None, unless the module
    /// says so.
    fn headers(&self, _values: &SampleValues, _method: &str, _path: &str) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Makes the seeded data outlive every operation of the module (an erasure, say), for
    /// tests that call each operation many times over. Nothing, unless the module says so.
    fn keep<'a>(
        &'a self,
        _app: &'a axum::Router,
        _state: &'a AppState,
        _operator: &'a str,
        _values: &'a SampleValues,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }
}

/// A data subject's access export (Art. 15 GDPR): the core's members — what it is, the
/// subject, when it was made, the log's head then, how to verify it — and every module's
/// part. Waits first for every read model a part is built from.
pub async fn subject_export(
    state: &AppState,
    modules: &[&DomainModule],
    subject: SubjectId,
) -> Result<Value, Problem> {
    let head = state.store.head().await?.position;
    let read_models: Vec<&str> = modules
        .iter()
        .filter_map(|m| m.export)
        .flat_map(|part| part.read_models.iter().copied())
        .collect();
    crate::command::read_models_current(state, &read_models).await?;
    let now = Utc::now();
    let mut export = Map::new();
    export.insert("kind".into(), "amtsbuch-art15-export".into());
    export.insert("subject".into(), subject.to_string().into());
    export.insert(
        "generated_at".into(),
        amtsbuch_domain::record::format_timestamp(&now).into(),
    );
    export.insert("log_head".into(), head.into());
    for (module, part) in modules.iter().filter_map(|m| Some((m.name, m.export?))) {
        for (member, value) in (part.build)(state, subject, now).await? {
            if export.insert(member.clone(), value).is_some() {
                return Err(Problem::internal(&format!(
                    "the export member {member} of module {module} is named twice"
                )));
            }
        }
    }
    export.insert(
        "verify".into(),
        "every event's leaf_hash is SHA-256(0x00 || stored record); GET /ledger/proof/inclusion?event_id=… proves it is in the signed log".into(),
    );
    Ok(Value::Object(export))
}

/// The processing overview (Art. 30 GDPR): every module's rows, once the read models they
/// come from have caught up with the log.
pub async fn processing_overview(
    state: &AppState,
    modules: &[&DomainModule],
) -> Result<Vec<Value>, Problem> {
    let parts: Vec<ProcessingPart> = modules.iter().filter_map(|m| m.processing).collect();
    let read_models: Vec<&str> = parts
        .iter()
        .flat_map(|part| part.read_models.iter().copied())
        .collect();
    crate::command::read_models_current(state, &read_models).await?;
    let mut rows = Vec::new();
    for part in parts {
        rows.extend((part.rows)(state).await?);
    }
    Ok(rows)
}

/// Refuses a raw append to a stream some module reserves.
pub fn refuse_reserved(modules: &[&DomainModule], stream: &StreamId) -> Result<(), Problem> {
    match modules
        .iter()
        .filter_map(|m| m.reserved)
        .find(|r| r.holds(stream))
    {
        Some(reserved) => Err(reserved.problem(stream)),
        None => Ok(()),
    }
}

/// The `amtsbuch` command line with every module's flags of `serve` and its subcommand of
/// `bench`.
pub fn command_line(command: clap::Command, modules: &[&DomainModule]) -> clap::Command {
    command
        .mut_subcommand("serve", |serve| {
            modules
                .iter()
                .filter_map(|m| m.jobs)
                .fold(serve, |serve, jobs| (jobs.args)(serve))
        })
        .mut_subcommand("bench", |bench| {
            modules
                .iter()
                .filter_map(|m| m.bench)
                .fold(bench, |bench, b| bench.subcommand((b.command)()))
        })
}

/// The module bench the command line asks for, with its flags: `bench <name> …` where
/// `<name>` is a module's bench.
pub fn bench_asked(
    matches: &clap::ArgMatches,
    modules: &[&DomainModule],
) -> Option<(Bench, clap::ArgMatches)> {
    let (_, bench) = matches.subcommand().filter(|(name, _)| *name == "bench")?;
    let (name, args) = bench.subcommand()?;
    modules
        .iter()
        .filter_map(|m| m.bench)
        .find(|b| (b.command)().get_name() == name)
        .map(|b| (b, args.clone()))
}

/// Start every module's background jobs with the flags `serve` was given.
pub fn spawn_jobs(
    state: &AppState,
    modules: &[&DomainModule],
    serve: &clap::ArgMatches,
) -> anyhow::Result<Vec<tokio::task::JoinHandle<()>>> {
    let mut handles = Vec::new();
    for jobs in modules.iter().filter_map(|m| m.jobs) {
        handles.extend((jobs.spawn)(state, serve)?);
    }
    Ok(handles)
}
