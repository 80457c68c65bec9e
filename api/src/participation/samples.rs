//! What the service's own tests need of the participation domain
//! (`crate::module::TestSupport`): who may call each of its operations, and sample data
//! that makes each of them succeed — an active dialog with one comment of the citizen's
//! and one of another participant's.

use futures_util::future::BoxFuture;
use serde_json::{json, Value};
use uuid::Uuid;

use amtsbuch_domain::participation::contribution::{
    Content, ContributionCommand, ContributionState, Submit,
};
use amtsbuch_domain::participation::gathering::{
    GatheringCommand, GatheringKind, GatheringState, Registrant,
};
use amtsbuch_domain::participation::procedure::{
    DraftProcedure, ProcedureCommand, ProcedureState, ScheduleRound,
};
use amtsbuch_domain::participation::{
    Ags, ContributionId, ContributionKind, ContributionText, DocumentRef, Format, GatheringId,
    ParticipantId, ProcedureId, Pseudonym, RegistrationId, RoundId, Sha256Hex, Stage, Title, Topic,
};
use amtsbuch_domain::AuthorityId;

use crate::command::{current, execute, read_models_current, refused, Meta};
use amtsbuch_domain::access::Role::{Authority, Citizen, Moderator};

use crate::module::{AccessRow, SampleValues, Samples, Target, Target::Nobody};
use crate::AppState;

/// Who may call each participation operation: the public routes everybody, without a
/// token; an authority its own procedures (the samples' is the test authority's); a
/// citizen contributes, reports anybody else's public contribution, and gets receipts for
/// its own; a moderator of the test authority hides and unhides any contribution of its
/// procedures.
pub const ACCESS: &[AccessRow] = &[
    public("GET", "/participations"),
    public("GET", "/participations/calendar"),
    public("GET", "/participations/{id}"),
    public("GET", "/participations/{id}/contributions"),
    public("GET", "/participations/{id}/moderation-log"),
    public("GET", "/participations/{id}/results"),
    AccessRow::roles("POST", "/participations", &[Authority], Nobody),
    AccessRow::roles(
        "POST",
        "/participations/{id}/announcement",
        &[Authority],
        Nobody,
    ),
    AccessRow::roles("POST", "/participations/{id}/rounds", &[Authority], Nobody),
    AccessRow::roles(
        "POST",
        "/participations/{id}/cancellation",
        &[Authority],
        Nobody,
    ),
    AccessRow::roles(
        "POST",
        "/participations/{id}/contributions",
        &[Citizen],
        Nobody,
    ),
    AccessRow::roles(
        "GET",
        "/contributions/{id}/receipt",
        &[Citizen],
        Target::HiddenSubject {
            own_only: &[Citizen],
        },
    ),
    AccessRow::roles(
        "POST",
        "/contributions/{id}/reports",
        &[Citizen],
        Target::Subject { own_only: &[] },
    ),
    AccessRow::roles(
        "POST",
        "/participations/{id}/answers",
        &[Authority],
        Target::Subject { own_only: &[] },
    ),
    AccessRow::roles(
        "POST",
        "/contributions/{id}/withdrawal",
        &[Citizen],
        Target::HiddenSubject {
            own_only: &[Citizen],
        },
    ),
    AccessRow::roles(
        "PUT",
        "/contributions/{id}/support",
        &[Citizen],
        Target::Subject { own_only: &[] },
    ),
    AccessRow::roles(
        "DELETE",
        "/contributions/{id}/support",
        &[Citizen],
        Target::Subject { own_only: &[] },
    ),
    AccessRow::roles(
        "POST",
        "/participations/{id}/gatherings",
        &[Authority],
        Nobody,
    ),
    AccessRow::roles(
        "POST",
        "/participations/{id}/registrations",
        &[Citizen],
        Nobody,
    ),
    AccessRow::roles(
        "DELETE",
        "/registrations/{id}",
        &[Citizen],
        Target::HiddenSubject {
            own_only: &[Citizen],
        },
    ),
    AccessRow::roles(
        "POST",
        "/participations/{id}/evaluation",
        &[Authority],
        Nobody,
    ),
    AccessRow::roles(
        "POST",
        "/participations/{id}/weighing",
        &[Authority],
        Target::Subject { own_only: &[] },
    ),
    AccessRow::roles(
        "POST",
        "/participations/{id}/decision",
        &[Authority],
        Nobody,
    ),
    AccessRow::roles("GET", "/moderation/queue", &[Moderator], Nobody),
    AccessRow::roles(
        "POST",
        "/contributions/{id}/hiding",
        &[Moderator],
        Target::Subject { own_only: &[] },
    ),
    AccessRow::roles(
        "POST",
        "/contributions/{id}/unhiding",
        &[Moderator],
        Target::Subject { own_only: &[] },
    ),
];

