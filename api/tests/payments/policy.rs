//! The payment policy's process manager over a real store with sealing, on SQLite and
//! PostgreSQL: the fee schedule set over HTTP (bad input refused, nothing stored), the
//! receivable requested once for an application drafted under `before_submission` and paid
//! through the simulator until the obligation that holds the submission is settled, a
//! rerun after a crash between the Kassenzeichen claim and the request and after a lost
//! checkpoint, two nodes running the manager at once, the fee requested with the decision
//! under `after_decision`, a missing schedule, and an expired draft's fee cancelled. Each
//! ends with the log verifying.
//!
//! The application events are appended in their published form (the event types and the
//! members of `data` the application lifecycle records), as the manager reads them from
//! the log; the lifecycle's own tests submit through its routes.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use chrono::Utc;
use serde_json::{json, Value};
use uuid::Uuid;

use amtsbuch_api::auth::TokenRequest;
use amtsbuch_api::cli::verify::{verify_store, Verdict};
use amtsbuch_api::command::{self, Meta};
use amtsbuch_api::hub::HubLimits;
use amtsbuch_api::module::stream_obligations;
use amtsbuch_api::payments::policy::{self, UNNAMED_PAYER};
use amtsbuch_api::payments::provider::{Auth, Provider, ProviderConfig};
use amtsbuch_api::payments::service;
use amtsbuch_api::AppState;
use amtsbuch_domain::access::{BewirtschafterCode, Role};
use amtsbuch_domain::event::Personal;
use amtsbuch_domain::payments::claim::{claim_stream, KassenzeichenClaimed};
use amtsbuch_domain::payments::fees::{schedule_stream, FeeScheduleState, SetFeeSchedule};
use amtsbuch_domain::payments::receivable::{ReceivableState, Status};
use amtsbuch_domain::payments::{Bewirtschafter, Cents, Kassenzeichen, Mandant, ReceivableId};
use amtsbuch_domain::stream::{AuthorityId, ServiceKey};
use amtsbuch_domain::{AppendRequest, EventType, ExpectedVersion, NewEvent, StreamId};
use amtsbuch_infra::{AnyStore, Direction, EventStore};
use amtsbuch_projections::payments::fees_due;

use crate::common;
use crate::simulator::{Simulator, SECRET, TOKEN};

const MANDANT: &str = "14612000";
const LEIKA: &str = "99108001000000";
const AUTHORITY: &str = "lra-meissen";

struct Env {
    app: axum::Router,
    state: AppState,
    store: AnyStore,
    keyring: std::path::PathBuf,
    db: common::TestDb,
    runner: amtsbuch_projections::RunnerHandle,
}

impl Env {
    async fn start(adapter: common::Adapter) -> Self {
        let db = common::TestDb::fresh(adapter).await;
        let store = db.store.clone();
        let keyring = db.dir().join("kek-policy");
        let id = amtsbuch_domain::seal::KeyId::parse("kek-test").expect("KEK id");
        amtsbuch_infra::kek::generate_kek_file(&keyring, &id).expect("generate KEK");
        let state = node(&store, &keyring).await;
        let runner =
            amtsbuch_projections::spawn(store.clone(), amtsbuch_api::domains::projections());
        Env {
            app: amtsbuch_api::router(state.clone()),
            state,
            store,
            keyring,
            db,
            runner,
        }
    }

    /// Another node on the same database, with the same key-encryption key.
    async fn second_node(&self) -> AppState {
        node(&self.db.other_process().await, &self.keyring).await
    }

    async fn close(self) {
        self.runner.shutdown().await;
        match verify_store(&self.store, |_, _| {}).await.expect("verify") {
            Verdict::Intact { .. } => {}
            other => panic!("the log does not verify: {other:?}"),
        }
    }

    async fn call(
        &self,
        method: &str,
        uri: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"));
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        let request = request
            .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
            .expect("request");
        let reply = common::send(&self.app, request).await;
        let json = if reply.bytes.is_empty() {
            Value::Null
        } else {
            reply.json()
        };
        (reply.status, json)
    }

