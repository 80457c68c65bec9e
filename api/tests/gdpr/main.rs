//! The GDPR layer through the router, on SQLite and on PostgreSQL: the data protection
//! officer's walk through docs/DPO.md (account, consent, disclosures granted and denied,
//! withdrawal, replay, receipt, Art. 15 export, Art. 30 overview, erasure against a
//! retention hold), who may act for whom, bad input, the sweeper, sealing of raw appends,
//! and commands racing on one consent.
//!
//! Each test is written once, as a function of an `Env`: a router with a real `Sealer`
//! (its KEK generated into a temporary directory), the projections running, and a ledger
//! signing every event, on a fresh store. The test kit's `on_both_adapters!` runs every
//! function on a temporary SQLite file and on a PostgreSQL schema of its own. Every answer
//! the tests look at is also checked against the OpenAPI document
//! (`common::schema::conforms`), so the typed bodies (`AccountView`, `ConsentView`,
//! `DisclosureView`) and the problems are what the document promises.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::Router;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use amtsbuch_api::auth::TokenRequest;
use amtsbuch_api::hub::HubLimits;
use amtsbuch_api::AppState;
use amtsbuch_domain::access::Role;
use amtsbuch_domain::chain::to_hex;
use amtsbuch_domain::record::format_timestamp;
use amtsbuch_domain::tlog_proof::{self, Leaf, TlogProof};
use amtsbuch_infra::vault::{SubjectId, SubjectStatus};
use amtsbuch_infra::{AnyStore, Direction, EventStore, RecordedEvent};

use amtsbuch_testkit_api as common;
mod golden;
use common::schema::conforms;
use common::Reply;

// ---------------------------------------------------------------------------------------
// The environment

/// A server with personal data enabled, read models and a signing ledger, on a fresh store.
struct Env {
    app: Router,
    state: AppState,
    store: AnyStore,
    doc: Value,
    runner: Option<amtsbuch_projections::RunnerHandle>,
    ledger: tokio::task::JoinHandle<()>,
    /// The database (and the directory of the KEK file), removed when the `Env` goes.
    _db: common::TestDb,
}

/// The ledger task signing checkpoints of `store` after every event, within 20 ms (as
/// `common::start_ledger`, keeping the task's handle to stop it at the end).
fn spawn_ledger(store: &AnyStore) -> tokio::task::JoinHandle<()> {
    amtsbuch_infra::ledger::spawn(
        store.clone(),
        amtsbuch_infra::ledger::LedgerConfig {
            origin: common::ORIGIN.into(),
            signers: vec![common::ledger_signer()],
            every_events: 1,
            interval: Duration::from_millis(20),
        },
    )
}

impl Env {
    async fn sqlite() -> Self {
        Self::start(common::Adapter::Sqlite).await
    }

    async fn start(adapter: common::Adapter) -> Self {
        let db = common::TestDb::fresh(adapter).await;
        let ledger = spawn_ledger(&db.store);
        Self::start_with(db, ledger).await
    }

    /// `sqlite`, with a ledger that has not signed yet: the test starts it
    /// (`spawn_ledger`) when it wants checkpoints.
    async fn sqlite_unsigned() -> Self {
        let db = common::TestDb::fresh(common::Adapter::Sqlite).await;
        Self::start_with(db, tokio::spawn(async {})).await
    }

    async fn start_with(db: common::TestDb, ledger: tokio::task::JoinHandle<()>) -> Self {
        let store = db.store.clone();
        let sealer = common::sealer(&store, db.dir());
        let ledger_info = amtsbuch_api::state::LedgerInfo {
            origin: common::ORIGIN.into(),
            vkeys: vec![common::ledger_signer().vkey()],
        };
        let mut state = common::state_with(&store, Some(ledger_info), HubLimits::default()).await;
        state.sealer = Some(sealer);
        let runner =
            amtsbuch_projections::spawn(store.clone(), amtsbuch_api::domains::projections());
        Self {
            app: amtsbuch_api::router(state.clone()),
            state,
            store,
            doc: serde_json::to_value(amtsbuch_api::router::openapi()).expect("document"),
            runner: Some(runner),
            ledger,
            _db: db,
        }
    }

    /// Stop the background tasks and remove the store.
    async fn close(mut self) {
        self.ledger.abort();
        if let Some(runner) = self.runner.take() {
            runner.shutdown().await;
        }
    }

    /// Send a request and check the answer against the document's operation `path`.
    async fn call(
        &self,
        method: &str,
        path: &str,
        uri: &str,
        token: &str,
        body: Option<Value>,
    ) -> Reply {
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        let reply = common::send(&self.app, common::request(method, uri, Some(token), body)).await;
        conforms(&self.doc, method, path, &reply);
        reply
    }

    /// `call`, which must answer `status`; the body as JSON.
    async fn expect(
        &self,
        status: StatusCode,
        method: &str,
        path: &str,
        uri: &str,
        token: &str,
        body: Option<Value>,
    ) -> Value {
        let reply = self.call(method, path, uri, token, body).await;
        assert_eq!(
            reply.status,
            status,
            "{method} {uri}: {}",
            String::from_utf8_lossy(&reply.bytes)
        );
        reply.json()
    }

    async fn head(&self) -> u64 {
        self.store.head().await.expect("head").position
    }

    async fn caught_up(&self) {
        common::read_models_caught_up(&self.store).await;
    }

    /// Open a personal account as the Servicekonto (an operator) does; its id.
    async fn open_account(&self, master_data: Value, expires_at: Option<DateTime<Utc>>) -> String {
        let mut body = json!({ "kind": "personal", "master_data": master_data });
        if let Some(x) = expires_at {
            body["expires_at"] = json!(format_timestamp(&x));
        }
        let reply = self
            .call("POST", "/accounts", "/accounts", &operator(), Some(body))
            .await;
        assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.json());
        let id = reply.json()["account_id"]
            .as_str()
            .expect("account id")
            .to_owned();
        assert_eq!(
            reply.header(header::LOCATION),
            Some(format!("/accounts/{id}").as_str())
        );
        id
    }

    /// Give a consent for `subject` as its citizen: `stammdaten` for prefilling
    /// Anträge by the Landratsamt Meißen, unless `scope` says otherwise.
    async fn give(
        &self,
        subject: &str,
        scope: Option<Value>,
        expires_at: Option<DateTime<Utc>>,
    ) -> String {
        let mut body = json!({
            "scope": scope.unwrap_or_else(|| json!({
                "categories": ["stammdaten"],
                "purposes": ["antrag-vorbefuellung"],
                "recipients": ["lra-meissen"],
            })),
            "notice": { "version": "2026-01", "sha256": notice_sha256() },
            "channel": "servicekonto_web",
        });
        if let Some(x) = expires_at {
            body["expires_at"] = json!(format_timestamp(&x));
        }
        let given = self
            .expect(
                StatusCode::CREATED,
                "POST",
                "/consents",
                "/consents",
                &citizen(subject),
                Some(body),
            )
            .await;
        assert_eq!(given["subject"], subject);
        assert_eq!(given["status"], "given");
        assert_eq!(given["valid"], true);
        given["consent_id"].as_str().expect("consent id").to_owned()
    }

    /// Ask, as the Wohngeld system of the Landratsamt Meißen, to use `subject`'s master
    /// data for prefilling an application.
    async fn disclose(&self, subject: &str) -> Value {
        self.disclose_for(subject, "stammdaten", "antrag-vorbefuellung")
            .await
    }

    /// Ask, as the Wohngeld system of the Landratsamt Meißen, to use `subject`'s data of
    /// `category` for `purpose`; the decision (granted or denied).
    async fn disclose_for(&self, subject: &str, category: &str, purpose: &str) -> Value {
        self.expect(
            StatusCode::CREATED,
            "POST",
            "/disclosures",
            "/disclosures",
            &wohngeld(),
            Some(json!({ "subject": subject, "categories": [category], "purpose": purpose })),
        )
        .await
    }

    /// `POST /dpo/subjects/{subject}/erasure` as the DPO, expecting `status`; the body.
    async fn erase(&self, status: StatusCode, subject: &str) -> Value {
        self.expect(
            status,
            "POST",
            "/dpo/subjects/{subject}/erasure",
            &format!("/dpo/subjects/{subject}/erasure"),
            &dpo(),
            None,
        )
        .await
    }

    /// Every stored event of a stream.
    async fn stream(&self, stream: &str) -> Vec<RecordedEvent> {
        let id = amtsbuch_domain::StreamId::parse(stream).expect("stream id");
        self.store
            .read_stream(&id, 1, Direction::Forwards, 1000)
            .await
            .expect("read stream")
    }

    /// Every stored event of the log.
    async fn log(&self) -> Vec<RecordedEvent> {
        self.store.read_all(0, 10_000).await.expect("read log")
    }

    async fn vault_status(&self, subject: &str) -> SubjectStatus {
        let sealer = self.state.sealer.as_ref().expect("sealer");
        sealer
            .vault()
            .status(&SubjectId::parse(subject).expect("subject"))
            .await
            .expect("vault status")
    }

    async fn assert_chain_intact(&self) {
        let verdict = amtsbuch_api::cli::verify::verify_store(&self.store, |_, _| {})
            .await
            .expect("verify");
        assert!(
            matches!(verdict, amtsbuch_api::cli::verify::Verdict::Intact { .. }),
            "{verdict:?}"
        );
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        // Without `close`, i.e. when a test failed: stop the tasks all the same; the
        // database goes with the `Env`.
        self.ledger.abort();
        drop(self.runner.take());
    }
}

/// Run `test` on an `Env` on a fresh database of `adapter`.
async fn on(adapter: common::Adapter, test: impl AsyncFnOnce(&Env)) {
    let env = Env::start(adapter).await;
    test(&env).await;
    env.close().await;
}

common::on_both_adapters!(
    using on;
    the_dpo_walk_of_the_guide,
    consents_are_renewed_narrowed_revoked_and_listed,
    accounts_link_identities_and_ask_for_deletion,
    a_citizen_acts_only_for_its_own_account,
    bad_input_gets_a_problem_and_changes_nothing,
    the_sweeper_erases_expired_identifications_and_records_expiry,
    raw_appends_seal_personal_data_and_retry_idempotently,
    racing_withdrawals_and_disclosures_stay_consistent,
    erasure_refuses_unknown_subjects_and_completes_interrupted_runs,
    a_failing_read_side_is_an_outage_to_retry,
    a_paper_forms_date_is_entered_by_staff_only,
);

/// A consent receipt carries a tlog-proof against a signed checkpoint. Asked for before
/// the ledger signed its first checkpoint, the consent exists and its receipt is only not
/// there yet: 409 `not-yet-checkpointed` with `Retry-After`, never the 404 that means "no
/// such consent"; once a checkpoint covers the consent, the same request succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receipt_before_the_first_checkpoint_is_not_yet_there() {
    let mut env = Env::sqlite_unsigned().await;
    let subject = env.open_account(erika(), None).await;
    let consent = env.give(&subject, None, None).await;
    let uri = format!("/consents/{consent}/receipt");
    let path = "/consents/{id}/receipt";
    let early = env.call("GET", path, &uri, &citizen(&subject), None).await;
    assert_eq!(early.status, StatusCode::CONFLICT, "{}", early.json());
    assert_eq!(
        early.json()["type"],
        "urn:amtsbuch:problem:not-yet-checkpointed"
    );
    assert_eq!(early.json()["latest_checkpoint_size"], 0);
    assert_eq!(early.header(header::RETRY_AFTER), Some("1"));

    env.ledger = spawn_ledger(&env.store);
    common::wait_for_checkpoint(&env.store, env.head().await).await;
    let receipt = env
        .expect(StatusCode::OK, "GET", path, &uri, &citizen(&subject), None)
        .await;
    assert_eq!(receipt["consentReceiptID"], consent.as_str());
    env.close().await;
}

