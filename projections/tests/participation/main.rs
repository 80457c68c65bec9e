//! The participation read model, written once and run on PostgreSQL and SQLite.
//!
//! Each test builds a history with the domain's own deciders (`decide`, then `evolve`),
//! appends it through `EventStore::append`, lets the runner feed the projection, and
//! checks the public queries: the search with every filter (B4), counts and the
//! moderation log (B3), published contributions, the calendar, the places of a
//! gathering (B6), and that a rebuild gives the same tables. Personal parts are sealed
//! under a test key with counted nonces (this crate cannot name a random source).

#[path = "../common/mod.rs"]
mod common;

use std::collections::BTreeMap;

use amtsbuch_domain::event::DomainEvent;
use amtsbuch_domain::participation::contribution::{
    self, Content, ContributionCommand, ContributionState, ReportReason, Submit,
};
use amtsbuch_domain::participation::gathering::{
    self, GatheringCommand, GatheringKind, GatheringState, Registrant,
};
use amtsbuch_domain::participation::procedure::{
    self, DraftProcedure, ProcedureCommand, ProcedureState, PublicStatus, ScheduleRound,
};
use amtsbuch_domain::participation::{
    Ags, BoundingBox, ContributionId, ContributionKind, ContributionText, DocumentRef, Format,
    GatheringId, Geometry, ParticipantId, Position, ProcedureId, Pseudonym, Reason, RegistrationId,
    RoundId, Sha256Hex, Stage, Title, Topic,
};
use amtsbuch_domain::AuthorityId;
use amtsbuch_infra::AnyStore;
use amtsbuch_projections::participation::{self as rm, SearchQuery};
use amtsbuch_projections::{rebuild_among, runner, Dialect, Projection, ReadDb, RunnerHandle};
use amtsbuch_testkit::TestSealer;
use common::*;
use serde_json::json;
use sqlx::types::chrono::{DateTime, Utc};
use sqlx::types::Uuid;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

fn days(n: u64) -> std::time::Duration {
    std::time::Duration::from_secs(n * 86_400)
}

fn hours(n: u64) -> std::time::Duration {
    std::time::Duration::from_secs(n * 3_600)
}

fn id(n: u128) -> Uuid {
    Uuid::from_u128(0x0193_a1b2_0000_7000_8000_0000_0000_0000 | n)
}

const T0: &str = "2026-03-02T08:00:00Z";
const START: &str = "2026-04-01T00:00:00Z";

struct World {
    /// Appends the events, sealing personal parts under a test key.
    sealer: TestSealer,
    procedures: BTreeMap<ProcedureId, ProcedureState>,
    contributions: BTreeMap<ContributionId, ContributionState>,
    gatherings: BTreeMap<GatheringId, GatheringState>,
}

impl World {
    fn new(store: AnyStore) -> Self {
        Self {
            sealer: TestSealer::new(store),
            procedures: BTreeMap::new(),
            contributions: BTreeMap::new(),
            gatherings: BTreeMap::new(),
        }
    }

    async fn append<E: DomainEvent>(&mut self, event: &E) -> u64 {
        self.sealer.append(event).await
    }

    async fn procedure(&mut self, pid: ProcedureId, command: ProcedureCommand) {
        let state = self.procedures.remove(&pid).unwrap_or_default();
        let events = procedure::decide(&command, &state).expect("procedure decided");
        let mut state = state;
        for e in &events {
            self.append(e).await;
            state = procedure::evolve(state, e);
        }
        self.procedures.insert(pid, state);
    }

    async fn contribution(&mut self, cid: ContributionId, command: ContributionCommand<'_>) {
        let state = self.contributions.remove(&cid).unwrap_or_default();
        let events = contribution::decide(&command, &state).expect("contribution decided");
        let mut state = state;
        for e in &events {
            self.append(e).await;
            state = contribution::evolve(state, e);
        }
        self.contributions.insert(cid, state);
    }

