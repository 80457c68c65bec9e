//! The payments routes over HTTP, through the service's router with its guard, read models
//! running, and the simulator as a separate process whose callbacks reach the router over
//! a real socket: P1 to P5 as a portal, a cashier and the cash office call them, who reaches
//! which receivable in every combination of roles, and the retention hold a receivable
//! places on its payer. Each on SQLite and PostgreSQL; the log verifies afterwards.

use std::time::Duration;

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

use amtsbuch_api::auth::TokenRequest;
use amtsbuch_api::cli::verify::{verify_store, Verdict};
use amtsbuch_api::hub::HubLimits;
use amtsbuch_api::payments::provider::{Auth, Provider, ProviderConfig};
use amtsbuch_api::payments::routes::Configured;
use amtsbuch_api::router;
use amtsbuch_domain::access::{BewirtschafterCode, Role};
use amtsbuch_domain::event::SubjectId;
use amtsbuch_infra::{AnyStore, Direction, EventStore};

use crate::common;
use crate::simulator::{Simulator, SECRET, TOKEN};

const MANDANT: &str = "14612000";

struct Env {
    app: axum::Router,
    state: amtsbuch_api::AppState,
    store: AnyStore,
    sim: Simulator,
    _runner: amtsbuch_projections::RunnerHandle,
    _db: common::TestDb,
}

impl Env {
    async fn start(adapter: common::Adapter) -> Self {
        let db = common::TestDb::fresh(adapter).await;
        let store = db.store.clone();
        let mut state = common::state_with(&store, None, HubLimits::default()).await;
        state.sealer = Some(common::sealer(&store, db.dir()));
        let runner =
            amtsbuch_projections::spawn(store.clone(), amtsbuch_api::domains::projections());
        let app = router::router(state.clone());
        // The router on a socket of its own, for the simulator's callbacks.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let notify_base = format!("http://{}", listener.local_addr().expect("addr"));
        let served = app.clone();
        tokio::spawn(async move { axum::serve(listener, served).await });
        let sim = Simulator::start();
        let provider = Provider::new(ProviderConfig {
            name: "sim".into(),
            base_url: sim.url.clone(),
            originator_id: "amtsbuch".into(),
            endpoint_id: MANDANT.into(),
            auth: Auth::Bearer(TOKEN.into()),
            callback_secret: SECRET.as_bytes().to_vec(),
            ca_pem: None,
            timeout: Duration::from_secs(5),
        })
        .expect("provider");
        state.modules.insert(Configured {
            provider,
            notify_base,
        });
        Env {
            app,
            state,
            store,
            sim,
            _runner: runner,
            _db: db,
        }
    }

    async fn close(self) {
        match verify_store(&self.store, |_, _| {}).await.expect("verify") {
            Verdict::Intact { .. } => {}
            other => panic!("the log does not verify: {other:?}"),
        }
    }