const fn public(method: &'static str, path: &'static str) -> AccessRow {
    AccessRow {
        method,
        path,
        roles: None,
        target: Nobody,
    }
}

/// The support is withdrawn before the contribution is (which its supports would block),
/// the comment is hidden and shown again once nothing else needs it visible, the land-use
/// plan is evaluated before it is decided, and the cancellation ends the sample
/// procedure's participation for good.
pub const LAST: &[(&str, &str)] = &[
    ("DELETE", "/contributions/{id}/support"),
    ("POST", "/contributions/{id}/hiding"),
    ("POST", "/contributions/{id}/unhiding"),
    ("POST", "/contributions/{id}/withdrawal"),
    ("POST", "/participations/{id}/evaluation"),
    ("POST", "/participations/{id}/decision"),
    ("POST", "/participations/{id}/cancellation"),
];

/// The participation samples.
pub static SAMPLES: ParticipationSamples = ParticipationSamples;

/// The samples: `procedure` (a dialog) is drafted, announced and opened by the first
/// `seed`, and each seed adds a comment of its participant; `plan` (a land-use plan whose
/// only round ended ten days ago, recorded with the instants of then) is drafted by the
/// first seed, and each seed adds a statement of its participant made during the round.
#[derive(Debug, Clone, Copy)]
pub struct ParticipationSamples;

fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