    async fn gathering(&mut self, gid: GatheringId, command: GatheringCommand) {
        let state = self.gatherings.remove(&gid).unwrap_or_default();
        let events = gathering::decide(&command, &state).expect("gathering decided");
        let mut state = state;
        for e in &events {
            self.append(e).await;
            state = gathering::evolve(state, e);
        }
        self.gatherings.insert(gid, state);
    }

    /// Drafts a procedure with one round from `START`, announced before it, and moves it
    /// on to `status`.
    #[allow(
        clippy::too_many_arguments,
        reason = "a test fixture with every search facet"
    )]
    async fn procedure_in(
        &mut self,
        n: u128,
        format: Format,
        title: &str,
        topics: &[&str],
        ags: &str,
        position: (f64, f64),
        status: PublicStatus,
    ) -> ProcedureId {
        let pid = ProcedureId(id(n));
        let authority = if n.is_multiple_of(2) {
            "stadt-dresden"
        } else {
            "stadt-leipzig"
        };
        self.procedure(
            pid,
            ProcedureCommand::Draft(DraftProcedure {
                procedure_id: pid,
                authority: AuthorityId::parse(authority).expect("authority"),
                format,
                title: Title::parse(title).expect("title"),
                topics: topics
                    .iter()
                    .map(|t| Topic::parse(t).expect("topic"))
                    .collect(),
                region: Ags::parse(ags).expect("ags"),
                geometry: Some(Geometry::Point {
                    coordinates: Position::new(position.0, position.1).expect("position"),
                }),
                accepts_late: false,
                report_threshold: None,
                survey: None,
                at: at(T0),
            }),
        )
        .await;
        if status == PublicStatus::Draft {
            return pid;
        }
        let stage = (format == Format::Bauleitplanung).then_some(Stage::Auslegung32);
        self.procedure(
            pid,
            ProcedureCommand::ScheduleRound(ScheduleRound {
                round_id: RoundId(id(0x1000 + n)),
                stage,
                starts_at: at(START),
                ends_at: at(START) + days(31),
                documents: vec![DocumentRef {
                    sha256: Sha256Hex::parse(&format!("{:064x}", n)).expect("hash"),
                    size: 1000,
                    title: Title::parse("Planzeichnung").expect("title"),
                }],
                preclusion_notice: true,
                at: at(T0),
            }),
        )
        .await;
        self.procedure(
            pid,
            ProcedureCommand::Announce {
                at: at("2026-03-20T00:00:00Z"),
            },
        )
        .await;
        let end = at(START) + days(31);
        let reason = Reason::parse("Planungsziel entfallen").expect("reason");
        let summary =
            amtsbuch_domain::participation::PublicText::parse("Beschlossen").expect("text");
        let steps: Vec<ProcedureCommand> = match status {
            PublicStatus::Draft | PublicStatus::Announced | PublicStatus::Active => vec![],
            PublicStatus::Evaluating => vec![ProcedureCommand::StartEvaluation { at: end }],
            PublicStatus::Decided => vec![
                ProcedureCommand::StartEvaluation { at: end },
                ProcedureCommand::Decide { summary, at: end },
            ],
            PublicStatus::Archived => vec![
                ProcedureCommand::StartEvaluation { at: end },
                ProcedureCommand::Decide { summary, at: end },
                ProcedureCommand::Archive { at: end },
            ],
            PublicStatus::Cancelled => vec![ProcedureCommand::Cancel {
                reason,
                at: at(START),
            }],
        };
        for step in steps {
            self.procedure(pid, step).await;
        }
        pid
    }

    async fn comment(
        &mut self,
        pid: ProcedureId,
        n: u128,
        author: ParticipantId,
    ) -> ContributionId {
        let cid = ContributionId(id(0x2000 + n));
        let state = self.procedures[&pid].clone();
        let content = Content {
            pseudonym: Some(Pseudonym::parse("Radlerin").expect("pseudonym")),
            text: Some(ContributionText::parse("Bitte einen Radweg.").expect("text")),
            ..Content::default()
        };
        self.contribution(
            cid,
            ContributionCommand::Submit(Submit {
                contribution_id: cid,
                procedure: state.procedure().expect("drafted"),
                kind: ContributionKind::Comment,
                author,
                content,
                attachments: vec![],
                choices: Default::default(),
                at: at(START) + hours(u64::try_from(n).expect("small")),
            }),
        )
        .await;
        cid
    }
}