    /// The fee of `LEIKA` at `AUTHORITY`: 25.00 EUR in two lines, due in 14 days.
    async fn schedule(&self) {
        let (status, json) = self
            .call(
                "PUT",
                &format!("/fee-schedules/{LEIKA}/{AUTHORITY}"),
                &operator(),
                Some(schedule_body(2000, 500)),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{json}");
        assert_eq!(json["gross_cents"], 2500);
    }

    /// A Servicekonto of a person; its id.
    async fn account(&self) -> Uuid {
        let (status, json) = self
            .call(
                "POST",
                "/accounts",
                &common::token(Role::Operator),
                Some(json!({"kind": "personal", "master_data": {"type": "person", "given_names": "Erika", "family_name": "Zwetschgenhain"}})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{json}");
        Uuid::parse_str(json["account_id"].as_str().expect("account id")).expect("uuid")
    }

    /// An application drafted by `applicant` under `policy`, as the lifecycle publishes it;
    /// its id.
    async fn drafted(&self, applicant: Uuid, policy: &str, leika: &str) -> Uuid {
        let id = Uuid::now_v7();
        self.publish(
            id,
            "ApplicationCreated",
            json!({
                "application_id": id,
                "applicant": applicant,
                "pinned": {"form": Uuid::now_v7(), "version": 1, "schema_hash": "00".repeat(32)},
                "responsible": {"authority": AUTHORITY, "leika": leika, "place": "146270000000",
                                "payment": policy, "service_name": "Wohngeld beantragen"},
                "created_at": "2026-03-01T10:00:00.000000Z"
            }),
        )
        .await;
        id
    }

    async fn decided(&self, id: Uuid) {
        self.publish(
            id,
            "DecisionIssued",
            json!({"application_id": id, "outcome": "granted", "document_hash": "11".repeat(32),
                   "decided_at": "2026-04-01T09:00:00.000000Z"}),
        )
        .await;
    }

    async fn publish(&self, id: Uuid, event_type: &str, data: Value) {
        let stream = StreamId::parse(&format!("application-{id}")).expect("stream");
        self.store
            .append(AppendRequest {
                stream,
                expected: ExpectedVersion::Any,
                events: vec![NewEvent::new(
                    EventType::parse(event_type).expect("type"),
                    data,
                )],
            })
            .await
            .expect("append");
    }

    async fn types(&self, stream: &StreamId) -> Vec<String> {
        self.store
            .read_stream(stream, 1, Direction::Forwards, 1000)
            .await
            .expect("read")
            .iter()
            .map(|e| e.record().expect("record").event_type.as_str().to_owned())
            .collect()
    }

    /// The events of the fee's receivable of `application` and of its Kassenzeichen claim.
    async fn fee_streams(&self, application: Uuid) -> (Vec<String>, Vec<String>) {
        let id = ReceivableId::for_application(application);
        let claim = claim_stream(
            &Mandant::parse(MANDANT).expect("mandant"),
            &Kassenzeichen::assign(id, 0),
        );
        (self.types(&id.stream_id()).await, self.types(&claim).await)
    }

    async fn receivable(&self, application: Uuid) -> ReceivableState {
        service::receivable(&self.state, ReceivableId::for_application(application))
            .await
            .map(|(r, _)| r)
            .unwrap_or_default()
    }

    async fn obligations(&self, application: Uuid) -> Vec<amtsbuch_api::module::Obligation> {
        let stream = StreamId::parse(&format!("application-{application}")).expect("stream");
        stream_obligations(&self.state, amtsbuch_api::domains::MODULES, &stream)
            .await
            .expect("obligations")
    }

    async fn head(&self) -> u64 {
        self.store.head().await.expect("head").position
    }
}

async fn node(store: &AnyStore, keyring: &std::path::Path) -> AppState {
    let mut state = common::state_with(store, None, HubLimits::default()).await;
    let keys = amtsbuch_infra::kek::load_keyring(&[keyring.to_path_buf()]).expect("load KEK");
    state.sealer = Some(amtsbuch_infra::sealer::Sealer::new(
        amtsbuch_infra::vault::KeyVault::new(store.clone(), keys),
    ));
    state
}

fn schedule_body(first: i64, second: i64) -> Value {
    json!({
        "mandant": MANDANT,
        "bewirtschafter": "b100",
        "gross_cents": 2500,
        "lines": [
            { "haushaltsstelle": "1100.100", "buchungstext": "VERWALTUNGSGEBÜHR", "gross_cents": first, "net_cents": first, "tax_cents": 0 },
            { "haushaltsstelle": "1100.200", "buchungstext": "AUSLAGEN", "gross_cents": second, "net_cents": second, "tax_cents": 0 }
        ],
        "due_days": 14
    })
}

fn token(subject: &str, roles: &[Role], bewirtschafter: &[&str]) -> String {
    let mut request = TokenRequest::new(subject, roles.iter().copied());
    request.bewirtschafter = bewirtschafter
        .iter()
        .map(|b| BewirtschafterCode::parse(b).expect("code"))
        .collect();
    request.ttl = Duration::from_secs(600);
    common::signed(&request)
}

fn cashier() -> String {
    token("kasse-1", &[Role::Cashier], &["b100"])
}

/// The cash office's system, which sets a service's first fee schedule at an authority.
fn operator() -> String {
    token("kasse-system", &[Role::Operator], &[])
}

/// Runs the manager until it has caught up with the log.
async fn catch_up(state: &AppState) {
    while policy::step(state).await.expect("a step of the manager") > 0 {}
}

fn provider(sim: &Simulator) -> Provider {
    Provider::new(ProviderConfig {
        name: "sim".into(),
        base_url: sim.url.clone(),
        originator_id: "amtsbuch".into(),
        endpoint_id: MANDANT.into(),
        auth: Auth::Bearer(TOKEN.into()),
        callback_secret: SECRET.as_bytes().to_vec(),
        ca_pem: None,
        timeout: Duration::from_secs(5),
    })
    .expect("provider")
}

/// What a fee is and when it counts as settled, however late the manager runs and whatever
/// the cash office did with the fee meanwhile.
mod fee_rules {
    use super::*;
    use amtsbuch_api::payments::fees;
    use amtsbuch_domain::payments::fees::{schedule_stream, FeeScheduleState, SetFeeSchedule};
    use amtsbuch_domain::payments::receivable::RequestRefund;
    use amtsbuch_domain::payments::{Actor, Bewirtschafter, Cents, Reference, RefundId};
    use amtsbuch_domain::stream::{AuthorityId, ServiceKey};

    /// A schedule of `gross` cents in two lines, due in 14 days.
    fn fee_of(gross: i64) -> Value {
        let mut body = schedule_body(gross - 500, 500);
        body["gross_cents"] = json!(gross);
        body
    }

    async fn set_fee(env: &Env, leika: &str, gross: i64) {
        let (status, json) = env
            .call(
                "PUT",
                &format!("/fee-schedules/{leika}/{AUTHORITY}"),
                &operator(),
                Some(fee_of(gross)),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{json}");
    }

    /// The application's last event as the log holds it.
    async fn last_event(env: &Env, app: Uuid) -> amtsbuch_infra::RecordedEvent {
        let stream = StreamId::parse(&format!("application-{app}")).expect("stream");
        env.store
            .read_stream(&stream, 1, Direction::Forwards, 1000)
            .await
            .expect("read")
            .pop()
            .expect("an event")
    }

    /// The fee is the schedule in force when the event that requests it was recorded, not
    /// when the manager (or a submission) gets to it, and it is due from that event on.
    async fn the_schedule_at_the_event(env: &Env) {
        // 25.00 EUR when the decision is recorded; 50.00 EUR before the manager reaches it.
        set_fee(env, LEIKA, 2500).await;
        let app = env.drafted(Uuid::now_v7(), "after_decision", LEIKA).await;
        env.decided(app).await;
        set_fee(env, LEIKA, 5000).await;
        catch_up(&env.state).await;
        let state = env.receivable(app).await;
        let r = state.receivable().expect("requested with the decision");
        assert_eq!(r.gross.get(), 2500, "the schedule in force at the decision");
        assert_eq!(
            r.due_date.to_string(),
            "2026-04-15",
            "due from the decision"
        );

        // No schedule when the decision is recorded: the manager reaching the decision
        // requests nothing, however late it gets there; the fee waits for its schedule,
        // and setting one requests it at that schedule, due from the setting on (a fee
        // due from the decision would be overdue already).
        let unscheduled = "99108001777000";
        let late = env
            .drafted(Uuid::now_v7(), "after_decision", unscheduled)
            .await;
        catch_up(&env.state).await;
        env.decided(late).await;
        let decision = last_event(env, late).await;
        policy::handle(&env.state, &decision)
            .await
            .expect("the manager handles the decision");
        assert!(
            env.receivable(late).await.receivable().is_none(),
            "a decision without a schedule in force requests nothing by itself"
        );
        let today = Utc::now().date_naive();
        set_fee(env, unscheduled, 2500).await;
        let state = env.receivable(late).await;
        let r = state
            .receivable()
            .expect("requested when its schedule is set");
        assert_eq!(r.gross.get(), 2500);
        assert!(
            r.due_date >= today + chrono::Days::new(14),
            "due from the schedule's setting, not from the decision: {}",
            r.due_date
        );

        // Before the submission: the schedule in force when the draft was recorded, also
        // when the submission asks before the manager has come to the draft.
        set_fee(env, LEIKA, 2500).await;
        let draft = env
            .drafted(Uuid::now_v7(), "before_submission", LEIKA)
            .await;
        set_fee(env, LEIKA, 5000).await;
        let due = env.obligations(draft).await;
        assert!(due[0].reference.starts_with("receivable-"), "{due:?}");
        // Whoever requests it — the question or the manager — requests the same fee.
        catch_up(&env.state).await;
        let state = env.receivable(draft).await;
        let r = state
            .receivable()
            .expect("requested by the submission's question");
        assert_eq!(r.gross.get(), 2500, "the schedule in force at the draft");
        assert_eq!(r.due_date.to_string(), "2026-03-15", "due from the draft");

        // No schedule when drafted: the fee of the schedule set since (ADR 0007), due from
        // its setting on, not already overdue.
        let other = "99108001666000";
        let waiting = env
            .drafted(Uuid::now_v7(), "before_submission", other)
            .await;
        catch_up(&env.state).await;
        set_fee(env, other, 5000).await;
        let today = Utc::now().date_naive();
        let due = env.obligations(waiting).await;
        assert!(due[0].reference.starts_with("receivable-"), "{due:?}");
        catch_up(&env.state).await;
        let state = env.receivable(waiting).await;
        let r = state
            .receivable()
            .expect("requested by the submission's question");
        assert_eq!(r.gross.get(), 5000);
        assert!(
            r.due_date >= today + chrono::Days::new(14),
            "due 14 days from the schedule's setting, not from the draft: {}",
            r.due_date
        );
    }

    /// The fee's obligation against `app`, as the submission asks for it: not settled,
    /// naming the fee's receivable.
    async fn outstanding(env: &Env, app: Uuid) -> ReceivableId {
        let fee = ReceivableId::for_application(app);
        let due = env.obligations(app).await;
        assert_eq!(due.len(), 1, "{due:?}");
        assert!(!due[0].settled, "{due:?}");
        assert_eq!(due[0].reference, fee.stream_id().to_string(), "{due:?}");
        fee
    }

    async fn settled(env: &Env, app: Uuid) -> bool {
        let due = env.obligations(app).await;
        assert_eq!(due.len(), 1, "{due:?}");
        due[0].settled
    }

    /// Pays what is owed on `fee` at the provider, verified by a pull.
    async fn pay(env: &Env, sim: &Simulator, fee: ReceivableId) {
        let provider = provider(sim);
        let meta = Meta::system("test");
        let checkout = service::checkout(
            &env.state,
            &provider,
            fee,
            "https://portal.example/return".into(),
            "http://127.0.0.1:9",
            Utc::now(),
            &meta,
        )
        .await
        .expect("checkout");
        sim.decide(&checkout.transaction_id, "paid", 0).await;
        service::pull(&env.state, &provider, fee, None, &meta)
            .await
            .expect("pull");
    }

    /// A cancelled fee is waived: it holds nothing against the submission any more (the
    /// applicant could never pay it: a cancelled receivable takes no payment, and the fee's
    /// receivable cannot be requested again). A fee refunded before the submission is owed
    /// again — the money went back to the applicant — and takes another payment, after
    /// which it is settled; while a refund of it is pending it is not settled either.
    async fn a_cancelled_or_refunded_fee(env: &Env) {
        set_fee(env, LEIKA, 2500).await;
        let applicant = Uuid::now_v7();

        // Cancelled by the cash office while nothing was paid: waived.
        let waived = env.drafted(applicant, "before_submission", LEIKA).await;
        catch_up(&env.state).await;
        let fee = outstanding(env, waived).await;
        let (status, json) = env
            .call(
                "POST",
                &format!("/receivables/{fee}/cancellation"),
                &cashier(),
                Some(json!({"reason": "Gebühr erlassen"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{json}");
        assert_eq!(json["status"], "cancelled");
        assert!(settled(env, waived).await, "a cancelled fee is waived");

        // Paid, then refunded in full before the submission: owed again, and payable.
        let sim = Simulator::start();
        let refunded = env.drafted(applicant, "before_submission", LEIKA).await;
        catch_up(&env.state).await;
        let fee = outstanding(env, refunded).await;
        pay(env, &sim, fee).await;
        assert!(settled(env, refunded).await, "paid");
        let meta = Meta::system("test");
        let refund = RefundId(Uuid::now_v7());
        service::request_refund(
            &env.state,
            fee,
            RequestRefund {
                refund_id: refund,
                amount: Cents::new(2500).expect("cents"),
                requested_by: Actor::parse("cashier:kasse-1").expect("actor"),
                reason: Reference::parse("Zahlung zurück").expect("reason"),
                requested_at: Utc::now(),
            },
            &meta,
        )
        .await
        .expect("refund requested");
        // Pending: the money is on its way back, so it does not cover the fee.
        outstanding(env, refunded).await;
        let booked = service::approve_refund(
            &env.state,
            fee,
            refund,
            Actor::parse("cashier:kasse-2").expect("actor"),
            Reference::parse("BEL-78").expect("reference"),
            Utc::now(),
            &meta,
        )
        .await
        .expect("refund approved");
        let booked = booked.receivable().expect("receivable");
        assert_eq!(booked.status(), Status::Refunded);
        outstanding(env, refunded).await;
        let due = env.obligations(refunded).await;
        assert!(due[0].detail.contains("2500 cents owed"), "{due:?}");
        pay(env, &sim, fee).await;
        assert!(settled(env, refunded).await, "paid again");
    }

    /// A schedule to set for `bewirtschafter`, as `PUT /fee-schedules/…` decides it.
    fn set_command(bewirtschafter: &str, gross: i64) -> SetFeeSchedule {
        let body = fee_of(gross);
        SetFeeSchedule {
            service: ServiceKey::parse(LEIKA).expect("service"),
            authority: AuthorityId::parse(AUTHORITY).expect("authority"),
            mandant: Mandant::parse(MANDANT).expect("mandant"),
            bewirtschafter: Bewirtschafter::parse(bewirtschafter).expect("bewirtschafter"),
            gross_cents: Cents::new(gross).expect("cents"),
            lines: serde_json::from_value(body["lines"].clone()).expect("lines"),
            due_days: 14,
            set_at: Utc::now(),
        }
    }

    /// Who may set a schedule is decided on the schedule read before the append, so the
    /// append expects that schedule still: a schedule set or moved to another
    /// Bewirtschafter in between is answered `409` and overwritten by nobody who may not
    /// change it. The interleavings run in order: the route's read, the change, the
    /// route's append.
    async fn authorized_on_the_schedule_it_changes(env: &Env) {
        let uri = format!("/fee-schedules/{LEIKA}/{AUTHORITY}");
        let stream = schedule_stream(
            &ServiceKey::parse(LEIKA).expect("service"),
            &AuthorityId::parse(AUTHORITY).expect("authority"),
        );
        let operator = common::token(Role::Operator);
        let auditor = token("pruefer", &[Role::Auditor], &[]);
        let in_force = || async {
            let (status, json) = env.call("GET", &uri, &auditor, None).await;
            assert_eq!(status, StatusCode::OK, "{json}");
            (json["bewirtschafter"].clone(), json["gross_cents"].clone())
        };
        let refused_as_changed =
            |answer: Result<FeeScheduleState, amtsbuch_api::problem::Problem>| {
                let problem = answer.expect_err("decided on a schedule that changed");
                assert_eq!(problem.status, StatusCode::CONFLICT, "{problem:?}");
                assert_eq!(problem.kind, "fee-schedule-changed", "{problem:?}");
            };

        // A request decided on no schedule (for b900); another operator sets the first one,
        // for b100, before that request's append: it is not decided again on b100's.
        let (read, _) = command::current::<FeeScheduleState>(&env.state, &stream)
            .await
            .expect("read");
        assert!(read.0.is_none());
        let (status, json) = env.call("PUT", &uri, &operator, Some(fee_of(2500))).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        let head = env.head().await;
        refused_as_changed(
            fees::set_as_authorized(
                &env.state,
                &stream,
                &read,
                &set_command("b900", 9900),
                &Meta::system("test"),
            )
            .await,
        );
        assert_eq!(in_force().await, (json!("b100"), json!(2500)));
        assert_eq!(env.head().await, head, "nothing was stored");

        // A cashier of b100 reads b100's schedule; the operator moves it to b900 before the
        // cashier's append.
        let (read, _) = command::current::<FeeScheduleState>(&env.state, &stream)
            .await
            .expect("read");
        let mut theirs = fee_of(2500);
        theirs["bewirtschafter"] = json!("b900");
        let (status, json) = env.call("PUT", &uri, &operator, Some(theirs)).await;
        assert_eq!(status, StatusCode::OK, "{json}");
        let head = env.head().await;
        refused_as_changed(
            fees::set_as_authorized(
                &env.state,
                &stream,
                &read,
                &set_command("b100", 5000),
                &Meta::system("test"),
            )
            .await,
        );
        assert_eq!(in_force().await, (json!("b900"), json!(2500)));
        assert_eq!(env.head().await, head, "nothing was stored");

        // Decided on the schedule in force, the append goes through.
        let (read, _) = command::current::<FeeScheduleState>(&env.state, &stream)
            .await
            .expect("read");
        let set = fees::set_as_authorized(
            &env.state,
            &stream,
            &read,
            &set_command("b900", 5000),
            &Meta::system("test"),
        )
        .await
        .expect("set");
        assert_eq!(set.0.map(|s| s.gross_cents.get()), Some(5000));
        assert_eq!(in_force().await, (json!("b900"), json!(5000)));
    }

    common::on_both_adapters!(using on; the_schedule_at_the_event, a_cancelled_or_refunded_fee, authorized_on_the_schedule_it_changes);
}

/// Fee schedules over HTTP: bad input is refused and stores nothing; a cashier sets only
/// its own Bewirtschafter's; the same schedule again records nothing.
async fn fee_schedules(env: &Env) {
    let uri = format!("/fee-schedules/{LEIKA}/{AUTHORITY}");
    let (status, _) = env.call("GET", &uri, &cashier(), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let head = env.head().await;
    for (path, body, kind) in [
        (uri.clone(), schedule_body(2000, 400), "invalid-receivable"),
        (
            uri.clone(),
            json!({"mandant": MANDANT, "bewirtschafter": "b100", "gross_cents": -1, "lines": [], "due_days": 1}),
            "invalid-body",
        ),
        (
            uri.clone(),
            {
                let mut b = schedule_body(2000, 500);
                b["due_days"] = json!(400);
                b
            },
            "invalid-fee-schedule",
        ),
        (
            format!("/fee-schedules/9910800100/{AUTHORITY}"),
            schedule_body(2000, 500),
            "invalid-leika",
        ),
        (
            format!("/fee-schedules/{LEIKA}/LRA"),
            schedule_body(2000, 500),
            "invalid-authority",
        ),
    ] {
        let (status, json) = env.call("PUT", &path, &operator(), Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {json}");
        assert_eq!(
            json["type"],
            format!("urn:amtsbuch:problem:{kind}"),
            "{json}"
        );
    }
    let other = token("kasse-9", &[Role::Cashier], &["b900"]);
    let (status, _) = env
        .call("PUT", &uri, &other, Some(schedule_body(2000, 500)))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // No cashier sets the first schedule of a service at an authority, not even for its
    // own Bewirtschafter: else any cashier could claim another authority's fee first.
    let mut theirs = schedule_body(2000, 500);
    theirs["bewirtschafter"] = json!("b900");
    for (who, body) in [(&other, theirs), (&cashier(), schedule_body(2000, 500))] {
        let (status, json) = env.call("PUT", &uri, who, Some(body)).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{json}");
    }
    assert_eq!(env.head().await, head, "bad input stored nothing");
    env.schedule().await;
    let after = env.head().await;
    env.schedule().await;
    // Its Bewirtschafter's cashier keeps it from then on.
    let (status, json) = env
        .call("PUT", &uri, &cashier(), Some(schedule_body(2000, 500)))
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    assert_eq!(
        env.head().await,
        after,
        "the same schedule again records nothing"
    );
    // Another Bewirtschafter's cashier neither reads nor replaces it.
    let (status, _) = env.call("GET", &uri, &other, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let mut theirs = schedule_body(2000, 500);
    theirs["bewirtschafter"] = json!("b900");
    let (status, _) = env.call("PUT", &uri, &other, Some(theirs)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, json) = env
        .call("GET", &uri, &token("pruefer", &[Role::Auditor], &[]), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(json["lines"].as_array().map(Vec::len), Some(2));
}

/// Before the submission: the receivable is requested once, for the applicant, named from
/// their Servicekonto (sealed, never in plaintext), and the obligation is settled once it
/// is paid (P1: balance 0, the application may be submitted).
async fn before_submission(env: &Env) {
    env.schedule().await;
    let applicant = env.account().await;
    let app = env.drafted(applicant, "before_submission", LEIKA).await;
    catch_up(&env.state).await;
    let (receivable, claim) = env.fee_streams(app).await;
    assert_eq!(receivable, ["ReceivableRequested"]);
    assert_eq!(claim, ["KassenzeichenClaimed"]);
    let state = env.receivable(app).await;
    let r = state.receivable().expect("requested");
    assert_eq!(r.gross.get(), 2500);
    assert_eq!(r.lines.len(), 2);
    assert_eq!(r.payer.0, applicant);
    assert_eq!(r.application_id, Some(app));
    assert_eq!(r.due_date.to_string(), "2026-03-15");
    assert!(r.kassenzeichen.has_valid_check_digit());

    // The payer's name came from the Servicekonto and is sealed under the applicant's key.
    let first = env
        .store
        .read_stream(&r.id.stream_id(), 1, Direction::Forwards, 1)
        .await
        .expect("read");
    let bytes = String::from_utf8_lossy(&first[0].bytes).into_owned();
    assert!(
        !bytes.contains("Zwetschgenhain"),
        "the payer's name in plaintext"
    );
    let record = first[0].record().expect("record");
    let opened = env
        .state
        .sealer
        .as_ref()
        .expect("sealer")
        .open_section(&record)
        .await
        .expect("open");
    match opened {
        Some(Personal::Available(part)) => {
            assert_eq!(part["payer_name"], "Erika Zwetschgenhain");
        }
        other => panic!("the payer's name is not sealed: {other:?}"),
    }

    // Outstanding: the submission waits, naming the receivable.
    let due = env.obligations(app).await;
    assert_eq!(due.len(), 1);
    assert!(!due[0].settled);
    assert_eq!(due[0].module, "payments");
    assert_eq!(due[0].reference, r.id.stream_id().to_string());

    // Paid at the provider, verified by a pull: settled.
    let sim = Simulator::start();
    let provider = provider(&sim);
    let meta = Meta::system("test");
    let checkout = service::checkout(
        &env.state,
        &provider,
        r.id,
        "https://portal.example/return".into(),
        "http://127.0.0.1:9",
        Utc::now(),
        &meta,
    )
    .await
    .expect("checkout");
    sim.decide(&checkout.transaction_id, "paid", 0).await;
    let paid = service::pull(&env.state, &provider, r.id, None, &meta)
        .await
        .expect("pull");
    let paid = paid.receivable().expect("receivable");
    assert_eq!(paid.status(), Status::Paid);
    assert!(paid.balance().is_zero());
    let due = env.obligations(app).await;
    assert_eq!(due.len(), 1);
    assert!(due[0].settled, "{due:?}");
    // Answering the obligations requested nothing new.
    let (receivable, claim) = env.fee_streams(app).await;
    assert_eq!(claim.len(), 1);
    assert_eq!(
        receivable.first().map(String::as_str),
        Some("ReceivableRequested")
    );
    assert_eq!(
        receivable
            .iter()
            .filter(|t| *t == "ReceivableRequested")
            .count(),
        1
    );
}

/// A crash between the Kassenzeichen claim and the request, and a checkpoint lost after the
/// request: the reruns complete what was begun and create nothing twice.
async fn rerun_after_a_crash(env: &Env) {
    env.schedule().await;
    let app = env
        .drafted(Uuid::now_v7(), "before_submission", LEIKA)
        .await;
    // The crash: the claim was recorded, the receivable not.
    let id = ReceivableId::for_application(app);
    let claim = KassenzeichenClaimed {
        mandant: Mandant::parse(MANDANT).expect("mandant"),
        kassenzeichen: Kassenzeichen::assign(id, 0),
        receivable_id: id,
        claimed_at: Utc::now(),
    };
    command::append(
        &env.state,
        &claim_stream(&claim.mandant, &claim.kassenzeichen),
        &[claim],
        ExpectedVersion::NoStream,
        &Meta::system("test"),
    )
    .await
    .expect("the claim before the crash");
    catch_up(&env.state).await;
    let (receivable, claims) = env.fee_streams(app).await;
    assert_eq!(receivable, ["ReceivableRequested"]);
    assert_eq!(
        claims,
        ["KassenzeichenClaimed"],
        "the claim is neither lost nor doubled"
    );
    let state = env.receivable(app).await;
    assert_eq!(
        state.receivable().expect("requested").kassenzeichen,
        Kassenzeichen::assign(id, 0)
    );
    // The checkpoint is lost (a crash before it moved): everything is handled again.
    let head = env.head().await;
    assert_eq!(
        policy::checkpoint(&env.state).await.expect("checkpoint"),
        head
    );
    env.db
        .db()
        .execute("DELETE FROM payments_policy_checkpoints", &[])
        .await
        .expect("forget the checkpoint");
    assert_eq!(policy::checkpoint(&env.state).await.expect("checkpoint"), 0);
    catch_up(&env.state).await;
    assert_eq!(env.head().await, head, "the rerun recorded nothing");
    assert_eq!(env.fee_streams(app).await.0, ["ReceivableRequested"]);
    // The checkpoint never moves back.
    policy::advance(&env.state, 1).await.expect("advance");
    assert_eq!(
        policy::checkpoint(&env.state).await.expect("checkpoint"),
        head
    );
}

/// Two nodes run the manager at the same moment, step by step and as their background
/// jobs: each application gets one receivable and one claim.
async fn two_nodes(env: &Env) {
    env.schedule().await;
    let other = env.second_node().await;
    let mut apps = Vec::new();
    for _ in 0..6 {
        apps.push(
            env.drafted(Uuid::now_v7(), "before_submission", LEIKA)
                .await,
        );
    }
    let (a, b) = tokio::join!(catch_up(&env.state), catch_up(&other));
    let ((), ()) = (a, b);
    for app in &apps {
        let (receivable, claim) = env.fee_streams(*app).await;
        assert_eq!(receivable, ["ReceivableRequested"], "{app}");
        assert_eq!(claim, ["KassenzeichenClaimed"], "{app}");
    }
    // As background jobs, each under the lease.
    let jobs = [
        policy::spawn(env.state.clone(), Duration::from_millis(50)),
        policy::spawn(other.clone(), Duration::from_millis(50)),
    ];
    let mut more = Vec::new();
    for _ in 0..4 {
        more.push(
            env.drafted(Uuid::now_v7(), "before_submission", LEIKA)
                .await,
        );
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for app in &more {
        while env.receivable(*app).await.receivable().is_none() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the manager did not request {app}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    for app in apps.iter().chain(&more) {
        let (receivable, claim) = env.fee_streams(*app).await;
        assert_eq!(receivable, ["ReceivableRequested"], "{app}");
        assert_eq!(claim, ["KassenzeichenClaimed"], "{app}");
    }
    // The node that runs it shows its lag; the one on stand-by shows none.
    let shown = [env.state.metrics.render(), other.metrics.render()]
        .iter()
        .filter(|m| m.contains("\namtsbuch_payment_policy_lag_events "))
        .count();
    assert_eq!(shown, 1, "one node runs the manager");
    for job in jobs {
        job.abort();
    }
}

/// After the decision: nothing is requested for the draft or held against its submission;
/// the decision requests the fee, due from the decision on. Without a schedule nothing can
/// be requested, and the obligation says so; once one is set, the fee is requested. An
/// expired draft's unpaid fee is cancelled.
async fn after_decision_and_the_rest(env: &Env) {
    env.schedule().await;
    let app = env.drafted(Uuid::now_v7(), "after_decision", LEIKA).await;
    catch_up(&env.state).await;
    assert!(env.receivable(app).await.receivable().is_none());
    assert!(env.obligations(app).await.is_empty());
    env.decided(app).await;
    catch_up(&env.state).await;
    let state = env.receivable(app).await;
    let r = state.receivable().expect("requested with the decision");
    assert_eq!(r.due_date.to_string(), "2026-04-15");
    assert_eq!(r.status(), Status::Open);
    let unnamed = env
        .state
        .store
        .read_stream(&r.id.stream_id(), 1, Direction::Forwards, 1)
        .await
        .expect("read")[0]
        .record()
        .expect("record");
    match env
        .state
        .sealer
        .as_ref()
        .expect("sealer")
        .open_section(&unnamed)
        .await
        .expect("open")
    {
        Some(Personal::Available(part)) => assert_eq!(part["payer_name"], UNNAMED_PAYER),
        other => panic!("{other:?}"),
    }

    // No schedule for the service: nothing requested, the obligation names the schedule.
    let other_leika = "99108001999000";
    let unscheduled = env
        .drafted(Uuid::now_v7(), "before_submission", other_leika)
        .await;
    catch_up(&env.state).await;
    assert!(env.receivable(unscheduled).await.receivable().is_none());
    let due = env.obligations(unscheduled).await;
    assert_eq!(due.len(), 1);
    assert!(!due[0].settled);
    assert!(due[0].reference.starts_with("fee_schedule-"), "{due:?}");
    let (status, json) = env
        .call(
            "PUT",
            &format!("/fee-schedules/{other_leika}/{AUTHORITY}"),
            &operator(),
            Some(schedule_body(2000, 500)),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{json}");
    let due = env.obligations(unscheduled).await;
    assert!(due[0].reference.starts_with("receivable-"), "{due:?}");
    assert_eq!(
        env.fee_streams(unscheduled).await.0,
        ["ReceivableRequested"]
    );

    // An application met by the manager only after its submission (drafted before the
    // manager first ran): no fee is requested for it.
    let submitted = env
        .drafted(Uuid::now_v7(), "before_submission", LEIKA)
        .await;
    env.publish(
        submitted,
        "ApplicationSubmitted",
        json!({"application_id": submitted, "submitted_at": "2026-03-02T10:00:00.000000Z"}),
    )
    .await;
    catch_up(&env.state).await;
    assert!(env.receivable(submitted).await.receivable().is_none());

    // An expired draft: its fee is cancelled, once.
    let expired = env
        .drafted(Uuid::now_v7(), "before_submission", LEIKA)
        .await;
    catch_up(&env.state).await;
    env.publish(
        expired,
        "DraftExpired",
        json!({"application_id": expired, "at": "2026-04-01T00:00:00.000000Z"}),
    )
    .await;
    catch_up(&env.state).await;
    assert_eq!(
        env.fee_streams(expired).await.0,
        ["ReceivableRequested", "ReceivableCancelled"]
    );
    env.db
        .db()
        .execute("DELETE FROM payments_policy_checkpoints", &[])
        .await
        .expect("forget the checkpoint");
    catch_up(&env.state).await;
    assert_eq!(
        env.fee_streams(expired).await.0,
        ["ReceivableRequested", "ReceivableCancelled"]
    );
}

/// A refused submission records nothing: the submission asks the registry for the
/// obligations held against the application before its decider decides, and may then be
/// refused for the fee or for anything else (no data yet, a missing attachment). Under
/// `before_submission`, with a fee schedule set but the fee not requested yet (no manager
/// running), asking requests no fee and claims no Kassenzeichen — it answers that the fee
/// is being requested; the manager requests it, once, and asking again records nothing.
async fn a_refused_submission_records_nothing(env: &Env) {
    env.schedule().await;
    let app = env
        .drafted(Uuid::now_v7(), "before_submission", LEIKA)
        .await;
    let head = env.head().await;
    let due = env.obligations(app).await;
    assert_eq!(env.head().await, head, "asking recorded something: {due:?}");
    assert_eq!(env.fee_streams(app).await, (vec![], vec![]));
    assert_eq!(due.len(), 1);
    assert!(!due[0].settled);
    assert_eq!(
        due[0].reference,
        ReceivableId::for_application(app).stream_id().to_string()
    );
    assert!(due[0].detail.contains("being requested"), "{due:?}");

    catch_up(&env.state).await;
    let (receivable, claim) = env.fee_streams(app).await;
    assert_eq!(receivable, ["ReceivableRequested"]);
    assert_eq!(claim, ["KassenzeichenClaimed"]);
    let head = env.head().await;
    let due = env.obligations(app).await;
    assert!(!due[0].settled);
    assert!(due[0].detail.contains("cents owed"), "{due:?}");
    assert_eq!(env.head().await, head, "asking recorded something: {due:?}");
    catch_up(&env.state).await;
    assert_eq!(env.fee_streams(app).await.0, ["ReceivableRequested"]);
}

/// Under `after_decision` without a fee schedule: the decided application's fee waits,
/// visibly (the read model, and `/metrics` of the node running the manager), and the
/// manager requests it once it reaches the schedule set in the log — once, however often
/// it passes there. A restarted manager resumes from its checkpoint.
async fn a_missing_schedule_is_made_up_for(env: &Env) {
    let app = env.drafted(Uuid::now_v7(), "after_decision", LEIKA).await;
    env.decided(app).await;
    catch_up(&env.state).await;
    assert!(env.receivable(app).await.receivable().is_none());
    common::read_models_caught_up(&env.store).await;
    let db = amtsbuch_projections::ReadDb::new(&env.store);
    assert_eq!(
        fees_due::waiting(&db).await.expect("waiting"),
        [(LEIKA.to_owned(), AUTHORITY.to_owned(), 1)]
    );
    let job = policy::spawn(env.state.clone(), Duration::from_millis(50));
    let shown =
        format!("amtsbuch_payment_fees_waiting{{service=\"{LEIKA}\",authority=\"{AUTHORITY}\"}} 1");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while !env.state.metrics.render().contains(&shown) {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{}",
            env.state.metrics.render()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    job.abort();
    let _ = job.await;

    // The schedule recorded without the route's own request (as if the server stopped
    // right after it): the manager requests the fee when it reaches it.
    let set = SetFeeSchedule {
        service: ServiceKey::parse(LEIKA).expect("leika"),
        authority: AuthorityId::parse(AUTHORITY).expect("authority"),
        mandant: Mandant::parse(MANDANT).expect("mandant"),
        bewirtschafter: Bewirtschafter::parse("b100").expect("bewirtschafter"),
        gross_cents: Cents::new(2500).expect("cents"),
        lines: serde_json::from_value(schedule_body(2000, 500)["lines"].clone()).expect("lines"),
        due_days: 14,
        set_at: Utc::now(),
    };
    command::execute::<FeeScheduleState>(
        &env.state,
        &schedule_stream(&set.service, &set.authority),
        &set,
        |e| panic!("{e}"),
        &Meta::system("test"),
    )
    .await
    .expect("the schedule");
    assert!(env.receivable(app).await.receivable().is_none());
    catch_up(&env.state).await;
    let state = env.receivable(app).await;
    let r = state
        .receivable()
        .expect("requested once the schedule is set");
    // Not due from the decision (that would be overdue already): from when the schedule was
    // set, which is later.
    assert_eq!(
        r.due_date,
        (set.set_at + chrono::Duration::days(14)).date_naive(),
        "due from the schedule's setting"
    );
    common::read_models_caught_up(&env.store).await;
    assert!(fees_due::waiting(&db).await.expect("waiting").is_empty());

    // Passing the schedule again (a lost checkpoint), or setting it again over HTTP,
    // requests nothing twice.
    env.db
        .db()
        .execute("DELETE FROM payments_policy_checkpoints", &[])
        .await
        .expect("forget the checkpoint");
    catch_up(&env.state).await;
    env.schedule().await;
    catch_up(&env.state).await;
    let (receivable, claim) = env.fee_streams(app).await;
    assert_eq!(receivable, ["ReceivableRequested"]);
    assert_eq!(claim, ["KassenzeichenClaimed"]);

    // Caught up, the manager reads nothing again: not after a restart on this node, nor
    // on another node of the same database.
    let at = policy::checkpoint(&env.state).await.expect("checkpoint");
    assert_eq!(at, env.head().await);
    assert_eq!(policy::step(&env.state).await.expect("step"), 0);
    let other = env.second_node().await;
    assert_eq!(policy::step(&other).await.expect("step"), 0);
    assert_eq!(policy::checkpoint(&other).await.expect("checkpoint"), at);
}

async fn on(adapter: common::Adapter, test: impl AsyncFnOnce(&Env)) {
    let env = Env::start(adapter).await;
    test(&env).await;
    env.close().await;
}

common::on_both_adapters!(using on; fee_schedules, before_submission, rerun_after_a_crash, two_nodes, after_decision_and_the_rest, a_refused_submission_records_nothing, a_missing_schedule_is_made_up_for);