impl Samples for ParticipationSamples {
    fn values(&self, citizen: &str) -> SampleValues {
        [
            ("participant", citizen),
            ("procedure", "0193a1b2-0000-7000-8000-0000000000f1"),
            ("contribution", "0193a1b2-0000-7000-8000-0000000000f2"),
            ("gathering", "0193a1b2-0000-7000-8000-0000000000f3"),
            ("registration", "0193a1b2-0000-7000-8000-0000000000f4"),
            ("plan", "0193a1b2-0000-7000-8000-0000000000f5"),
            ("statement", "0193a1b2-0000-7000-8000-0000000000f6"),
            ("reported", "0193a1b2-0000-7000-8000-0000000000f7"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    /// Runs the domain's commands through the command path, then waits for the read model.
    /// The state must have a sealer (the comment's text is sealed).
    fn seed<'a>(
        &'a self,
        _app: &'a axum::Router,
        state: &'a AppState,
        _operator: &'a str,
        values: &'a mut SampleValues,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            // One procedure for every caller's samples: the public routes name nobody.
            let pid = values
                .get("procedure")
                .and_then(|p| Uuid::parse_str(p).ok())
                .map(ProcedureId)
                .expect("the sample procedure is a UUID");
            let stream = pid.stream_id();
            let stream = &stream;
            let meta = Meta::system("test");
            let meta = &meta;
            let run = |command: ProcedureCommand| async move {
                execute::<ProcedureState>(
                    state,
                    stream,
                    &command,
                    |e| refused("procedure-refused", e),
                    meta,
                )
                .await
                .expect("the sample procedure")
            };
            let (existing, _) = current::<ProcedureState>(state, stream)
                .await
                .expect("the sample procedure's stream");
            let start = match existing.procedure().and_then(|p| p.rounds.first()) {
                Some(round) => round.starts_at,
                None => {
                    run(ProcedureCommand::Draft(DraftProcedure {
                        procedure_id: pid,
                        authority: AuthorityId::parse("lra-meissen").expect("authority"),
                        format: Format::Dialog,
                        title: Title::parse("Stadtteildialog Johannstadt").expect("title"),
                        topics: vec![Topic::parse("verkehr").expect("topic")],
                        region: Ags::parse("14627010").expect("ags"),
                        geometry: None,
                        accepts_late: false,
                        report_threshold: None,
                        survey: None,
                        at: now(),
                    }))
                    .await;
                    run(ProcedureCommand::Announce { at: now() }).await;
                    let start = now() + chrono::Duration::milliseconds(1);
                    run(ProcedureCommand::ScheduleRound(ScheduleRound {
                        round_id: RoundId(Uuid::now_v7()),
                        stage: None,
                        starts_at: start,
                        ends_at: start + chrono::Duration::days(30),
                        documents: vec![],
                        preclusion_notice: false,
                        at: start,
                    }))
                    .await;
                    start
                }
            };
            let (opened, _) = current::<ProcedureState>(state, stream)
                .await
                .expect("the sample procedure's stream");
            let author = values
                .get("participant")
                .and_then(|a| Uuid::parse_str(a).ok())
                .map(ParticipantId)
                .expect("the sample participant is a UUID");
            let procedure = opened.procedure().expect("drafted").clone();
            // The participant's comment, and one of another participant (derived from the
            // participant's account) for the participant to report: nobody reports its own.
            let mut other = *author.0.as_bytes();
            other[0] ^= 0x5a;
            for (name, author) in [
                ("contribution", author),
                ("reported", ParticipantId(Uuid::from_bytes(other))),
            ] {
                let cid = ContributionId(Uuid::now_v7());
                let submit = ContributionCommand::Submit(Submit {
                    contribution_id: cid,
                    procedure: &procedure,
                    kind: ContributionKind::Comment,
                    author,
                    content: Content {
                        pseudonym: Some(Pseudonym::parse("Anwohnerin").expect("pseudonym")),
                        text: Some(
                            ContributionText::parse("Mehr Bäume an der Elbe").expect("text"),
                        ),
                        ..Content::default()
                    },
                    attachments: vec![],
                    choices: Default::default(),
                    at: now().max(start),
                });
                execute::<ContributionState>(
                    state,
                    &cid.stream_id(),
                    &submit,
                    |e| refused("contribution-refused", e),
                    &Meta::system("test"),
                )
                .await
                .expect("the sample comment");
                values.insert(name.into(), cid.to_string());
            }
            // One gathering for everybody, and a registration of this participant.
            let gid = values
                .get("gathering")
                .and_then(|g| Uuid::parse_str(g).ok())
                .map(GatheringId)
                .expect("the sample gathering is a UUID");
            let (gathering, _) = current::<GatheringState>(state, &gid.stream_id())
                .await
                .expect("the sample gathering's stream");
            if gathering.gathering().is_none() {
                let starts_at = now() + chrono::Duration::days(20);
                execute::<GatheringState>(
                    state,
                    &gid.stream_id(),
                    &GatheringCommand::Schedule {
                        gathering_id: gid,
                        procedure_id: pid,
                        kind: GatheringKind::Event,
                        title: Title::parse("Seminar Bürgerbeteiligung").expect("title"),
                        starts_at,
                        ends_at: starts_at + chrono::Duration::hours(3),
                        capacity: 18,
                        at: now(),
                    },
                    |e| refused("gathering-refused", e),
                    &Meta::system("test"),
                )
                .await
                .expect("the sample gathering");
            }
            let rid = RegistrationId(Uuid::now_v7());
            execute::<GatheringState>(
                state,
                &gid.stream_id(),
                &GatheringCommand::Register {
                    registration_id: rid,
                    registrant: author,
                    data: Registrant {
                        name: Pseudonym::parse("Erika Mustermann").expect("name"),
                        contact: None,
                    },
                    at: now(),
                },
                |e| refused("registration-refused", e),
                &Meta::system("test"),
            )
            .await
            .expect("the sample registration");
            values.insert("registration".into(), rid.to_string());
            seed_plan(state, author, values).await;
            read_models_current(state, &[amtsbuch_projections::participation::NAME])
                .await
                .expect("the read model follows");
        })
    }

    fn path_param(&self, values: &SampleValues, path: &str, param: &str) -> Option<String> {
        match (path, param) {
            (
                "/participations/{id}/evaluation"
                | "/participations/{id}/weighing"
                | "/participations/{id}/decision",
                "{id}",
            ) => values.get("plan").cloned(),
            ("/contributions/{id}/reports", "{id}") => values.get("reported").cloned(),
            _ => {
                let first = path.split('/').nth(1).unwrap_or_default();
                self.param(values, first, param)
            }
        }
    }

    fn param(&self, values: &SampleValues, first: &str, param: &str) -> Option<String> {
        match (first, param) {
            ("participations", "{id}") => values.get("procedure").cloned(),
            ("contributions", "{id}") => values.get("contribution").cloned(),
            ("registrations", "{id}") => values.get("registration").cloned(),
            _ => None,
        }
    }