/// The rule behind the access rows `OWN_FOR_CITIZENS` and `ANYBODY` of the GDPR module
/// (`amtsbuch_api::gdpr::samples`), as the handlers apply it after the
/// guard: each role that the route grants is asked by its own rule, and no role passes
/// because the token holds some other role.
#[test]
fn each_role_reaches_subjects_by_its_own_rule() {
    use amtsbuch_domain::gdpr::AccountId;
    use Role::{Citizen, Dpo, Operator};
    let own = AccountId(uuid::Uuid::parse_str(common::CITIZEN_ACCOUNT).expect("id"));
    let other = AccountId(uuid::Uuid::parse_str(common::OTHER_ACCOUNT).expect("id"));
    let reaches_everybody = |role: &Role| matches!(role, Dpo | Operator);
    for roles in common::role_sets() {
        let request = common::request_of(&roles, "lra-meissen", &["99108001000000"]);
        let caller = amtsbuch_domain::access::Principal::new(
            "caller",
            roles.iter().copied(),
            amtsbuch_domain::access::Bindings {
                account: request.account,
                authority: request.authority,
                regions: request.regions,
                services: request.services,
                bewirtschafter: request.bewirtschafter,
                moderates: request.moderates,
            },
        )
        .expect("principal");
        let on_own = amtsbuch_api::gdpr::act_for(&caller, &own);
        let on_other = amtsbuch_api::gdpr::act_for(&caller, &other);
        assert_eq!(
            on_own.is_ok(),
            roles.iter().any(|r| *r == Citizen || reaches_everybody(r)),
            "{roles:?} on its own account"
        );
        assert_eq!(
            on_other.is_ok(),
            roles.iter().any(reaches_everybody),
            "{roles:?} on another's account"
        );
        // Recorded as the account where the citizen's rule passed, else in the role that
        // passed.
        if let Ok(meta) = on_own {
            let expected = if roles.contains(&Citizen) {
                format!("account:{}", common::CITIZEN_ACCOUNT)
            } else {
                let role = roles.iter().find(|r| reaches_everybody(r)).expect("a role");
                format!("{role}:caller")
            };
            assert_eq!(meta.actor, Some(expected), "{roles:?}");
        }
    }
}

/// The command path writes the routing of its metadata into every envelope, so that a
/// domain's events reach the authority and the Fachverfahren they are addressed to — by
/// their NATS subject and through `may_see` — and an event without routing reaches
/// neither, as the GDPR events always have.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_path_routes_events_as_their_metadata_says() {
    use amtsbuch_api::command::{execute, refused, Meta};
    use amtsbuch_domain::access::{Bindings, Principal};
    use amtsbuch_domain::gdpr::retention::{HoldCommand, HoldId, HoldReason, HoldState, PlaceHold};
    use amtsbuch_domain::gdpr::AccountId;
    use amtsbuch_domain::subject::{subject, SubjectPrefix};
    use amtsbuch_domain::{AuthorityId, Routing, ServiceKey, StreamId};

    let env = Env::sqlite().await;
    let place = |hold: HoldId| {
        HoldCommand::Place(PlaceHold {
            hold_id: hold,
            subject: AccountId(uuid::Uuid::now_v7()),
            reason: HoldReason::Voucher,
            source: StreamId::parse("payment-1").expect("stream"),
            placed_at: Utc::now(),
            until: Utc::now() + chrono::Duration::days(365),
        })
    };
    let wohngeld_of_meissen = Principal::new(
        "fv",
        [Role::Fachverfahren],
        Bindings {
            authority: AuthorityId::parse("lra-meissen").ok(),
            services: vec![ServiceKey::parse("99108001000000").expect("service")],
            ..Bindings::default()
        },
    )
    .expect("principal");
    let prefix = SubjectPrefix::parse("amtsbuch").expect("prefix");

    let routed = HoldId(uuid::Uuid::now_v7());
    let meta = Meta::system("test").routed(Routing {
        authority: AuthorityId::parse("lra-meissen").ok(),
        service: ServiceKey::parse("99108001000000").ok(),
        tenant: Some("14627010".into()),
    });
    execute::<HoldState>(
        &env.state,
        &routed.stream_id(),
        &place(routed),
        |e| refused("hold-refused", e),
        &meta,
    )
    .await
    .expect("placed");
    let record = env.stream(routed.stream_id().as_str()).await[0]
        .record()
        .expect("record");
    assert_eq!(
        (
            record.authority.as_ref().map(AuthorityId::as_str),
            record.service.as_ref().map(ServiceKey::as_str),
            record.tenant.as_deref(),
            record.actor.as_deref(),
        ),
        (
            Some("lra-meissen"),
            Some("99108001000000"),
            Some("14627010"),
            Some("system:test")
        )
    );
    assert_eq!(
        subject(&prefix, &record),
        "amtsbuch.retention.lra-meissen.RetentionHoldPlaced.99108001000000"
    );
    assert!(wohngeld_of_meissen.may_see(&record));

    let unrouted = HoldId(uuid::Uuid::now_v7());
    execute::<HoldState>(
        &env.state,
        &unrouted.stream_id(),
        &place(unrouted),
        |e| refused("hold-refused", e),
        &Meta::system("test"),
    )
    .await
    .expect("placed");
    let record = env.stream(unrouted.stream_id().as_str()).await[0]
        .record()
        .expect("record");
    assert!(record.authority.is_none() && record.service.is_none() && record.tenant.is_none());
    assert_eq!(
        subject(&prefix, &record),
        "amtsbuch.retention._.RetentionHoldPlaced._"
    );
    assert!(!wohngeld_of_meissen.may_see(&record));
    env.close().await;
}

// ---------------------------------------------------------------------------------------
// Tokens

fn operator() -> String {
    common::token(Role::Operator)
}

fn dpo() -> String {
    common::token(Role::Dpo)
}

/// The Wohngeld system of the Landratsamt Meißen.
fn wohngeld() -> String {
    common::token_for(Role::Fachverfahren, "lra-meissen", &["99108001000000"])
}

/// A citizen signed in to the account `account`.
fn citizen(account: &str) -> String {
    let mut request = TokenRequest::new(format!("citizen-{account}"), [Role::Citizen]);
    request.account = Some(account.to_owned());
    request.ttl = Duration::from_secs(600);
    common::signed(&request)
}

/// The SHA-256 of the sample consents' notice text, as the API wants it.
fn notice_sha256() -> String {
    amtsbuch_domain::gdpr::consent::Sha256Digest::of(
        amtsbuch_api::gdpr::samples::NOTICE_TEXT.as_bytes(),
    )
    .to_hex()
}

fn erika() -> Value {
    json!({
        "type": "person",
        "given_names": "Erika",
        "family_name": "Mustermann",
        "email": "erika.mustermann@example.org",
    })
}

fn instant(text: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text.as_str().expect("an instant"))
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

/// Whether the stored event concerns `subject`: its account or erasure stream, a sealed
/// section of its key, or a consent, disclosure or retention event naming it.
fn concerns(e: &RecordedEvent, subject: &str) -> bool {
    let r = e.record().expect("record");
    let stream = r.stream_id.as_str();
    stream == format!("account-{subject}")
        || stream == format!("erasure-{subject}")
        || r.sealed.as_ref().is_some_and(|s| s.subject == subject)
        || ((stream.starts_with("consent-")
            || stream.starts_with("disclosure-")
            || stream.starts_with("retention-"))
            && r.data["subject"] == subject)
}

// ---------------------------------------------------------------------------------------
// The tests

