//! The payment flows over a real store with sealing, against the simulator: a fee
//! requested, checked out, called back, pulled, reconciled with the bank and the HKR,
//! refunded and cancelled; each written once and run on SQLite and PostgreSQL. The log
//! verifies afterwards.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use chrono::Utc;
use uuid::Uuid;

use amtsbuch_api::cli::verify::{verify_store, Verdict};
use amtsbuch_api::command::Meta;
use amtsbuch_api::hub::HubLimits;
use amtsbuch_api::payments::provider::{Auth, Provider, ProviderConfig};
use amtsbuch_api::payments::service::{self, Format};
use amtsbuch_api::AppState;
use amtsbuch_domain::event::SubjectId;
use amtsbuch_domain::payments::claim::claim_stream;
use amtsbuch_domain::payments::receivable::{
    ReceivableEvent, ReceivableState, RequestReceivable, RequestRefund, Status,
};
use amtsbuch_domain::payments::{
    Actor, Bewirtschafter, Buchungstext, Cents, Haushaltsstelle, Kassenzeichen, Line, Mandant,
    PayerName, ReceivableId, Reference, RefundId,
};
use amtsbuch_infra::{AnyStore, Direction, EventStore};

use crate::common;
use crate::simulator::{Simulator, SECRET, TOKEN};

struct Env {
    state: AppState,
    store: AnyStore,
    provider: Provider,
    sim: Simulator,
    /// The base URL of this test's callback receiver.
    notify_base: String,
    /// The read models (reconciliation finds receivables in them).
    _runner: amtsbuch_projections::RunnerHandle,
    /// The database, removed when the `Env` goes.
    _db: common::TestDb,
}

#[derive(serde::Deserialize)]
struct Which {
    receivable: Uuid,
}

/// The callback route as the service mounts it: authenticate, then pull.
async fn receive(
    State((state, provider)): State<(AppState, Provider)>,
    Query(which): Query<Which>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let signature = headers.get("x-signature").and_then(|v| v.to_str().ok());
    match service::callback(
        &state,
        &provider,
        ReceivableId(which.receivable),
        &body,
        signature,
    )
    .await
    {
        Ok(_) => StatusCode::OK,
        Err(p) => p.status,
    }
}