    fn body(&self, values: &SampleValues, method: &str, path: &str) -> Option<Value> {
        Some(match (method, path) {
            ("POST", "/participations") => json!({
                "format": "dialog",
                "title": "Stadtteildialog Pieschen",
                "region": "14627010",
                "topics": ["verkehr"],
            }),
            ("POST", "/participations/{id}/rounds") => json!({
                "starts_at": "2099-01-01T00:00:00Z",
                "ends_at": "2099-02-15T00:00:00Z",
                "documents": [],
            }),
            ("POST", "/participations/{id}/cancellation") => {
                json!({ "reason": "Das Vorhaben entfällt" })
            }
            ("POST", "/participations/{id}/contributions") => {
                json!({ "text": "Mehr Bänke am Elbufer", "pseudonym": "Anwohner" })
            }
            ("POST", "/contributions/{id}/reports") => json!({ "reason": "does_not_belong" }),
            ("POST", "/participations/{id}/weighing") => json!({
                "contribution_id": values.get("statement").cloned().unwrap_or_default(),
                "result": "considered",
            }),
            ("POST", "/participations/{id}/decision") => {
                json!({ "summary": "Satzungsbeschluss des Stadtrats" })
            }
            ("POST", "/contributions/{id}/hiding") => json!({ "reason": "Beleidigend" }),
            ("POST", "/contributions/{id}/unhiding") => {
                json!({ "reason": "Nach Prüfung zulässig" })
            }
            ("POST", "/participations/{id}/answers") => json!({
                "contribution_id": values.get("contribution").cloned().unwrap_or_default(),
                "state": "accepted",
                "text": "Wir prüfen Standorte für Bänke.",
                "publish": true,
            }),
            ("POST", "/participations/{id}/gatherings") => json!({
                "kind": "slot",
                "title": "Sprechstunde",
                "starts_at": "2099-03-01T09:00:00Z",
                "ends_at": "2099-03-01T09:30:00Z",
                "capacity": 1,
            }),
            ("POST", "/participations/{id}/registrations") => json!({
                "gathering_id": values.get("gathering").cloned().unwrap_or_default(),
                "name": "Max Mustermann",
            }),
            _ => return None,
        })
    }
}

/// The land-use plan of the samples, made once with the instants of its history (its
/// round ran from 30 to 20 days ago), and a statement of `author` made during the round.
async fn seed_plan(state: &AppState, author: ParticipantId, values: &mut SampleValues) {
    let pid = values
        .get("plan")
        .and_then(|p| Uuid::parse_str(p).ok())
        .map(ProcedureId)
        .expect("the sample plan is a UUID");
    let stream = pid.stream_id();
    let days = chrono::Duration::days;
    let run = |command: ProcedureCommand| {
        let stream = stream.clone();
        async move {
            execute::<ProcedureState>(
                state,
                &stream,
                &command,
                |e| refused("procedure-refused", e),
                &Meta::system("test"),
            )
            .await
            .expect("the sample plan")
        }
    };
    let (existing, _) = current::<ProcedureState>(state, &stream)
        .await
        .expect("the sample plan's stream");
    if existing.procedure().is_none() {
        run(ProcedureCommand::Draft(DraftProcedure {
            procedure_id: pid,
            authority: AuthorityId::parse("lra-meissen").expect("authority"),
            format: Format::Bauleitplanung,
            title: Title::parse("Bebauungsplan Nr. 12 Weinböhla-Mitte").expect("title"),
            topics: vec![Topic::parse("bauen").expect("topic")],
            region: Ags::parse("14627010").expect("ags"),
            geometry: None,
            accepts_late: false,
            report_threshold: None,
            survey: None,
            at: now() - days(40),
        }))
        .await;
        run(ProcedureCommand::Announce {
            at: now() - days(40),
        })
        .await;
        run(ProcedureCommand::ScheduleRound(ScheduleRound {
            round_id: RoundId(Uuid::now_v7()),
            stage: Some(Stage::Toeb42),
            starts_at: now() - days(30),
            ends_at: now() - days(20),
            documents: vec![DocumentRef {
                sha256: Sha256Hex::parse(&"ab".repeat(32)).expect("hash"),
                size: 1_234_567,
                title: Title::parse("Planzeichnung").expect("title"),
            }],
            preclusion_notice: true,
            at: now() - days(39),
        }))
        .await;
    }
    let (plan, _) = current::<ProcedureState>(state, &stream)
        .await
        .expect("the sample plan's stream");
    let procedure = plan.procedure().expect("drafted").clone();
    let cid = ContributionId(Uuid::now_v7());
    execute::<ContributionState>(
        state,
        &cid.stream_id(),
        &ContributionCommand::Submit(Submit {
            contribution_id: cid,
            procedure: &procedure,
            kind: ContributionKind::Statement,
            author,
            content: Content {
                text: Some(ContributionText::parse("Die Zufahrt ist zu schmal.").expect("text")),
                ..Content::default()
            },
            attachments: vec![],
            choices: Default::default(),
            at: now() - days(25),
        }),
        |e| refused("contribution-refused", e),
        &Meta::system("test"),
    )
    .await
    .expect("the sample statement");
    values.insert("statement".into(), cid.to_string());
}