/// docs/DPO.md from the first account to the verified log after erasure.
async fn the_dpo_walk_of_the_guide(env: &Env) {
    // An account; its master data is sealed under its own key.
    let subject = env.open_account(erika(), None).await;
    let account = env
        .expect(
            StatusCode::OK,
            "GET",
            "/accounts/{id}",
            &format!("/accounts/{subject}"),
            &citizen(&subject),
            None,
        )
        .await;
    assert_eq!(account["master_data"]["given_names"], "Erika");
    assert_eq!(account["status"], "active");

    // Erika gives consent; the Wohngeld system asks and is granted under it.
    let consent = env.give(&subject, None, None).await;
    let first = env.disclose(&subject).await;
    assert_eq!(first["decision"], "granted", "{first}");
    assert_eq!(first["basis"]["kind"], "consent");
    assert_eq!(first["basis"]["consent_id"], consent.as_str());
    assert_eq!(first["recipient"], "lra-meissen");

    // She withdraws; the next request is denied, naming the withdrawn consent.
    let withdrawn = env
        .expect(
            StatusCode::OK,
            "POST",
            "/consents/{id}/withdrawal",
            &format!("/consents/{consent}/withdrawal"),
            &citizen(&subject),
            None,
        )
        .await;
    assert_eq!(withdrawn["status"], "withdrawn");
    assert_eq!(withdrawn["valid"], false);
    assert_eq!(withdrawn["ended"]["kind"], "withdrawn");
    let second = env.disclose(&subject).await;
    assert_eq!(second["decision"], "denied", "{second}");
    assert_eq!(second["reason"]["code"], "consent_withdrawn");
    assert_eq!(second["reason"]["consent_id"], consent.as_str());
    assert!(instant(&first["at"]) < instant(&second["at"]));

    // The DPO replays the consents as of both instants, from the events themselves.
    for (at, status, events) in [(&first["at"], "given", 1), (&second["at"], "withdrawn", 2)] {
        let at = at.as_str().expect("at");
        let replay = env
            .expect(
                StatusCode::OK,
                "GET",
                "/dpo/subjects/{subject}/consents",
                &format!("/dpo/subjects/{subject}/consents?as_of={at}"),
                &dpo(),
                None,
            )
            .await;
        let consents = replay["consents"].as_array().expect("consents");
        assert_eq!(consents.len(), 1, "{replay}");
        assert_eq!(consents[0]["consent_id"], consent.as_str());
        assert_eq!(consents[0]["status"], status, "as of {at}");
        let logged = consents[0]["events"].as_array().expect("events");
        assert_eq!(logged.len(), events, "as of {at}");
        for e in logged {
            let stored = env
                .store
                .read_all(e["position"].as_u64().expect("position") - 1, 1)
                .await
                .expect("read")
                .pop()
                .expect("event");
            assert_eq!(e["leaf_hash"], to_hex(&stored.leaf_hash));
        }
    }

    // The disclosures under the consent, and the denial. The API waits for its read model.
    let disclosures = env
        .expect(
            StatusCode::OK,
            "GET",
            "/dpo/subjects/{subject}/disclosures",
            &format!("/dpo/subjects/{subject}/disclosures"),
            &dpo(),
            None,
        )
        .await;
    let under = disclosures["under_consent"][&consent]
        .as_array()
        .expect("under the consent");
    assert_eq!(under.len(), 1, "{disclosures}");
    assert_eq!(under[0]["disclosure_id"], first["disclosure_id"]);
    assert_eq!(under[0]["position"], first["position"]);
    let denied = disclosures["denied"].as_array().expect("denied");
    assert_eq!(denied.len(), 1);
    assert_eq!(denied[0]["disclosure_id"], second["disclosure_id"]);
    assert_eq!(disclosures["other_basis"], json!([]));

    // A second consent, for communication data, that runs out in ten days.
    let ten_days = Utc::now() + chrono::Duration::days(10);
    let expiring = env
        .give(
            &subject,
            Some(json!({
                "categories": ["kommunikationsdaten"],
                "purposes": ["bescheid-zustellung"],
                "recipients": ["lra-meissen"],
            })),
            Some(ten_days),
        )
        .await;

    // The Art. 30 overview and the expiring consents are read models a moment behind.
    env.caught_up().await;
    let processing = env
        .expect(
            StatusCode::OK,
            "GET",
            "/dpo/processing",
            "/dpo/processing",
            &dpo(),
            None,
        )
        .await;
    let rows = processing["rows"].as_array().expect("rows");
    let row = |kind: &str, purpose: &str| {
        rows.iter()
            .find(|r| r["kind"] == kind && r["purpose"] == purpose)
            .unwrap_or_else(|| panic!("no {kind} row for {purpose}: {processing}"))
    };
    let given = row("consent_given", "antrag-vorbefuellung");
    assert_eq!(given["category"], "stammdaten");
    assert_eq!(given["recipient"], "lra-meissen");
    assert_eq!(given["legal_basis"], "art6_1_a");
    assert_eq!(given["count"], 1);
    assert_eq!(
        row("disclosure_granted", "antrag-vorbefuellung")["count"],
        1
    );
    assert_eq!(
        row("disclosure_granted", "antrag-vorbefuellung")["legal_basis"],
        "art6_1_a"
    );
    assert_eq!(row("disclosure_denied", "antrag-vorbefuellung")["count"], 1);
    assert_eq!(
        row("consent_given", "bescheid-zustellung")["category"],
        "kommunikationsdaten"
    );

    for (days, listed) in [(30, true), (9, false)] {
        let list = env
            .expect(
                StatusCode::OK,
                "GET",
                "/dpo/consents/expiring",
                &format!("/dpo/consents/expiring?within_days={days}"),
                &dpo(),
                None,
            )
            .await;
        let ids: Vec<&Value> = list["consents"]
            .as_array()
            .expect("consents")
            .iter()
            .map(|c| &c["consent_id"])
            .collect();
        assert_eq!(
            ids.contains(&&json!(expiring)),
            listed,
            "within {days} days: {list}"
        );
        assert!(
            !ids.contains(&&json!(consent)),
            "a withdrawn consent does not expire"
        );
    }

    // The consent receipt: Kantara fields, and a tlog-proof of the ConsentGiven that
    // verifies offline with the log's key.
    common::wait_for_checkpoint(&env.store, env.head().await).await;
    let receipt = env
        .expect(
            StatusCode::OK,
            "GET",
            "/consents/{id}/receipt",
            &format!("/consents/{consent}/receipt"),
            &citizen(&subject),
            None,
        )
        .await;
    assert_eq!(receipt["version"], "KI-CR-v1.1.0");
    assert_eq!(receipt["jurisdiction"], "DE-SN");
    assert_eq!(receipt["consentReceiptID"], consent.as_str());
    assert_eq!(receipt["piiPrincipalId"], subject.as_str());
    assert_eq!(receipt["collectionMethod"], "servicekonto_web");
    assert_eq!(receipt["language"], "de");
    assert_eq!(receipt["sensitive"], false);
    assert_eq!(receipt["policyUrl"], "urn:amtsbuch:notice:2026-01");
    assert_eq!(receipt["publicKey"], common::ledger_signer().vkey());
    assert!(receipt["consentTimestamp"]
        .as_i64()
        .is_some_and(|t| t > 1_700_000_000));
    assert!(receipt["piiControllers"][0]["piiController"].is_string());
    let service = &receipt["services"][0];
    assert_eq!(service["service"], "lra-meissen");
    assert_eq!(service["purposes"][0]["purpose"], "antrag-vorbefuellung");
    assert_eq!(service["purposes"][0]["piiCategory"], json!(["stammdaten"]));
    assert_eq!(service["purposes"][0]["consentType"], "EXPLICIT");
    assert_eq!(receipt["amtsbuch"]["status"], "withdrawn");
    assert_eq!(receipt["amtsbuch"]["notice"]["sha256"], notice_sha256());
    let given_event = env.stream(&format!("consent-{consent}")).await.remove(0);
    let given_record = given_event.record().expect("record");
    assert_eq!(given_record.event_type.as_str(), "ConsentGiven");
    assert_eq!(receipt["amtsbuch"]["position"], given_event.position);
    assert_eq!(
        receipt["amtsbuch"]["event_id"],
        given_record.event_id.to_string()
    );
    assert_eq!(
        receipt["amtsbuch"]["leaf_hash"],
        to_hex(&given_event.leaf_hash)
    );
    let proof_text = receipt["amtsbuch"]["tlog_proof"]
        .as_str()
        .expect("tlog proof");
    let proof = TlogProof::parse(proof_text.as_bytes()).expect("a C2SP tlog-proof");
    assert_eq!(proof.index, given_event.position - 1);
    let verifier =
        amtsbuch_domain::note::Verifier::parse(&common::ledger_signer().vkey()).expect("vkey");
    let verified = tlog_proof::verify(
        &proof,
        Leaf::Record(&given_event.bytes),
        std::slice::from_ref(&verifier),
        common::ORIGIN,
    )
    .expect("the receipt verifies against the log's key");
    assert_eq!(verified.leaf_hash, given_event.leaf_hash);
    // The proof is for this leaf and no other.
    let other = env.stream(&format!("consent-{expiring}")).await.remove(0);
    assert!(tlog_proof::verify(
        &proof,
        Leaf::Record(&other.bytes),
        &[verifier],
        common::ORIGIN
    )
    .is_err());

    // Art. 15: everything about Erika, decrypted, each event with position and leaf hash.
    let export = env
        .expect(
            StatusCode::OK,
            "GET",
            "/dpo/subjects/{subject}/export",
            &format!("/dpo/subjects/{subject}/export"),
            &dpo(),
            None,
        )
        .await;
    assert_eq!(export["account"]["master_data"], erika());
    assert_eq!(export["erased_at"], Value::Null);
    let log = env.log().await;
    let expected: Vec<u64> = log
        .iter()
        .filter(|e| concerns(e, &subject))
        .map(|e| e.position)
        .collect();
    let events = export["events"].as_array().expect("events");
    let shown: Vec<u64> = events
        .iter()
        .map(|e| e["position"].as_u64().expect("position"))
        .collect();
    assert_eq!(shown, expected, "every event of the subject, in log order");
    assert_eq!(
        expected.len(),
        6,
        "account, two consents (given, withdrawn; given), two disclosures"
    );
    for e in events {
        let stored = &log[e["position"].as_u64().expect("position") as usize - 1];
        assert_eq!(e["leaf_hash"], to_hex(&stored.leaf_hash), "{e}");
        assert_eq!(
            e["event_id"],
            stored.record().expect("record").event_id.to_string()
        );
    }
    let opened = events
        .iter()
        .find(|e| e["type"] == "AccountOpened")
        .expect("AccountOpened");
    assert_eq!(
        opened["personal"]["master_data"]["given_names"], "Erika",
        "{opened}"
    );
    assert_eq!(export["consents"].as_array().map(Vec::len), Some(2));

    // Erasure against a retention hold is refused, naming the hold and its end; nothing
    // changes. The API sees a hold placed a moment ago.
    let hold = env
        .expect(
            StatusCode::CREATED,
            "POST",
            "/retention-holds",
            "/retention-holds",
            &dpo(),
            Some(json!({ "subject": subject, "reason": "cash_book", "source": "payment-4711" })),
        )
        .await;
    let hold_id = hold["hold_id"].as_str().expect("hold id").to_owned();
    let until = hold["until"].clone();
    let this_year = chrono::Datelike::year(&Utc::now());
    assert_eq!(
        until,
        json!(format!("{}-01-01T00:00:00.000000Z", this_year + 11))
    );
    let before = env.head().await;
    let refused = env.erase(StatusCode::CONFLICT, &subject).await;
    assert_eq!(refused["type"], "urn:amtsbuch:problem:retention-hold");
    assert_eq!(
        refused["holds"][0]["hold_id"],
        hold_id.as_str(),
        "{refused}"
    );
    assert_eq!(refused["holds"][0]["until"], until);
    assert_eq!(refused["holds"][0]["reason"], "cash_book");
    assert_eq!(refused["erasable_from"], until);
    let detail = refused["detail"].as_str().expect("detail");
    assert!(detail.contains(until.as_str().expect("until")), "{detail}");
    assert!(
        detail.contains("cash_book") && !detail.contains("String("),
        "{detail}"
    );
    assert_eq!(
        env.head().await,
        before,
        "a refused erasure changes nothing"
    );
    assert!(matches!(
        env.vault_status(&subject).await,
        SubjectStatus::Active { .. }
    ));
    let still = env
        .expect(
            StatusCode::OK,
            "GET",
            "/accounts/{id}",
            &format!("/accounts/{subject}"),
            &dpo(),
            None,
        )
        .await;
    assert_eq!(still["status"], "active");
    assert_eq!(still["master_data"]["given_names"], "Erika");

    // The procedure closed: the hold is released, and the erasure goes through.
    let released = env
        .expect(
            StatusCode::OK,
            "POST",
            "/retention-holds/{id}/release",
            &format!("/retention-holds/{hold_id}/release"),
            &operator(),
            None,
        )
        .await;
    assert_eq!(released["released"], true);
    let erased = env.erase(StatusCode::OK, &subject).await;
    assert_eq!(erased["already_erased"], false);
    assert_eq!(erased["account_deleted"], true);
    assert_eq!(
        erased["consents_revoked"],
        json!([expiring]),
        "the withdrawn one had ended"
    );
    assert_eq!(erased["key_ids"], json!(["k1"]));
    assert!(matches!(
        env.vault_status(&subject).await,
        SubjectStatus::Erased { .. }
    ));
    let record = env.stream(&format!("erasure-{subject}")).await;
    assert_eq!(record.len(), 1);
    assert_eq!(Some(record[0].position), erased["position"].as_u64());
    let record = record[0].record().expect("record");
    assert_eq!(record.event_type.as_str(), "SubjectErased");
    assert_eq!(record.data["key_ids"], json!(["k1"]));
    let revoked = env.stream(&format!("consent-{expiring}")).await;
    let revoked = revoked.last().expect("event").record().expect("record");
    assert_eq!(revoked.event_type.as_str(), "ConsentRevoked");
    assert_eq!(revoked.data["reason"], "account_deleted");
    let deleted = env.stream(&format!("account-{subject}")).await;
    let deleted = deleted.last().expect("event").record().expect("record");
    assert_eq!(deleted.event_type.as_str(), "AccountDeleted");
    assert_eq!(deleted.data["reason"], "controller_decision");

    // Her data reads as erased everywhere; the log still verifies.
    let export = env
        .expect(
            StatusCode::OK,
            "GET",
            "/dpo/subjects/{subject}/export",
            &format!("/dpo/subjects/{subject}/export"),
            &dpo(),
            None,
        )
        .await;
    assert_eq!(export["account"]["master_data"], json!({ "erased": true }));
    assert_eq!(export["account"]["status"], "deleted");
    assert_eq!(export["erased_at"], erased["erased_at"]);
    let opened = export["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["type"] == "AccountOpened")
        .expect("AccountOpened");
    assert_eq!(opened["personal"], json!({ "erased": true }));
    assert!(!export.to_string().contains("Mustermann"));
    let account = env
        .expect(
            StatusCode::OK,
            "GET",
            "/accounts/{id}",
            &format!("/accounts/{subject}"),
            &operator(),
            None,
        )
        .await;
    assert_eq!(account["master_data"], json!({ "erased": true }));
    assert_eq!(account["status"], "deleted");
    env.assert_chain_intact().await;

    // Erasing again changes nothing and says when it happened.
    let head = env.head().await;
    let again = env.erase(StatusCode::OK, &subject).await;
    assert_eq!(again["already_erased"], true, "{again}");
    assert_eq!(again["erased_at"], erased["erased_at"]);
    assert_eq!(env.head().await, head);

    // No new personal data, and no new consent, for an erased subject.
    let append = env
        .expect(
            StatusCode::CONFLICT,
            "POST",
            "/streams/{stream}/events",
            "/streams/procedure-0193a1b2-0000-7000-8000-0000000000e1/events",
            &operator(),
            Some(json!([{
                "type": "ApplicationSubmitted",
                "data": { "form": "wohngeld" },
                "personal": { "subject": subject, "data": { "name": "Erika Mustermann" } },
            }])),
        )
        .await;
    assert_eq!(append["type"], "urn:amtsbuch:problem:subject-erased");
    let consent_again = env
        .expect(
            StatusCode::CONFLICT,
            "POST",
            "/consents",
            "/consents",
            &operator(),
            Some(json!({
                "subject": subject,
                "scope": { "categories": ["stammdaten"], "purposes": ["antrag-vorbefuellung"], "recipients": ["lra-meissen"] },
                "notice": { "version": "2026-01", "sha256": notice_sha256() },
                "channel": "paper",
            })),
        )
        .await;
    assert_eq!(consent_again["type"], "urn:amtsbuch:problem:subject-erased");
    env.expect(
        StatusCode::CONFLICT,
        "PUT",
        "/accounts/{id}/master-data",
        &format!("/accounts/{subject}/master-data"),
        &operator(),
        Some(json!({ "master_data": erika() })),
    )
    .await;
    assert_eq!(env.head().await, head);
    // A disclosure is still decided and recorded: denied, every consent having ended.
    let after = env.disclose(&subject).await;
    assert_eq!(after["decision"], "denied");
}

/// Renewal, narrowing, revocation, and the citizen's list.
async fn consents_are_renewed_narrowed_revoked_and_listed(env: &Env) {
    let subject = env.open_account(erika(), None).await;
    let wide = json!({
        "categories": ["stammdaten", "kommunikationsdaten"],
        "purposes": ["antrag-vorbefuellung", "bescheid-zustellung"],
        "recipients": ["lra-meissen"],
    });
    let in_a_year = Utc::now() + chrono::Duration::days(365);
    let consent = env.give(&subject, Some(wide), Some(in_a_year)).await;
    let uri = |what: &str| format!("/consents/{consent}/{what}");

    let renewed = env
        .expect(
            StatusCode::OK,
            "POST",
            "/consents/{id}/renewal",
            &uri("renewal"),
            &citizen(&subject),
            Some(json!({
                "notice": { "version": "2026-02", "sha256": notice_sha256() },
                "channel": "app",
            })),
        )
        .await;
    assert_eq!(renewed["status"], "renewed");
    assert_eq!(renewed["notice_version"], "2026-02");
    assert_eq!(
        renewed["expires_at"],
        Value::Null,
        "a renewal without expiry runs until withdrawn"
    );

    // Narrowing to a subset; widening needs a new consent.
    let narrowed = env
        .expect(
            StatusCode::OK,
            "POST",
            "/consents/{id}/scope",
            &uri("scope"),
            &citizen(&subject),
            Some(json!({ "scope": {
                "categories": ["stammdaten"],
                "purposes": ["antrag-vorbefuellung"],
                "recipients": ["lra-meissen"],
            } })),
        )
        .await;
    assert_eq!(narrowed["scope"]["categories"], json!(["stammdaten"]));
    let head = env.head().await;
    let widened = env
        .expect(
            StatusCode::CONFLICT,
            "POST",
            "/consents/{id}/scope",
            &uri("scope"),
            &citizen(&subject),
            Some(json!({ "scope": {
                "categories": ["stammdaten", "verfahrensdaten"],
                "purposes": ["antrag-vorbefuellung"],
                "recipients": ["lra-meissen"],
            } })),
        )
        .await;
    assert_eq!(widened["type"], "urn:amtsbuch:problem:consent-refused");
    assert_eq!(env.head().await, head);
    // A disclosure of what was narrowed away is denied.
    let denied = env
        .disclose_for(&subject, "kommunikationsdaten", "antrag-vorbefuellung")
        .await;
    assert_eq!(
        denied["reason"]["code"], "categories_not_covered",
        "{denied}"
    );

    // The citizen's list shows it as it is now.
    let own = env
        .expect(
            StatusCode::OK,
            "GET",
            "/consents",
            "/consents",
            &citizen(&subject),
            None,
        )
        .await;
    assert_eq!(own.as_array().map(Vec::len), Some(1));
    assert_eq!(own[0]["consent_id"], consent.as_str());
    assert_eq!(own[0]["version"], 3);

    // The controller revokes it; renewing and narrowing an ended consent are refused,
    // withdrawing it again changes nothing.
    let revoked = env
        .expect(
            StatusCode::OK,
            "POST",
            "/consents/{id}/revocation",
            &uri("revocation"),
            &dpo(),
            Some(json!({ "reason": "recipient_discontinued", "reference": "Az. 12-0815/26" })),
        )
        .await;
    assert_eq!(revoked["status"], "revoked");
    assert_eq!(revoked["ended"]["reason"], "recipient_discontinued");
    let head = env.head().await;
    env.expect(
        StatusCode::CONFLICT,
        "POST",
        "/consents/{id}/renewal",
        &uri("renewal"),
        &citizen(&subject),
        Some(json!({ "notice": { "version": "2026-03", "sha256": notice_sha256() }, "channel": "app" })),
    )
    .await;
    env.expect(
        StatusCode::CONFLICT,
        "POST",
        "/consents/{id}/revocation",
        &uri("revocation"),
        &dpo(),
        Some(json!({ "reason": "legal_change" })),
    )
    .await;
    let again = env
        .expect(
            StatusCode::OK,
            "POST",
            "/consents/{id}/withdrawal",
            &uri("withdrawal"),
            &citizen(&subject),
            None,
        )
        .await;
    assert_eq!(again["status"], "revoked", "the first end counts");
    assert_eq!(env.head().await, head);

    // An unknown consent is not found, for every command.
    let unknown = "0193a1b2-0000-7000-8000-00000000dead";
    for (what, body) in [
        ("withdrawal", None),
        (
            "renewal",
            Some(
                json!({ "notice": { "version": "1", "sha256": notice_sha256() }, "channel": "app" }),
            ),
        ),
        (
            "scope",
            Some(
                json!({ "scope": { "categories": ["stammdaten"], "purposes": ["x"], "recipients": ["y"] } }),
            ),
        ),
        ("receipt", None),
    ] {
        let method = if what == "receipt" { "GET" } else { "POST" };
        env.expect(
            StatusCode::NOT_FOUND,
            method,
            &format!("/consents/{{id}}/{what}"),
            &format!("/consents/{unknown}/{what}"),
            &operator_or_citizen(what, &subject),
            body,
        )
        .await;
    }
    env.expect(
        StatusCode::NOT_FOUND,
        "POST",
        "/consents/{id}/revocation",
        &format!("/consents/{unknown}/revocation"),
        &dpo(),
        Some(json!({ "reason": "legal_change" })),
    )
    .await;
    assert_eq!(env.head().await, head);
}

/// The receipt is the citizen's (or the DPO's); the other commands are the citizen's or
/// the operator's.
fn operator_or_citizen(what: &str, subject: &str) -> String {
    if what == "receipt" {
        citizen(subject)
    } else {
        operator()
    }
}

/// Identity links raise the level of assurance; a deletion request makes the erasure one
/// at the subject's request.
async fn accounts_link_identities_and_ask_for_deletion(env: &Env) {
    let subject = env.open_account(erika(), None).await;
    let links = format!("/accounts/{subject}/identity-links");
    let linked = env
        .expect(
            StatusCode::CREATED,
            "POST",
            "/accounts/{id}/identity-links",
            &links,
            &operator(),
            Some(json!({ "method": { "kind": "elster" }, "pseudonym": "elster-4711" })),
        )
        .await;
    assert_eq!(linked["trust_level"], "substantial");
    let linked = env
        .expect(
            StatusCode::CREATED,
            "POST",
            "/accounts/{id}/identity-links",
            &links,
            &operator(),
            Some(json!({ "method": { "kind": "eid" }, "pseudonym": "eid-0815" })),
        )
        .await;
    assert_eq!(linked["trust_level"], "high");
    assert_eq!(linked["identity_links"].as_array().map(Vec::len), Some(2));
    assert!(
        !linked.to_string().contains("eid-0815"),
        "the pseudonym is not shown"
    );
    // The same identity twice is refused.
    env.expect(
        StatusCode::CONFLICT,
        "POST",
        "/accounts/{id}/identity-links",
        &links,
        &operator(),
        Some(json!({ "method": { "kind": "eid" }, "pseudonym": "eid-0815" })),
    )
    .await;

    // The citizen changes her master data; the same data again changes nothing.
    let master = format!("/accounts/{subject}/master-data");
    let mut moved = erika();
    moved["address"] = json!({ "street": "Hauptstraße 1", "postal_code": "01662", "locality": "Meißen", "country": "DE" });
    let changed = env
        .expect(
            StatusCode::OK,
            "PUT",
            "/accounts/{id}/master-data",
            &master,
            &citizen(&subject),
            Some(json!({ "master_data": moved })),
        )
        .await;
    assert_eq!(changed["master_data"]["address"]["locality"], "Meißen");
    let version = changed["version"].clone();
    let head = env.head().await;
    let same = env
        .expect(
            StatusCode::OK,
            "PUT",
            "/accounts/{id}/master-data",
            &master,
            &citizen(&subject),
            Some(json!({ "master_data": moved })),
        )
        .await;
    assert_eq!(same["version"], version);
    assert_eq!(env.head().await, head);

    // She asks for deletion (twice: the second changes nothing); changes are refused now.
    let request = format!("/accounts/{subject}/deletion-request");
    let asked = env
        .expect(
            StatusCode::OK,
            "POST",
            "/accounts/{id}/deletion-request",
            &request,
            &citizen(&subject),
            Some(json!({ "channel": "app" })),
        )
        .await;
    assert_eq!(asked["status"], "deletion_requested");
    let head = env.head().await;
    env.expect(
        StatusCode::OK,
        "POST",
        "/accounts/{id}/deletion-request",
        &request,
        &citizen(&subject),
        None,
    )
    .await;
    env.expect(
        StatusCode::CONFLICT,
        "PUT",
        "/accounts/{id}/master-data",
        &master,
        &citizen(&subject),
        Some(json!({ "master_data": erika() })),
    )
    .await;
    assert_eq!(env.head().await, head);

    // The DPO erases: the account is deleted at the subject's request.
    env.erase(StatusCode::OK, &subject).await;
    let deleted = env.stream(&format!("account-{subject}")).await;
    let deleted = deleted.last().expect("event").record().expect("record");
    assert_eq!(deleted.data["reason"], "subject_request");

    // Accounts that do not exist are not found.
    let nobody = "0193a1b2-0000-7000-8000-00000000beef";
    env.expect(
        StatusCode::NOT_FOUND,
        "GET",
        "/accounts/{id}",
        &format!("/accounts/{nobody}"),
        &operator(),
        None,
    )
    .await;
    for (method, path, body) in [
        (
            "PUT",
            "/accounts/{id}/master-data",
            Some(json!({ "master_data": erika() })),
        ),
        (
            "POST",
            "/accounts/{id}/identity-links",
            Some(json!({ "method": { "kind": "password" }, "pseudonym": "p" })),
        ),
        ("POST", "/accounts/{id}/deletion-request", None),
    ] {
        let uri = path.replace("{id}", nobody);
        env.expect(StatusCode::NOT_FOUND, method, path, &uri, &operator(), body)
            .await;
    }
}

/// A citizen's token reaches its own account and consents only — also when the token holds
/// a second role besides: a role never lifts a limit of another, it only adds what it may
/// do itself on the route (the DPO reads any account and consent, and nothing more here).
async fn a_citizen_acts_only_for_its_own_account(env: &Env) {
    let own = env.open_account(erika(), None).await;
    let other = env
        .open_account(
            json!({ "type": "person", "given_names": "Max", "family_name": "Mustermann" }),
            None,
        )
        .await;
    let others_consent = env.give(&other, None, None).await;
    let head = env.head().await;

    // (method, path, URI, body, whether the DPO may do it for anybody)
    let foreign: Vec<(&str, &str, String, Option<Value>, bool)> = vec![
        (
            "GET",
            "/accounts/{id}",
            format!("/accounts/{other}"),
            None,
            true,
        ),
        (
            "PUT",
            "/accounts/{id}/master-data",
            format!("/accounts/{other}/master-data"),
            Some(json!({ "master_data": erika() })),
            false,
        ),
        (
            "POST",
            "/accounts/{id}/deletion-request",
            format!("/accounts/{other}/deletion-request"),
            None,
            false,
        ),
        (
            "GET",
            "/consents/{id}",
            format!("/consents/{others_consent}"),
            None,
            true,
        ),
        (
            "POST",
            "/consents/{id}/withdrawal",
            format!("/consents/{others_consent}/withdrawal"),
            None,
            false,
        ),
        (
            "POST",
            "/consents/{id}/renewal",
            format!("/consents/{others_consent}/renewal"),
            Some(
                json!({ "notice": { "version": "2026-01", "sha256": notice_sha256() }, "channel": "app" }),
            ),
            false,
        ),
        (
            "POST",
            "/consents/{id}/scope",
            format!("/consents/{others_consent}/scope"),
            Some(
                json!({ "scope": { "categories": ["stammdaten"], "purposes": ["antrag-vorbefuellung"], "recipients": ["lra-meissen"] } }),
            ),
            false,
        ),
        (
            "GET",
            "/consents/{id}/receipt",
            format!("/consents/{others_consent}/receipt"),
            None,
            true,
        ),
        // A consent in the other's name, for a purpose it never agreed to.
        (
            "POST",
            "/consents",
            "/consents".to_owned(),
            Some(json!({
                "subject": other,
                "scope": { "categories": ["stammdaten"], "purposes": ["newsletter"], "recipients": ["lra-meissen"] },
                "notice": { "version": "2026-01", "sha256": notice_sha256() },
                "channel": "servicekonto_web",
            })),
            false,
        ),
    ];
    let mut tokens = vec![(vec![Role::Citizen], citizen(&own))];
    for second in [
        Role::Authority,
        Role::Fachverfahren,
        Role::Dpo,
        Role::Auditor,
    ] {
        let roles = vec![Role::Citizen, second];
        let mut request = common::request_of(&roles, "lra-meissen", &["99108001000000"]);
        request.account = Some(own.clone());
        tokens.push((roles, common::signed(&request)));
    }
    for (roles, mine) in &tokens {
        for (method, path, uri, body, dpo_may) in &foreign {
            let what = format!("{method} {uri} with roles {roles:?}");
            if *dpo_may && roles.contains(&Role::Dpo) {
                // The receipt may still wait for its checkpoint (409): past the checks is
                // what counts here.
                let reply = env.call(method, path, uri, mine, body.clone()).await;
                assert!(
                    ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&reply.status),
                    "{what}: {}",
                    reply.status
                );
                continue;
            }
            let refused = env
                .expect(StatusCode::FORBIDDEN, method, path, uri, mine, body.clone())
                .await;
            assert_eq!(refused["type"], "urn:amtsbuch:problem:forbidden", "{what}");
            assert!(
                !refused.to_string().contains("Max"),
                "{what}: the refusal shows the other's data"
            );
        }
    }
    assert_eq!(
        env.head().await,
        head,
        "nothing was changed for the other subject"
    );
    let still = env
        .expect(
            StatusCode::OK,
            "GET",
            "/consents/{id}",
            &format!("/consents/{others_consent}"),
            &dpo(),
            None,
        )
        .await;
    assert_eq!(still["status"], "given");
    // No consent in its name lets a Fachverfahren use the other's data for that purpose.
    let asked = env.disclose_for(&other, "stammdaten", "newsletter").await;
    assert_eq!(asked["decision"], "denied", "{asked}");
    // A token that is also the operator's may change the other's master data — as the
    // operator, and the log records it so, not as the citizen's account.
    let mut request = common::request_of(&[Role::Citizen, Role::Operator], "lra-meissen", &[]);
    request.account = Some(own.clone());
    env.expect(
        StatusCode::OK,
        "PUT",
        "/accounts/{id}/master-data",
        &format!("/accounts/{other}/master-data"),
        &common::signed(&request),
        Some(json!({ "master_data": { "type": "person", "given_names": "Max", "family_name": "Muster" } })),
    )
    .await;
    let changed = env.stream(&format!("account-{other}")).await;
    let record = changed.last().expect("an event").record().expect("record");
    assert_eq!(
        record.actor.as_deref(),
        Some(format!("operator:{}", request.subject).as_str())
    );
    let mine = citizen(&own);

    // Her own things she reaches; her list holds only her consents.
    env.expect(
        StatusCode::OK,
        "GET",
        "/accounts/{id}",
        &format!("/accounts/{own}"),
        &mine,
        None,
    )
    .await;
    let consent = env.give(&own, None, None).await;
    env.expect(
        StatusCode::OK,
        "GET",
        "/consents/{id}",
        &format!("/consents/{consent}"),
        &mine,
        None,
    )
    .await;
    let list = env
        .expect(StatusCode::OK, "GET", "/consents", "/consents", &mine, None)
        .await;
    let ids: Vec<&Value> = list
        .as_array()
        .expect("list")
        .iter()
        .map(|c| &c["consent_id"])
        .collect();
    assert_eq!(ids, vec![&json!(consent)]);
    // Naming herself as the subject is the same as naming nobody.
    let named = env
        .expect(
            StatusCode::CREATED,
            "POST",
            "/consents",
            "/consents",
            &mine,
            Some(json!({
                "subject": own,
                "scope": { "categories": ["verfahrensdaten"], "purposes": ["statistik"], "recipients": ["statistisches-landesamt"] },
                "notice": { "version": "2026-01", "sha256": notice_sha256() },
                "channel": "app",
            })),
        )
        .await;
    assert_eq!(named["subject"], own.as_str());
}

