//! The participation domain's public routes through the router, on SQLite and on
//! PostgreSQL: the search with its filters and its refusals of bad input (B4), a procedure
//! and its rounds, the published contributions — comments under their pseudonyms, formal
//! statements counted and never shown (B2's privacy half) —, an author's erasure, after
//! which the comment reads as removed, no plaintext is left in the log and the log still
//! verifies, the moderation log and the calendar.
//!
//! The history is made by the domain's commands through the service's command path
//! (`command::execute`, sealing what participants wrote), as the participant and organiser
//! routes will; every answer is checked against the OpenAPI document.

use std::path::PathBuf;

use axum::body::Body;
use axum::http::StatusCode;
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use amtsbuch_api::command::{current, execute, refused, Meta};
use amtsbuch_api::hub::HubLimits;
use amtsbuch_api::AppState;
use amtsbuch_domain::access::Role;
use amtsbuch_domain::participation::contribution::{
    Content, ContributionCommand, ContributionState, Submit,
};
use amtsbuch_domain::participation::procedure::{
    DraftProcedure, ProcedureCommand, ProcedureState, ScheduleRound,
};
use amtsbuch_domain::participation::{
    Ags, ContributionId, ContributionKind, ContributionText, DocumentRef, Format, Geometry,
    ParticipantId, Position, ProcedureId, Pseudonym, RoundId, Sha256Hex, Stage, Title, Topic,
};
use amtsbuch_domain::tlog_proof::{self, Leaf, TlogProof};
use amtsbuch_domain::AuthorityId;
use amtsbuch_infra::{AnyStore, EventStore};

use amtsbuch_testkit_api as common;
use common::schema::conforms;
use common::Reply;

struct Env {
    app: Router,
    state: AppState,
    store: AnyStore,
    doc: Value,
    runner: Option<amtsbuch_projections::RunnerHandle>,
    ledger: tokio::task::JoinHandle<()>,
    /// The database, removed when the `Env` goes.
    _db: common::TestDb,
    /// A second API node on the same database, with its own connections (on SQLite, whose
    /// file belongs to one process, the same node).
    second: Router,
}

impl Env {
    /// A server on a fresh database of `adapter`, and a second API node on the same
    /// database (on SQLite, where a file belongs to one process, on the same store).
    async fn start(adapter: common::Adapter) -> Self {
        let db = common::TestDb::fresh(adapter).await;
        let store = db.store.clone();
        let other = db.other_process().await;
        let kek = keyring(db.dir());
        let first_sealer = sealer(&store, &kek);
        let ledger = amtsbuch_infra::ledger::spawn(
            store.clone(),
            amtsbuch_infra::ledger::LedgerConfig {
                origin: common::ORIGIN.into(),
                signers: vec![common::ledger_signer()],
                every_events: 1,
                interval: std::time::Duration::from_millis(20),
            },
        );
        let ledger_info = amtsbuch_api::state::LedgerInfo {
            origin: common::ORIGIN.into(),
            vkeys: vec![common::ledger_signer().vkey()],
        };
        let mut state = common::state_with(&store, Some(ledger_info), HubLimits::default()).await;
        state.sealer = Some(first_sealer);
        let runner =
            amtsbuch_projections::spawn(store.clone(), amtsbuch_api::domains::projections());
        let mut second_state = common::state_with(&other, None, HubLimits::default()).await;
        second_state.sealer = Some(sealer(&other, &kek));
        Self {
            second: amtsbuch_api::router(second_state),
            app: amtsbuch_api::router(state.clone()),
            state,
            store,
            doc: serde_json::to_value(amtsbuch_api::router::openapi()).expect("document"),
            runner: Some(runner),
            ledger,
            _db: db,
        }
    }

    async fn close(mut self) {
        self.ledger.abort();
        if let Some(runner) = self.runner.take() {
            runner.shutdown().await;
        }
    }

    /// `method uri` with `token` and `body`, checked against the document's operation
    /// `path`; must answer `status`. The body as JSON.
    async fn send(
        &self,
        status: StatusCode,
        method: &str,
        path: &str,
        uri: &str,
        token: &str,
        body: Option<Value>,
    ) -> Value {
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        let reply = common::send(&self.app, common::request(method, uri, Some(token), body)).await;
        conforms(&self.doc, method, path, &reply);
        assert_eq!(
            reply.status,
            status,
            "{method} {uri}: {}",
            String::from_utf8_lossy(&reply.bytes)
        );
        reply.json()
    }

    /// `GET uri` without a token, checked against the document's operation `path`.
    async fn get(&self, path: &str, uri: &str) -> Reply {
        let reply = common::send(&self.app, common::request("GET", uri, None, Body::empty())).await;
        conforms(&self.doc, "GET", path, &reply);
        reply
    }

    async fn ok(&self, path: &str, uri: &str) -> Value {
        let reply = self.get(path, uri).await;
        assert_eq!(
            reply.status,
            StatusCode::OK,
            "{uri}: {}",
            String::from_utf8_lossy(&reply.bytes)
        );
        reply.json()
    }

    async fn refused(&self, path: &str, uri: &str, status: StatusCode, kind: &str) {
        let reply = self.get(path, uri).await;
        assert_eq!(
            reply.status,
            status,
            "{uri}: {}",
            String::from_utf8_lossy(&reply.bytes)
        );
        assert_eq!(reply.media_type(), "application/problem+json", "{uri}");
        assert_eq!(
            reply.json()["type"],
            format!("urn:amtsbuch:problem:{kind}"),
            "{uri}"
        );
    }

    async fn procedure(&self, pid: ProcedureId, command: ProcedureCommand) -> ProcedureState {
        execute::<ProcedureState>(
            &self.state,
            &pid.stream_id(),
            &command,
            |e| refused("procedure-refused", e),
            &Meta::system("test"),
        )
        .await
        .expect("procedure command")
        .state
    }

    /// Drafts a procedure; unless `draft_only`, announces it and opens a round now.
    async fn open(
        &self,
        n: u128,
        format: Format,
        title: &str,
        ags: &str,
        at: (f64, f64),
        draft_only: bool,
    ) -> ProcedureId {
        let pid = ProcedureId(Uuid::now_v7());
        self.procedure(
            pid,
            ProcedureCommand::Draft(DraftProcedure {
                procedure_id: pid,
                authority: AuthorityId::parse("stadt-dresden").expect("authority"),
                format,
                title: Title::parse(title).expect("title"),
                topics: vec![Topic::parse("wohnen").expect("topic")],
                region: Ags::parse(ags).expect("ags"),
                geometry: Some(Geometry::Point {
                    coordinates: Position::new(at.0, at.1).expect("position"),
                }),
                accepts_late: false,
                report_threshold: None,
                survey: None,
                at: Utc::now(),
            }),
        )
        .await;
        if draft_only {
            return pid;
        }
        self.procedure(pid, ProcedureCommand::Announce { at: Utc::now() })
            .await;
        let start = Utc::now() + chrono::Duration::milliseconds(2);
        let stage = (format == Format::Bauleitplanung).then_some(Stage::Auslegung32);
        self.procedure(
            pid,
            ProcedureCommand::ScheduleRound(ScheduleRound {
                round_id: RoundId(Uuid::now_v7()),
                stage,
                starts_at: start,
                ends_at: start + chrono::Duration::days(31),
                documents: vec![DocumentRef {
                    sha256: Sha256Hex::parse(&format!("{n:064x}")).expect("hash"),
                    size: 4096,
                    title: Title::parse("Planzeichnung").expect("title"),
                }],
                preclusion_notice: true,
                at: start,
            }),
        )
        .await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        pid
    }

    async fn contribute(
        &self,
        pid: ProcedureId,
        kind: ContributionKind,
        author: ParticipantId,
        pseudonym: Option<&str>,
        text: &str,
    ) -> ContributionId {
        let (procedure, _) = current::<ProcedureState>(&self.state, &pid.stream_id())
            .await
            .expect("procedure");
        let cid = ContributionId(Uuid::now_v7());
        let command = ContributionCommand::Submit(Submit {
            contribution_id: cid,
            procedure: procedure.procedure().expect("drafted"),
            kind,
            author,
            content: Content {
                pseudonym: pseudonym.map(|p| Pseudonym::parse(p).expect("pseudonym")),
                text: Some(ContributionText::parse(text).expect("text")),
                ..Content::default()
            },
            attachments: vec![],
            choices: Default::default(),
            at: Utc::now(),
        });
        execute::<ContributionState>(
            &self.state,
            &cid.stream_id(),
            &command,
            |e| refused("contribution-refused", e),
            &Meta::system("test"),
        )
        .await
        .expect("contribution");
        cid
    }

    async fn caught_up(&self) {
        common::read_models_caught_up(&self.store).await;
    }