async fn caught_up(handle: &RunnerHandle, store: &AnyStore) {
    let target = head(store).await;
    for name in handle.names() {
        reach(&mut handle.applied(name).expect("projection runs"), target).await;
    }
}

fn projections() -> Vec<std::sync::Arc<dyn Projection>> {
    rm::projections()
}

async fn ids(db: &ReadDb, q: SearchQuery, now: DateTime<Utc>) -> Vec<String> {
    let mut found: Vec<String> = rm::search(db, &q, now)
        .await
        .expect("search")
        .into_iter()
        .map(|r| r.procedure_id)
        .collect();
    found.sort();
    found
}

fn query() -> SearchQuery {
    SearchQuery {
        limit: 100,
        ..SearchQuery::default()
    }
}

const DRESDEN: (f64, f64) = (13.7373, 51.0504);
const LEIPZIG: (f64, f64) = (12.3731, 51.3397);

/// B4: the search filters by status, format, AGS, topic, authority, period, box and text;
/// archived procedures only on request, drafts never.
async fn the_search_filters_by_every_facet(t: TestDb) {
    let store = t.store.clone();
    let db = t.db();
    let mut w = World::new(store.clone());
    let handle = runner::spawn_with(store.clone(), projections(), quick(5));
    let bplan = w
        .procedure_in(
            2,
            Format::Bauleitplanung,
            "Bebauungsplan Nr. 357 Dresden-Johannstadt",
            &["wohnen"],
            "14612000",
            DRESDEN,
            PublicStatus::Active,
        )
        .await;
    let dialog = w
        .procedure_in(
            3,
            Format::Dialog,
            "Radverkehrskonzept Leipzig",
            &["verkehr"],
            "14713000",
            LEIPZIG,
            PublicStatus::Active,
        )
        .await;
    let decided = w
        .procedure_in(
            4,
            Format::Bauleitplanung,
            "Bebauungspläne Dresden-Löbtau",
            &["wohnen", "gewerbe"],
            "14612000",
            DRESDEN,
            PublicStatus::Decided,
        )
        .await;
    let archived = w
        .procedure_in(
            6,
            Format::Bauleitplanung,
            "Bebauungsplan Dresden-Pieschen",
            &["wohnen"],
            "14612000",
            DRESDEN,
            PublicStatus::Archived,
        )
        .await;
    let draft = w
        .procedure_in(
            8,
            Format::Bauleitplanung,
            "Bebauungsplan Dresden-Plauen",
            &["wohnen"],
            "14612000",
            DRESDEN,
            PublicStatus::Draft,
        )
        .await;
    let cancelled = w
        .procedure_in(
            5,
            Format::Dialog,
            "Stadtteildialog Grünau",
            &["umwelt"],
            "14713000",
            LEIPZIG,
            PublicStatus::Cancelled,
        )
        .await;
    caught_up(&handle, &store).await;
    let s = |p: ProcedureId| p.to_string();
    let sorted = |mut v: Vec<String>| {
        v.sort();
        v
    };
    let during = at("2026-04-15T00:00:00Z");
    let before = at("2026-03-25T00:00:00Z");

    // Without a status: everything public but archived; drafts never.
    assert_eq!(
        ids(&db, query(), during).await,
        sorted(vec![s(bplan), s(dialog), s(decided), s(cancelled)])
    );
    assert_eq!(
        ids(
            &db,
            SearchQuery {
                status: Some(PublicStatus::Archived),
                ..query()
            },
            during
        )
        .await,
        vec![s(archived)]
    );
    // Active from the first round's start; announced before it.
    assert_eq!(
        ids(
            &db,
            SearchQuery {
                status: Some(PublicStatus::Active),
                ..query()
            },
            during
        )
        .await,
        sorted(vec![s(bplan), s(dialog)])
    );
    assert_eq!(
        ids(
            &db,
            SearchQuery {
                status: Some(PublicStatus::Active),
                ..query()
            },
            before
        )
        .await,
        Vec::<String>::new()
    );
    assert_eq!(
        ids(
            &db,
            SearchQuery {
                status: Some(PublicStatus::Announced),
                ..query()
            },
            before
        )
        .await,
        sorted(vec![s(bplan), s(dialog)])
    );
    let active_bplan_dresden = SearchQuery {
        status: Some(PublicStatus::Active),
        format: Some(Format::Bauleitplanung),
        ags: Some(Ags::parse("14612000").expect("ags")),
        ..query()
    };
    assert_eq!(ids(&db, active_bplan_dresden, during).await, vec![s(bplan)]);
    assert_eq!(
        ids(
            &db,
            SearchQuery {
                topic: Some(Topic::parse("gewerbe").expect("topic")),
                ..query()
            },
            during
        )
        .await,
        vec![s(decided)]
    );
    assert_eq!(
        ids(
            &db,
            SearchQuery {
                authority: Some(AuthorityId::parse("stadt-leipzig").expect("a")),
                ..query()
            },
            during
        )
        .await,
        sorted(vec![s(dialog), s(cancelled)])
    );
    let leipzig_box = BoundingBox::parse("12.2,51.2,12.5,51.5").expect("bbox");
    assert_eq!(
        ids(
            &db,
            SearchQuery {
                bbox: Some(leipzig_box),
                ..query()
            },
            during
        )
        .await,
        sorted(vec![s(dialog), s(cancelled)])
    );
    // The period: every one of these has its round in April.
    assert_eq!(
        ids(
            &db,
            SearchQuery {
                from: Some(at("2026-06-01T00:00:00Z")),
                ..query()
            },
            during
        )
        .await,
        Vec::<String>::new()
    );
    assert_eq!(
        ids(
            &db,
            SearchQuery {
                from: Some(at("2026-04-10T00:00:00Z")),
                to: Some(at("2026-04-20T00:00:00Z")),
                ..query()
            },
            during
        )
        .await,
        sorted(vec![s(bplan), s(dialog), s(decided), s(cancelled)])
    );
    assert_eq!(
        ids(
            &db,
            SearchQuery {
                to: Some(at("2026-03-01T00:00:00Z")),
                ..query()
            },
            during
        )
        .await,
        Vec::<String>::new()
    );
    // Full text.
    let text = |q: &str| SearchQuery {
        text: Some(q.to_owned()),
        ..query()
    };
    assert_eq!(ids(&db, text("Johannstadt"), during).await, vec![s(bplan)]);
    assert_eq!(
        ids(&db, text("radverkehrskonzept leipzig"), during).await,
        vec![s(dialog)]
    );
    assert_eq!(
        ids(&db, text("Johannstadt Leipzig"), during).await,
        Vec::<String>::new()
    );
    assert_eq!(ids(&db, text("!!!"), during).await, Vec::<String>::new());
    assert_eq!(
        ids(
            &db,
            SearchQuery {
                status: Some(PublicStatus::Archived),
                ..text("Pieschen")
            },
            during
        )
        .await,
        vec![s(archived)]
    );
    assert_eq!(
        ids(&db, text("Pieschen"), during).await,
        Vec::<String>::new()
    );
    match db.dialect() {
        // PostgreSQL stems German: the plural finds the singular and back.
        Dialect::Postgres => assert_eq!(
            ids(&db, text("Bebauungsplänen"), during).await,
            sorted(vec![s(bplan), s(decided)])
        ),
        // FTS5 folds diacritics and takes each word as a prefix.
        Dialect::Sqlite => assert_eq!(
            ids(&db, text("bebauungsplan"), during).await,
            sorted(vec![s(bplan), s(decided)])
        ),
    }
    // Paging.
    let first = rm::search(
        &db,
        &SearchQuery {
            limit: 2,
            ..query()
        },
        during,
    )
    .await
    .expect("page");
    let second = rm::search(
        &db,
        &SearchQuery {
            limit: 2,
            offset: 2,
            ..query()
        },
        during,
    )
    .await
    .expect("page");
    assert_eq!(first.len() + second.len(), 4);
    assert!(first
        .iter()
        .all(|a| second.iter().all(|b| a.procedure_id != b.procedure_id)));
    // One procedure, also a draft, with its rounds; the public form says active.
    let row = rm::procedure(&db, &s(bplan))
        .await
        .expect("query")
        .expect("found");
    assert_eq!(row.to_json(&during)["status"], "active");
    assert_eq!(row.to_json(&during)["stage"], "auslegung32");
    assert_eq!(
        rm::procedure(&db, &s(decided))
            .await
            .expect("q")
            .expect("f")
            .stage
            .as_deref(),
        Some("satzungsbeschluss")
    );
    assert_eq!(
        rm::procedure(&db, &s(draft))
            .await
            .expect("q")
            .expect("f")
            .status,
        "draft"
    );
    let rounds = rm::rounds(&db, &s(bplan)).await.expect("rounds");
    assert_eq!(rounds.len(), 1);
    assert_eq!(rounds[0]["starts_at"], "2026-04-01T00:00:00.000000Z");
    assert_eq!(rounds[0]["documents"][0]["size"], 1000);
    // The calendar shows the rounds of public procedures only.
    let calendar = rm::calendar(&db, at("2026-04-01T00:00:00Z"), at("2026-04-02T00:00:00Z"))
        .await
        .expect("calendar");
    let on_calendar: Vec<&str> = calendar
        .iter()
        .filter_map(|i| i["procedure_id"].as_str())
        .collect();
    assert!(!on_calendar.contains(&s(draft).as_str()));
    assert_eq!(calendar.len(), 5);
    handle.shutdown().await;
}