impl Env {
    async fn start(adapter: common::Adapter) -> Self {
        let db = common::TestDb::fresh(adapter).await;
        let store = db.store.clone();
        let sealer = common::sealer(&store, db.dir());
        let mut state = common::state_with(&store, None, HubLimits::default()).await;
        state.sealer = Some(sealer);
        let runner =
            amtsbuch_projections::spawn(store.clone(), amtsbuch_api::domains::projections());
        let sim = Simulator::start();
        let provider = Provider::new(ProviderConfig {
            name: "sim".into(),
            base_url: sim.url.clone(),
            originator_id: "amtsbuch".into(),
            endpoint_id: "14612000".into(),
            auth: Auth::Bearer(TOKEN.into()),
            callback_secret: SECRET.as_bytes().to_vec(),
            ca_pem: None,
            timeout: Duration::from_secs(5),
        })
        .expect("provider");
        let app = axum::Router::new()
            .route("/callbacks/payments/{provider}", post(receive))
            .with_state((state.clone(), provider.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let notify_base = format!("http://{}", listener.local_addr().expect("addr"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        Env {
            state,
            store,
            provider,
            sim,
            notify_base,
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

    async fn events(&self, id: ReceivableId) -> Vec<String> {
        self.store
            .read_stream(&id.stream_id(), 1, Direction::Forwards, 1000)
            .await
            .expect("read")
            .iter()
            .map(|e| e.record().expect("record").event_type.as_str().to_owned())
            .collect()
    }

    async fn head(&self) -> u64 {
        self.store.head().await.expect("head").position
    }

    async fn state_of(&self, id: ReceivableId) -> ReceivableState {
        service::receivable(&self.state, id)
            .await
            .expect("receivable")
            .0
    }

    async fn request(&self, mandant: &str, kz: Option<&str>) -> ReceivableId {
        let id = ReceivableId(Uuid::now_v7());
        service::request(
            &self.state,
            fee(id, mandant, &[("1100.100", 2000), ("1100.200", 500)], 2500),
            kz.map(|k| Kassenzeichen::parse(k).expect("kz")),
            &meta(),
        )
        .await
        .expect("requested");
        id
    }

    async fn checkout(&self, id: ReceivableId) -> String {
        service::checkout(
            &self.state,
            &self.provider,
            id,
            "https://portal.example/return".into(),
            &self.notify_base,
            Utc::now(),
            &meta(),
        )
        .await
        .expect("checkout")
        .transaction_id
    }
}

fn meta() -> Meta {
    Meta::system("payments-test")
}

fn cents(n: i64) -> Cents {
    Cents::new(n).expect("cents")
}

fn fee(id: ReceivableId, mandant: &str, lines: &[(&str, i64)], gross: i64) -> RequestReceivable {
    RequestReceivable {
        receivable_id: id,
        mandant: Mandant::parse(mandant).expect("mandant"),
        bewirtschafter: Bewirtschafter::parse("b100").expect("bewirtschafter"),
        kassenzeichen: Kassenzeichen::parse("XX").expect("placeholder"),
        assigned: false,
        gross_cents: cents(gross),
        due_date: chrono::NaiveDate::from_ymd_opt(2026, 12, 31).expect("date"),
        lines: lines
            .iter()
            .map(|(hst, gross)| Line {
                haushaltsstelle: Haushaltsstelle::parse(hst).expect("hst"),
                objektnummer: None,
                href: None,
                buchungstext: Buchungstext::parse("GEBÜHR").expect("text"),
                gross_cents: cents(*gross),
                net_cents: cents(*gross),
                tax_cents: Cents::ZERO,
            })
            .collect(),
        application_id: Some(Uuid::now_v7()),
        payer: SubjectId(Uuid::now_v7()),
        payer_name: PayerName::parse("Erika Mustermann").expect("name"),
        requested_at: Utc::now(),
    }
}

fn status(state: &ReceivableState) -> Status {
    state.receivable().expect("requested").status()
}

fn kassenzeichen(state: &ReceivableState) -> String {
    state
        .receivable()
        .expect("requested")
        .kassenzeichen
        .to_string()
}

// ---------------------------------------------------------------------------------------

/// P1: 25.00 EUR with two lines, paid via checkout and callback, verified by pull.
async fn p1_a_fee_is_paid_by_checkout_and_callback(env: &Env) {
    let id = env.request("14612000", None).await;
    let requested = env.state_of(id).await;
    let r = requested.receivable().expect("requested");
    assert!(
        r.kassenzeichen.has_valid_check_digit(),
        "{}",
        r.kassenzeichen
    );
    assert_eq!(r.balance(), cents(2500));
    assert_eq!(r.lines.len(), 2);
    let tx = env.checkout(id).await;
    assert_eq!(env.sim.decide(&tx, "paid", 1).await, vec![200]);
    let paid = env.state_of(id).await;
    let r = paid.receivable().expect("requested");
    assert_eq!(r.status(), Status::Paid);
    assert_eq!(r.balance(), Cents::ZERO);
    assert!(r.is_paid(), "the application may be submitted");
    assert_eq!(
        env.events(id).await,
        [
            "ReceivableRequested",
            "PaymentAttemptInitiated",
            "PaymentStatusVerified"
        ]
    );
    // The payer's name is sealed, never in the record's plain bytes.
    let raw = env
        .store
        .read_stream(&id.stream_id(), 1, Direction::Forwards, 1)
        .await
        .expect("read");
    let bytes = String::from_utf8_lossy(&raw[0].bytes).into_owned();
    assert!(!bytes.contains("Mustermann"), "{bytes}");
}

/// P2: a spoofed "success" return while the provider says INITIAL leaves it open; a
/// callback with a bad signature gets 401 and records nothing.
async fn p2_a_spoofed_return_or_callback_changes_nothing(env: &Env) {
    let id = env.request("14612000", None).await;
    let tx = env.checkout(id).await;
    let before = env.head().await;
    // The return redirect only triggers a pull; whatever it claims is not read.
    let state = service::pull(&env.state, &env.provider, id, None, &meta())
        .await
        .expect("pulled");
    assert_eq!(status(&state), Status::Open);
    assert_eq!(env.head().await, before, "INITIAL again records nothing");
    let body = format!(r#"{{"transactionId":"{tx}","status":"PAYED"}}"#);
    let forged = amtsbuch_api::payments::provider::sign_callback(b"guessed", body.as_bytes());
    let refused = service::callback(
        &env.state,
        &env.provider,
        id,
        body.as_bytes(),
        Some(&forged),
    )
    .await
    .expect_err("refused");
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED);
    let unsigned = service::callback(&env.state, &env.provider, id, body.as_bytes(), None)
        .await
        .expect_err("refused");
    assert_eq!(unsigned.status, StatusCode::UNAUTHORIZED);
    assert_eq!(env.head().await, before);
    assert_eq!(status(&env.state_of(id).await), Status::Open);
}

/// P3: the same callback three times gives one verified status.
async fn p3_the_same_callback_three_times_verifies_once(env: &Env) {
    let id = env.request("14612000", None).await;
    let tx = env.checkout(id).await;
    assert_eq!(env.sim.decide(&tx, "paid", 3).await, vec![200, 200, 200]);
    let verified = env
        .events(id)
        .await
        .iter()
        .filter(|t| *t == "PaymentStatusVerified")
        .count();
    assert_eq!(verified, 1);
    assert_eq!(status(&env.state_of(id).await), Status::Paid);
}

fn camt053_credit(kz: &str, entry: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">
<BkToCstmrStmt><GrpHdr><MsgId>S-{entry}</MsgId></GrpHdr><Stmt><Id>1</Id>
<Ntry><Amt Ccy="EUR">25.00</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts>
<BookgDt><Dt>2026-03-03</Dt></BookgDt><AcctSvcrRef>{entry}</AcctSvcrRef>
<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>IDDT</Cd><SubFmlyCd>ESDD</SubFmlyCd></Fmly></Domn></BkTxCd>
<NtryDtls><TxDtls><RmtInf><Ustrd>Lastschrift {kz}</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>
</Stmt></BkToCstmrStmt></Document>
"#
    )
}

fn camt054_return(kz: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.054.001.02">
<BkToCstmrDbtCdtNtfctn><GrpHdr><MsgId>N-1</MsgId></GrpHdr><Ntfctn><Id>1</Id>
<Ntry><Amt Ccy="EUR">25.00</Amt><CdtDbtInd>DBIT</CdtDbtInd><Sts>BOOK</Sts>
<BookgDt><Dt>2026-03-10</Dt></BookgDt><AcctSvcrRef>RUECK-1</AcctSvcrRef>
<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>IDDT</Cd><SubFmlyCd>UPDD</SubFmlyCd></Fmly></Domn></BkTxCd>
<NtryDtls><TxDtls><RmtInf><Ustrd>{kz}</Ustrd></RmtInf><RtrInf><Rsn><Cd>MD06</Cd></Rsn></RtrInf></TxDtls></NtryDtls></Ntry>
</Ntfctn></BkToCstmrDbtCdtNtfctn></Document>
"#
    )
}

/// Imports `text`. An import first waits up to 10 s for the read models to reach the log's
/// head; on a loaded machine they may need longer after a large import, and the import
/// answers `503 read-models-behind` having booked nothing, so it is tried again then.
async fn import(env: &Env, format: Format, text: &str) -> service::ImportReport {
    let mandant = Mandant::parse("14612000").expect("mandant");
    let patience = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        match service::import(
            &env.state,
            &mandant,
            format,
            text.as_bytes(),
            Utc::now(),
            &meta(),
            |_, _| {},
        )
        .await
        {
            Ok(report) => return report,
            Err(p) if p.kind == "read-models-behind" && std::time::Instant::now() < patience => {}
            Err(p) => panic!("imported: {p:?}"),
        }
    }
}

/// P4: a direct debit collected, then returned in a camt.054: the receivable reopens, and
/// the same notification again books nothing.
async fn p4_a_returned_debit_reopens_the_receivable(env: &Env) {
    let id = env.request("14612000", None).await;
    let kz = kassenzeichen(&env.state_of(id).await);
    let report = import(env, Format::Camt, &camt053_credit(&kz, "LS-1")).await;
    assert_eq!((report.lines, report.booked), (1, 1));
    assert_eq!(status(&env.state_of(id).await), Status::Paid);
    let report = import(env, Format::Camt, &camt054_return(&kz)).await;
    assert_eq!(report.booked, 1);
    let reopened = env.state_of(id).await;
    let r = reopened.receivable().expect("requested");
    assert_eq!(r.status(), Status::Reopened);
    assert_eq!(r.balance(), cents(2500));
    let before = env.head().await;
    let again = import(env, Format::Camt, &camt054_return(&kz)).await;
    assert_eq!((again.booked, again.already_booked), (0, 1));
    let again = import(env, Format::Camt, &camt053_credit(&kz, "LS-1")).await;
    assert_eq!((again.booked, again.already_booked), (0, 1));
    assert_eq!(env.head().await, before, "a re-import books nothing");
}

/// P5: an HKR Ist-Buchung of 24.50 against 25.00 is a mismatch; 25.00 settles.
async fn p5_an_hkr_posting_of_24_50_is_a_mismatch(env: &Env) {
    let id = env.request("14612000", None).await;
    let kz = kassenzeichen(&env.state_of(id).await);
    let tx = env.checkout(id).await;
    env.sim.decide(&tx, "paid", 1).await;
    let csv = |entry: &str, amount: &str| {
        format!(
            "{}\n{entry};2026-03-04;{kz};1100.100;{amount};IST;BEL-{entry}\n",
            amtsbuch_domain::payments::hkr::HEADER
        )
    };
    let report = import(env, Format::Hkr, &csv("H1", "24,50")).await;
    assert_eq!(report.mismatches, 1);
    let r = env.state_of(id).await;
    assert_eq!(status(&r), Status::Paid);
    assert_eq!(r.receivable().expect("requested").mismatches, 1);
    let report = import(env, Format::Hkr, &csv("H2", "25,00")).await;
    assert_eq!((report.booked, report.mismatches), (1, 0));
    assert_eq!(status(&env.state_of(id).await), Status::Settled);
    // Lines for unknown Kassenzeichen stay unmatched, for the worklist.
    let report = import(
        env,
        Format::Hkr,
        &format!(
            "{}\nH3;2026-03-04;NOSUCH1;1100.100;5,00;IST;B\n",
            amtsbuch_domain::payments::hkr::HEADER
        ),
    )
    .await;
    assert_eq!(report.unmatched.len(), 1);
}

/// The same request with the same Idempotency-Key creates one receivable and claims one
/// Kassenzeichen; another caller's equal key is another receivable.
async fn a_repeated_request_creates_nothing_new(env: &Env) {
    let id = ReceivableId::for_idempotency_key("fachverfahren:bauamt", "req-1");
    let command = fee(id, "14612000", &[("1100.100", 2500)], 2500);
    let first = service::request(&env.state, command.clone(), None, &meta())
        .await
        .expect("requested");
    let before = env.head().await;
    let again = service::request(&env.state, command, None, &meta())
        .await
        .expect("the same again");
    assert_eq!(env.head().await, before, "nothing new is recorded");
    assert_eq!(kassenzeichen(&again), kassenzeichen(&first));
    // The same id with another amount is refused.
    let other = service::request(
        &env.state,
        fee(id, "14612000", &[("1100.100", 2600)], 2600),
        None,
        &meta(),
    )
    .await
    .expect_err("another request under the same key");
    assert_eq!(other.status, StatusCode::CONFLICT);
    let elsewhere = ReceivableId::for_idempotency_key("fachverfahren:kita", "req-1");
    assert_ne!(elsewhere, id);
    service::request(
        &env.state,
        fee(elsewhere, "14612000", &[("1100.100", 2500)], 2500),
        None,
        &meta(),
    )
    .await
    .expect("another caller's receivable");
    assert_eq!(env.events(id).await, ["ReceivableRequested"]);
}

/// A server that cannot seal the payer's name claims no Kassenzeichen for the request it
/// refuses: the supplied one stays free for the request that can be recorded.
async fn a_request_that_cannot_be_sealed_claims_nothing(env: &Env) {
    let mut unsealed = env.state.clone();
    unsealed.sealer = None;
    let kz = Kassenzeichen::parse("KZ50031").expect("kz");
    let id = ReceivableId(Uuid::now_v7());
    let before = env.head().await;
    let p = service::request(
        &unsealed,
        fee(id, "14612000", &[("1100.100", 2500)], 2500),
        Some(kz.clone()),
        &meta(),
    )
    .await
    .expect_err("no sealer");
    assert_eq!(p.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(p.kind, "personal-data-disabled");
    assert_eq!(env.head().await, before, "nothing is recorded");
    let other = ReceivableId(Uuid::now_v7());
    let done = service::request(
        &env.state,
        fee(other, "14612000", &[("1100.100", 2500)], 2500),
        Some(kz.clone()),
        &meta(),
    )
    .await
    .expect("the Kassenzeichen is free");
    assert_eq!(kassenzeichen(&done), kz.as_str());
}

/// An HKR file of more lines for one Kassenzeichen than one append may hold is booked in
/// full (in several appends), and again books nothing.
async fn a_file_of_more_than_an_appends_lines_for_one_receivable_is_booked(env: &Env) {
    let id = env.request("14612000", None).await;
    let kz = kassenzeichen(&env.state_of(id).await);
    let n = amtsbuch_domain::append::MAX_EVENTS_PER_APPEND + 1;
    let mut csv = format!("{}\n", amtsbuch_domain::payments::hkr::HEADER);
    for i in 0..n {
        csv.push_str(&format!("H{i};2026-03-04;{kz};1100.100;0,01;IST;BEL-{i}\n"));
    }
    let report = import(env, Format::Hkr, &csv).await;
    assert_eq!(report.lines, n);
    assert_eq!(report.booked, n, "{:?}", report.unmatched);
    let before = env.head().await;
    let again = import(env, Format::Hkr, &csv).await;
    assert_eq!((again.booked, again.already_booked), (0, n));
    assert_eq!(env.head().await, before, "a re-import books nothing");
}

/// A well-formed file with a line the receivable's rules refuse (a second credit past the
/// largest amount) books its other lines and records the refused one as a mismatch on the
/// worklist, changing no amount; it is no request error, and the same file again books
/// nothing.
async fn a_refused_line_is_reported_not_a_request_error(env: &Env) {
    let big = env.request("14612000", None).await;
    let small = env.request("14612000", None).await;
    let kz_big = kassenzeichen(&env.state_of(big).await);
    let kz_small = kassenzeichen(&env.state_of(small).await);
    let entry = |kz: &str, amount: &str, reference: &str| {
        format!(
            r#"<Ntry><Amt Ccy="EUR">{amount}</Amt><CdtDbtInd>CRDT</CdtDbtInd><Sts>BOOK</Sts>
<BookgDt><Dt>2026-03-03</Dt></BookgDt><AcctSvcrRef>{reference}</AcctSvcrRef>
<BkTxCd><Domn><Cd>PMNT</Cd><Fmly><Cd>RCDT</Cd><SubFmlyCd>ESCT</SubFmlyCd></Fmly></Domn></BkTxCd>
<NtryDtls><TxDtls><RmtInf><Ustrd>{kz}</Ustrd></RmtInf></TxDtls></NtryDtls></Ntry>
"#
        )
    };
    let file = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="urn:iso:std:iso:20022:tech:xsd:camt.053.001.02">
<BkToCstmrStmt><GrpHdr><MsgId>S-BIG</MsgId></GrpHdr><Stmt><Id>1</Id>
{}{}{}</Stmt></BkToCstmrStmt></Document>
"#,
        entry(&kz_big, "9999999999999.99", "BIG-1"),
        entry(&kz_big, "9999999999999.99", "BIG-2"),
        entry(&kz_small, "25.00", "SMALL-1"),
    );
    let report = import(env, Format::Camt, &file).await;
    assert_eq!(report.lines, 3);
    assert_eq!(report.booked, 3, "{:?}", report.unmatched);
    assert_eq!(report.mismatches, 1);
    assert!(report.unmatched.is_empty(), "{:?}", report.unmatched);
    assert_eq!(status(&env.state_of(small).await), Status::Paid);
    let big_state = env.state_of(big).await;
    let big_now = big_state.receivable().expect("requested");
    assert_eq!(big_now.mismatches, 1);
    assert_eq!(
        big_now.paid,
        Cents::new(999_999_999_999_999).expect("cents"),
        "the refused credit changed no amount"
    );
    let before = env.head().await;
    let again = import(env, Format::Camt, &file).await;
    assert_eq!((again.booked, again.already_booked), (0, 3));
    // The import waited for the read models: the worklist has the refused line.
    let worklist = amtsbuch_projections::payments::mismatches(
        &amtsbuch_projections::db::ReadDb::new(&env.store),
        &amtsbuch_projections::payments::Scope {
            all: true,
            payer: None,
            bewirtschafter: vec![],
        },
        Some("14612000"),
    )
    .await
    .expect("worklist");
    let refused: Vec<_> = worklist.iter().filter(|m| m.kind == "refused").collect();
    assert_eq!(refused.len(), 1, "{worklist:?}");
    assert_eq!(refused[0].kassenzeichen, kz_big);
    assert_eq!(refused[0].entry, "BIG-2");
    assert_eq!(env.head().await, before, "a re-import books nothing");
}

/// Bad input gets a problem and changes nothing.
async fn bad_input_changes_nothing(env: &Env) {
    // A duplicate Kassenzeichen in a Mandant; the same in another Mandant is fine.
    let first = env.request("14612000", Some("KZ2026A1")).await;
    let before = env.head().await;
    let dup = service::request(
        &env.state,
        fee(
            ReceivableId(Uuid::now_v7()),
            "14612000",
            &[("1100.100", 2500)],
            2500,
        ),
        Some(Kassenzeichen::parse("KZ2026A1").expect("kz")),
        &meta(),
    )
    .await
    .expect_err("duplicate");
    assert_eq!(
        (dup.status, dup.kind),
        (StatusCode::CONFLICT, "kassenzeichen-taken")
    );
    assert_eq!(env.head().await, before);
    env.request("14627010", Some("KZ2026A1")).await;

    // Lines that do not sum: refused before any Kassenzeichen is claimed.
    let before = env.head().await;
    let uneven = service::request(
        &env.state,
        fee(
            ReceivableId(Uuid::now_v7()),
            "14612000",
            &[("1100.100", 2000)],
            2500,
        ),
        Some(Kassenzeichen::parse("KZ2026B2").expect("kz")),
        &meta(),
    )
    .await
    .expect_err("uneven");
    assert_eq!(uneven.status, StatusCode::BAD_REQUEST);
    assert_eq!(env.head().await, before);
    let claim = claim_stream(
        &Mandant::parse("14612000").expect("mandant"),
        &Kassenzeichen::parse("KZ2026B2").expect("kz"),
    );
    assert!(env
        .store
        .read_stream(&claim, 1, Direction::Forwards, 1)
        .await
        .expect("read")
        .is_empty());

    // A malformed camt file: 400 naming line and element, nothing booked.
    let kz = kassenzeichen(&env.state_of(first).await);
    let broken = camt053_credit(&kz, "LS-9").replace("25.00", "25,00");
    let problem = service::import(
        &env.state,
        &Mandant::parse("14612000").expect("mandant"),
        Format::Camt,
        broken.as_bytes(),
        Utc::now(),
        &meta(),
        |_, _| {},
    )
    .await
    .expect_err("malformed");
    assert_eq!(problem.status, StatusCode::BAD_REQUEST);
    assert_eq!(problem.extra["line"], 4);
    assert_eq!(
        problem.extra["element"],
        "Document/BkToCstmrStmt/Stmt/Ntry[1]/Amt"
    );
    assert_eq!(env.head().await, before);

    // Pay it, then: a cancel after a payment, a refund above what was paid, a refund
    // approved by its requester.
    let tx = env.checkout(first).await;
    env.sim.decide(&tx, "paid", 1).await;
    let before = env.head().await;
    let cancel = service::cancel(
        &env.state,
        first,
        Reference::parse("zurückgenommen").expect("reason"),
        Utc::now(),
        &meta(),
    )
    .await
    .expect_err("cancel after payment");
    assert_eq!(
        (cancel.status, cancel.kind),
        (StatusCode::CONFLICT, "payments-recorded")
    );
    let refund = |amount: i64, n: u128| RequestRefund {
        refund_id: RefundId(Uuid::from_u128(n)),
        amount: cents(amount),
        requested_by: Actor::parse("cashier:anna").expect("actor"),
        reason: Reference::parse("doppelt").expect("reason"),
        requested_at: Utc::now(),
    };
    let too_much = service::request_refund(&env.state, first, refund(2501, 1), &meta())
        .await
        .expect_err("too much");
    assert_eq!(too_much.kind, "refund-too-large");
    assert_eq!(env.head().await, before);
    service::request_refund(&env.state, first, refund(1000, 2), &meta())
        .await
        .expect("requested");
    let before = env.head().await;
    let same = service::approve_refund(
        &env.state,
        first,
        RefundId(Uuid::from_u128(2)),
        Actor::parse("cashier:anna").expect("actor"),
        Reference::parse("HKR-1").expect("ref"),
        Utc::now(),
        &meta(),
    )
    .await
    .expect_err("four eyes");
    assert_eq!(same.kind, "four-eyes");
    assert_eq!(env.head().await, before);
    let booked = service::approve_refund(
        &env.state,
        first,
        RefundId(Uuid::from_u128(2)),
        Actor::parse("cashier:ben").expect("actor"),
        Reference::parse("HKR-1").expect("ref"),
        Utc::now(),
        &meta(),
    )
    .await
    .expect("approved");
    let r = booked.receivable().expect("requested");
    assert_eq!((r.refunded, r.status()), (cents(1000), Status::PartlyPaid));
    assert!(env.events(first).await.iter().any(|t| t == "RefundBooked"));
    // Requested, attempt, verified status, refund requested and booked: nothing else.
    let (events, _) =
        amtsbuch_api::command::load::<ReceivableEvent>(&env.state, &first.stream_id())
            .await
            .expect("load");
    assert_eq!(events.len(), 5);
}

/// Run `test` on an `Env` on a fresh database of `adapter`; the log must verify after it.
async fn on(adapter: common::Adapter, test: impl AsyncFnOnce(&Env)) {
    let env = Env::start(adapter).await;
    test(&env).await;
    env.close().await;
}

common::on_both_adapters!(
    using on;
    p1_a_fee_is_paid_by_checkout_and_callback,
    p2_a_spoofed_return_or_callback_changes_nothing,
    p3_the_same_callback_three_times_verifies_once,
    p4_a_returned_debit_reopens_the_receivable,
    p5_an_hkr_posting_of_24_50_is_a_mismatch,
    a_repeated_request_creates_nothing_new,
    a_request_that_cannot_be_sealed_claims_nothing,
    a_file_of_more_than_an_appends_lines_for_one_receivable_is_booked,
    a_refused_line_is_reported_not_a_request_error,
    bad_input_changes_nothing,
    figures,
);

/// The figures: callback → pull → event, and reconciliation, with small counts so the
/// suite stays quick; `AMTSBUCH_PAYMENTS_BENCH=<callbacks>,<lines>` measures more.
async fn figures(env: &Env) {
    use amtsbuch_api::payments::bench;
    let (callbacks, lines) = std::env::var("AMTSBUCH_PAYMENTS_BENCH")
        .ok()
        .and_then(|v| {
            let (a, b) = v.split_once(',')?;
            Some((a.parse().ok()?, b.parse().ok()?))
        })
        .unwrap_or((20, 200));
    let latency = bench::callback_latency(&env.state, &env.provider, &env.sim.url, callbacks)
        .await
        .expect("callbacks")
        .latency;
    assert!(latency.p50_ms <= latency.p99_ms && latency.p99_ms <= latency.max_ms);
    let (took, report) = bench::reconciliation(&env.state, lines)
        .await
        .expect("reconciliation");
    assert_eq!((report.lines, report.booked), (lines, lines));
    println!(
        "callback -> pull -> event over {callbacks}: p50 {:.1} ms, p99 {:.1} ms (goal 30 ms, ratio {:.2}), max {:.1} ms; \
         reconciliation of {lines} lines: {:.2} s, {:.0} lines/s (goal 100000 in 10 s, ratio {:.2})",
        latency.p50_ms,
        latency.p99_ms,
        latency.p99_ms / 30.0,
        latency.max_ms,
        took.as_secs_f64(),
        lines as f64 / took.as_secs_f64(),
        (100_000.0 / (lines as f64 / took.as_secs_f64())) / 10.0,
    );
}