    async fn call(
        &self,
        method: &str,
        uri: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let mut request = Request::builder().method(method).uri(uri);
        if let Some(t) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {t}"));
        }
        if body.is_some() {
            request = request.header(header::CONTENT_TYPE, "application/json");
        }
        for (name, value) in headers {
            request = request.header(*name, *value);
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

    async fn expect(
        &self,
        status: StatusCode,
        method: &str,
        uri: &str,
        token: &str,
        body: Option<Value>,
    ) -> Value {
        let (got, json) = self.call(method, uri, Some(token), body, &[]).await;
        assert_eq!(got, status, "{method} {uri}: {json}");
        json
    }

    /// A payer of record: a Servicekonto account opened by the operator; its id.
    async fn payer(&self) -> String {
        let (status, json) = self
            .call(
                "POST",
                "/accounts",
                Some(&common::token(Role::Operator)),
                Some(json!({"kind": "personal", "master_data": {"type": "person", "given_names": "Erika", "family_name": "Mustermann"}})),
                &[],
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{json}");
        json["account_id"].as_str().expect("account id").to_owned()
    }

    /// A cashier of `bewirtschafter` requests a 25.00 EUR fee in two lines for `payer`.
    async fn request(&self, cashier: &str, bewirtschafter: &str, payer: &str) -> Value {
        let key = Uuid::now_v7().to_string();
        let (status, json) = self
            .call(
                "POST",
                "/receivables",
                Some(cashier),
                Some(fee(bewirtschafter, payer, 2000, 500)),
                &[("idempotency-key", &key)],
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{json}");
        json
    }

    async fn events(&self, id: &str) -> Vec<String> {
        let stream = amtsbuch_domain::StreamId::parse(&format!("receivable-{id}")).expect("stream");
        self.store
            .read_stream(&stream, 1, Direction::Forwards, 1000)
            .await
            .expect("read")
            .iter()
            .map(|e| e.record().expect("record").event_type.as_str().to_owned())
            .collect()
    }
}

fn fee(bewirtschafter: &str, payer: &str, first: i64, second: i64) -> Value {
    json!({
        "mandant": MANDANT,
        "bewirtschafter": bewirtschafter,
        "gross_cents": 2500,
        "due_date": "2026-12-31",
        "lines": [
            { "haushaltsstelle": "1100.100", "buchungstext": "VERWALTUNGSGEBÜHR", "gross_cents": first, "net_cents": first, "tax_cents": 0 },
            { "haushaltsstelle": "1100.200", "buchungstext": "AUSLAGEN", "gross_cents": second, "net_cents": second, "tax_cents": 0 }
        ],
        "payer": payer,
        "payer_name": "Erika Mustermann"
    })
}

/// A token for `subject` holding `roles`: citizen for `account`, cashier for
/// `bewirtschafter`.
fn token(subject: &str, roles: &[Role], account: Option<&str>, bewirtschafter: &[&str]) -> String {
    let mut request = TokenRequest::new(subject, roles.iter().copied());
    request.account = account.map(str::to_owned);
    request.bewirtschafter = bewirtschafter
        .iter()
        .map(|b| BewirtschafterCode::parse(b).expect("code"))
        .collect();
    request.ttl = Duration::from_secs(600);
    common::signed(&request)
}

fn cashier(subject: &str, bewirtschafter: &str) -> String {
    token(subject, &[Role::Cashier], None, &[bewirtschafter])
}

fn citizen(account: &str) -> String {
    token("citizen", &[Role::Citizen], Some(account), &[])
}

fn id_of(receivable: &Value) -> String {
    receivable["receivable_id"]
        .as_str()
        .expect("receivable_id")
        .to_owned()
}

/// P1 to P3 over HTTP: requested by a cashier, checked out by its payer, paid at the
/// simulator whose callback (three times) reaches the router; a spoofed return while the
/// provider says INITIAL leaves the receivable open; a callback with a bad signature is
/// refused with 401.
async fn a_fee_is_paid_over_http(env: &Env) {
    let payer = env.payer().await;
    let kasse = cashier("kasse-1", "b100");
    let r = env.request(&kasse, "b100", &payer).await;
    let id = id_of(&r);
    assert_eq!(r["status"], "open");
    assert_eq!(r["balance_cents"], 2500);
    assert_eq!(r["kassenzeichen"].as_str().expect("kz").len(), 12);
    let checkout = env
        .expect(
            StatusCode::CREATED,
            "POST",
            &format!("/receivables/{id}/checkout"),
            &citizen(&payer),
            Some(json!({ "return_url": "https://portal.example/return" })),
        )
        .await;
    let tx = checkout["transaction_id"].as_str().expect("tx").to_owned();
    assert!(checkout["redirect_url"]
        .as_str()
        .expect("url")
        .starts_with("http"));
    // P2: the payer comes back claiming success; the provider still says INITIAL.
    let (status, back) = env
        .call(
            "GET",
            &format!("/payments/return?receivable={id}&status=PAYED"),
            None,
            None,
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{back}");
    assert!(back.get("status").is_none(), "{back}");
    let open = env
        .expect(
            StatusCode::OK,
            "GET",
            &format!("/receivables/{id}"),
            &citizen(&payer),
            None,
        )
        .await;
    assert_eq!(open["status"], "open");
    // A forged callback is refused with 401 and records nothing.
    let body = json!({ "transactionId": tx }).to_string();
    let forged = amtsbuch_api::payments::provider::sign_callback(b"guessed", body.as_bytes());
    let (status, refused) = env
        .call(
            "POST",
            &format!("/callbacks/payments/sim?receivable={id}"),
            None,
            Some(serde_json::from_str(&body).expect("json")),
            &[("x-signature", &forged)],
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{refused}");
    assert_eq!(refused["type"], "urn:amtsbuch:problem:bad-signature");
    // P1 and P3: paid; the provider calls back three times.
    assert_eq!(env.sim.decide(&tx, "paid", 3).await, vec![200, 200, 200]);
    let paid = env
        .expect(
            StatusCode::OK,
            "GET",
            &format!("/receivables/{id}"),
            &citizen(&payer),
            None,
        )
        .await;
    assert_eq!(paid["status"], "paid");
    assert_eq!(paid["balance_cents"], 0);
    assert_eq!(paid["paid"], true, "the application may be submitted");
    let verified = env
        .events(&id)
        .await
        .iter()
        .filter(|t| *t == "PaymentStatusVerified")
        .count();
    assert_eq!(verified, 1);
    // The same request again (same key) creates nothing.
    let (status, again) = env
        .call(
            "POST",
            "/receivables",
            Some(&kasse),
            Some(fee("b100", &payer, 2000, 500)),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{again}");
    let (status, repeated) = env
        .call(
            "POST",
            "/receivables",
            Some(&kasse),
            Some(fee("b100", &payer, 2000, 500)),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{repeated}");
    assert_eq!(repeated["receivable_id"], again["receivable_id"]);
}

/// The payer's return is anybody's to call: it answers the same for a receivable that
/// exists and one that does not, nothing of its status or balance, and pulls a receivable's
/// status at most once in a while however often it comes.
async fn a_return_tells_nothing_and_pulls_seldom(env: &Env) {
    let payer = env.payer().await;
    let r = env
        .request(&cashier("kasse-1", "b100"), "b100", &payer)
        .await;
    let id = id_of(&r);
    let checkout = env
        .expect(
            StatusCode::CREATED,
            "POST",
            &format!("/receivables/{id}/checkout"),
            &citizen(&payer),
            Some(json!({ "return_url": "https://portal.example/return" })),
        )
        .await;
    let tx = checkout["transaction_id"].as_str().expect("tx").to_owned();
    let known = env
        .call(
            "GET",
            &format!("/payments/return?receivable={id}"),
            None,
            None,
            &[],
        )
        .await;
    let unknown = env
        .call(
            "GET",
            &format!("/payments/return?receivable={}", Uuid::now_v7()),
            None,
            None,
            &[],
        )
        .await;
    assert_eq!(known.0, StatusCode::ACCEPTED, "{}", known.1);
    assert_eq!(
        known, unknown,
        "a return reveals whether the receivable exists"
    );
    assert!(!known.1.to_string().contains("balance"), "{}", known.1);
    // Paid at the provider without a callback: the next returns pull nothing yet.
    assert!(env.sim.decide(&tx, "paid", 0).await.is_empty());
    for _ in 0..3 {
        let again = env
            .call(
                "GET",
                &format!("/payments/return?receivable={id}"),
                None,
                None,
                &[],
            )
            .await;
        assert_eq!(again, known);
    }
    assert!(
        !env.events(&id)
            .await
            .iter()
            .any(|t| t == "PaymentStatusVerified"),
        "a return within the interval pulled again"
    );
}

/// An `Idempotency-Key` answers its receivable only to the same request from a caller
/// still scoped to its Bewirtschafter: another request under it is refused, and a caller
/// now scoped elsewhere does not see it.
async fn a_reused_idempotency_key_reveals_and_returns_nothing(env: &Env) {
    let payer = env.payer().await;
    let key = Uuid::now_v7().to_string();
    let post = |token: String, body: Value| {
        let key = key.clone();
        async move {
            env.call(
                "POST",
                "/receivables",
                Some(&token),
                Some(body),
                &[("idempotency-key", &key)],
            )
            .await
        }
    };
    let (status, first) = post(cashier("kasse-7", "b100"), fee("b100", &payer, 2000, 500)).await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let (status, same) = post(cashier("kasse-7", "b100"), fee("b100", &payer, 2000, 500)).await;
    assert_eq!(status, StatusCode::OK, "{same}");
    assert_eq!(same["receivable_id"], first["receivable_id"]);
    // Another request under the same key: other lines, another payer, another due date.
    let other_payer = env.payer().await;
    let mut later = fee("b100", &payer, 2000, 500);
    later["due_date"] = json!("2027-01-31");
    // Another payer's name (sealed, but recorded all the same), or the assigned
    // Kassenzeichen supplied where the request left it out.
    let mut renamed = fee("b100", &payer, 2000, 500);
    renamed["payer_name"] = json!("Max Mustermann");
    let mut supplied = fee("b100", &payer, 2000, 500);
    supplied["kassenzeichen"] = first["kassenzeichen"].clone();
    for body in [
        fee("b100", &payer, 1500, 1000),
        fee("b100", &other_payer, 2000, 500),
        later,
        renamed,
        supplied,
    ] {
        let (status, p) = post(cashier("kasse-7", "b100"), body.clone()).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}: {p}");
        assert_eq!(p["type"], "urn:amtsbuch:problem:idempotency-key-reused");
    }
    // A request that supplied its Kassenzeichen, again without it: another request.
    let own_key = Uuid::now_v7().to_string();
    let mut with_kz = fee("b100", &payer, 2000, 500);
    with_kz["kassenzeichen"] = json!(format!("KZ{}", &Uuid::now_v7().simple().to_string()[14..]));
    for (body, status) in [
        (with_kz.clone(), StatusCode::CREATED),
        (with_kz, StatusCode::OK),
        (fee("b100", &payer, 2000, 500), StatusCode::CONFLICT),
    ] {
        let (got, p) = env
            .call(
                "POST",
                "/receivables",
                Some(&cashier("kasse-7", "b100")),
                Some(body),
                &[("idempotency-key", &own_key)],
            )
            .await;
        assert_eq!(got, status, "{p}");
    }
    // The same cashier, now scoped to b200 only: b100's receivable is not there for it.
    let (status, p) = post(cashier("kasse-7", "b200"), fee("b200", &payer, 2000, 500)).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{p}");
    assert!(!p
        .to_string()
        .contains(first["kassenzeichen"].as_str().expect("kz")));
    assert_eq!(env.events(&id_of(&first)).await, ["ReceivableRequested"]);
}

/// A receivable has one attempt open at a time: a second checkout while the provider says
/// the first is not final answers the first again and asks the provider for nothing new.
async fn a_second_checkout_reuses_the_open_attempt(env: &Env) {
    let payer = env.payer().await;
    let r = env
        .request(&cashier("kasse-1", "b100"), "b100", &payer)
        .await;
    let id = id_of(&r);
    let uri = format!("/receivables/{id}/checkout");
    let body = json!({ "return_url": "https://portal.example/return" });
    let first = env
        .expect(
            StatusCode::CREATED,
            "POST",
            &uri,
            &citizen(&payer),
            Some(body.clone()),
        )
        .await;
    for _ in 0..3 {
        let again = env
            .expect(
                StatusCode::OK,
                "POST",
                &uri,
                &citizen(&payer),
                Some(body.clone()),
            )
            .await;
        assert_eq!(again, first);
    }
    let attempts = env
        .events(&id)
        .await
        .iter()
        .filter(|t| *t == "PaymentAttemptInitiated")
        .count();
    assert_eq!(attempts, 1);
    // Paid through that attempt: nothing is owed, so no further checkout.
    let tx = first["transaction_id"].as_str().expect("tx").to_owned();
    assert_eq!(env.sim.decide(&tx, "paid", 1).await, vec![200]);
    let (status, p) = env
        .call("POST", &uri, Some(&citizen(&payer)), Some(body), &[])
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{p}");
}

/// Bad input over HTTP, each a 4xx problem that records nothing.
async fn bad_input_is_refused_over_http(env: &Env) {
    let payer = env.payer().await;
    let kasse = cashier("kasse-1", "b100");
    let head = env.store.head().await.expect("head").position;
    let bad = |body: Value, key: &'static str| async move {
        env.call(
            "POST",
            "/receivables",
            Some(&cashier("kasse-1", "b100")),
            Some(body),
            &[("idempotency-key", key)],
        )
        .await
    };
    let (s, p) = bad(fee("b100", &payer, 2000, 400), "b-1").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "lines that do not sum: {p}");
    let mut negative = fee("b100", &payer, 2000, 500);
    negative["gross_cents"] = json!(-2500);
    assert_eq!(bad(negative, "b-2").await.0, StatusCode::BAD_REQUEST);
    let mut fractional = fee("b100", &payer, 2000, 500);
    fractional["gross_cents"] = json!(25.5);
    assert_eq!(bad(fractional, "b-3").await.0, StatusCode::BAD_REQUEST);
    // A date only as `YYYY-MM-DD` with a 4-digit year, named by its pointer.
    let mut far = fee("b100", &payer, 2000, 500);
    far["due_date"] = json!("+12345-12-31");
    let (s, p) = bad(far, "b-4").await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{p}");
    assert_eq!(p["pointer"], "/due_date", "{p}");
    let (s, _) = env
        .call(
            "POST",
            "/receivables",
            Some(&kasse),
            Some(fee("b100", &payer, 2000, 500)),
            &[],
        )
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "no Idempotency-Key");
    assert_eq!(
        env.store.head().await.expect("head").position,
        head,
        "nothing recorded"
    );
    // A duplicate Kassenzeichen in the Mandant.
    let mut supplied = fee("b100", &payer, 2000, 500);
    supplied["kassenzeichen"] = json!("DUP42");
    assert_eq!(bad(supplied.clone(), "d-1").await.0, StatusCode::CREATED);
    let (s, p) = bad(supplied, "d-2").await;
    assert_eq!(s, StatusCode::CONFLICT, "{p}");
    assert_eq!(p["type"], "urn:amtsbuch:problem:kassenzeichen-taken");
    // Another Bewirtschafter's cashier may not request for b100.
    let (s, _) = env
        .call(
            "POST",
            "/receivables",
            Some(&cashier("kasse-2", "b200")),
            Some(fee("b100", &payer, 2000, 500)),
            &[("idempotency-key", "x-1")],
        )
        .await;
    assert_eq!(s, StatusCode::FORBIDDEN);
}

/// Who reaches which receivable: a payer its own, a cashier its Bewirtschafter's, an
/// auditor all (and changes nothing); a token with two roles adds what each reaches and no
/// more; refunds need a second cashier.
async fn each_role_reaches_its_receivables_in_every_combination(env: &Env) {
    let (erika, max) = (env.payer().await, env.payer().await);
    let own_b100 = id_of(&env.request(&cashier("k1", "b100"), "b100", &erika).await);
    let max_b100 = id_of(&env.request(&cashier("k1", "b100"), "b100", &max).await);
    let max_b200 = id_of(&env.request(&cashier("k2", "b200"), "b200", &max).await);
    let listed = |json: &Value| -> Vec<String> {
        let mut ids: Vec<String> = json["receivables"]
            .as_array()
            .expect("receivables")
            .iter()
            .map(|r| r["receivable_id"].as_str().expect("id").to_owned())
            .collect();
        ids.sort();
        ids
    };
    let sorted = |mut v: Vec<&String>| {
        v.sort();
        v.into_iter().cloned().collect::<Vec<_>>()
    };
    let cases: Vec<(&str, String, Vec<String>)> = vec![
        ("citizen", citizen(&erika), sorted(vec![&own_b100])),
        (
            "cashier b100",
            cashier("k1", "b100"),
            sorted(vec![&own_b100, &max_b100]),
        ),
        (
            "citizen + cashier b200",
            token(
                "both",
                &[Role::Citizen, Role::Cashier],
                Some(&erika),
                &["b200"],
            ),
            sorted(vec![&own_b100, &max_b200]),
        ),
        (
            "citizen + auditor",
            token("ca", &[Role::Citizen, Role::Auditor], Some(&erika), &[]),
            sorted(vec![&own_b100, &max_b100, &max_b200]),
        ),
        (
            "citizen + operator",
            token("co", &[Role::Citizen, Role::Operator], Some(&erika), &[]),
            sorted(vec![&own_b100]),
        ),
    ];
    for (who, token, expected) in &cases {
        let list = env
            .expect(StatusCode::OK, "GET", "/receivables", token, None)
            .await;
        let mut expected = expected.clone();
        if *who == "citizen + auditor" {
            // An auditor sees every receivable of the database, other tests' included.
            let all = listed(&list);
            assert!(expected.iter().all(|e| all.contains(e)), "{who}");
            continue;
        }
        expected.sort();
        assert_eq!(listed(&list), expected, "{who}");
        for id in [&own_b100, &max_b100, &max_b200] {
            let (status, _) = env
                .call("GET", &format!("/receivables/{id}"), Some(token), None, &[])
                .await;
            let want = if expected.contains(id) {
                StatusCode::OK
            } else {
                StatusCode::NOT_FOUND
            };
            assert_eq!(status, want, "{who} GET {id}");
        }
    }
    // A citizen who is also a cashier of b200 checks out only its own receivable.
    let both = token(
        "both",
        &[Role::Citizen, Role::Cashier],
        Some(&erika),
        &["b200"],
    );
    let (status, _) = env
        .call(
            "POST",
            &format!("/receivables/{max_b200}/checkout"),
            Some(&both),
            Some(json!({ "return_url": "https://portal.example/return" })),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "checkout is the payer's");
    // An auditor reads and changes nothing.
    let auditor = token("a", &[Role::Auditor], None, &[]);
    let (status, _) = env
        .call(
            "POST",
            &format!("/receivables/{max_b100}/refunds"),
            Some(&auditor),
            Some(json!({ "amount_cents": 1, "reason": "x" })),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // Four eyes: a refund above what was paid is refused; the requester cannot approve.
    let k1 = cashier("k1", "b100");
    let (status, p) = env
        .call(
            "POST",
            &format!("/receivables/{max_b100}/refunds"),
            Some(&k1),
            Some(json!({ "amount_cents": 1, "reason": "Doppelt" })),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "nothing paid yet: {p}");
    assert_eq!(p["type"], "urn:amtsbuch:problem:refund-too-large");
}

/// P4 and P5 over HTTP: a camt.054 with a returned debit reopens a receivable paid by
/// transfer; an HKR posting of 24.50 against 25.00 is on the worklist; the daily report
/// sums the gross amounts per Haushaltsstelle; the same file again books nothing.
async fn reconciliation_over_http(env: &Env) {
    let payer = env.payer().await;
    let kasse = cashier("k1", "b100");
    let operator = token("kasse-system", &[Role::Operator], None, &[]);
    let a = env.request(&kasse, "b100", &payer).await;
    let b = env.request(&kasse, "b100", &payer).await;
    let (kz_a, kz_b) = (
        a["kassenzeichen"].as_str().expect("kz").to_owned(),
        b["kassenzeichen"].as_str().expect("kz").to_owned(),
    );
    let today = chrono::Utc::now().date_naive();
    let camt = |entries: &str| {
        format!(
            "<Document><BkToCstmrStmt><GrpHdr><MsgId>M-{}</MsgId></GrpHdr><Stmt>{entries}</Stmt></BkToCstmrStmt></Document>",
            Uuid::now_v7().simple()
        )
    };
    let credit = |kz: &str, entry: &str| {
        format!(
            "<Ntry><Amt Ccy=\"EUR\">25.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts><BookgDt><Dt>{today}</Dt></BookgDt><AcctSvcrRef>{entry}</AcctSvcrRef><NtryDtls><TxDtls><RmtInf><Ustrd>{kz}</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>"
        )
    };
    let statement =
        camt(&(credit(&kz_a, &format!("E-{kz_a}")) + &credit(&kz_b, &format!("E-{kz_b}"))));
    let import = |format: &str, content: String| json!({ "mandant": MANDANT, "format": format, "content": content });
    let report = env
        .expect(
            StatusCode::OK,
            "POST",
            "/reconciliation/imports",
            &operator,
            Some(import("camt", statement.clone())),
        )
        .await;
    assert_eq!(report["booked"], 2, "{report}");
    let again = env
        .expect(
            StatusCode::OK,
            "POST",
            "/reconciliation/imports",
            &operator,
            Some(import("camt", statement)),
        )
        .await;
    assert_eq!(again["booked"], 0, "{again}");
    assert_eq!(again["already_booked"], 2, "{again}");
    env.expect(
        StatusCode::BAD_REQUEST,
        "GET",
        &format!("/reconciliation/daily?date=%2B12345-01-01&mandant={MANDANT}"),
        &kasse,
        None,
    )
    .await;
    // The daily report: both paid today, 2 × 20.00 and 2 × 5.00.
    let daily = env
        .expect(
            StatusCode::OK,
            "GET",
            &format!("/reconciliation/daily?date={today}&mandant={MANDANT}"),
            &kasse,
            None,
        )
        .await;
    let sum = |hst: &str| {
        daily["sums"]
            .as_array()
            .expect("sums")
            .iter()
            .find(|s| s["haushaltsstelle"] == hst)
            .map(|s| s["gross_cents"].as_i64().expect("cents"))
    };
    assert_eq!(sum("1100.100"), Some(4000), "{daily}");
    assert_eq!(sum("1100.200"), Some(1000), "{daily}");
    assert_eq!(daily["total_cents"], 5000, "the receivables' gross total");
    // P4: a returned direct debit for b reopens it.
    let returned = camt(&format!(
        "<Ntry><Amt Ccy=\"EUR\">25.00</Amt><CdtDbtInd>DBIT</CdtDbtInd><RvslInd>true</RvslInd><Sts>BOOK</Sts><BookgDt><Dt>{today}</Dt></BookgDt><AcctSvcrRef>R-{kz_b}</AcctSvcrRef><BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>RDDT</Cd><SubFmlyCd>UPDD</SubFmlyCd></Fmly></Domn></BkTxCd><NtryDtls><TxDtls><RmtInf><Ustrd>{kz_b}</Ustrd></RmtInf><RtrInf><Rsn><Cd>AC04</Cd></Rsn></RtrInf></TxDtls></NtryDtls></Ntry>"
    ));
    let report = env
        .expect(
            StatusCode::OK,
            "POST",
            "/reconciliation/imports",
            &operator,
            Some(import("camt", returned)),
        )
        .await;
    assert_eq!(report["booked"], 1, "{report}");
    let b_now = env
        .expect(
            StatusCode::OK,
            "GET",
            &format!("/receivables/{}", id_of(&b)),
            &kasse,
            None,
        )
        .await;
    assert_eq!(b_now["status"], "reopened", "{b_now}");
    assert_eq!(b_now["balance_cents"], 2500);
    // P5: the HKR books 24.50 for a: a mismatch on the worklist.
    let hkr = format!(
        "buchungs_id;buchungsdatum;kassenzeichen;haushaltsstelle;betrag;art;hkr_referenz\nH-{kz_a};{today};{kz_a};1100.100;24,50;IST;BEL-77\n"
    );
    let report = env
        .expect(
            StatusCode::OK,
            "POST",
            "/reconciliation/imports",
            &operator,
            Some(import("hkr", hkr)),
        )
        .await;
    assert_eq!(report["mismatches"], 1, "{report}");
    let worklist = env
        .expect(
            StatusCode::OK,
            "GET",
            &format!("/reconciliation/mismatches?mandant={MANDANT}"),
            &kasse,
            None,
        )
        .await;
    let entries = worklist["mismatches"].as_array().expect("mismatches");
    assert!(
        entries
            .iter()
            .any(|m| m["kassenzeichen"] == kz_a.as_str() && m["found_cents"] == 2450),
        "{worklist}"
    );
    let flagged = env
        .expect(
            StatusCode::OK,
            "GET",
            &format!("/receivables?mismatch=true&kassenzeichen={kz_a}"),
            &kasse,
            None,
        )
        .await;
    assert_eq!(flagged["receivables"].as_array().expect("list").len(), 1);
    // Another Bewirtschafter's cashier sees none of it.
    let other = env
        .expect(
            StatusCode::OK,
            "GET",
            &format!("/reconciliation/mismatches?mandant={MANDANT}"),
            &cashier("k9", "b900"),
            None,
        )
        .await;
    assert_eq!(other["mismatches"], json!([]));
    // A malformed file: 400 naming line and element, nothing booked.
    let head = env.store.head().await.expect("head").position;
    let (status, p) = env
        .call(
            "POST",
            "/reconciliation/imports",
            Some(&operator),
            Some(import("camt", "<Document><BkToCstmrStmt><Stmt><Ntry><Amt Ccy=\"EUR\">1.234</Amt></Ntry></Stmt></BkToCstmrStmt></Document>".into())),
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{p}");
    assert_eq!(p["type"], "urn:amtsbuch:problem:malformed-file");
    assert!(p["line"].is_number() && p["element"].is_string(), "{p}");
    assert_eq!(env.store.head().await.expect("head").position, head);
}

/// Every receivable holds its payer's erasure: open-ended while it is not finished (open,
/// paid but not settled), then until the end of its cash records' retention once settled
/// or cancelled — ten years from the 1 January after the annual accounts of the year of
/// its last booking.
async fn a_receivable_holds_its_payers_erasure(env: &Env) {
    use chrono::Datelike;
    let payer = Uuid::parse_str(&env.payer().await).expect("an account id");
    let kasse = cashier("k1", "b100");
    let operator = token("kasse-system", &[Role::Operator], None, &[]);
    let r = env.request(&kasse, "b100", &payer.to_string()).await;
    let id = id_of(&r);
    let ours = || async {
        let holds = amtsbuch_api::module::subject_holds(
            &env.state,
            amtsbuch_api::domains::MODULES,
            SubjectId(payer),
            chrono::Utc::now(),
        )
        .await
        .expect("holds");
        holds
            .into_iter()
            .filter(|h| h.module == "payments")
            .collect::<Vec<_>>()
    };
    // Requested, nothing paid: open-ended.
    let open = ours().await;
    assert_eq!(open.len(), 1, "{open:?}");
    assert_eq!(
        (open[0].reason.as_str(), open[0].until),
        ("open_receivable", None)
    );
    assert_eq!(open[0].reference, format!("receivable-{id}"));
    // Paid at the provider, not yet settled with the HKR: still open-ended.
    let checkout = env
        .expect(
            StatusCode::CREATED,
            "POST",
            &format!("/receivables/{id}/checkout"),
            &citizen(&payer.to_string()),
            Some(json!({ "return_url": "https://portal.example/return" })),
        )
        .await;
    let tx = checkout["transaction_id"].as_str().expect("tx");
    assert_eq!(env.sim.decide(tx, "paid", 1).await, vec![200]);
    let paid = ours().await;
    assert_eq!(
        (paid[0].reason.as_str(), paid[0].until),
        ("open_receivable", None),
        "paid, not settled"
    );
    // The HKR's posting settles it: kept ten years from the 1 January after the annual
    // accounts of the booking year, which the receivable shows too.
    let today = chrono::Utc::now().date_naive();
    let kz = r["kassenzeichen"].as_str().expect("kz");
    let hkr = format!(
        "buchungs_id;buchungsdatum;kassenzeichen;haushaltsstelle;betrag;art;hkr_referenz\nH-{kz};{today};{kz};1100.100;25,00;IST;BEL-1\n"
    );
    let report = env
        .expect(
            StatusCode::OK,
            "POST",
            "/reconciliation/imports",
            &operator,
            Some(json!({ "mandant": MANDANT, "format": "hkr", "content": hkr })),
        )
        .await;
    assert_eq!(report["booked"], 1, "{report}");
    let settled = env
        .expect(
            StatusCode::OK,
            "GET",
            &format!("/receivables/{id}"),
            &kasse,
            None,
        )
        .await;
    assert_eq!(settled["status"], "settled");
    let holds = ours().await;
    assert_eq!(holds.len(), 1, "{holds:?}");
    assert_eq!(holds[0].reason, "cash_records");
    let until = holds[0].until.expect("an end once settled");
    let shown = chrono::DateTime::parse_from_rfc3339(
        settled["retention_until"]
            .as_str()
            .expect("retention_until"),
    )
    .expect("an instant");
    assert_eq!(until, shown);
    assert_eq!(until.year(), today.year() + 12);
    assert_eq!((until.month(), until.day()), (1, 1));
    // A second receivable, cancelled before anything was paid: finished, so it too holds
    // until the end of its records' retention, counted from its request.
    let second = id_of(&env.request(&kasse, "b100", &payer.to_string()).await);
    env.expect(
        StatusCode::OK,
        "POST",
        &format!("/receivables/{second}/cancellation"),
        &kasse,
        Some(json!({ "reason": "Antrag zurückgenommen" })),
    )
    .await;
    let holds = ours().await;
    assert_eq!(holds.len(), 2, "{holds:?}");
    assert!(
        holds
            .iter()
            .all(|h| h.reason == "cash_records" && h.until == Some(until)),
        "{holds:?}"
    );
    // The erasure is refused while they last, naming when it may happen.
    let dpo = token("dpo-1", &[Role::Dpo], None, &[]);
    let (status, problem) = env
        .call(
            "POST",
            &format!("/dpo/subjects/{payer}/erasure"),
            Some(&dpo),
            None,
            &[],
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["type"], "urn:amtsbuch:problem:retention-hold");
}

/// The payer's access export (Art. 15 GDPR) holds its receivables as the cashier sees them,
/// with the name it was requested under and each receivable's history; another subject's
/// export has no receivables.
async fn the_payers_access_export_holds_its_receivables(env: &Env) {
    let payer = Uuid::parse_str(&env.payer().await).expect("an account id");
    let kasse = cashier("k1", "b100");
    let r = env.request(&kasse, "b100", &payer.to_string()).await;
    let id = id_of(&r);
    let checkout = env
        .expect(
            StatusCode::CREATED,
            "POST",
            &format!("/receivables/{id}/checkout"),
            &citizen(&payer.to_string()),
            Some(json!({ "return_url": "https://portal.example/return" })),
        )
        .await;
    let tx = checkout["transaction_id"].as_str().expect("tx");
    assert_eq!(env.sim.decide(tx, "paid", 1).await, vec![200]);
    let dpo = token("dpo-1", &[Role::Dpo], None, &[]);
    let export = env
        .expect(
            StatusCode::OK,
            "GET",
            &format!("/dpo/subjects/{payer}/export"),
            &dpo,
            None,
        )
        .await;
    let receivables = export["receivables"].as_array().expect("receivables");
    assert_eq!(receivables.len(), 1, "{export}");
    let shown = &receivables[0];
    assert_eq!(shown["receivable_id"], id.as_str());
    assert_eq!(shown["kassenzeichen"], r["kassenzeichen"]);
    assert_eq!(shown["payer"], payer.to_string().as_str());
    assert_eq!(shown["payer_name"], "Erika Mustermann");
    assert_eq!(shown["status"], "paid");
    let history: Vec<&str> = shown["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|e| e["event"].as_str().expect("event"))
        .collect();
    assert_eq!(
        history,
        [
            "ReceivableRequested",
            "PaymentAttemptInitiated",
            "PaymentStatusVerified"
        ]
    );
    let other = env
        .expect(
            StatusCode::OK,
            "GET",
            &format!("/dpo/subjects/{}/export", Uuid::now_v7()),
            &dpo,
            None,
        )
        .await;
    assert!(other.get("receivables").is_none(), "{other}");
}

/// A cashier names a payer of record only: an existing account, or with an application its
/// applicant, by the Bewirtschafter of the application's fee schedule. An unrelated
/// subject, a foreign application or another Bewirtschafter is refused, records nothing
/// and holds nobody's erasure.
async fn a_receivable_names_a_payer_of_record(env: &Env) {
    const LEIKA: &str = "99108001000000";
    let operator = token("kasse-system", &[Role::Operator], None, &[]);
    let schedule = json!({
        "mandant": MANDANT, "bewirtschafter": "b100", "gross_cents": 2500, "due_days": 14,
        "lines": [
            { "haushaltsstelle": "1100.100", "buchungstext": "GEBÜHR", "gross_cents": 2000, "net_cents": 2000, "tax_cents": 0 },
            { "haushaltsstelle": "1100.200", "buchungstext": "AUSLAGEN", "gross_cents": 500, "net_cents": 500, "tax_cents": 0 }
        ]
    });
    env.expect(
        StatusCode::OK,
        "PUT",
        &format!("/fee-schedules/{LEIKA}/lra-meissen"),
        &operator,
        Some(schedule),
    )
    .await;
    let (applicant, stranger) = (env.payer().await, env.payer().await);
    // An application of `applicant`, as the lifecycle records its creation.
    let application = Uuid::now_v7();
    env.store
        .append(amtsbuch_domain::AppendRequest {
            stream: amtsbuch_domain::StreamId::parse(&format!("application-{application}"))
                .expect("stream"),
            expected: amtsbuch_domain::ExpectedVersion::NoStream,
            events: vec![amtsbuch_domain::NewEvent::new(
                amtsbuch_domain::EventType::parse("ApplicationCreated").expect("type"),
                json!({
                    "application_id": application,
                    "applicant": applicant,
                    "pinned": {"form": Uuid::now_v7(), "version": 1, "schema_hash": "00".repeat(32)},
                    "responsible": {"authority": "lra-meissen", "leika": LEIKA, "place": "146270000000",
                                    "payment": "none", "service_name": "Wohngeld beantragen"},
                    "created_at": "2026-03-01T10:00:00.000000Z"
                }),
            )],
        })
        .await
        .expect("append");
    let head = env.store.head().await.expect("head").position;
    let (kasse, other_kasse) = (cashier("kasse-1", "b100"), cashier("kasse-9", "b900"));
    let with = |bewirtschafter: &str, payer: &str, application: Option<Uuid>| {
        let mut body = fee(bewirtschafter, payer, 2000, 500);
        body["application_id"] = json!(application);
        body
    };
    let unknown = Uuid::now_v7().to_string();
    for (who, body, status) in [
        // Anybody's UUID, no account of this server.
        (
            &kasse,
            with("b100", &unknown, None),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        // An account, but not the application's applicant.
        (
            &kasse,
            with("b100", &stranger, Some(application)),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        // An application that does not exist.
        (
            &kasse,
            with("b100", &applicant, Some(Uuid::now_v7())),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        // A Bewirtschafter the application's fee schedule does not name.
        (
            &other_kasse,
            with("b900", &applicant, Some(application)),
            StatusCode::FORBIDDEN,
        ),
    ] {
        let key = Uuid::now_v7().to_string();
        let (got, problem) = env
            .call(
                "POST",
                "/receivables",
                Some(who),
                Some(body.clone()),
                &[("idempotency-key", &key)],
            )
            .await;
        assert_eq!(got, status, "{body}: {problem}");
        if status == StatusCode::UNPROCESSABLE_ENTITY {
            assert_eq!(
                problem["type"], "urn:amtsbuch:problem:payer-not-recorded",
                "{problem}"
            );
        }
    }
    assert_eq!(
        env.store.head().await.expect("head").position,
        head,
        "nothing recorded"
    );
    for subject in [&unknown, &stranger] {
        let holds = amtsbuch_api::module::subject_holds(
            &env.state,
            amtsbuch_api::domains::MODULES,
            SubjectId(Uuid::parse_str(subject).expect("uuid")),
            chrono::Utc::now(),
        )
        .await
        .expect("holds");
        assert!(holds.is_empty(), "{holds:?}");
    }
    // The applicant, by the schedule's Bewirtschafter: requested.
    let key = Uuid::now_v7().to_string();
    let (got, r) = env
        .call(
            "POST",
            "/receivables",
            Some(&kasse),
            Some(with("b100", &applicant, Some(application))),
            &[("idempotency-key", &key)],
        )
        .await;
    assert_eq!(got, StatusCode::CREATED, "{r}");
    assert_eq!(r["payer"], applicant.as_str());
}

async fn on(adapter: common::Adapter, test: impl AsyncFnOnce(&Env)) {
    let env = Env::start(adapter).await;
    test(&env).await;
    env.close().await;
}

common::on_both_adapters!(
    using on;
    a_fee_is_paid_over_http,
    a_return_tells_nothing_and_pulls_seldom,
    a_reused_idempotency_key_reveals_and_returns_nothing,
    a_second_checkout_reuses_the_open_attempt,
    bad_input_is_refused_over_http,
    each_role_reaches_its_receivables_in_every_combination,
    reconciliation_over_http,
    a_receivable_holds_its_payers_erasure,
    the_payers_access_export_holds_its_receivables,
    a_receivable_names_a_payer_of_record,
);