/// B3: three reports hide a comment (it drops out of the list and the count), a moderator
/// unhides it, and the moderation log shows every step without a reporter.
async fn moderation_shows_in_counts_lists_and_the_log(t: TestDb) {
    let store = t.store.clone();
    let db = t.db();
    let mut w = World::new(store.clone());
    let handle = runner::spawn_with(store.clone(), projections(), quick(3));
    let pid = w
        .procedure_in(
            3,
            Format::Dialog,
            "Radverkehrskonzept Leipzig",
            &["verkehr"],
            "14713000",
            LEIPZIG,
            PublicStatus::Active,
        )
        .await;
    let author = ParticipantId(id(0xa0));
    let c1 = w.comment(pid, 1, author).await;
    let c2 = w.comment(pid, 2, author).await;
    let c3 = w.comment(pid, 3, author).await;
    caught_up(&handle, &store).await;
    let count = |db: ReadDb| async move {
        rm::procedure(&db, &pid.to_string())
            .await
            .expect("q")
            .expect("f")
            .contributions
    };
    assert_eq!(count(db.clone()).await, 3);

    let t1 = at(START) + days(2);
    for n in 1..=3 {
        w.contribution(
            c2,
            ContributionCommand::Report {
                reporter: ParticipantId(id(0xb0 + n)),
                reason: ReportReason::Offensive,
                threshold: 3,
                at: t1,
            },
        )
        .await;
    }
    w.contribution(c3, ContributionCommand::Withdraw { by: author, at: t1 })
        .await;
    caught_up(&handle, &store).await;
    assert_eq!(count(db.clone()).await, 1);
    let listed: Vec<String> = rm::published_contributions(&db, &pid.to_string(), 0, 100)
        .await
        .expect("list")
        .into_iter()
        .map(|c| c.contribution_id)
        .collect();
    assert_eq!(listed, vec![c1.to_string()]);
    let queue = rm::moderation_queue(&db, &[pid.to_string()], &[], 10)
        .await
        .expect("queue");
    assert_eq!(queue.len(), 1);
    assert!(queue[0].hidden && queue[0].reports == 3);

    w.contribution(
        c2,
        ContributionCommand::Unhide {
            reason: Reason::parse("Sachliche Kritik").expect("r"),
            at: t1 + hours(1),
        },
    )
    .await;
    caught_up(&handle, &store).await;
    assert_eq!(count(db.clone()).await, 2);
    let log = rm::moderation_log(&db, &pid.to_string())
        .await
        .expect("log");
    assert_eq!(
        log["counts"],
        json!({"reported:offensive": 3, "hidden": 1, "unhidden": 1})
    );
    let actions: Vec<&str> = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        vec!["reported", "reported", "reported", "hidden", "unhidden"]
    );
    assert_eq!(log["entries"][3]["trigger"], "threshold");
    assert_eq!(log["entries"][4]["reason"], "Sachliche Kritik");
    let text = log.to_string();
    for n in 1..=3 {
        assert!(
            !text.contains(&id(0xb0 + n).to_string()),
            "no reporter in the log: {text}"
        );
    }
    // The read model holds no plaintext of what was written.
    let contribution = rm::contribution(&db, &c1.to_string())
        .await
        .expect("q")
        .expect("f");
    assert_eq!(contribution.kind, "comment");
    handle.shutdown().await;
}