    /// Every stored record, as text.
    async fn log_text(&self) -> String {
        let events = self.store.read_all(0, 10_000).await.expect("log");
        events
            .iter()
            .map(|e| String::from_utf8_lossy(&e.bytes).into_owned())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// A key-encryption key generated into `dir`, for every node of a test: its file.
fn keyring(dir: &std::path::Path) -> PathBuf {
    let path = dir.join("kek");
    let id = amtsbuch_domain::seal::KeyId::parse("kek-test").expect("KEK id");
    amtsbuch_infra::kek::generate_kek_file(&path, &id).expect("generate KEK");
    path
}

fn sealer(store: &AnyStore, kek: &std::path::Path) -> amtsbuch_infra::sealer::Sealer {
    let keyring = amtsbuch_infra::kek::load_keyring(&[kek.to_path_buf()]).expect("load KEK");
    amtsbuch_infra::sealer::Sealer::new(amtsbuch_infra::vault::KeyVault::new(
        store.clone(),
        keyring,
    ))
}

fn ids(body: &Value) -> Vec<String> {
    let mut ids: Vec<String> = body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["id"].as_str().map(str::to_owned))
        .collect();
    ids.sort();
    ids
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

const DRESDEN: (f64, f64) = (13.7373, 51.0504);
const LEIPZIG: (f64, f64) = (12.3731, 51.3397);
const STATEMENT: &str = "Die geplante Bebauung verschattet unser Grundstück vollständig.";
const COMMENT: &str = "Bitte einen sicheren Radweg entlang der Elbe.";

/// B4 over HTTP, and the refusals of bad input: each a 400 problem.
async fn the_search_filters_and_refuses_bad_input(env: Env) {
    let bplan = env
        .open(
            1,
            Format::Bauleitplanung,
            "Bebauungsplan Nr. 357 Dresden-Johannstadt",
            "14612000",
            DRESDEN,
            false,
        )
        .await;
    let dialog = env
        .open(
            2,
            Format::Dialog,
            "Radverkehrskonzept Leipzig",
            "14713000",
            LEIPZIG,
            false,
        )
        .await;
    let draft = env
        .open(
            3,
            Format::Bauleitplanung,
            "Bebauungsplan Dresden-Plauen",
            "14612000",
            DRESDEN,
            true,
        )
        .await;
    env.caught_up().await;
    let (b, d) = (bplan.to_string(), dialog.to_string());
    let search = |q: &str| format!("/participations?{q}");
    let p = "/participations";
    assert_eq!(ids(&env.ok(p, p).await), sorted(vec![b.clone(), d.clone()]));
    assert_eq!(
        ids(&env.ok(p, &search("status=active")).await),
        sorted(vec![b.clone(), d.clone()])
    );
    assert_eq!(
        ids(&env
            .ok(
                p,
                &search("status=active&format=bauleitplanung&ags=14612000")
            )
            .await),
        vec![b.clone()]
    );
    assert_eq!(
        ids(&env.ok(p, &search("status=archived")).await),
        Vec::<String>::new()
    );
    assert_eq!(
        ids(&env.ok(p, &search("q=Johannstadt")).await),
        vec![b.clone()]
    );
    assert_eq!(
        ids(&env.ok(p, &search("q=Radverkehrskonzept%20Leipzig")).await),
        vec![d.clone()]
    );
    assert_eq!(
        ids(&env.ok(p, &search("bbox=12.2,51.2,12.5,51.5")).await),
        vec![d.clone()]
    );
    assert_eq!(
        ids(&env
            .ok(p, &search("topic=wohnen&authority=stadt-dresden"))
            .await)
        .len(),
        2
    );
    assert_eq!(
        ids(&env.ok(p, &search("from=2099-01-01T00:00:00Z")).await),
        Vec::<String>::new()
    );
    let page = env.ok(p, &search("limit=1")).await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(page["items"][0]["status"], "active");

    for bad in [
        "bbox=0,0,200,0",
        "bbox=13,51,12,52",
        "bbox=1,2,3",
        "status=draft",
        "status=open",
        "format=petition",
        "ags=15000000",
        "ags=1461200",
        "topic=Wohnen",
        "from=yesterday",
        "from=2026-05-01T00:00:00%2B02:00",
        "from=2026-05-01%2000:00:00Z",
        "from=%2B262142-05-01T00:00:00Z",
        "to=2026-05-01T00:00:00.1234567Z",
        "from=2026-05-01T00:00:00Z&to=2026-04-01T00:00:00Z",
        "limit=0",
        "limit=101",
        "sort=title",
    ] {
        env.refused(p, &search(bad), StatusCode::BAD_REQUEST, "invalid-query")
            .await;
    }
    let one = "/participations/{id}";
    env.refused(
        one,
        &format!("/participations/{draft}"),
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    env.refused(
        one,
        "/participations/not-an-id",
        StatusCode::NOT_FOUND,
        "not-found",
    )
    .await;
    let shown = env.ok(one, &format!("/participations/{b}")).await;
    assert_eq!(shown["stage"], "auslegung32");
    assert_eq!(shown["rounds"][0]["documents"][0]["size"], 4096);
    let calendar = env
        .ok("/participations/calendar", "/participations/calendar")
        .await;
    assert_eq!(calendar["items"].as_array().map(Vec::len), Some(2));
    env.refused(
        "/participations/calendar",
        "/participations/calendar?from=2026-01-01T00:00:00Z&to=2028-01-01T00:00:00Z",
        StatusCode::BAD_REQUEST,
        "invalid-query",
    )
    .await;
    env.close().await;
}

/// Statements are counted, never shown; comments are shown under their pseudonyms, and
/// once their author is erased they read as removed, the log holds no plaintext and
/// still verifies.
async fn contributions_are_public_as_their_kind_allows_and_erasure_removes_them(env: Env) {
    let bplan = env
        .open(
            1,
            Format::Bauleitplanung,
            "Bebauungsplan Nr. 357 Dresden-Johannstadt",
            "14612000",
            DRESDEN,
            false,
        )
        .await;
    let dialog = env
        .open(
            2,
            Format::Dialog,
            "Radverkehrskonzept Leipzig",
            "14713000",
            LEIPZIG,
            false,
        )
        .await;
    let citizen = ParticipantId(Uuid::now_v7());
    let commenter = ParticipantId(Uuid::now_v7());
    env.contribute(bplan, ContributionKind::Statement, citizen, None, STATEMENT)
        .await;
    let comment = env
        .contribute(
            dialog,
            ContributionKind::Comment,
            commenter,
            Some("Radlerin"),
            COMMENT,
        )
        .await;
    env.caught_up().await;
    let list = "/participations/{id}/contributions";

    let statements = env
        .ok(list, &format!("/participations/{bplan}/contributions"))
        .await;
    assert_eq!(statements["count"], 1);
    assert_eq!(statements["items"].as_array().map(Vec::len), Some(0));
    assert!(!statements.to_string().contains("verschattet"));
    let shown = env
        .ok("/participations/{id}", &format!("/participations/{bplan}"))
        .await;
    assert_eq!(shown["contributions"], 1);

    let comments = env
        .ok(list, &format!("/participations/{dialog}/contributions"))
        .await;
    assert_eq!(comments["count"], 1);
    assert_eq!(comments["items"][0]["id"], comment.to_string());
    assert_eq!(comments["items"][0]["text"], COMMENT);
    assert_eq!(comments["items"][0]["pseudonym"], "Radlerin");
    assert_eq!(comments["items"][0]["removed"], false);
    assert_eq!(comments["items"][0]["answer"], "not_answered");
    assert!(
        !comments.to_string().contains(&commenter.to_string()),
        "no author id in public"
    );
    let log = env.log_text().await;
    assert!(!log.contains("verschattet") && !log.contains("Radweg") && !log.contains("Radlerin"));

    // Erasure destroys the author's key: the comment reads as removed.
    let sealer = env.state.sealer.as_ref().expect("sealer");
    sealer
        .vault()
        .destroy(&amtsbuch_domain::SubjectId(commenter.0).into())
        .await
        .expect("erase the commenter");
    let after = env
        .ok(list, &format!("/participations/{dialog}/contributions"))
        .await;
    assert_eq!(after["count"], 1);
    assert_eq!(after["items"][0]["removed"], true);
    assert_eq!(after["items"][0]["text"], Value::Null);
    assert_eq!(after["items"][0]["pseudonym"], Value::Null);
    let verdict = amtsbuch_api::cli::verify::verify_store(&env.store, |_, _| {})
        .await
        .expect("verify");
    assert!(
        matches!(verdict, amtsbuch_api::cli::verify::Verdict::Intact { .. }),
        "{verdict:?}"
    );

    let moderation = env
        .ok(
            "/participations/{id}/moderation-log",
            &format!("/participations/{dialog}/moderation-log"),
        )
        .await;
    assert_eq!(moderation["entries"].as_array().map(Vec::len), Some(0));
    env.refused(
        list,
        &format!("/participations/{dialog}/contributions?limit=0"),
        StatusCode::BAD_REQUEST,
        "invalid-query",
    )
    .await;
    env.close().await;
}

fn citizen(account: Uuid) -> String {
    let mut request = common::request_for(Role::Citizen, "lra-meissen", &[]);
    request.account = Some(account.to_string());
    common::signed(&request)
}

fn ts(t: DateTime<Utc>) -> String {
    amtsbuch_domain::record::format_timestamp(&t)
}

/// B1, B2 and B3 through the organiser's and the participant's routes: a § 3 (2) display
/// of 29 days is refused and one of 31 days taken, a late announcement refused; a
/// statement during the display gets a receipt that verifies against the log's key alone,
/// the public count rises and the text stays private; after the end a statement is
/// refused; three reports hide a comment and a repeated report is refused. Another
/// authority's token is refused on the procedure, a malformed hash never gets in.
async fn organisers_and_participants(env: Env) {
    let organiser = common::token(Role::Authority);
    let stranger = common::token_for(Role::Authority, "stadt-leipzig", &[]);
    let draft = |title: &str, format: &str| json!({ "format": format, "title": title, "region": "14627010", "topics": ["wohnen"] });
    let created = env
        .send(
            StatusCode::CREATED,
            "POST",
            "/participations",
            "/participations",
            &organiser,
            Some(draft("Bebauungsplan Radebeul-Ost", "bauleitplanung")),
        )
        .await;
    let id = created["id"].as_str().expect("id").to_owned();
    let rounds = format!("/participations/{id}/rounds");
    let rounds_path = "/participations/{id}/rounds";
    let doc = json!({ "sha256": "ab".repeat(32), "size": 123_456, "title": "Planzeichnung" });
    let start = Utc::now() + chrono::Duration::days(10);
    let round = |days: i64| json!({ "stage": "auslegung32", "starts_at": ts(start), "ends_at": ts(start + chrono::Duration::days(days)), "documents": [doc.clone()], "preclusion_notice": true });
    let head = env.store.head().await.expect("head").position;
    let refused = env
        .send(
            StatusCode::UNPROCESSABLE_ENTITY,
            "POST",
            rounds_path,
            &rounds,
            &organiser,
            Some(round(29)),
        )
        .await;
    assert_eq!(refused["type"], "urn:amtsbuch:problem:procedure-refused");
    let mut bad_hash = round(31);
    bad_hash["documents"][0]["sha256"] = json!("abc");
    env.send(
        StatusCode::BAD_REQUEST,
        "POST",
        rounds_path,
        &rounds,
        &organiser,
        Some(bad_hash),
    )
    .await;
    // Instants only in the record's spelling: a year beyond 9999 (whose arithmetic would
    // overflow), an offset (which would be converted), a space, a seventh digit.
    for (member, bad) in [
        ("ends_at", "+262142-12-15T00:00:00Z"),
        ("starts_at", "+262142-12-15T00:00:00Z"),
        ("starts_at", "2126-12-15T00:00:00+02:00"),
        ("ends_at", "2126-12-15 00:00:00Z"),
        ("ends_at", "2126-12-15T00:00:00.1234567Z"),
    ] {
        let mut body = round(31);
        body[member] = json!(bad);
        let problem = env
            .send(
                StatusCode::BAD_REQUEST,
                "POST",
                rounds_path,
                &rounds,
                &organiser,
                Some(body),
            )
            .await;
        assert_eq!(
            problem["type"], "urn:amtsbuch:problem:invalid-body",
            "{bad}"
        );
        assert_eq!(problem["pointer"], format!("/{member}"), "{bad}");
    }
    // Another authority's draft is none to the stranger: 404, as for an unknown id.
    let problem = env
        .send(
            StatusCode::NOT_FOUND,
            "POST",
            rounds_path,
            &rounds,
            &stranger,
            Some(round(31)),
        )
        .await;
    assert_eq!(problem["detail"], "no such participation procedure");
    env.send(StatusCode::BAD_REQUEST, "POST", "/participations", "/participations", &organiser, Some(json!({
        "format": "dialog", "title": "X", "region": "14627010", "geometry": { "type": "Point", "coordinates": [13.4, 52.5] }
    }))).await;
    assert_eq!(
        env.store.head().await.expect("head").position,
        head,
        "refusals change nothing"
    );
    env.send(
        StatusCode::CREATED,
        "POST",
        rounds_path,
        &rounds,
        &organiser,
        Some(round(31)),
    )
    .await;
    env.send(
        StatusCode::OK,
        "POST",
        "/participations/{id}/announcement",
        &format!("/participations/{id}/announcement"),
        &organiser,
        None,
    )
    .await;
    // A statement to the announced display, which opens in ten days: refused, and nothing
    // recorded.
    let head = env.store.head().await.expect("head").position;
    let early = env
        .send(
            StatusCode::CONFLICT,
            "POST",
            "/participations/{id}/contributions",
            &format!("/participations/{id}/contributions"),
            &citizen(Uuid::now_v7()),
            Some(json!({ "text": STATEMENT })),
        )
        .await;
    assert_eq!(early["type"], "urn:amtsbuch:problem:contribution-refused");
    assert_eq!(env.store.head().await.expect("head").position, head);

    // A late announcement: the round has begun by the time it is announced.
    let late = env
        .send(
            StatusCode::CREATED,
            "POST",
            "/participations",
            "/participations",
            &organiser,
            Some(draft("Bebauungsplan Coswig-Nord", "bauleitplanung")),
        )
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let soon = Utc::now() + chrono::Duration::milliseconds(1000);
    env.send(StatusCode::CREATED, "POST", rounds_path, &format!("/participations/{late}/rounds"), &organiser, Some(json!({
        "stage": "fruehzeitig31", "starts_at": ts(soon), "ends_at": ts(soon + chrono::Duration::days(14)), "documents": [doc.clone()]
    }))).await;
    tokio::time::sleep(until(soon)).await;
    env.send(
        StatusCode::UNPROCESSABLE_ENTITY,
        "POST",
        "/participations/{id}/announcement",
        &format!("/participations/{late}/announcement"),
        &organiser,
        None,
    )
    .await;

    // B2 on a display that opens now and ends in two seconds (a § 4 (2) round has no minimum).
    let display = env
        .send(
            StatusCode::CREATED,
            "POST",
            "/participations",
            "/participations",
            &organiser,
            Some(draft("Bebauungsplan Meißen-Triebischtal", "bauleitplanung")),
        )
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    env.send(
        StatusCode::OK,
        "POST",
        "/participations/{id}/announcement",
        &format!("/participations/{display}/announcement"),
        &organiser,
        None,
    )
    .await;
    let opens = Utc::now() + chrono::Duration::milliseconds(1000);
    let closes = opens + chrono::Duration::seconds(3);
    env.send(StatusCode::CREATED, "POST", rounds_path, &format!("/participations/{display}/rounds"), &organiser, Some(json!({
        "stage": "toeb42", "starts_at": ts(opens), "ends_at": ts(closes), "documents": [doc.clone()]
    }))).await;
    let contribute = format!("/participations/{display}/contributions");
    let contribute_path = "/participations/{id}/contributions";
    let author = Uuid::now_v7();
    let statement = json!({ "text": STATEMENT });
    tokio::time::sleep(until(opens)).await;
    let submitted = env
        .send(
            StatusCode::CREATED,
            "POST",
            contribute_path,
            &contribute,
            &citizen(author),
            Some(statement.clone()),
        )
        .await;
    assert_eq!(submitted["kind"], "statement");
    assert_eq!(submitted["late"], false);
    let cid = submitted["id"].as_str().expect("id").to_owned();
    env.caught_up().await;
    let public = env
        .ok("/participations/{id}/contributions", &contribute)
        .await;
    assert_eq!(public["count"], 1);
    assert!(!public.to_string().contains("verschattet"));
    let receipt_uri = format!("/contributions/{cid}/receipt");
    let receipt = loop {
        let reply = common::send(
            &env.app,
            common::request("GET", &receipt_uri, Some(&citizen(author)), Body::empty()),
        )
        .await;
        if reply.status == StatusCode::OK {
            conforms(&env.doc, "GET", "/contributions/{id}/receipt", &reply);
            break reply.json();
        }
        assert_eq!(
            reply.status,
            StatusCode::CONFLICT,
            "{}",
            String::from_utf8_lossy(&reply.bytes)
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    // Another participant's statement does not exist for the caller: the same 404 as a
    // contribution that does not exist, which tells nothing of a statement never public.
    let foreign = env
        .send(
            StatusCode::NOT_FOUND,
            "GET",
            "/contributions/{id}/receipt",
            &receipt_uri,
            &citizen(Uuid::now_v7()),
            None,
        )
        .await;
    let missing = env
        .send(
            StatusCode::NOT_FOUND,
            "GET",
            "/contributions/{id}/receipt",
            &format!("/contributions/{}/receipt", Uuid::now_v7()),
            &citizen(Uuid::now_v7()),
            None,
        )
        .await;
    assert_eq!(foreign, missing);
    // Verified with nothing but the stored record and the log's key.
    let event_id = Uuid::parse_str(receipt["event_id"].as_str().expect("event id")).expect("uuid");
    let stored = env
        .store
        .event_by_id(event_id)
        .await
        .expect("read")
        .expect("stored");
    assert!(!String::from_utf8_lossy(&stored.bytes).contains("verschattet"));
    let proof = TlogProof::parse(receipt["tlog_proof"].as_str().expect("proof").as_bytes())
        .expect("tlog-proof");
    let verifier =
        amtsbuch_domain::note::Verifier::parse(&common::ledger_signer().vkey()).expect("vkey");
    let verified = tlog_proof::verify(
        &proof,
        Leaf::Record(&stored.bytes),
        std::slice::from_ref(&verifier),
        common::ORIGIN,
    )
    .expect("the receipt verifies offline");
    assert_eq!(verified.leaf_hash, stored.leaf_hash);
    assert!(tlog_proof::verify(
        &proof,
        Leaf::Record(b"another record"),
        &[verifier],
        common::ORIGIN
    )
    .is_err());
    // One second after the end: refused, and nothing recorded.
    let wait =
        (closes - Utc::now()).to_std().unwrap_or_default() + std::time::Duration::from_secs(1);
    tokio::time::sleep(wait).await;
    let head = env.store.head().await.expect("head").position;
    let after = env
        .send(
            StatusCode::CONFLICT,
            "POST",
            contribute_path,
            &contribute,
            &citizen(author),
            Some(statement),
        )
        .await;
    assert_eq!(after["type"], "urn:amtsbuch:problem:contribution-refused");
    assert_eq!(env.store.head().await.expect("head").position, head);

    // B3: three reports hide a comment; a repeated report is refused.
    let dialog = env
        .send(
            StatusCode::CREATED,
            "POST",
            "/participations",
            "/participations",
            &organiser,
            Some(draft("Stadtteildialog Radebeul", "dialog")),
        )
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    env.send(
        StatusCode::OK,
        "POST",
        "/participations/{id}/announcement",
        &format!("/participations/{dialog}/announcement"),
        &organiser,
        None,
    )
    .await;
    let now = Utc::now() + chrono::Duration::milliseconds(1000);
    env.send(
        StatusCode::CREATED,
        "POST",
        rounds_path,
        &format!("/participations/{dialog}/rounds"),
        &organiser,
        Some(json!({
            "starts_at": ts(now), "ends_at": ts(now + chrono::Duration::days(30)), "documents": []
        })),
    )
    .await;
    tokio::time::sleep(until(now)).await;
    let comment = env
        .send(
            StatusCode::CREATED,
            "POST",
            contribute_path,
            &format!("/participations/{dialog}/contributions"),
            &citizen(author),
            Some(json!({
                "text": COMMENT, "pseudonym": "Radlerin"
            })),
        )
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // B5: an unpublished "accepted" answer shows as not answered; published, as accepted.
    let answers = format!("/participations/{dialog}/answers");
    let listed = format!("/participations/{dialog}/contributions");
    let drafted = env
        .send(
            StatusCode::OK,
            "POST",
            "/participations/{id}/answers",
            &answers,
            &organiser,
            Some(json!({
                "contribution_id": comment, "state": "accepted"
            })),
        )
        .await;
    assert_eq!(drafted["public"], "not_answered");
    env.caught_up().await;
    assert_eq!(
        env.ok("/participations/{id}/contributions", &listed).await["items"][0]["answer"],
        "not_answered"
    );
    env.send(
        StatusCode::FORBIDDEN,
        "POST",
        "/participations/{id}/answers",
        &answers,
        &stranger,
        Some(json!({
            "contribution_id": comment, "state": "rejected", "publish": true
        })),
    )
    .await;
    let published = env.send(StatusCode::OK, "POST", "/participations/{id}/answers", &answers, &organiser, Some(json!({
        "contribution_id": comment, "state": "accepted", "text": "Der Radweg wird geplant.", "publish": true
    }))).await;
    assert_eq!(published["public"], "accepted");
    env.send(
        StatusCode::CONFLICT,
        "POST",
        "/participations/{id}/answers",
        &answers,
        &organiser,
        Some(json!({
            "contribution_id": comment, "state": "rejected"
        })),
    )
    .await;
    env.caught_up().await;
    let shown = env.ok("/participations/{id}/contributions", &listed).await;
    assert_eq!(shown["items"][0]["answer"], "accepted");
    assert_eq!(shown["items"][0]["answer_text"], "Der Radweg wird geplant.");

    // A supported contribution cannot be withdrawn; only its author withdraws it.
    let supporter = Uuid::now_v7();
    let support = format!("/contributions/{comment}/support");
    let withdrawal = format!("/contributions/{comment}/withdrawal");
    let supported = env
        .send(
            StatusCode::OK,
            "PUT",
            "/contributions/{id}/support",
            &support,
            &citizen(supporter),
            None,
        )
        .await;
    assert_eq!(supported["supports"], 1);
    env.send(
        StatusCode::OK,
        "PUT",
        "/contributions/{id}/support",
        &support,
        &citizen(supporter),
        None,
    )
    .await;
    env.send(
        StatusCode::CONFLICT,
        "POST",
        "/contributions/{id}/withdrawal",
        &withdrawal,
        &citizen(author),
        None,
    )
    .await;
    env.send(
        StatusCode::NOT_FOUND,
        "POST",
        "/contributions/{id}/withdrawal",
        &withdrawal,
        &citizen(supporter),
        None,
    )
    .await;
    let unsupported = env
        .send(
            StatusCode::OK,
            "DELETE",
            "/contributions/{id}/support",
            &support,
            &citizen(supporter),
            None,
        )
        .await;
    assert_eq!(unsupported["supports"], 0);
    let reports = format!("/contributions/{comment}/reports");
    // Only what is shown publicly is reported, and never by its author: a statement (never
    // public) is none to a reporter, the same 404 as a contribution that does not exist;
    // one's own comment is refused. Nothing is recorded.
    let head = env.store.head().await.expect("head").position;
    let of_statement = env
        .send(
            StatusCode::NOT_FOUND,
            "POST",
            "/contributions/{id}/reports",
            &format!("/contributions/{cid}/reports"),
            &citizen(Uuid::now_v7()),
            Some(json!({ "reason": "spam" })),
        )
        .await;
    let of_nothing = env
        .send(
            StatusCode::NOT_FOUND,
            "POST",
            "/contributions/{id}/reports",
            &format!("/contributions/{}/reports", Uuid::now_v7()),
            &citizen(Uuid::now_v7()),
            Some(json!({ "reason": "spam" })),
        )
        .await;
    assert_eq!(of_statement, of_nothing);
    let own = env
        .send(
            StatusCode::CONFLICT,
            "POST",
            "/contributions/{id}/reports",
            &reports,
            &citizen(author),
            Some(json!({ "reason": "spam" })),
        )
        .await;
    assert_eq!(own["type"], "urn:amtsbuch:problem:contribution-refused");
    assert_eq!(env.store.head().await.expect("head").position, head);
    let reporters: Vec<Uuid> = (0..3).map(|_| Uuid::now_v7()).collect();
    for (n, reporter) in reporters.iter().enumerate() {
        let answer = env
            .send(
                StatusCode::CREATED,
                "POST",
                "/contributions/{id}/reports",
                &reports,
                &citizen(*reporter),
                Some(json!({ "reason": "offensive" })),
            )
            .await;
        assert_eq!(answer["hidden"], n == 2);
    }
    env.send(
        StatusCode::CONFLICT,
        "POST",
        "/contributions/{id}/reports",
        &reports,
        &citizen(reporters[0]),
        Some(json!({ "reason": "spam" })),
    )
    .await;
    env.caught_up().await;
    let listed = env
        .ok(
            "/participations/{id}/contributions",
            &format!("/participations/{dialog}/contributions"),
        )
        .await;
    assert_eq!(listed["count"], 0);
    let log = env
        .ok(
            "/participations/{id}/moderation-log",
            &format!("/participations/{dialog}/moderation-log"),
        )
        .await;
    assert_eq!(
        log["counts"],
        json!({ "reported:offensive": 3, "hidden": 1 })
    );
    for reporter in &reporters {
        assert!(!log.to_string().contains(&reporter.to_string()));
    }
    let withdrawn = env
        .send(
            StatusCode::OK,
            "POST",
            "/contributions/{id}/withdrawal",
            &withdrawal,
            &citizen(author),
            None,
        )
        .await;
    assert_eq!(withdrawn["withdrawn"], true);
    env.close().await;
}

/// B6: 50 registrations at once for an event with 18 places, spread over two API nodes on
/// one database: exactly 18 confirmed and 32 waiting, and a cancellation confirms the
/// first on the waiting list.
async fn never_more_confirmed_than_places(env: Env) {
    let organiser = common::token(Role::Authority);
    let pid = env
        .send(StatusCode::CREATED, "POST", "/participations", "/participations", &organiser, Some(json!({
            "format": "event_management", "title": "Seminar Bürgerbeteiligung", "region": "14627010"
        })))
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    env.send(
        StatusCode::OK,
        "POST",
        "/participations/{id}/announcement",
        &format!("/participations/{pid}/announcement"),
        &organiser,
        None,
    )
    .await;
    let starts = Utc::now() + chrono::Duration::days(7);
    let gathering = env
        .send(StatusCode::CREATED, "POST", "/participations/{id}/gatherings", &format!("/participations/{pid}/gatherings"), &organiser, Some(json!({
            "kind": "event", "title": "Seminar (begrenzt auf 18 Teilnehmende)",
            "starts_at": ts(starts), "ends_at": ts(starts + chrono::Duration::hours(3)), "capacity": 18
        })))
        .await["gathering_id"]
        .as_str()
        .expect("gathering id")
        .to_owned();
    let people: Vec<Uuid> = (0..50).map(|_| Uuid::now_v7()).collect();
    let mut tasks = Vec::new();
    for (n, person) in people.iter().enumerate() {
        let app = if n % 2 == 0 {
            env.app.clone()
        } else {
            env.second.clone()
        };
        let token = citizen(*person);
        let uri = format!("/participations/{pid}/registrations");
        let body = json!({ "gathering_id": gathering, "name": "Erika Mustermann" }).to_string();
        tasks.push(tokio::spawn(async move {
            common::send(
                &app,
                common::request("POST", &uri, Some(&token), Body::from(body)),
            )
            .await
        }));
    }
    let mut places = std::collections::BTreeMap::<String, usize>::new();
    for task in tasks {
        let reply = task.await.expect("task");
        conforms(
            &env.doc,
            "POST",
            "/participations/{id}/registrations",
            &reply,
        );
        assert_eq!(
            reply.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&reply.bytes)
        );
        *places
            .entry(reply.json()["place"].as_str().expect("place").to_owned())
            .or_default() += 1;
    }
    assert_eq!(places.get("confirmed"), Some(&18));
    assert_eq!(places.get("waiting"), Some(&32));
    // The log says the same: 18 confirmed, the rest waiting, in the order registered.
    let gid =
        amtsbuch_domain::participation::GatheringId(Uuid::parse_str(&gathering).expect("uuid"));
    let (state, _) = current::<amtsbuch_domain::participation::gathering::GatheringState>(
        &env.state,
        &gid.stream_id(),
    )
    .await
    .expect("gathering");
    let g = state.gathering().expect("scheduled");
    assert_eq!((g.confirmed(), g.waiting()), (18, 32));
    let first_waiting = g
        .registrations
        .iter()
        .find(|r| r.place == amtsbuch_domain::participation::gathering::Place::Waiting)
        .expect("a waiting registration")
        .clone();
    let confirmed = g.registrations[0].clone();
    let owner = citizen(confirmed.registrant.0);
    let uri = format!("/registrations/{}", confirmed.id);
    // The registrant's access export (Art. 15) holds its registration and what it gave.
    let export = env
        .send(
            StatusCode::OK,
            "GET",
            "/dpo/subjects/{subject}/export",
            &format!("/dpo/subjects/{}/export", confirmed.registrant.0),
            &common::token(Role::Dpo),
            None,
        )
        .await;
    let mine = export["registrations"].as_array().expect("registrations");
    assert_eq!(mine.len(), 1, "{export}");
    assert_eq!(mine[0]["registration_id"], confirmed.id.to_string());
    assert_eq!(mine[0]["place"], "confirmed");
    assert!(mine[0]["registrant"]["name"].is_string(), "{export}");
    // Another participant's registration: the same 404 as one that does not exist.
    let foreign = env
        .send(
            StatusCode::NOT_FOUND,
            "DELETE",
            "/registrations/{id}",
            &uri,
            &citizen(Uuid::now_v7()),
            None,
        )
        .await;
    let missing = env
        .send(
            StatusCode::NOT_FOUND,
            "DELETE",
            "/registrations/{id}",
            &format!("/registrations/{}", Uuid::now_v7()),
            &citizen(Uuid::now_v7()),
            None,
        )
        .await;
    assert_eq!(foreign, missing);
    let cancelled = env
        .send(
            StatusCode::OK,
            "DELETE",
            "/registrations/{id}",
            &uri,
            &owner,
            None,
        )
        .await;
    assert_eq!(cancelled["confirmed"], first_waiting.id.to_string());
    env.caught_up().await;
    let shown = env
        .ok(
            "/participations/calendar",
            &format!(
                "/participations/calendar?from={}&to={}",
                ts(starts),
                ts(starts + chrono::Duration::days(1))
            ),
        )
        .await;
    assert_eq!(shown["items"][0]["confirmed"], 18);
    assert_eq!(shown["items"][0]["waiting"], 31);
    env.close().await;
}

/// A gathering takes registrations, and is on the calendar, only while its procedure is
/// announced: not as a draft's, nor once the procedure is cancelled.
async fn registrations_follow_the_procedures_status(env: Env) {
    let organiser = common::token(Role::Authority);
    let pid = env
        .send(StatusCode::CREATED, "POST", "/participations", "/participations", &organiser, Some(json!({
            "format": "event_management", "title": "Infoabend Ortsumgehung", "region": "14627010"
        })))
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    let starts = Utc::now() + chrono::Duration::days(7);
    let gathering = env
        .send(StatusCode::CREATED, "POST", "/participations/{id}/gatherings", &format!("/participations/{pid}/gatherings"), &organiser, Some(json!({
            "kind": "event", "title": "Infoabend",
            "starts_at": ts(starts), "ends_at": ts(starts + chrono::Duration::hours(2)), "capacity": 20
        })))
        .await["gathering_id"]
        .as_str()
        .expect("gathering id")
        .to_owned();
    let registrations = format!("/participations/{pid}/registrations");
    let register = |who: Uuid, status: StatusCode| {
        let registrations = registrations.clone();
        let gathering = gathering.clone();
        let env = &env;
        async move {
            env.send(
                status,
                "POST",
                "/participations/{id}/registrations",
                &registrations,
                &citizen(who),
                Some(json!({ "gathering_id": gathering, "name": "Erika Mustermann" })),
            )
            .await
        }
    };
    let calendar = format!(
        "/participations/calendar?from={}&to={}",
        ts(starts),
        ts(starts + chrono::Duration::days(1))
    );
    let listed = |shown: &Value| {
        shown["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|i| i["id"] == gathering.as_str())
    };
    // A draft's gathering: nobody has been told of it.
    let head = env.store.head().await.expect("head").position;
    let refused = register(Uuid::now_v7(), StatusCode::CONFLICT).await;
    assert_eq!(refused["type"], "urn:amtsbuch:problem:registration-refused");
    assert_eq!(env.store.head().await.expect("head").position, head);
    env.caught_up().await;
    assert!(!listed(
        &env.ok("/participations/calendar", &calendar).await
    ));
    // Announced: registrations are taken, and the calendar lists it.
    env.send(
        StatusCode::OK,
        "POST",
        "/participations/{id}/announcement",
        &format!("/participations/{pid}/announcement"),
        &organiser,
        None,
    )
    .await;
    let registered = register(Uuid::now_v7(), StatusCode::CREATED).await;
    assert_eq!(registered["place"], "confirmed");
    env.caught_up().await;
    assert!(listed(&env.ok("/participations/calendar", &calendar).await));
    // Cancelled: refused again, and gone from the calendar.
    env.send(
        StatusCode::OK,
        "POST",
        "/participations/{id}/cancellation",
        &format!("/participations/{pid}/cancellation"),
        &organiser,
        Some(json!({ "reason": "Das Vorhaben entfällt" })),
    )
    .await;
    let head = env.store.head().await.expect("head").position;
    let refused = register(Uuid::now_v7(), StatusCode::CONFLICT).await;
    assert_eq!(refused["type"], "urn:amtsbuch:problem:registration-refused");
    assert_eq!(env.store.head().await.expect("head").position, head);
    env.caught_up().await;
    assert!(!listed(
        &env.ok("/participations/calendar", &calendar).await
    ));
    env.close().await;
}

/// A dialog of `authority` (drafted, announced and open) with one comment; the ids of
/// both.
async fn dialog_with_comment(env: &Env, organiser: &str, title: &str) -> (String, String) {
    let id = env
        .send(
            StatusCode::CREATED,
            "POST",
            "/participations",
            "/participations",
            organiser,
            Some(json!({ "format": "dialog", "title": title, "region": "14627010" })),
        )
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    env.send(
        StatusCode::OK,
        "POST",
        "/participations/{id}/announcement",
        &format!("/participations/{id}/announcement"),
        organiser,
        None,
    )
    .await;
    let now = Utc::now() + chrono::Duration::milliseconds(1000);
    env.send(
        StatusCode::CREATED,
        "POST",
        "/participations/{id}/rounds",
        &format!("/participations/{id}/rounds"),
        organiser,
        Some(json!({
            "starts_at": ts(now), "ends_at": ts(now + chrono::Duration::days(30)), "documents": []
        })),
    )
    .await;
    tokio::time::sleep(until(now)).await;
    let comment = env
        .send(
            StatusCode::CREATED,
            "POST",
            "/participations/{id}/contributions",
            &format!("/participations/{id}/contributions"),
            &citizen(Uuid::now_v7()),
            Some(json!({ "text": COMMENT, "pseudonym": "Radlerin" })),
        )
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    (id, comment)
}

/// A node keeps the procedures it folded, and still decides on their latest state: once
/// the second API node has cancelled a dialog that the first node took comments for, the
/// first node refuses the next comment and records nothing.
async fn a_node_decides_on_what_another_node_changed(env: Env) {
    let organiser = common::token(Role::Authority);
    let (id, first) = dialog_with_comment(&env, &organiser, "Stadtteildialog Weinböhla").await;
    let contribute = format!("/participations/{id}/contributions");
    let comment = json!({ "text": COMMENT, "pseudonym": "Radler" });
    let second = env
        .send(
            StatusCode::CREATED,
            "POST",
            "/participations/{id}/contributions",
            &contribute,
            &citizen(Uuid::now_v7()),
            Some(comment.clone()),
        )
        .await;
    assert_ne!(second["id"], first);
    let reply = common::send(
        &env.second,
        common::request(
            "POST",
            &format!("/participations/{id}/cancellation"),
            Some(&organiser),
            Body::from(json!({ "reason": "Das Vorhaben entfällt" }).to_string()),
        ),
    )
    .await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&reply.bytes)
    );
    let head = env.store.head().await.expect("head").position;
    let refused = env
        .send(
            StatusCode::CONFLICT,
            "POST",
            "/participations/{id}/contributions",
            &contribute,
            &citizen(Uuid::now_v7()),
            Some(comment),
        )
        .await;
    assert_eq!(refused["type"], "urn:amtsbuch:problem:contribution-refused");
    assert_eq!(env.store.head().await.expect("head").position, head);
    env.close().await;
}

/// A token holding `roles`, each with the test kit's bindings, whose moderator moderates
/// `moderates` and whose authority is `authority`.
fn moderator_of(roles: &[Role], authority: &str, moderates: &[&str]) -> String {
    let mut request = common::request_of(roles, authority, &[]);
    request.moderates = moderates
        .iter()
        .map(|m| amtsbuch_domain::access::ModerationScope::parse(m).expect("scope"))
        .collect();
    common::signed(&request)
}

/// A moderator hides and unhides, with reasons, the contributions of the procedures it
/// moderates (by the procedure's id, or its authority's), and nothing else — whatever
/// other role its token holds; the public moderation log shows both actions with their
/// reasons and never the moderator; its queue lists only what it moderates.
async fn moderators_act_only_within_what_they_moderate(env: Env) {
    let meissen = common::token(Role::Authority);
    let leipzig = common::token_for(Role::Authority, "stadt-leipzig", &[]);
    let (own_id, own) = dialog_with_comment(&env, &meissen, "Stadtteildialog Coswig").await;
    let (other_id, other) =
        dialog_with_comment(&env, &leipzig, "Stadtteildialog Leipzig-Plagwitz").await;
    let hiding = |c: &str| format!("/contributions/{c}/hiding");
    let unhiding = |c: &str| format!("/contributions/{c}/unhiding");
    let reason = |r: &str| Some(json!({ "reason": r }));
    let moderator = common::token(Role::Moderator);
    // Tokens that may not hide the Leipzig comment: no moderator role, or a moderator of
    // lra-meissen whose other role (a citizen, Leipzig's own official) adds nothing here.
    let head = env.store.head().await.expect("head").position;
    for token in [
        common::token(Role::Citizen),
        leipzig.clone(),
        common::token(Role::Operator),
        moderator.clone(),
        moderator_of(
            &[Role::Moderator, Role::Citizen],
            "lra-meissen",
            &["lra-meissen"],
        ),
        moderator_of(
            &[Role::Moderator, Role::Authority],
            "stadt-leipzig",
            &["lra-meissen"],
        ),
        moderator_of(
            &[Role::Moderator, Role::Operator],
            "lra-meissen",
            &[&own_id],
        ),
    ] {
        env.send(
            StatusCode::FORBIDDEN,
            "POST",
            "/contributions/{id}/hiding",
            &hiding(&other),
            &token,
            reason("Beleidigend"),
        )
        .await;
    }
    assert_eq!(env.store.head().await.expect("head").position, head);
    env.send(
        StatusCode::BAD_REQUEST,
        "POST",
        "/contributions/{id}/hiding",
        &hiding(&own),
        &moderator,
        Some(json!({ "reason": "" })),
    )
    .await;
    env.send(
        StatusCode::NOT_FOUND,
        "POST",
        "/contributions/{id}/hiding",
        &hiding(&Uuid::now_v7().to_string()),
        &moderator,
        reason("Beleidigend"),
    )
    .await;
    env.send(
        StatusCode::CONFLICT,
        "POST",
        "/contributions/{id}/unhiding",
        &unhiding(&own),
        &moderator,
        reason("Zulässig"),
    )
    .await;
    // The moderator of lra-meissen hides the Coswig comment; a procedure's moderator the
    // Leipzig one.
    let hidden = env
        .send(
            StatusCode::OK,
            "POST",
            "/contributions/{id}/hiding",
            &hiding(&own),
            &moderator_of(
                &[Role::Moderator, Role::Citizen],
                "lra-meissen",
                &["lra-meissen"],
            ),
            reason("Beleidigend"),
        )
        .await;
    assert_eq!(hidden["hidden"], true);
    env.send(
        StatusCode::CONFLICT,
        "POST",
        "/contributions/{id}/hiding",
        &hiding(&own),
        &moderator,
        reason("Beleidigend"),
    )
    .await;
    let of_leipzig = moderator_of(&[Role::Moderator], "lra-meissen", &[&other_id]);
    env.send(
        StatusCode::OK,
        "POST",
        "/contributions/{id}/hiding",
        &hiding(&other),
        &of_leipzig,
        reason("Werbung"),
    )
    .await;
    env.caught_up().await;
    let listed = env
        .ok(
            "/participations/{id}/contributions",
            &format!("/participations/{own_id}/contributions"),
        )
        .await;
    assert_eq!(listed["count"], 0);
    assert_eq!(listed["items"], json!([]));
    // Each queue holds what its moderator moderates, with the comment's public text.
    let queue = env
        .send(
            StatusCode::OK,
            "GET",
            "/moderation/queue",
            "/moderation/queue",
            &moderator,
            None,
        )
        .await;
    let items = queue["items"].as_array().expect("items");
    assert_eq!(items.len(), 1, "{queue}");
    assert_eq!(items[0]["id"], own.as_str());
    assert_eq!(items[0]["hidden"], true);
    assert_eq!(items[0]["text"], COMMENT);
    let queue = env
        .send(
            StatusCode::OK,
            "GET",
            "/moderation/queue",
            "/moderation/queue",
            &of_leipzig,
            None,
        )
        .await;
    assert_eq!(queue["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(queue["items"][0]["id"], other.as_str());
    env.send(
        StatusCode::FORBIDDEN,
        "GET",
        "/moderation/queue",
        "/moderation/queue",
        &meissen,
        None,
    )
    .await;
    env.send(
        StatusCode::BAD_REQUEST,
        "GET",
        "/moderation/queue",
        "/moderation/queue?limit=0",
        &moderator,
        None,
    )
    .await;
    // Unhidden with a reason: listed and counted again.
    let shown = env
        .send(
            StatusCode::OK,
            "POST",
            "/contributions/{id}/unhiding",
            &unhiding(&own),
            &moderator,
            reason("Nach Prüfung zulässig"),
        )
        .await;
    assert_eq!(shown["hidden"], false);
    env.caught_up().await;
    let listed = env
        .ok(
            "/participations/{id}/contributions",
            &format!("/participations/{own_id}/contributions"),
        )
        .await;
    assert_eq!(listed["count"], 1);
    let log = env
        .ok(
            "/participations/{id}/moderation-log",
            &format!("/participations/{own_id}/moderation-log"),
        )
        .await;
    assert_eq!(log["counts"], json!({ "hidden": 1, "unhidden": 1 }));
    assert_eq!(log["entries"][0]["trigger"], "moderator");
    assert_eq!(log["entries"][0]["reason"], "Beleidigend");
    assert_eq!(log["entries"][1]["reason"], "Nach Prüfung zulässig");
    assert!(
        !log.to_string().contains("test-"),
        "no moderator named: {log}"
    );
    env.close().await;
}

/// A survey's results over HTTP: the choices of the answers that count, per question and
/// option, and the same counts recomputed from nothing but the log's plain events — no
/// identity, no sealed section opened.
async fn survey_results_are_recomputable_from_the_log(env: Env) {
    let organiser = common::token(Role::Authority);
    let id = env
        .send(
            StatusCode::CREATED,
            "POST",
            "/participations",
            "/participations",
            &organiser,
            Some(json!({
                "format": "survey", "title": "Umfrage Radverkehr", "region": "14627010",
                "survey": { "questions": [
                    { "kind": "single", "key": "q1", "text": "Fahren Sie Rad?", "options": ["ja", "nein"] },
                    { "kind": "multiple", "key": "q2", "text": "Wo fehlen Wege?", "options": ["elbe", "zentrum", "schule"] },
                    { "kind": "free_text", "key": "q3", "text": "Was noch?" }
                ] }
            })),
        )
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    env.send(
        StatusCode::OK,
        "POST",
        "/participations/{id}/announcement",
        &format!("/participations/{id}/announcement"),
        &organiser,
        None,
    )
    .await;
    let now = Utc::now() + chrono::Duration::milliseconds(1000);
    env.send(
        StatusCode::CREATED,
        "POST",
        "/participations/{id}/rounds",
        &format!("/participations/{id}/rounds"),
        &organiser,
        Some(json!({ "starts_at": ts(now), "ends_at": ts(now + chrono::Duration::days(30)), "documents": [] })),
    )
    .await;
    tokio::time::sleep(until(now)).await;
    let answers = [
        json!({ "choices": { "q1": ["ja"], "q2": ["schule", "elbe"] }, "free_texts": { "q3": "Mehr Bügel" } }),
        json!({ "choices": { "q1": ["ja"], "q2": ["elbe"] } }),
        json!({ "choices": { "q1": ["nein"] } }),
    ];
    let first = Uuid::now_v7();
    for (n, answer) in answers.into_iter().enumerate() {
        env.send(
            StatusCode::CREATED,
            "POST",
            "/participations/{id}/contributions",
            &format!("/participations/{id}/contributions"),
            &citizen(if n == 0 { first } else { Uuid::now_v7() }),
            Some(answer),
        )
        .await;
    }
    // An answer to a question the survey does not ask is refused.
    env.send(
        StatusCode::UNPROCESSABLE_ENTITY,
        "POST",
        "/participations/{id}/contributions",
        &format!("/participations/{id}/contributions"),
        &citizen(Uuid::now_v7()),
        Some(json!({ "choices": { "q9": ["ja"] } })),
    )
    .await;
    // So is an option chosen twice: the answer is refused, not silently de-duplicated.
    let head = env.store.head().await.expect("head").position;
    let repeated = env
        .send(
            StatusCode::UNPROCESSABLE_ENTITY,
            "POST",
            "/participations/{id}/contributions",
            &format!("/participations/{id}/contributions"),
            &citizen(Uuid::now_v7()),
            Some(json!({ "choices": { "q2": ["zentrum", "elbe", "elbe"] } })),
        )
        .await;
    assert!(
        repeated["detail"]
            .as_str()
            .is_some_and(|d| d.contains("q2")),
        "{repeated}"
    );
    assert_eq!(env.store.head().await.expect("head").position, head);
    env.caught_up().await;
    let results = env
        .ok(
            "/participations/{id}/results",
            &format!("/participations/{id}/results"),
        )
        .await;
    assert_eq!(results["answers"], 3);
    assert_eq!(
        results["counts"],
        json!({ "q1": { "ja": 2, "nein": 1 }, "q2": { "elbe": 2, "schule": 1, "zentrum": 0 } })
    );
    // Recomputed from the plain events alone.
    let mut counts: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>> =
        Default::default();
    let mut n = 0;
    for e in env.store.read_all(0, 10_000).await.expect("log") {
        let record = e.record().expect("record");
        if record.event_type.as_str() != "ContributionSubmitted"
            || record.data["procedure_id"] != id.as_str()
        {
            continue;
        }
        n += 1;
        if record.data["choices"]["q2"]
            .as_array()
            .is_some_and(|a| a.len() == 2)
        {
            assert_eq!(
                record.data["choices"]["q2"],
                json!(["schule", "elbe"]),
                "the options in the order sent"
            );
        }
        if let Some(choices) = record.data["choices"].as_object() {
            for (q, options) in choices {
                for o in options.as_array().expect("options") {
                    *counts
                        .entry(q.clone())
                        .or_default()
                        .entry(o.as_str().expect("option").to_owned())
                        .or_default() += 1;
                }
            }
        }
    }
    assert_eq!(n, 3);
    for (q, options) in &counts {
        for (o, c) in options {
            assert_eq!(results["counts"][q][o], *c, "{q}/{o}");
        }
    }
    assert!(
        !env.log_text().await.contains("Mehr Bügel"),
        "free texts stay sealed"
    );
    // The author's access export (Art. 15) holds its answer, its free text decrypted.
    let export = env
        .send(
            StatusCode::OK,
            "GET",
            "/dpo/subjects/{subject}/export",
            &format!("/dpo/subjects/{first}/export"),
            &common::token(Role::Dpo),
            None,
        )
        .await;
    let mine = export["contributions"].as_array().expect("contributions");
    assert_eq!(mine.len(), 1, "{export}");
    assert_eq!(mine[0]["procedure_id"], id.as_str());
    assert_eq!(mine[0]["choices"]["q2"], json!(["schule", "elbe"]));
    assert_eq!(mine[0]["content"]["free_texts"]["q3"], "Mehr Bügel");
    env.close().await;
}

/// An official of a region's procedure, and only such an official, drafts and organises
/// it: a token of the procedure's authority whose regions do not cover the procedure's AGS
/// is refused (`403`) its draft and every organiser command, whatever other role it holds,
/// and nothing is recorded — except that while the procedure is a draft, which is not
/// public, the refusal reads as for an unknown id (`404`) and tells nothing of it; a region
/// covering the AGS (the district, the municipality, the Land) acts.
async fn organisers_act_only_within_their_regions(env: Env) {
    let with = |roles: &[Role], regions: &[&str]| {
        let mut request = common::request_of(roles, "lra-meissen", &[]);
        request.regions = regions
            .iter()
            .map(|r| amtsbuch_domain::access::RegionKey::parse(r).expect("region"))
            .collect();
        common::signed(&request)
    };
    let dresden = common::official("lra-meissen", &["14612"]);
    // Each with whether it holds the official role (then it is refused on a procedure it
    // can see, not before any procedure is looked at).
    let refused_tokens = [
        ("an official of another region", dresden.clone(), true),
        (
            "a moderator with an official role of another region",
            with(&[Role::Authority, Role::Moderator], &["14612"]),
            true,
        ),
        (
            "a citizen with an official role of other regions",
            with(&[Role::Citizen, Role::Authority], &["14612", "14713"]),
            true,
        ),
        (
            "a moderator of the authority without an official role",
            with(&[Role::Moderator], &["14627"]),
            false,
        ),
    ];
    let body = json!({ "format": "event_management", "title": "Bürgerforum Radebeul", "region": "14627010" });
    let head = env.store.head().await.expect("head").position;
    for (who, token, _) in &refused_tokens {
        let problem = env
            .send(
                StatusCode::FORBIDDEN,
                "POST",
                "/participations",
                "/participations",
                token,
                Some(body.clone()),
            )
            .await;
        assert_eq!(problem["status"], 403, "{who}");
    }
    assert_eq!(
        env.store.head().await.expect("head").position,
        head,
        "nothing drafted"
    );
    let created = env
        .send(
            StatusCode::CREATED,
            "POST",
            "/participations",
            "/participations",
            &with(&[Role::Authority], &["14627010"]),
            Some(body),
        )
        .await;
    let id = created["id"].as_str().expect("id").to_owned();
    let start = Utc::now() + chrono::Duration::days(10);
    let round = json!({ "starts_at": ts(start), "ends_at": ts(start + chrono::Duration::days(2)), "documents": [] });
    let gathering = json!({ "kind": "event", "title": "Bürgerforum", "starts_at": ts(start), "ends_at": ts(start + chrono::Duration::hours(2)), "capacity": 10 });
    let commands = [
        ("/participations/{id}/rounds", Some(round.clone())),
        ("/participations/{id}/gatherings", Some(gathering.clone())),
        ("/participations/{id}/announcement", None),
        (
            "/participations/{id}/answers",
            Some(json!({ "contribution_id": Uuid::now_v7().to_string(), "state": "accepted" })),
        ),
        ("/participations/{id}/evaluation", None),
        (
            "/participations/{id}/weighing",
            Some(json!({ "contribution_id": Uuid::now_v7().to_string(), "result": "considered" })),
        ),
        (
            "/participations/{id}/decision",
            Some(json!({ "summary": "Beschluss des Kreistags" })),
        ),
        (
            "/participations/{id}/cancellation",
            Some(json!({ "reason": "Das Vorhaben entfällt" })),
        ),
    ];
    let head = env.store.head().await.expect("head").position;
    // A draft is not public: to an official of another region it is answered as if there
    // were no such procedure, word for word as an unknown id, so that the refusal does not
    // tell it exists. A token without the official role is refused before any procedure
    // is looked at (403, whatever the id).
    let unknown = Uuid::now_v7().to_string();
    for (path, body) in &commands {
        let uri = path.replace("{id}", &id);
        let nothing = path.replace("{id}", &unknown);
        for (who, token, official) in &refused_tokens {
            let status = if *official {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::FORBIDDEN
            };
            let problem = env
                .send(status, "POST", path, &uri, token, body.clone())
                .await;
            let none = env
                .send(status, "POST", path, &nothing, token, body.clone())
                .await;
            assert_eq!(problem, none, "{who} on {path}: a draft reads as nothing");
        }
    }
    assert_eq!(
        env.store.head().await.expect("head").position,
        head,
        "refusals change nothing"
    );
    // A capacity beyond the limit (2000) is refused.
    let mut too_large = gathering.clone();
    too_large["capacity"] = json!(2001);
    env.send(
        StatusCode::UNPROCESSABLE_ENTITY,
        "POST",
        "/participations/{id}/gatherings",
        &format!("/participations/{id}/gatherings"),
        &common::token(Role::Authority),
        Some(too_large),
    )
    .await;
    assert_eq!(env.store.head().await.expect("head").position, head);
    // The district's and the Land's officials act on it.
    let rounds = format!("/participations/{id}/rounds");
    env.send(
        StatusCode::CREATED,
        "POST",
        "/participations/{id}/rounds",
        &rounds,
        &common::token(Role::Authority),
        Some(round),
    )
    .await;
    env.send(
        StatusCode::CREATED,
        "POST",
        "/participations/{id}/gatherings",
        &format!("/participations/{id}/gatherings"),
        &with(&[Role::Authority, Role::Moderator], &["14612", "14"]),
        Some(gathering),
    )
    .await;
    // Announced, the procedure is public, and the same tokens are refused with 403.
    env.send(
        StatusCode::OK,
        "POST",
        "/participations/{id}/announcement",
        &format!("/participations/{id}/announcement"),
        &common::token(Role::Authority),
        None,
    )
    .await;
    let head = env.store.head().await.expect("head").position;
    for (path, body) in &commands {
        let uri = path.replace("{id}", &id);
        for (who, token, _) in &refused_tokens {
            let problem = env
                .send(
                    StatusCode::FORBIDDEN,
                    "POST",
                    path,
                    &uri,
                    token,
                    body.clone(),
                )
                .await;
            assert_eq!(problem["status"], 403, "{who} on {path}");
        }
    }
    assert_eq!(
        env.store.head().await.expect("head").position,
        head,
        "refusals change nothing"
    );
    env.close().await;
}

/// Deciding places opens nobody's data: a node without a key-encryption key — which can
/// open no registrant's name — cancels a registration and moves the first waiting up,
/// since the gathering is folded from the plain parts of its events. Registering there is
/// refused (the new registrant's data could not be sealed) and records nothing.
async fn deciding_places_opens_nobodys_data(env: Env) {
    let organiser = common::token(Role::Authority);
    let pid = env
        .send(
            StatusCode::CREATED,
            "POST",
            "/participations",
            "/participations",
            &organiser,
            Some(json!({
                "format": "event_management", "title": "Stadtteilspaziergang", "region": "14627010"
            })),
        )
        .await["id"]
        .as_str()
        .expect("id")
        .to_owned();
    // Announced: a gathering takes registrations only then.
    env.send(
        StatusCode::OK,
        "POST",
        "/participations/{id}/announcement",
        &format!("/participations/{pid}/announcement"),
        &organiser,
        None,
    )
    .await;
    let starts = Utc::now() + chrono::Duration::days(7);
    let gathering = env
        .send(StatusCode::CREATED, "POST", "/participations/{id}/gatherings", &format!("/participations/{pid}/gatherings"), &organiser, Some(json!({
            "kind": "event", "title": "Spaziergang (begrenzt auf 1)",
            "starts_at": ts(starts), "ends_at": ts(starts + chrono::Duration::hours(2)), "capacity": 1
        })))
        .await["gathering_id"]
        .as_str()
        .expect("gathering id")
        .to_owned();
    let registrations = format!("/participations/{pid}/registrations");
    let mut ids = Vec::new();
    let people = [Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7()];
    for (person, place) in people[..2].iter().zip(["confirmed", "waiting"]) {
        let reply = env
            .send(
                StatusCode::CREATED,
                "POST",
                "/participations/{id}/registrations",
                &registrations,
                &citizen(*person),
                Some(json!({ "gathering_id": gathering, "name": "Erika Mustermann", "contact": "erika@example.org" })),
            )
            .await;
        assert_eq!(reply["place"], place);
        ids.push(reply["registration_id"].as_str().expect("id").to_owned());
    }
    env.caught_up().await;
    let mut keyless = env.state.clone();
    keyless.sealer = None;
    let keyless = amtsbuch_api::router(keyless);
    let head = env.store.head().await.expect("head").position;
    let refused = common::send(
        &keyless,
        common::request(
            "POST",
            &registrations,
            Some(&citizen(people[2])),
            Body::from(json!({ "gathering_id": gathering, "name": "Max Mustermann" }).to_string()),
        ),
    )
    .await;
    conforms(
        &env.doc,
        "POST",
        "/participations/{id}/registrations",
        &refused,
    );
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(env.store.head().await.expect("head").position, head);
    let cancelled = common::send(
        &keyless,
        common::request(
            "DELETE",
            &format!("/registrations/{}", ids[0]),
            Some(&citizen(people[0])),
            Body::empty(),
        ),
    )
    .await;
    conforms(&env.doc, "DELETE", "/registrations/{id}", &cancelled);
    assert_eq!(
        cancelled.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&cancelled.bytes)
    );
    assert_eq!(cancelled.json()["confirmed"], ids[1].as_str());
    env.close().await;
}

/// A read model that cannot be read is an outage of the store, which the caller may
/// retry (`503` with `Retry-After`, the core's answer to a failed statement), not a fault
/// of the service (`500`): here its table is gone while the service runs.
async fn a_read_model_that_cannot_be_read_is_an_outage(mut env: Env) {
    let pid = env
        .open(
            1,
            Format::Dialog,
            "Radweg an der Elbe",
            "14612000",
            DRESDEN,
            false,
        )
        .await;
    env.caught_up().await;
    let one = format!("/participations/{pid}");
    env.ok("/participations/{id}", &one).await;
    if let Some(runner) = env.runner.take() {
        runner.shutdown().await;
    }
    let db = amtsbuch_projections::ReadDb::new(&env.store);
    db.execute(
        "ALTER TABLE participation_procedures RENAME TO participation_procedures_away",
        &[],
    )
    .await
    .expect("rename");
    for uri in [one.clone(), "/participations?q=Radweg".to_owned()] {
        let reply = common::send(&env.app, common::request("GET", &uri, None, Body::empty())).await;
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{uri}: {}",
            String::from_utf8_lossy(&reply.bytes)
        );
        assert_eq!(reply.media_type(), "application/problem+json", "{uri}");
        assert_eq!(
            reply.json()["type"],
            "urn:amtsbuch:problem:unavailable",
            "{uri}"
        );
        assert!(
            reply.header(axum::http::header::RETRY_AFTER).is_some(),
            "{uri}: Retry-After"
        );
    }
    db.execute(
        "ALTER TABLE participation_procedures_away RENAME TO participation_procedures",
        &[],
    )
    .await
    .expect("rename back");
    env.ok("/participations/{id}", &one).await;
    env.close().await;
}

/// Run `test` on an `Env` on a fresh database of `adapter`.
async fn on(adapter: common::Adapter, test: impl AsyncFnOnce(Env)) {
    test(Env::start(adapter).await).await;
}

common::on_both_adapters!(
    using on;
    the_search_filters_and_refuses_bad_input,
    contributions_are_public_as_their_kind_allows_and_erasure_removes_them,
    organisers_and_participants,
    never_more_confirmed_than_places,
    registrations_follow_the_procedures_status,
    moderators_act_only_within_what_they_moderate,
    survey_results_are_recomputable_from_the_log,
    a_node_decides_on_what_another_node_changed,
    organisers_act_only_within_their_regions,
    a_read_model_that_cannot_be_read_is_an_outage,
    deciding_places_opens_nobodys_data,
);

/// `amtsbuch bench participation` with tiny numbers, on SQLite and on PostgreSQL: it
/// seeds, times the search and the submissions, and prints its figures and ratios.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bench_runs_with_tiny_numbers_on_both_adapters() {
    let bench = amtsbuch_api::participation::bench::ParticipationBench {
        database_url: Some(common::database_url()),
        adapter: "both".into(),
        procedures: 40,
        contributions: 200,
        searches: 20,
        rate: 50,
        seconds: 1,
        writers: 8,
        keep: false,
        reuse: None,
    };
    let report = bench.run().await.expect("the bench runs");
    for expected in [
        "sqlite: 40 procedures, 200 contributions",
        "postgresql: 40 procedures, 200 contributions",
        "search (filters + full text)",
        "submission at 50/s offered",
        "× the 20 ms target",
        "× the 15 ms target",
        "not taken (no 201)",
    ] {
        assert!(report.contains(expected), "{expected:?} in:\n{report}");
    }
}

/// `--keep` leaves the filled database, and `--reuse` times it again without filling: the
/// same procedures and contributions, plus the submissions of the first run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bench_reuses_what_it_kept() {
    for adapter in ["sqlite", "postgres"] {
        let mut bench = amtsbuch_api::participation::bench::ParticipationBench {
            database_url: Some(common::database_url()),
            adapter: adapter.into(),
            procedures: 40,
            contributions: 200,
            searches: 10,
            rate: 20,
            seconds: 1,
            writers: 8,
            keep: true,
            reuse: None,
        };
        let first = bench.run().await.expect("the bench runs");
        let kept = first
            .lines()
            .find_map(|l| l.trim().strip_prefix("kept: time it again with --reuse "))
            .unwrap_or_else(|| panic!("the kept database is named in:\n{first}"))
            .to_owned();
        bench.keep = false;
        bench.reuse = Some(kept.clone());
        let second = bench
            .run()
            .await
            .expect("the bench runs on the kept database");
        // The first run's 20 submissions are among the contributions now.
        let taken = 200 + 20 - not_taken(&first);
        assert!(
            second.contains(&format!("40 procedures, {taken} contributions")),
            "{adapter}: {taken} contributions reused in:\n{second}"
        );
        assert!(!second.contains("seeded"), "{second}");
        bench.procedures = 60;
        let wrong = bench.run().await.expect_err("another size is refused");
        assert!(wrong.to_string().contains("holds 40 procedures"), "{wrong}");
        // The bench leaves a reused database for whoever asked for it to be kept.
        if adapter == "sqlite" {
            std::fs::remove_dir_all(&kept).expect("the kept directory is removed");
        } else {
            use sqlx::Connection;
            let url: sqlx::postgres::PgConnectOptions =
                common::database_url().parse().expect("test database URL");
            let mut admin = sqlx::PgConnection::connect_with(&url)
                .await
                .expect("connect");
            sqlx::query(&format!("DROP SCHEMA {kept} CASCADE"))
                .execute(&mut admin)
                .await
                .expect("the kept schema is dropped");
        }
    }
}

/// The submissions a bench report says were not taken.
fn not_taken(report: &str) -> usize {
    report
        .split(" not taken (no 201)")
        .next()
        .and_then(|before| before.rsplit("; ").next())
        .and_then(|s| s.split(" of ").next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("a count of submissions not taken in:\n{report}"))
}

/// How long until a moment a little after `t`: a round that starts at `t` is open then. The
/// rounds of these tests start a second ahead, since the service refuses a start in the past
/// and a loaded machine may take a while to deliver the request.
fn until(t: chrono::DateTime<Utc>) -> std::time::Duration {
    (t - Utc::now()).to_std().unwrap_or_default() + std::time::Duration::from_millis(50)
}