/// A malformed request: method, documented path, URI, token, body (a JSON string is sent
/// as it is), and the problem type it must get.
type BadCase<'a> = (&'a str, &'a str, String, &'a String, Option<Value>, &'a str);

/// Every GDPR route refuses malformed input with a 400 problem before anything is stored.
async fn bad_input_gets_a_problem_and_changes_nothing(env: &Env) {
    let subject = env.open_account(erika(), None).await;
    let consent = env.give(&subject, None, None).await;
    let notice = json!({ "version": "2026-01", "sha256": notice_sha256() });
    let scope = json!({ "categories": ["stammdaten"], "purposes": ["antrag-vorbefuellung"], "recipients": ["lra-meissen"] });
    let give = |patch: Value| {
        let mut body =
            json!({ "subject": subject, "scope": scope, "notice": notice, "channel": "paper" });
        for (k, v) in patch.as_object().expect("patch") {
            if v.is_null() {
                body.as_object_mut().expect("body").remove(k);
            } else {
                body[k] = v.clone();
            }
        }
        Some(body)
    };
    let tomorrow = format_timestamp(&(Utc::now() + chrono::Duration::days(1)));
    let last_year = format_timestamp(&(Utc::now() - chrono::Duration::days(365)));
    let upper = subject.to_uppercase();
    let a = |rest: &str| format!("/accounts/{subject}{rest}");
    let c = |rest: &str| format!("/consents/{consent}{rest}");
    let raw = |v: &str| Some(Value::String(v.to_owned()));
    let (op, dp, fv, me) = (operator(), dpo(), wohngeld(), citizen(&subject));

    // A birth date only as the record writes it, from 1900 to today.
    let born = |date: &str| {
        let mut data = erika();
        data["birth_date"] = json!(date);
        data
    };
    let tomorrow_date = (Utc::now() + chrono::Duration::days(1))
        .date_naive()
        .to_string();
    let mut birth_cases: Vec<BadCase> = Vec::new();
    for date in [
        "1990-5-7",
        " 1990-05-07",
        "+12345-01-01",
        "-0044-03-15",
        "1899-12-31",
        tomorrow_date.as_str(),
    ] {
        birth_cases.push((
            "POST",
            "/accounts",
            "/accounts".into(),
            &op,
            Some(json!({ "kind": "personal", "master_data": born(date) })),
            "invalid-body",
        ));
        birth_cases.push((
            "PUT",
            "/accounts/{id}/master-data",
            a("/master-data"),
            &op,
            Some(json!({ "master_data": born(date) })),
            "invalid-body",
        ));
    }
    let cases: Vec<BadCase> = birth_cases.into_iter().chain(vec![
        (
            "POST",
            "/accounts",
            "/accounts".into(),
            &op,
            raw("{\"kind\":"),
            "invalid-body",
        ),
        (
            "POST",
            "/accounts",
            "/accounts".into(),
            &op,
            Some(json!({ "kind": "personal" })),
            "invalid-body",
        ),
        (
            "POST",
            "/accounts",
            "/accounts".into(),
            &op,
            Some(json!({ "kind": "alien", "master_data": erika() })),
            "invalid-body",
        ),
        (
            "POST",
            "/accounts",
            "/accounts".into(),
            &op,
            Some(json!({ "kind": "personal", "master_data": erika(), "colour": "red" })),
            "invalid-body",
        ),
        (
            "POST",
            "/accounts",
            "/accounts".into(),
            &op,
            Some(
                json!({ "kind": "personal", "master_data": { "type": "person", "given_names": "E", "family_name": "M", "email": "no address" } }),
            ),
            "invalid-body",
        ),
        (
            "POST",
            "/accounts",
            "/accounts".into(),
            &op,
            Some(json!({ "kind": "personal", "master_data": erika(), "expires_at": "tomorrow" })),
            "invalid-body",
        ),
        (
            "GET",
            "/accounts/{id}",
            "/accounts/acc-1".into(),
            &op,
            None,
            "invalid-subject",
        ),
        (
            "GET",
            "/accounts/{id}",
            format!("/accounts/{upper}"),
            &op,
            None,
            "invalid-subject",
        ),
        (
            "PUT",
            "/accounts/{id}/master-data",
            a("/master-data"),
            &me,
            Some(json!({ "master_data": { "type": "person" } })),
            "invalid-body",
        ),
        (
            "PUT",
            "/accounts/{id}/master-data",
            a("/master-data"),
            &me,
            Some(json!([])),
            "invalid-body",
        ),
        (
            "PUT",
            "/accounts/{id}/master-data",
            "/accounts/x/master-data".into(),
            &op,
            Some(json!({ "master_data": erika() })),
            "invalid-subject",
        ),
        (
            "POST",
            "/accounts/{id}/identity-links",
            a("/identity-links"),
            &op,
            Some(json!({ "method": { "kind": "fingerprint" }, "pseudonym": "p" })),
            "invalid-body",
        ),
        (
            "POST",
            "/accounts/{id}/identity-links",
            a("/identity-links"),
            &op,
            Some(json!({ "method": { "kind": "eid" }, "pseudonym": "" })),
            "invalid-body",
        ),
        (
            "POST",
            "/accounts/{id}/identity-links",
            "/accounts/x/identity-links".into(),
            &op,
            Some(json!({ "method": { "kind": "eid" }, "pseudonym": "p" })),
            "invalid-subject",
        ),
        (
            "POST",
            "/accounts/{id}/deletion-request",
            a("/deletion-request"),
            &me,
            Some(json!({ "channel": "pigeon" })),
            "invalid-body",
        ),
        (
            "POST",
            "/accounts/{id}/deletion-request",
            "/accounts/x/deletion-request".into(),
            &op,
            None,
            "invalid-subject",
        ),
        (
            "POST",
            "/consents",
            "/consents".into(),
            &op,
            give(json!({ "notice": null })),
            "invalid-body",
        ),
        (
            "POST",
            "/consents",
            "/consents".into(),
            &op,
            give(json!({ "notice": { "version": "2026-01", "sha256": "abc" } })),
            "invalid-body",
        ),
        (
            "POST",
            "/consents",
            "/consents".into(),
            &op,
            give(
                json!({ "scope": { "categories": ["verfahrensdaten", "stammdaten"], "purposes": ["p"], "recipients": ["r"] } }),
            ),
            "invalid-body",
        ),
        (
            "POST",
            "/consents",
            "/consents".into(),
            &op,
            give(json!({ "scope": { "categories": [], "purposes": ["p"], "recipients": ["r"] } })),
            "invalid-body",
        ),
        (
            "POST",
            "/consents",
            "/consents".into(),
            &op,
            give(
                json!({ "scope": { "categories": ["stammdaten"], "purposes": ["Antrag Vorbefüllung"], "recipients": ["r"] } }),
            ),
            "invalid-body",
        ),
        (
            "POST",
            "/consents",
            "/consents".into(),
            &op,
            give(json!({ "subject": "acc-1" })),
            "invalid-subject",
        ),
        (
            "POST",
            "/consents",
            "/consents".into(),
            &op,
            give(json!({ "subject": null })),
            "invalid-body",
        ),
        (
            "POST",
            "/consents",
            "/consents".into(),
            &op,
            give(json!({ "channel": "fax" })),
            "invalid-body",
        ),
        (
            "POST",
            "/consents",
            "/consents".into(),
            &op,
            give(json!({ "legal_basis": "art6_1_f" })),
            "invalid-body",
        ),
        (
            "POST",
            "/consents",
            "/consents".into(),
            &op,
            give(json!({ "given_at": tomorrow })),
            "invalid-body",
        ),
        (
            "POST",
            "/consents",
            "/consents".into(),
            &me,
            give(json!({ "channel": "servicekonto_web", "given_at": last_year })),
            "invalid-body",
        ),
        (
            "GET",
            "/consents/{id}",
            "/consents/42".into(),
            &me,
            None,
            "invalid-consent-id",
        ),
        (
            "POST",
            "/consents/{id}/withdrawal",
            "/consents/42/withdrawal".into(),
            &me,
            None,
            "invalid-consent-id",
        ),
        (
            "POST",
            "/consents/{id}/withdrawal",
            c("/withdrawal"),
            &me,
            Some(json!({ "channel": 5 })),
            "invalid-body",
        ),
        (
            "POST",
            "/consents/{id}/withdrawal",
            c("/withdrawal"),
            &me,
            raw("not json"),
            "invalid-body",
        ),
        (
            "POST",
            "/consents/{id}/renewal",
            c("/renewal"),
            &me,
            Some(json!({ "notice": notice })),
            "invalid-body",
        ),
        (
            "POST",
            "/consents/{id}/renewal",
            "/consents/42/renewal".into(),
            &me,
            Some(json!({ "notice": notice, "channel": "app" })),
            "invalid-consent-id",
        ),
        (
            "POST",
            "/consents/{id}/scope",
            c("/scope"),
            &me,
            Some(json!({ "scope": { "categories": [], "purposes": ["p"], "recipients": ["r"] } })),
            "invalid-body",
        ),
        (
            "POST",
            "/consents/{id}/scope",
            "/consents/42/scope".into(),
            &me,
            Some(json!({ "scope": scope })),
            "invalid-consent-id",
        ),
        (
            "POST",
            "/consents/{id}/revocation",
            c("/revocation"),
            &dp,
            Some(json!({ "reason": "bored" })),
            "invalid-body",
        ),
        (
            "POST",
            "/consents/{id}/revocation",
            c("/revocation"),
            &dp,
            Some(json!({ "reason": "legal_change", "reference": " padded " })),
            "invalid-body",
        ),
        (
            "POST",
            "/consents/{id}/revocation",
            "/consents/42/revocation".into(),
            &dp,
            Some(json!({ "reason": "legal_change" })),
            "invalid-consent-id",
        ),
        (
            "GET",
            "/consents/{id}/receipt",
            "/consents/42/receipt".into(),
            &me,
            None,
            "invalid-consent-id",
        ),
        (
            "POST",
            "/disclosures",
            "/disclosures".into(),
            &fv,
            Some(json!({ "subject": "erika", "categories": ["stammdaten"], "purpose": "p" })),
            "invalid-subject",
        ),
        (
            "POST",
            "/disclosures",
            "/disclosures".into(),
            &fv,
            Some(json!({ "subject": subject, "categories": [], "purpose": "p" })),
            "invalid-body",
        ),
        (
            "POST",
            "/disclosures",
            "/disclosures".into(),
            &fv,
            Some(
                json!({ "subject": subject, "categories": ["stammdaten"], "purpose": "Bad Purpose" }),
            ),
            "invalid-body",
        ),
        (
            "POST",
            "/disclosures",
            "/disclosures".into(),
            &fv,
            Some(
                json!({ "subject": subject, "categories": ["stammdaten"], "purpose": "p", "other_basis": { "legal_basis": "art6_1_f", "reference": "§ 1" } }),
            ),
            "invalid-body",
        ),
        (
            "POST",
            "/disclosures",
            "/disclosures".into(),
            &fv,
            Some(json!({ "subject": subject, "categories": ["stammdaten"] })),
            "invalid-body",
        ),
        (
            "GET",
            "/dpo/subjects/{subject}/consents",
            "/dpo/subjects/erika/consents".into(),
            &dp,
            None,
            "invalid-subject",
        ),
        (
            "GET",
            "/dpo/subjects/{subject}/consents",
            format!("/dpo/subjects/{subject}/consents?as_of=yesterday"),
            &dp,
            None,
            "invalid-query",
        ),
        // An offset would be converted silently: only the record's own spelling is read.
        (
            "GET",
            "/dpo/subjects/{subject}/consents",
            format!("/dpo/subjects/{subject}/consents?as_of=2026-03-01T00:00:00%2B01:00"),
            &dp,
            None,
            "invalid-query",
        ),
        (
            "GET",
            "/dpo/subjects/{subject}/consents",
            format!("/dpo/subjects/{subject}/consents?colour=red"),
            &dp,
            None,
            "invalid-query",
        ),
        (
            "GET",
            "/dpo/subjects/{subject}/disclosures",
            "/dpo/subjects/erika/disclosures".into(),
            &dp,
            None,
            "invalid-subject",
        ),
        (
            "GET",
            "/dpo/subjects/{subject}/export",
            "/dpo/subjects/erika/export".into(),
            &dp,
            None,
            "invalid-subject",
        ),
        (
            "POST",
            "/dpo/subjects/{subject}/erasure",
            "/dpo/subjects/erika/erasure".into(),
            &dp,
            None,
            "invalid-subject",
        ),
        (
            "POST",
            "/dpo/subjects/{subject}/erasure",
            format!("/dpo/subjects/{upper}/erasure"),
            &dp,
            None,
            "invalid-subject",
        ),
        (
            "GET",
            "/dpo/consents/expiring",
            "/dpo/consents/expiring?within_days=0".into(),
            &dp,
            None,
            "invalid-query",
        ),
        (
            "GET",
            "/dpo/consents/expiring",
            "/dpo/consents/expiring?within_days=abc".into(),
            &dp,
            None,
            "invalid-query",
        ),
        (
            "GET",
            "/dpo/consents/expiring",
            "/dpo/consents/expiring?within_days=3661".into(),
            &dp,
            None,
            "invalid-query",
        ),
        (
            "GET",
            "/dpo/consents/expiring",
            "/dpo/consents/expiring?days=3".into(),
            &dp,
            None,
            "invalid-query",
        ),
        (
            "POST",
            "/retention-holds",
            "/retention-holds".into(),
            &dp,
            Some(json!({ "subject": subject, "reason": "forever", "source": "payment-1" })),
            "invalid-body",
        ),
        (
            "POST",
            "/retention-holds",
            "/retention-holds".into(),
            &dp,
            Some(json!({ "subject": subject, "reason": "voucher", "source": "Not A Stream" })),
            "invalid-body",
        ),
        (
            "POST",
            "/retention-holds",
            "/retention-holds".into(),
            &dp,
            Some(
                json!({ "subject": subject, "reason": "open_procedure", "source": "procedure-1" }),
            ),
            "invalid-body",
        ),
        (
            "POST",
            "/retention-holds",
            "/retention-holds".into(),
            &dp,
            Some(json!({ "subject": "erika", "reason": "voucher", "source": "payment-1" })),
            "invalid-subject",
        ),
        (
            "POST",
            "/retention-holds",
            "/retention-holds".into(),
            &dp,
            Some(
                json!({ "subject": subject, "reason": "voucher", "source": "payment-1", "until": "soon" }),
            ),
            "invalid-body",
        ),
        (
            "POST",
            "/retention-holds/{id}/release",
            "/retention-holds/42/release".into(),
            &dp,
            None,
            "invalid-hold-id",
        ),
        (
            "POST",
            "/retention-holds/{id}/release",
            format!("/retention-holds/{upper}/release"),
            &dp,
            None,
            "invalid-hold-id",
        ),
        (
            "POST",
            "/streams/{stream}/events",
            "/streams/application-1/events".into(),
            &op,
            Some(
                json!([{ "type": "ApplicationSubmitted", "data": {}, "personal": { "subject": "erika@example.org", "data": { "name": "Erika" } } }]),
            ),
            "invalid-subject",
        ),
    ]).collect();
    let head = env.head().await;
    for (method, path, uri, token, body, kind) in cases {
        let what = format!(
            "{method} {uri} {}",
            body.as_ref().map(Value::to_string).unwrap_or_default()
        );
        // A JSON string stands for a body sent as it is (malformed JSON).
        let reply = match body {
            Some(Value::String(text)) => {
                let reply = common::send(
                    &env.app,
                    common::request(method, &uri, Some(token), Body::from(text)),
                )
                .await;
                conforms(&env.doc, method, path, &reply);
                reply
            }
            body => env.call(method, path, &uri, token, body).await,
        };
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{what}: {}",
            reply.json()
        );
        assert_eq!(reply.media_type(), "application/problem+json", "{what}");
        assert_eq!(
            reply.json()["type"],
            format!("urn:amtsbuch:problem:{kind}"),
            "{what}: {}",
            reply.json()
        );
        assert_eq!(env.head().await, head, "{what} changed the log");
    }
    // JSON that is not I-JSON is refused with the pointer of the offending value, and the
    // problem does not echo the value.
    let sha = notice_sha256();
    let not_i_json = [
        (
            "/accounts",
            "/accounts".to_owned(),
            &op,
            r#"{"kind":"personal","master_data":{"type":"person","given_names":"Erika","given_names":"Gabriele","family_name":"Mustermann"}}"#.to_owned(),
            "/master_data/given_names",
        ),
        (
            "/accounts/{id}/master-data",
            a("/master-data"),
            &me,
            r#"{"master_data":{"type":"person","given_names":"Erika","family_name":"Mustermann","address":{"street":"Hauptstraße 1","street":"Gabrielenweg 2"}}}"#.into(),
            "/master_data/address/street",
        ),
        (
            "/consents",
            "/consents".into(),
            &me,
            format!(r#"{{"scope":{{"categories":["stammdaten"],"purposes":["antrag-vorbefuellung"],"recipients":["lra-meissen"]}},"notice":{{"version":"2026-01","sha256":"{sha}","version":"2026-02"}},"channel":"paper"}}"#),
            "/notice/version",
        ),
        (
            "/retention-holds",
            "/retention-holds".into(),
            &dp,
            format!(r#"{{"subject":"{subject}","reason":"voucher","source":"payment-1","until":1e400}}"#),
            "/until",
        ),
        // An instant is stored exactly as given, or refused: an offset would be converted
        // and nanoseconds cut off, silently.
        (
            "/retention-holds",
            "/retention-holds".into(),
            &dp,
            format!(r#"{{"subject":"{subject}","reason":"voucher","source":"payment-1","until":"2031-06-01T00:00:00+02:00"}}"#),
            "/until",
        ),
        (
            "/retention-holds",
            "/retention-holds".into(),
            &dp,
            format!(r#"{{"subject":"{subject}","reason":"voucher","source":"payment-1","until":"2031-06-01T00:00:00.123456789Z"}}"#),
            "/until",
        ),
    ];
    for (path, uri, token, text, pointer) in not_i_json {
        let method = if path.ends_with("master-data") {
            "PUT"
        } else {
            "POST"
        };
        let reply = common::send(
            &env.app,
            common::request(method, &uri, Some(token), Body::from(text.clone())),
        )
        .await;
        conforms(&env.doc, method, path, &reply);
        assert_eq!(
            reply.status,
            StatusCode::BAD_REQUEST,
            "{text}: {}",
            reply.json()
        );
        assert_eq!(reply.json()["type"], "urn:amtsbuch:problem:invalid-body");
        assert_eq!(reply.json()["pointer"], pointer, "{text}: {}", reply.json());
        let answer = String::from_utf8_lossy(&reply.bytes).into_owned();
        assert!(
            !answer.contains("Gabriele")
                && !answer.contains("Gabrielenweg")
                && !answer.contains("2026-02"),
            "{answer}"
        );
        assert_eq!(env.head().await, head, "{text} changed the log");
    }

    // The problems do not echo personal data back.
    let reply = env
        .call(
            "POST",
            "/accounts",
            "/accounts",
            &op,
            Some(json!({ "kind": "personal", "master_data": { "type": "person", "given_names": "Erika", "family_name": "Mustermann", "email": "erika mustermann@example.org" } })),
        )
        .await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(
        !String::from_utf8_lossy(&reply.bytes).contains("erika mustermann"),
        "{}",
        reply.json()
    );
}

/// Temporary identifications are erased once they expired, and expired consents get their
/// `ConsentExpired`; a second sweep finds nothing to do.
async fn the_sweeper_erases_expired_identifications_and_records_expiry(env: &Env) {
    let soon = Utc::now() + chrono::Duration::milliseconds(1500);
    let temporary = env.open_account(erika(), Some(soon)).await;
    let lasting = env.open_account(erika(), None).await;
    let consent = env.give(&lasting, None, Some(soon)).await;
    let lasting_consent = env.give(&lasting, None, None).await;

    // Before the expiry, a sweep finds nothing.
    env.caught_up().await;
    let head = env.head().await;
    assert_eq!(
        amtsbuch_api::gdpr::sweeper::sweep(&env.state)
            .await
            .expect("sweep"),
        (0, 0)
    );
    assert_eq!(env.head().await, head);

    tokio::time::sleep_until(tokio::time::Instant::now() + Duration::from_millis(1600)).await;
    while Utc::now() <= soon {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Validity never waits for the sweeper.
    let now = env
        .expect(
            StatusCode::OK,
            "GET",
            "/consents/{id}",
            &format!("/consents/{consent}"),
            &dpo(),
            None,
        )
        .await;
    assert_eq!(now["status"], "expired");

    assert_eq!(
        amtsbuch_api::gdpr::sweeper::sweep(&env.state)
            .await
            .expect("sweep"),
        (1, 1)
    );
    assert!(matches!(
        env.vault_status(&temporary).await,
        SubjectStatus::Erased { .. }
    ));
    assert!(matches!(
        env.vault_status(&lasting).await,
        SubjectStatus::Active { .. }
    ));
    let account = env
        .expect(
            StatusCode::OK,
            "GET",
            "/accounts/{id}",
            &format!("/accounts/{temporary}"),
            &operator(),
            None,
        )
        .await;
    assert_eq!(account["status"], "deleted");
    assert_eq!(account["master_data"], json!({ "erased": true }));
    let deleted = env.stream(&format!("account-{temporary}")).await;
    let deleted = deleted.last().expect("event").record().expect("record");
    assert_eq!(deleted.event_type.as_str(), "AccountDeleted");
    assert_eq!(deleted.data["reason"], "temporary_expired");
    assert_eq!(deleted.actor.as_deref(), Some("system:gdpr-sweeper"));
    assert_eq!(env.stream(&format!("erasure-{temporary}")).await.len(), 1);
    let expired = env.stream(&format!("consent-{consent}")).await;
    let expired = expired.last().expect("event").record().expect("record");
    assert_eq!(expired.event_type.as_str(), "ConsentExpired");
    assert_eq!(
        instant(&expired.data["expired_at"]),
        amtsbuch_domain::record::truncate_micros(soon)
    );
    assert_eq!(
        env.stream(&format!("consent-{lasting_consent}"))
            .await
            .len(),
        1
    );

    // Once the read models know, a sweep finds nothing more.
    env.caught_up().await;
    let head = env.head().await;
    assert_eq!(
        amtsbuch_api::gdpr::sweeper::sweep(&env.state)
            .await
            .expect("sweep"),
        (0, 0)
    );
    assert_eq!(env.head().await, head);
    env.assert_chain_intact().await;
}

/// `personal` in a raw append is sealed before it is stored; a retry is recognised.
async fn raw_appends_seal_personal_data_and_retry_idempotently(env: &Env) {
    let subject = env.open_account(erika(), None).await;
    let id = uuid::Uuid::now_v7();
    let stream = format!("procedure-{}", uuid::Uuid::now_v7());
    let uri = format!("/streams/{stream}/events");
    let body = json!([{
        "id": id,
        "type": "ApplicationSubmitted",
        "data": { "form": "wohngeld" },
        "personal": { "subject": subject, "data": { "name": "Erika Mustermann", "iban": "DE02120300000000202051" } },
    }]);
    let created = env
        .expect(
            StatusCode::CREATED,
            "POST",
            "/streams/{stream}/events",
            &uri,
            &operator(),
            Some(body.clone()),
        )
        .await;
    let position = created["first_position"].as_u64().expect("position");

    // No plaintext personal data anywhere in the stored log.
    for e in env.log().await {
        let text = String::from_utf8_lossy(&e.bytes).into_owned();
        for secret in [
            "Mustermann",
            "Erika",
            "DE02120300000000202051",
            "erika.mustermann@",
        ] {
            assert!(
                !text.contains(secret),
                "position {}: {secret} in {text}",
                e.position
            );
        }
    }
    let stored = env.stream(&stream).await.remove(0);
    let sealed = stored
        .record()
        .expect("record")
        .sealed
        .expect("a sealed section");
    assert_eq!(sealed.subject, subject);
    assert_eq!(sealed.alg, "A256GCM");

    // The same append again: the same bytes, so a 200 with the original positions.
    let head = env.head().await;
    let retried = env
        .expect(
            StatusCode::OK,
            "POST",
            "/streams/{stream}/events",
            &uri,
            &operator(),
            Some(body.clone()),
        )
        .await;
    assert_eq!(retried["duplicate"], true);
    assert_eq!(retried["first_position"], position);
    assert_eq!(retried["positions"], created["positions"]);
    assert_eq!(env.head().await, head);
    // Other personal data under the same event id is another event: a conflict.
    let mut changed = body.clone();
    changed[0]["personal"]["data"]["iban"] = json!("DE89370400440532013000");
    let conflict = env
        .expect(
            StatusCode::CONFLICT,
            "POST",
            "/streams/{stream}/events",
            &uri,
            &operator(),
            Some(changed),
        )
        .await;
    assert_eq!(conflict["type"], "urn:amtsbuch:problem:event-id-conflict");

    // The streams of the GDPR aggregates are not written around their rules: no consent
    // nobody gave, no erasure that destroyed no key.
    let head = env.head().await;
    for stream in [
        format!("consent-{}", uuid::Uuid::now_v7()),
        format!("account-{subject}"),
        format!("erasure-{subject}"),
        format!("disclosure-{}", uuid::Uuid::now_v7()),
        format!("retention-{}", uuid::Uuid::now_v7()),
    ] {
        let refused = env
            .expect(
                StatusCode::FORBIDDEN,
                "POST",
                "/streams/{stream}/events",
                &format!("/streams/{stream}/events"),
                &operator(),
                Some(json!([{ "type": "SubjectErased", "data": { "subject": subject } }])),
            )
            .await;
        assert_eq!(
            refused["type"], "urn:amtsbuch:problem:reserved-stream",
            "{stream}"
        );
    }
    assert_eq!(env.head().await, head);
    assert!(matches!(
        env.vault_status(&subject).await,
        SubjectStatus::Active { .. }
    ));

    // The subject's export opens it.
    let export = env
        .expect(
            StatusCode::OK,
            "GET",
            "/dpo/subjects/{subject}/export",
            &format!("/dpo/subjects/{subject}/export"),
            &dpo(),
            None,
        )
        .await;
    let event = export["events"]
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["position"] == position)
        .unwrap_or_else(|| panic!("the application is not in the export: {export}"));
    assert_eq!(event["personal"]["name"], "Erika Mustermann");
    assert_eq!(event["data"], json!({ "form": "wohngeld" }));
}

/// Two withdrawals and a crowd of disclosures on one consent at once: no failure, one
/// withdrawal in the stream, and every decision agrees with the replay at its instant.
async fn racing_withdrawals_and_disclosures_stay_consistent(env: &Env) {
    let subject = env.open_account(erika(), None).await;
    let consent = env.give(&subject, None, None).await;
    // Each request is a task of its own, so they run in parallel; the disclosures keep
    // arriving, a little apart, before, while and after the two withdrawals are handled.
    let send = |method: &'static str, uri: String, token: String, body: Option<Value>| {
        let app = env.app.clone();
        tokio::spawn(async move {
            let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
            common::send(&app, common::request(method, &uri, Some(&token), body)).await
        })
    };
    let ask = json!({ "subject": subject, "categories": ["stammdaten"], "purpose": "antrag-vorbefuellung" });
    let mut disclosures = Vec::new();
    let mut withdrawals = Vec::new();
    let mut after = 0;
    while after < 20 {
        if disclosures.len() == 20 {
            for _ in 0..2 {
                let uri = format!("/consents/{consent}/withdrawal");
                withdrawals.push(send("POST", uri, citizen(&subject), None));
            }
        }
        disclosures.push(send(
            "POST",
            "/disclosures".into(),
            wohngeld(),
            Some(ask.clone()),
        ));
        if withdrawals.len() == 2 && withdrawals.iter().all(|w| w.is_finished()) {
            after += 1;
        }
        assert!(disclosures.len() < 5000, "the withdrawals do not finish");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut decisions = Vec::new();
    for d in disclosures {
        decisions.push(d.await.expect("disclosure task"));
    }
    let (w1, w2) = (
        withdrawals.remove(0).await.expect("withdrawal task"),
        withdrawals.remove(0).await.expect("withdrawal task"),
    );
    for w in [&w1, &w2] {
        assert_eq!(w.status, StatusCode::OK, "{}", w.json());
        conforms(&env.doc, "POST", "/consents/{id}/withdrawal", w);
        assert_eq!(w.json()["status"], "withdrawn");
    }
    let events = env.stream(&format!("consent-{consent}")).await;
    let types: Vec<String> = events
        .iter()
        .map(|e| e.record().expect("record").event_type.to_string())
        .collect();
    assert_eq!(types, ["ConsentGiven", "ConsentWithdrawn"]);
    let withdrawn_at = instant(&events[1].record().expect("record").data["withdrawn_at"]);
    assert_eq!(w1.json()["ended"], w2.json()["ended"]);

    let mut seen = BTreeSet::new();
    let granted = decisions
        .iter()
        .filter(|d| d.json()["decision"] == "granted")
        .count();
    assert!(
        granted > 0 && granted < decisions.len(),
        "the withdrawal fell among the disclosures: {granted} of {} granted",
        decisions.len()
    );
    for d in &decisions {
        assert_eq!(d.status, StatusCode::CREATED, "{}", d.json());
        conforms(&env.doc, "POST", "/disclosures", d);
        let d = d.json();
        assert!(
            seen.insert(d["disclosure_id"].to_string()),
            "one stream per decision"
        );
        let at = instant(&d["at"]);
        // A disclosure is granted exactly when it was judged before the withdrawal took
        // effect, as the DPO's replay at its instant says.
        assert_eq!(
            d["decision"] == "granted",
            at < withdrawn_at,
            "{d} vs withdrawal at {withdrawn_at}"
        );
    }
    // The replay agrees at the instants closest to the withdrawal on either side.
    let last_granted = decisions
        .iter()
        .map(Reply::json)
        .filter(|d| d["decision"] == "granted")
        .max_by_key(|d| instant(&d["at"]))
        .expect("a grant");
    let first_denied = decisions
        .iter()
        .map(Reply::json)
        .filter(|d| d["decision"] == "denied")
        .min_by_key(|d| instant(&d["at"]))
        .expect("a denial");
    for d in [last_granted, first_denied] {
        let replay = env
            .expect(
                StatusCode::OK,
                "GET",
                "/dpo/subjects/{subject}/consents",
                &format!(
                    "/dpo/subjects/{subject}/consents?as_of={}",
                    d["at"].as_str().expect("at")
                ),
                &dpo(),
                None,
            )
            .await;
        let status = &replay["consents"][0]["status"];
        assert_eq!(
            status == "given",
            d["decision"] == "granted",
            "{d} vs {replay}"
        );
    }
    env.assert_chain_intact().await;
}

/// An id the service never knew is refused and leaves nothing behind; an erasure that was
/// interrupted after destroying the keys is completed by running it again, and its
/// `SubjectErased` still names the keys the subject had.
async fn erasure_refuses_unknown_subjects_and_completes_interrupted_runs(env: &Env) {
    let stranger = "0193a1b2-0000-7000-8000-00000000dead";
    let head = env.head().await;
    let refused = env.erase(StatusCode::NOT_FOUND, stranger).await;
    assert_eq!(refused["type"], "urn:amtsbuch:problem:unknown-subject");
    assert!(
        refused["detail"]
            .as_str()
            .is_some_and(|d| d.contains(stranger)),
        "{refused}"
    );
    assert_eq!(env.head().await, head, "an unknown subject changes nothing");
    assert_eq!(env.vault_status(stranger).await, SubjectStatus::None);

    // A crash right after the keys were destroyed: the vault says erased, the log does not.
    let subject = env.open_account(erika(), None).await;
    let sealer = env.state.sealer.as_ref().expect("sealer");
    let destroyed = sealer
        .vault()
        .destroy(&SubjectId::parse(&subject).expect("subject"))
        .await
        .expect("destroy");
    assert_eq!(destroyed.key_ids, vec!["k1".to_owned()]);
    assert!(env.stream(&format!("erasure-{subject}")).await.is_empty());
    let erased = env.erase(StatusCode::OK, &subject).await;
    assert_eq!(erased["already_erased"], false, "{erased}");
    assert_eq!(erased["account_deleted"], true, "{erased}");
    assert_eq!(erased["key_ids"], json!(["k1"]), "{erased}");
    let record = env.stream(&format!("erasure-{subject}")).await;
    assert_eq!(record.len(), 1);
    let record = record[0].record().expect("record");
    assert_eq!(record.data["key_ids"], json!(["k1"]));
    assert_eq!(
        record.data["erased_at"], erased["erased_at"],
        "the erasure took effect when the keys were destroyed"
    );
    env.assert_chain_intact().await;
}

/// When the database fails a read-side statement (here: a table taken away, as a failing
/// disk or a pool that timed out would fail it), the routes that read it answer 503
/// `unavailable` with `Retry-After`, a failure the client may retry, not a 500 that reads
/// as a bug; and nothing is recorded.
async fn a_failing_read_side_is_an_outage_to_retry(env: &Env) {
    let subject = env.open_account(erika(), None).await;
    env.give(&subject, None, None).await;
    env.caught_up().await;
    let db = amtsbuch_infra::Db::new(&env.store);
    let rename = |from: &'static str, to: &'static str| {
        let db = db.clone();
        async move {
            db.execute(&format!("ALTER TABLE {from} RENAME TO {to}"), &[])
                .await
                .expect("rename");
        }
    };
    let outage = |reply: &Reply, what: &str| {
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{what}: {}",
            String::from_utf8_lossy(&reply.bytes)
        );
        assert_eq!(
            reply.json()["type"],
            "urn:amtsbuch:problem:unavailable",
            "{what}"
        );
        assert!(reply.header(header::RETRY_AFTER).is_some(), "{what}");
    };
    let head = env.head().await;

    // The subject's consents (the consent index).
    rename("gdpr_consents", "gdpr_consents_away").await;
    let own = env
        .call("GET", "/consents", "/consents", &citizen(&subject), None)
        .await;
    outage(&own, "GET /consents");
    let disclosure = env
        .call(
            "POST",
            "/disclosures",
            "/disclosures",
            &wohngeld(),
            Some(json!({ "subject": subject, "categories": ["stammdaten"], "purpose": "antrag-vorbefuellung" })),
        )
        .await;
    outage(&disclosure, "POST /disclosures");
    rename("gdpr_consents_away", "gdpr_consents").await;

    // The read models' positions, which every answer built from read models waits for.
    rename("projection_checkpoints", "projection_checkpoints_away").await;
    let streams = env
        .call("GET", "/streams", "/streams", &operator(), None)
        .await;
    outage(&streams, "GET /streams");
    let processing = env
        .call("GET", "/dpo/processing", "/dpo/processing", &dpo(), None)
        .await;
    outage(&processing, "GET /dpo/processing");
    rename("projection_checkpoints_away", "projection_checkpoints").await;

    assert_eq!(env.head().await, head, "nothing was recorded");
    env.expect(
        StatusCode::OK,
        "GET",
        "/streams",
        "/streams",
        &operator(),
        None,
    )
    .await;
}

/// A consent on paper may carry the date it was signed, which makes it count from then on
/// in the replay. Entering the form is the staff's act: a citizen cannot back-date its own
/// consent by calling it paper, and a token that is the subject's citizen and an operator
/// at once enters it as the operator, which the record says.
async fn a_paper_forms_date_is_entered_by_staff_only(env: &Env) {
    let subject = env.open_account(erika(), None).await;
    let signed_on = "2025-01-15T00:00:00Z";
    let form = |with_subject: bool| {
        let mut body = json!({
            "scope": { "categories": ["stammdaten"], "purposes": ["antrag-vorbefuellung"], "recipients": ["lra-meissen"] },
            "notice": { "version": "2026-01", "sha256": notice_sha256() },
            "channel": "paper",
            "given_at": signed_on,
        });
        if with_subject {
            body["subject"] = json!(subject);
        }
        body
    };
    let head = env.head().await;
    for body in [form(false), form(true)] {
        let refused = env
            .expect(
                StatusCode::FORBIDDEN,
                "POST",
                "/consents",
                "/consents",
                &citizen(&subject),
                Some(body),
            )
            .await;
        assert_eq!(refused["type"], "urn:amtsbuch:problem:forbidden");
    }
    assert_eq!(env.head().await, head, "the citizen recorded nothing");

    let entered = env
        .expect(
            StatusCode::CREATED,
            "POST",
            "/consents",
            "/consents",
            &operator(),
            Some(form(true)),
        )
        .await;
    assert_eq!(entered["given_at"], "2025-01-15T00:00:00.000000Z");

    let mut both = common::request_of(&[Role::Citizen, Role::Operator], "lra-meissen", &[]);
    both.account = Some(subject.clone());
    let entered = env
        .expect(
            StatusCode::CREATED,
            "POST",
            "/consents",
            "/consents",
            &common::signed(&both),
            Some(form(false)),
        )
        .await;
    let id = entered["consent_id"].as_str().expect("consent id");
    let record = env.stream(&format!("consent-{id}")).await[0]
        .record()
        .expect("record");
    assert_eq!(
        record.actor.as_deref(),
        Some(format!("operator:{}", both.subject).as_str())
    );
}