/// B6 as read: 50 registrations for 18 places show 18 confirmed and 32 waiting, and a
/// cancellation moves the first waiting up. A rebuild gives the same tables.
async fn places_and_a_rebuild(t: TestDb) {
    let store = t.store.clone();
    let db = t.db();
    let mut w = World::new(store.clone());
    let pid = w
        .procedure_in(
            9,
            Format::EventManagement,
            "Seminar Bürgerbeteiligung",
            &["bildung"],
            "14612000",
            DRESDEN,
            PublicStatus::Announced,
        )
        .await;
    let gid = GatheringId(id(0x30));
    w.gathering(
        gid,
        GatheringCommand::Schedule {
            gathering_id: gid,
            procedure_id: pid,
            kind: GatheringKind::Event,
            title: Title::parse("Seminar (begrenzt auf 18 Teilnehmende)").expect("title"),
            starts_at: at("2026-06-10T18:00:00Z"),
            ends_at: at("2026-06-10T21:00:00Z"),
            capacity: 18,
            at: at(T0),
        },
    )
    .await;
    let handle = runner::spawn_with(store.clone(), projections(), quick(8));
    for n in 0..50 {
        w.gathering(
            gid,
            GatheringCommand::Register {
                registration_id: RegistrationId(id(0x4000 + n)),
                registrant: ParticipantId(id(0x5000 + n)),
                data: Registrant {
                    name: Pseudonym::parse("Erika Mustermann").expect("name"),
                    contact: None,
                },
                at: at(T0),
            },
        )
        .await;
    }
    caught_up(&handle, &store).await;
    let g = rm::gathering(&db, &gid.to_string())
        .await
        .expect("q")
        .expect("found");
    assert_eq!(
        (g["confirmed"].as_i64(), g["waiting"].as_i64()),
        (Some(18), Some(32))
    );
    w.gathering(
        gid,
        GatheringCommand::Cancel {
            registration_id: RegistrationId(id(0x4000 + 5)),
            by: ParticipantId(id(0x5000 + 5)),
            at: at(T0),
        },
    )
    .await;
    caught_up(&handle, &store).await;
    let g = rm::gathering(&db, &gid.to_string())
        .await
        .expect("q")
        .expect("found");
    assert_eq!(
        (g["confirmed"].as_i64(), g["waiting"].as_i64()),
        (Some(18), Some(31))
    );
    let moved = rm::registration(&db, &RegistrationId(id(0x4000 + 18)).to_string())
        .await
        .expect("q")
        .expect("found");
    assert_eq!(moved.place, "confirmed");
    assert_eq!(
        rm::registration(&db, &RegistrationId(id(0x4000 + 5)).to_string())
            .await
            .expect("q")
            .expect("f")
            .place,
        "cancelled"
    );
    let calendar = rm::calendar(&db, at("2026-06-10T00:00:00Z"), at("2026-06-11T00:00:00Z"))
        .await
        .expect("calendar");
    assert_eq!(calendar.len(), 1);
    assert_eq!(calendar[0]["kind"], "event");
    handle.shutdown().await;

    let before = dump(&db).await;
    rebuild_among(&store, &projections(), rm::NAME, |_| {})
        .await
        .expect("rebuild");
    assert_eq!(dump(&db).await, before);
}

/// The public counts move with every event that changes what counts — submitted, hidden
/// by reports or by a moderator, shown again, withdrawn, withdrawn while hidden — and end
/// as the contributions' states say, as a recount of the table says, and as a rebuild
/// from the log says. The runner applies the log in batches of 3; the rebuild replays it
/// in one batch, in which a contribution is submitted and hidden, or submitted and
/// withdrawn, between the same two writes of the counts.
async fn counts_follow_every_event_and_a_rebuild(t: TestDb) {
    let store = t.store.clone();
    let db = t.db();
    let mut w = World::new(store.clone());
    let a = w
        .procedure_in(
            11,
            Format::Dialog,
            "Radverkehrskonzept Leipzig",
            &["verkehr"],
            "14713000",
            LEIPZIG,
            PublicStatus::Active,
        )
        .await;
    let b = w
        .procedure_in(
            12,
            Format::Dialog,
            "Spielplatz Johannstadt",
            &["wohnen"],
            "14612000",
            DRESDEN,
            PublicStatus::Active,
        )
        .await;
    let quiet = w
        .procedure_in(
            13,
            Format::Dialog,
            "Friedhof Plagwitz",
            &["umwelt"],
            "14713000",
            LEIPZIG,
            PublicStatus::Active,
        )
        .await;
    let handle = runner::spawn_with(store.clone(), projections(), quick(3));
    let author = |n: u128| ParticipantId(id(0xc00 + n));
    let mut c = Vec::new();
    for n in 1..=6 {
        c.push(w.comment(a, 0x100 + n, author(n)).await);
    }
    for n in 7..=9 {
        c.push(w.comment(b, 0x100 + n, author(n)).await);
    }
    let t1 = at(START) + days(12);
    let reason = |r: &str| Reason::parse(r).expect("reason");
    // c[1]: hidden by three reports.
    for n in 1..=3 {
        w.contribution(
            c[1],
            ContributionCommand::Report {
                reporter: ParticipantId(id(0xd00 + n)),
                reason: ReportReason::Spam,
                threshold: 3,
                at: t1,
            },
        )
        .await;
    }
    // c[2]: withdrawn.
    w.contribution(
        c[2],
        ContributionCommand::Withdraw {
            by: author(3),
            at: t1,
        },
    )
    .await;
    // c[3]: hidden, withdrawn while hidden, shown again: it stays withdrawn.
    w.contribution(
        c[3],
        ContributionCommand::Hide {
            reason: reason("Werbung"),
            at: t1,
        },
    )
    .await;
    w.contribution(
        c[3],
        ContributionCommand::Withdraw {
            by: author(4),
            at: t1,
        },
    )
    .await;
    w.contribution(
        c[3],
        ContributionCommand::Unhide {
            reason: reason("Irrtum"),
            at: t1 + hours(1),
        },
    )
    .await;
    // c[4]: hidden, shown again.
    w.contribution(
        c[4],
        ContributionCommand::Hide {
            reason: reason("Werbung"),
            at: t1,
        },
    )
    .await;
    w.contribution(
        c[4],
        ContributionCommand::Unhide {
            reason: reason("Sachlich"),
            at: t1 + hours(1),
        },
    )
    .await;
    // c[7]: hidden, then withdrawn; a later submission in the same procedure.
    w.contribution(
        c[7],
        ContributionCommand::Hide {
            reason: reason("Werbung"),
            at: t1,
        },
    )
    .await;
    w.contribution(
        c[7],
        ContributionCommand::Withdraw {
            by: author(8),
            at: t1,
        },
    )
    .await;
    c.push(w.comment(b, 0x110, author(10)).await);
    caught_up(&handle, &store).await;
    handle.shutdown().await;

    // What the contributions' states say: neither hidden nor withdrawn.
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for pid in [a, b, quiet] {
        expected.insert(pid.to_string(), 0);
    }
    for state in w.contributions.values() {
        let c = state.contribution().expect("submitted");
        if !c.hidden && c.withdrawn_at.is_none() {
            *expected.entry(c.procedure_id.to_string()).or_default() += 1;
        }
    }
    assert_eq!(
        expected,
        BTreeMap::from([
            (a.to_string(), 3),
            (b.to_string(), 3),
            (quiet.to_string(), 0)
        ])
    );
    let stored = |db: ReadDb| async move {
        let mut out = BTreeMap::new();
        for pid in [a, b, quiet] {
            let row = rm::procedure(&db, &pid.to_string())
                .await
                .expect("procedure")
                .expect("found");
            out.insert(pid.to_string(), row.contributions);
        }
        out
    };
    assert_eq!(stored(db.clone()).await, expected);
    let recounted: BTreeMap<String, i64> = db
        .fetch_all(
            "SELECT procedure_id, COUNT(*) AS n FROM participation_contributions \
             WHERE hidden = FALSE AND withdrawn = FALSE GROUP BY procedure_id",
            &[],
        )
        .await
        .expect("recount")
        .iter()
        .map(|r| (r.get("procedure_id").expect("id"), r.get("n").expect("n")))
        .collect();
    assert_eq!(recounted.get(&a.to_string()), Some(&3));
    assert_eq!(recounted.get(&b.to_string()), Some(&3));
    // The search shows the same counts.
    let listed: BTreeMap<String, i64> = rm::search(&db, &query(), at(START) + days(13))
        .await
        .expect("search")
        .into_iter()
        .map(|r| (r.procedure_id, r.contributions))
        .collect();
    assert_eq!(listed, expected);

    let before = dump(&db).await;
    rebuild_among(&store, &projections(), rm::NAME, |_| {})
        .await
        .expect("rebuild");
    assert_eq!(dump(&db).await, before);
    assert_eq!(stored(db.clone()).await, expected);
}

async fn dump(db: &ReadDb) -> Vec<String> {
    let mut out = Vec::new();
    for (table, key) in [
        ("participation_procedures", "procedure_id"),
        ("participation_counts", "procedure_id"),
        ("participation_topics", "topic, procedure_id"),
        ("participation_rounds", "round_id"),
        ("participation_contributions", "contribution_id"),
        ("participation_moderation_log", "position"),
        ("participation_gatherings", "gathering_id"),
        ("participation_registrations", "registration_id, place"),
    ] {
        let rows = db
            .fetch_all(&format!("SELECT {key} FROM {table} ORDER BY {key}"), &[])
            .await
            .expect("dump");
        out.push(format!("{table}: {}", rows.len()));
    }
    let counts = db
        .fetch_all(
            "SELECT procedure_id, contributions FROM participation_counts ORDER BY procedure_id",
            &[],
        )
        .await
        .expect("counts");
    for row in &counts {
        out.push(format!(
            "{} counts {}",
            row.get::<String>("procedure_id").expect("id"),
            row.get::<i64>("contributions").expect("count")
        ));
    }
    let gatherings = db
        .fetch_all(
            "SELECT gathering_id, confirmed, waiting FROM participation_gatherings \
             ORDER BY gathering_id",
            &[],
        )
        .await
        .expect("gatherings");
    for row in &gatherings {
        out.push(format!(
            "{} confirmed {} waiting {}",
            row.get::<String>("gathering_id").expect("id"),
            row.get::<i64>("confirmed").expect("confirmed"),
            row.get::<i64>("waiting").expect("waiting")
        ));
    }
    let places = db
        .fetch_all("SELECT registration_id, place FROM participation_registrations ORDER BY registration_id", &[])
        .await
        .expect("places");
    for row in &places {
        out.push(format!(
            "{} {}",
            row.get::<String>("registration_id").expect("id"),
            row.get::<String>("place").expect("place")
        ));
    }
    out
}

common::on_both_adapters!(
    the_search_filters_by_every_facet,
    moderation_shows_in_counts_lists_and_the_log,
    places_and_a_rebuild,
    counts_follow_every_event_and_a_rebuild,
);
