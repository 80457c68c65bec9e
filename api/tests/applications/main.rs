//! Applications through the router, on SQLite and on PostgreSQL: forms, the directory and
//! an application's whole life (draft, invalid and valid data, submission with its receipt
//! checked independently, reception, an information request and its answer, decision,
//! closure, the recorded reads), the authority's inbox, and bad input, each a 4xx problem
//! that changes nothing.
//!
//! Each test is written once, as a function of an `Env` (a router with a real `Sealer`,
//! the projections running and a ledger signing every event, on a fresh store), and run on
//! a temporary SQLite file and on a PostgreSQL schema of its own. Every answer is checked
//! against the OpenAPI document.

use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use axum::Router;
use serde_json::{json, Value};

use amtsbuch_api::hub::HubLimits;
use amtsbuch_domain::access::Role;
use amtsbuch_domain::applications::Sha256;
use amtsbuch_infra::{AnyStore, EventStore};

use amtsbuch_testkit_api as common;

mod bench;
mod delivery;
mod strict;
mod walkthrough;
use common::schema::conforms;
use common::Reply;

struct Env {
    app: Router,
    state: amtsbuch_api::AppState,
    store: AnyStore,
    doc: Value,
    runner: Option<amtsbuch_projections::RunnerHandle>,
    ledger: tokio::task::JoinHandle<()>,
    /// The database, removed when the `Env` goes.
    db: common::TestDb,
}

impl Env {
    async fn start(adapter: common::Adapter) -> Self {
        let db = common::TestDb::fresh(adapter).await;
        let store = db.store.clone();
        let sealer = common::sealer(&store, db.dir());
        let ledger = amtsbuch_infra::ledger::spawn(
            store.clone(),
            amtsbuch_infra::ledger::LedgerConfig {
                origin: common::ORIGIN.into(),
                signers: vec![common::ledger_signer()],
                every_events: 1,
                interval: Duration::from_millis(20),
            },
        );
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
            db,
        }
    }

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
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        let reply = common::send(&self.app, common::request(method, uri, token, body)).await;
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
        token: Option<&str>,
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

    /// A form with a published version of `schema`; its id.
    async fn published_form(&self, schema: Value) -> String {
        let op = operator();
        let form = self
            .expect(
                StatusCode::CREATED,
                "POST",
                "/forms",
                "/forms",
                Some(&op),
                Some(json!({"title": "Antrag auf Wohngeld"})),
            )
            .await;
        let id = form["form_id"].as_str().expect("form id").to_owned();
        let v = self
            .expect(
                StatusCode::CREATED,
                "POST",
                "/forms/{form}/versions",
                &format!("/forms/{id}/versions"),
                Some(&op),
                Some(json!({ "schema": schema })),
            )
            .await;
        assert_eq!(v["status"], "editing");
        let published = self
            .expect(
                StatusCode::OK,
                "POST",
                "/forms/{form}/versions/{v}/publication",
                &format!("/forms/{id}/versions/1/publication"),
                Some(&op),
                None,
            )
            .await;
        assert_eq!(published["status"], "published");
        assert_eq!(published["schema_hash"], v["schema_hash"]);
        id
    }

    async fn directory(&self, entries: Value) -> Value {
        self.expect(
            StatusCode::OK,
            "PUT",
            "/responsibilities",
            "/responsibilities",
            Some(&operator()),
            Some(json!({ "entries": entries })),
        )
        .await
    }

    /// A draft by the citizen for Wohngeld in Meißen; its id.
    async fn draft(&self) -> String {
        let body = self
            .expect(
                StatusCode::CREATED,
                "POST",
                "/applications",
                "/applications",
                Some(&citizen()),
                Some(json!({ "leika": LEIKA, "ars": ARS })),
            )
            .await;
        body["application_id"].as_str().expect("id").to_owned()
    }
}

const LEIKA: &str = "99108001000000";
/// Meißen (district 14627): within the test authority's region.
const ARS: &str = "146270000000";

fn operator() -> String {
    common::token(Role::Operator)
}
fn citizen() -> String {
    common::token(Role::Citizen)
}
fn official() -> String {
    common::token(Role::Authority)
}
fn fachverfahren() -> String {
    common::token(Role::Fachverfahren)
}
fn dpo() -> String {
    common::token(Role::Dpo)
}

fn schema() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["familienname", "geburtsdatum"],
        "additionalProperties": false,
        "properties": {
            "familienname": {"type": "string", "minLength": 1, "x-fim-id": "F60000227",
                             "x-editor": {"element": "input"}},
            "geburtsdatum": {"type": "string", "format": "date", "x-fim-id": "F60000236"},
            "kinder": {"type": "integer", "minimum": 0}
        }
    })
}

/// A fee due before the submission that the cash office cancelled (waived) no longer holds
/// the submission: a cancelled fee takes no payment and the application's fee cannot be
/// requested again, so otherwise the application could never be submitted.
mod waived_fee {
    use super::*;

    async fn a_cancelled_fee_is_waived(env: &Env) {
        let form = env.published_form(schema()).await;
        env.directory(json!([
            { "leika": LEIKA, "region": "14627", "authority": "lra-meissen", "form": form,
              "payment": "before_submission", "service_name": "Wohngeld beantragen" }
        ]))
        .await;
        let id = env.draft().await;
        // The schedule is set after the draft: setting it requests the fee that waited for it
        // (no payment-policy manager runs in these tests).
        env.expect(
            StatusCode::OK,
            "PUT",
            "/fee-schedules/{leika}/{authority}",
            &format!("/fee-schedules/{LEIKA}/lra-meissen"),
            Some(&operator()),
            Some(json!({
                "mandant": "14612000", "bewirtschafter": "b100", "gross_cents": 2500, "due_days": 14,
                "lines": [{ "haushaltsstelle": "1100.100", "buchungstext": "GEBÜHR",
                            "gross_cents": 2500, "net_cents": 2500, "tax_cents": 0 }]
            })),
        )
        .await;
        let c = citizen();
        env.expect(
            StatusCode::OK,
            "PUT",
            "/applications/{id}/data",
            &uri(&id, "/data"),
            Some(&c),
            Some(json!({ "data": { "familienname": "Müller", "geburtsdatum": "1990-02-03" } })),
        )
        .await;
        let submission = uri(&id, "/submission");
        let submit = || {
            env.call(
                "POST",
                "/applications/{id}/submission",
                &submission,
                Some(&c),
                None,
            )
        };
        let refused = submit().await;
        assert_eq!(refused.status, StatusCode::CONFLICT);
        let problem = refused.json();
        let fee = problem["obligations"][0]["reference"]
            .as_str()
            .and_then(|r| r.strip_prefix("receivable-"))
            .unwrap_or_else(|| panic!("the fee's receivable: {problem}"))
            .to_owned();
        let cancelled = env
            .expect(
                StatusCode::OK,
                "POST",
                "/receivables/{id}/cancellation",
                &format!("/receivables/{fee}/cancellation"),
                Some(&common::token(Role::Cashier)),
                Some(json!({ "reason": "Gebühr erlassen" })),
            )
            .await;
        assert_eq!(cancelled["status"], "cancelled");
        let submitted = submit().await;
        assert_eq!(
            submitted.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&submitted.bytes)
        );
    }

    common::on_both_adapters!(using on; a_cancelled_fee_is_waived);
}

async fn setup(env: &Env) -> String {
    let form = env.published_form(schema()).await;
    env.directory(json!([
        { "leika": LEIKA, "region": "14627", "authority": "lra-meissen", "form": form,
          "payment": "after_decision", "service_name": "Wohngeld beantragen" }
    ]))
    .await;
    form
}

fn uri(id: &str, rest: &str) -> String {
    format!("/applications/{id}{rest}")
}

/// The whole life of an application, and the receipt checked with nothing but the log's
/// public key.
async fn lifecycle(env: &Env) {
    setup(env).await;
    let services = env
        .expect(
            StatusCode::OK,
            "GET",
            "/services",
            &format!("/services?leika={LEIKA}&ars={ARS}"),
            None,
            None,
        )
        .await;
    assert_eq!(services["authority"], "lra-meissen");
    assert_eq!(services["payment"], "after_decision");
    let id = env.draft().await;
    let (c, o, f) = (citizen(), official(), fachverfahren());

    // An authority never sees a draft.
    env.expect(
        StatusCode::NOT_FOUND,
        "GET",
        "/applications/{id}",
        &uri(&id, ""),
        Some(&o),
        None,
    )
    .await;

    // Invalid data: 422 with JSON pointers, nothing stored.
    let head = env.head().await;
    let invalid = env
        .expect(
            StatusCode::UNPROCESSABLE_ENTITY,
            "PUT",
            "/applications/{id}/data",
            &uri(&id, "/data"),
            Some(&c),
            Some(json!({ "data": { "familienname": "", "kinder": -1, "x": 1 } })),
        )
        .await;
    let pointers: Vec<&str> = invalid["violations"]
        .as_array()
        .expect("violations")
        .iter()
        .filter_map(|v| v["pointer"].as_str())
        .collect();
    for p in ["/familienname", "/geburtsdatum", "/kinder"] {
        assert!(pointers.contains(&p), "{p} in {pointers:?}");
    }
    assert_eq!(env.head().await, head, "nothing stored");

    let data = json!({ "familienname": "Müller", "geburtsdatum": "1990-02-03", "kinder": 2 });
    let saved = env
        .expect(
            StatusCode::OK,
            "PUT",
            "/applications/{id}/data",
            &uri(&id, "/data"),
            Some(&c),
            Some(json!({ "data": data })),
        )
        .await;
    assert_eq!(saved["data"], data);
    assert_eq!(saved["zbp_status"], "INITIATED");

    let receipt = env
        .expect(
            StatusCode::CREATED,
            "POST",
            "/applications/{id}/submission",
            &uri(&id, "/submission"),
            Some(&c),
            None,
        )
        .await;
    // A second submission is refused.
    env.expect(
        StatusCode::CONFLICT,
        "POST",
        "/applications/{id}/submission",
        &uri(&id, "/submission"),
        Some(&c),
        None,
    )
    .await;

    // The Fachverfahren and the official see it now; a decision needs the reception.
    let seen = env
        .expect(
            StatusCode::OK,
            "GET",
            "/applications/{id}",
            &uri(&id, ""),
            Some(&f),
            None,
        )
        .await;
    assert_eq!(seen["data"], data);
    assert_eq!(seen["zbp_status"], "SUBMITTED");
    let decision =
        json!({ "outcome": "granted", "document_sha256": Sha256::of(b"Bescheid").to_string() });
    env.expect(
        StatusCode::CONFLICT,
        "POST",
        "/applications/{id}/decision",
        &uri(&id, "/decision"),
        Some(&o),
        Some(decision.clone()),
    )
    .await;
    let received = env
        .expect(
            StatusCode::OK,
            "POST",
            "/applications/{id}/reception",
            &uri(&id, "/reception"),
            Some(&o),
            Some(json!({ "file_number": "AZ 42/2026" })),
        )
        .await;
    assert_eq!(received["zbp_status"], "RECEIVED");
    // Due within the year a request may be due in.
    let due = (chrono::Utc::now() + chrono::Duration::days(30)).date_naive();
    let asked = env
        .expect(
            StatusCode::CREATED,
            "POST",
            "/applications/{id}/information-requests",
            &uri(&id, "/information-requests"),
            Some(&o),
            Some(json!({ "message": "Bitte reichen Sie den Mietvertrag nach.", "due_at": format!("{due}T00:00:00Z") })),
        )
        .await;
    assert_eq!(asked["zbp_status"], "ACTION_REQUIRED");
    let status = env
        .expect(
            StatusCode::OK,
            "GET",
            "/applications/{id}/status",
            &uri(&id, "/status"),
            Some(&c),
            None,
        )
        .await;
    assert_eq!(status["zbp_status"], "ACTION_REQUIRED");
    assert_eq!(status["due_at"], format!("{due}T00:00:00.000000Z"));
    let answered = env
        .expect(
            StatusCode::OK,
            "POST",
            "/applications/{id}/information",
            &uri(&id, "/information"),
            Some(&c),
            Some(json!({ "request": 1, "message": "Anbei der Mietvertrag." })),
        )
        .await;
    assert_eq!(answered["status"], "in_progress");
    assert_eq!(
        answered["information_requests"][0]["answer"],
        "Anbei der Mietvertrag."
    );
    let decided = env
        .expect(
            StatusCode::OK,
            "POST",
            "/applications/{id}/decision",
            &uri(&id, "/decision"),
            Some(&f),
            Some(decision),
        )
        .await;
    assert_eq!(decided["zbp_status"], "COMPLETED");
    assert_eq!(decided["outcome"], "granted");
    // Too late to withdraw.
    env.expect(
        StatusCode::CONFLICT,
        "POST",
        "/applications/{id}/withdrawal",
        &uri(&id, "/withdrawal"),
        Some(&c),
        None,
    )
    .await;
    let closed = env
        .expect(
            StatusCode::OK,
            "POST",
            "/applications/{id}/closure",
            &uri(&id, "/closure"),
            Some(&o),
            None,
        )
        .await;
    assert_eq!(closed["status"], "closed");

    // Every read by the authority is recorded; the applicant and the DPO list them.
    let reads = env
        .expect(
            StatusCode::OK,
            "GET",
            "/applications/{id}/accesses",
            &uri(&id, "/accesses"),
            Some(&c),
            None,
        )
        .await;
    let readers: Vec<&str> = reads
        .as_array()
        .expect("reads")
        .iter()
        .filter_map(|r| r["reader"].as_str())
        .collect();
    assert!(
        readers.iter().any(|r| r.starts_with("fachverfahren:")),
        "{readers:?}"
    );
    assert!(
        readers.iter().any(|r| r.starts_with("authority:")),
        "{readers:?}"
    );
    let by_dpo = env
        .expect(
            StatusCode::OK,
            "GET",
            "/applications/{id}/accesses",
            &uri(&id, "/accesses"),
            Some(&dpo()),
            None,
        )
        .await;
    assert_eq!(by_dpo, reads);

    // The receipt, checked independently: the record is the one the proof binds, and it
    // names what the applicant submitted.
    check_receipt(env, &id, &receipt, &data).await;
    routed_to_the_authority_only(env, &id).await;
}

/// The draft's events are routed to nobody; every event from the submission on to the
/// authority, its service and the applicant's municipality, so that the relay and the SSE
/// stream deliver them to its Fachverfahren and to no other authority's.
async fn routed_to_the_authority_only(env: &Env, id: &str) {
    use amtsbuch_domain::access::{Bindings, Principal};
    use amtsbuch_domain::{AuthorityId, ServiceKey, StreamId};
    let stream = StreamId::parse(&format!("application-{id}")).expect("stream");
    let events = env
        .store
        .read_stream(&stream, 1, amtsbuch_infra::Direction::Forwards, 1000)
        .await
        .expect("stream");
    let fachverfahren = |authority: &str| {
        Principal::new(
            "fv",
            [Role::Fachverfahren],
            Bindings {
                authority: Some(AuthorityId::parse(authority).expect("authority")),
                services: vec![ServiceKey::parse(LEIKA).expect("service")],
                ..Bindings::default()
            },
        )
        .expect("principal")
    };
    let (own, other) = (fachverfahren("lra-meissen"), fachverfahren("lra-bautzen"));
    let mut submitted = false;
    for e in &events {
        let record = e.record().expect("record");
        submitted |= record.event_type.as_str() == "ApplicationSubmitted";
        if submitted {
            assert_eq!(
                record.authority.as_ref().map(|a| a.as_str()),
                Some("lra-meissen"),
                "{}",
                record.event_type
            );
            assert_eq!(
                record.service.as_ref().map(|s| s.as_str()),
                Some(LEIKA),
                "{}",
                record.event_type
            );
            assert_eq!(
                record.tenant.as_deref(),
                Some("14627000"),
                "{}",
                record.event_type
            );
            assert!(own.may_see(&record), "{}", record.event_type);
        } else {
            assert_eq!(
                record.authority, None,
                "a draft's {} is routed to nobody",
                record.event_type
            );
            assert!(!own.may_see(&record));
        }
        assert!(
            !other.may_see(&record),
            "{} reaches another authority",
            record.event_type
        );
    }
    assert!(submitted);
    assert!(events.len() > 8, "{} events", events.len());
}

async fn check_receipt(env: &Env, id: &str, first: &Value, data: &Value) {
    let c = citizen();
    let mut receipt = first.clone();
    for _ in 0..200 {
        if receipt["tlog_proof"].is_string() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
        receipt = env
            .expect(
                StatusCode::OK,
                "GET",
                "/applications/{id}/receipt",
                &uri(id, "/receipt"),
                Some(&c),
                None,
            )
            .await;
    }
    let proof = receipt["tlog_proof"]
        .as_str()
        .expect("a checkpoint covers the submission");
    let record = receipt["record"].as_str().expect("record");
    let verifier =
        amtsbuch_domain::note::Verifier::parse(&common::ledger_signer().vkey()).expect("vkey");
    let summary = amtsbuch_domain::receipt::verify_receipt(
        proof.as_bytes(),
        Some(record.as_bytes()),
        &[verifier],
    )
    .expect("the receipt verifies with the log's public key");
    assert_eq!(
        summary.index + 1,
        receipt["position"].as_u64().expect("position")
    );
    let stored: Value = serde_json::from_str(record).expect("record JSON");
    assert_eq!(stored["event_type"], "ApplicationSubmitted");
    assert_eq!(stored["authority"], "lra-meissen");
    assert_eq!(stored["service"], LEIKA);
    assert_eq!(stored["tenant"], "14627000");
    assert_eq!(stored["data"]["application_id"], id);
    assert_eq!(stored["data"]["data_hash"], receipt["data_hash"]);
    assert_eq!(stored["data"]["submitted_at"], receipt["submitted_at"]);
    assert_eq!(
        stored["data"]["pinned"]["schema_hash"],
        receipt["schema_hash"]
    );
    // The applicant recomputes the data hash from its data and the salt.
    let salt = Sha256::parse(receipt["data_salt"].as_str().expect("salt")).expect("hex");
    let canonical = amtsbuch_domain::jcs::canonicalize(data).expect("jcs");
    assert_eq!(
        Sha256::of_parts(&[&salt.0, &canonical]).to_string(),
        receipt["data_hash"]
    );
    assert!(!record.contains("Müller"), "no plaintext in the record");
    // A tampered record does not verify.
    let tampered = record.replace(
        receipt["data_hash"].as_str().expect("hash"),
        &Sha256::of(b"x").to_string(),
    );
    let verifier =
        amtsbuch_domain::note::Verifier::parse(&common::ledger_signer().vkey()).expect("vkey");
    assert!(amtsbuch_domain::receipt::verify_receipt(
        proof.as_bytes(),
        Some(tampered.as_bytes()),
        &[verifier]
    )
    .is_err());
}

/// A request that must be refused: status, method, documented path, URI, token, body.
type Refusal = (
    StatusCode,
    &'static str,
    &'static str,
    String,
    String,
    Option<Value>,
);

/// Each refusal is a 4xx problem and stores nothing.
async fn bad_input(env: &Env) {
    let form = setup(env).await;
    let (c, op) = (citizen(), operator());
    let id = env.draft().await;
    let other_citizen = common::signed(&{
        let mut r = common::request_for(Role::Citizen, "lra-meissen", &[LEIKA]);
        r.account = Some(common::OTHER_ACCOUNT.into());
        r
    });
    let other_authority = common::token_for(Role::Fachverfahren, "lra-bautzen", &[LEIKA]);
    let head = env.head().await;
    let refusals: Vec<Refusal> = vec![
        // A citizen on someone else's application: to it, there is none.
        (
            StatusCode::NOT_FOUND,
            "PUT",
            "/applications/{id}/data",
            uri(&id, "/data"),
            other_citizen.clone(),
            Some(json!({ "data": { "familienname": "X", "geburtsdatum": "2000-01-01" } })),
        ),
        (
            StatusCode::NOT_FOUND,
            "GET",
            "/applications/{id}",
            uri(&id, ""),
            other_citizen.clone(),
            None,
        ),
        // No data yet.
        (
            StatusCode::CONFLICT,
            "POST",
            "/applications/{id}/submission",
            uri(&id, "/submission"),
            c.clone(),
            None,
        ),
        // A withdrawal of a draft.
        (
            StatusCode::CONFLICT,
            "POST",
            "/applications/{id}/withdrawal",
            uri(&id, "/withdrawal"),
            c.clone(),
            None,
        ),
        // Another authority does not even see a draft.
        (
            StatusCode::NOT_FOUND,
            "POST",
            "/applications/{id}/reception",
            uri(&id, "/reception"),
            other_authority.clone(),
            Some(json!({ "file_number": "AZ 1" })),
        ),
        // Malformed input.
        (
            StatusCode::BAD_REQUEST,
            "GET",
            "/applications",
            "/applications?submitted_from=2026-01-01T00:00:00%2B02:00".into(),
            other_authority.clone(),
            None,
        ),
        (
            StatusCode::BAD_REQUEST,
            "PUT",
            "/applications/{id}/data",
            uri(&id, "/data"),
            c.clone(),
            Some(json!({ "daten": {} })),
        ),
        (
            StatusCode::BAD_REQUEST,
            "GET",
            "/applications/{id}",
            "/applications/not-an-id".into(),
            c.clone(),
            None,
        ),
        // A directory with two authorities for one (LeiKa, region).
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "PUT",
            "/responsibilities",
            "/responsibilities".into(),
            op.clone(),
            Some(json!({ "entries": [
             { "leika": LEIKA, "region": "14627", "authority": "lra-meissen", "form": form, "payment": "none" },
             { "leika": LEIKA, "region": "14627", "authority": "stadt-meissen", "form": form, "payment": "none" }
         ] })),
        ),
        // A schema that is no form.
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            "POST",
            "/forms/{form}/versions",
            format!("/forms/{form}/versions"),
            op.clone(),
            Some(
                json!({ "schema": { "type": "object", "properties": { "a": { "type": "string", "x-editor": { "element": "slider" } } } } }),
            ),
        ),
        // A published version never changes.
        (
            StatusCode::CONFLICT,
            "PUT",
            "/forms/{form}/versions/{v}",
            format!("/forms/{form}/versions/1"),
            op.clone(),
            Some(json!({ "schema": schema() })),
        ),
    ];
    for (status, method, path, uri, token, body) in refusals {
        let reply = env.call(method, path, &uri, Some(&token), body).await;
        assert_eq!(
            reply.status,
            status,
            "{method} {uri}: {}",
            String::from_utf8_lossy(&reply.bytes)
        );
        assert_eq!(
            reply.media_type(),
            "application/problem+json",
            "{method} {uri}"
        );
        assert_eq!(env.head().await, head, "{method} {uri} stored nothing");
    }
    let conflict = env
        .call("PUT", "/responsibilities", "/responsibilities", Some(&op), Some(json!({ "entries": [
            { "leika": LEIKA, "region": "14627", "authority": "lra-meissen", "form": form, "payment": "none" },
            { "leika": LEIKA, "region": "14627", "authority": "stadt-meissen", "form": form, "payment": "none" }
        ] })))
        .await
        .json();
    assert_eq!(
        conflict["conflicts"][0]["authorities"],
        json!(["lra-meissen", "stadt-meissen"])
    );

    // Submitted, then another authority acts: 404 as before the submission, so the status
    // does not show; a retired version takes no submission.
    let data = json!({ "familienname": "Müller", "geburtsdatum": "1990-02-03" });
    env.expect(
        StatusCode::OK,
        "PUT",
        "/applications/{id}/data",
        &uri(&id, "/data"),
        Some(&c),
        Some(json!({ "data": data })),
    )
    .await;
    let second = env.draft().await;
    env.expect(
        StatusCode::OK,
        "PUT",
        "/applications/{id}/data",
        &uri(&second, "/data"),
        Some(&c),
        Some(json!({ "data": data })),
    )
    .await;
    env.expect(
        StatusCode::CREATED,
        "POST",
        "/applications/{id}/submission",
        &uri(&id, "/submission"),
        Some(&c),
        None,
    )
    .await;
    let head = env.head().await;
    env.expect(
        StatusCode::NOT_FOUND,
        "POST",
        "/applications/{id}/reception",
        &uri(&id, "/reception"),
        Some(&other_authority),
        Some(json!({ "file_number": "AZ 1" })),
    )
    .await;
    env.expect(
        StatusCode::NOT_FOUND,
        "GET",
        "/applications/{id}",
        &uri(&id, ""),
        Some(&other_authority),
        None,
    )
    .await;
    assert_eq!(env.head().await, head, "a refused read records nothing");
    env.expect(
        StatusCode::OK,
        "POST",
        "/forms/{form}/versions/{v}/retirement",
        &format!("/forms/{form}/versions/1/retirement"),
        Some(&op),
        None,
    )
    .await;
    let head = env.head().await;
    env.expect(
        StatusCode::CONFLICT,
        "POST",
        "/applications/{id}/submission",
        &uri(&second, "/submission"),
        Some(&c),
        None,
    )
    .await;
    assert_eq!(env.head().await, head);
}

/// The inbox lists an authority's submitted applications only, filtered.
async fn inbox(env: &Env) {
    setup(env).await;
    let c = citizen();
    let data = json!({ "familienname": "Müller", "geburtsdatum": "1990-02-03" });
    let mut ids = Vec::new();
    for _ in 0..3 {
        let id = env.draft().await;
        env.expect(
            StatusCode::OK,
            "PUT",
            "/applications/{id}/data",
            &uri(&id, "/data"),
            Some(&c),
            Some(json!({ "data": data })),
        )
        .await;
        ids.push(id);
    }
    for id in &ids[..2] {
        env.expect(
            StatusCode::CREATED,
            "POST",
            "/applications/{id}/submission",
            &uri(id, "/submission"),
            Some(&c),
            None,
        )
        .await;
    }
    env.expect(
        StatusCode::OK,
        "POST",
        "/applications/{id}/reception",
        &uri(&ids[0], "/reception"),
        Some(&official()),
        Some(json!({ "file_number": "AZ 7" })),
    )
    .await;
    common::read_models_caught_up(&env.store).await;
    let listed = |page: &Value| -> Vec<String> {
        page["applications"]
            .as_array()
            .expect("page")
            .iter()
            .filter_map(|a| a["application_id"].as_str().map(str::to_owned))
            .collect()
    };
    for token in [official(), fachverfahren()] {
        let all = env
            .expect(
                StatusCode::OK,
                "GET",
                "/applications",
                "/applications",
                Some(&token),
                None,
            )
            .await;
        assert_eq!(listed(&all), ids[..2].to_vec(), "no draft in the inbox");
        let received = env
            .expect(
                StatusCode::OK,
                "GET",
                "/applications",
                "/applications?status=received",
                Some(&token),
                None,
            )
            .await;
        assert_eq!(listed(&received), vec![ids[0].clone()]);
        assert_eq!(received["applications"][0]["file_number"], "AZ 7");
        let here = env
            .expect(
                StatusCode::OK,
                "GET",
                "/applications",
                &format!("/applications?ags=14627&leika={LEIKA}"),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(listed(&here).len(), 2);
        let elsewhere = env
            .expect(
                StatusCode::OK,
                "GET",
                "/applications",
                "/applications?ags=14612",
                Some(&token),
                None,
            )
            .await;
        assert!(listed(&elsewhere).is_empty());
        let paged = env
            .expect(
                StatusCode::OK,
                "GET",
                "/applications",
                "/applications?limit=1",
                Some(&token),
                None,
            )
            .await;
        assert_eq!(listed(&paged), vec![ids[0].clone()]);
        let after = paged["next_after"].as_str().expect("next page");
        let next = env
            .expect(
                StatusCode::OK,
                "GET",
                "/applications",
                &format!(
                    "/applications?limit=1&after={}",
                    after.replace('+', "%2B").replace('|', "%7C")
                ),
                Some(&token),
                None,
            )
            .await;
        assert_eq!(listed(&next), vec![ids[1].clone()]);
        let overdue = env
            .expect(
                StatusCode::OK,
                "GET",
                "/applications",
                "/applications?overdue=true",
                Some(&token),
                None,
            )
            .await;
        assert!(listed(&overdue).is_empty());
    }
    // Another authority's inbox is empty.
    let other = common::token_for(Role::Fachverfahren, "lra-bautzen", &[LEIKA]);
    let theirs = env
        .expect(
            StatusCode::OK,
            "GET",
            "/applications",
            "/applications",
            Some(&other),
            None,
        )
        .await;
    assert!(listed(&theirs).is_empty());
    env.expect(
        StatusCode::BAD_REQUEST,
        "GET",
        "/applications",
        "/applications?status=pending",
        Some(&official()),
        None,
    )
    .await;
}

/// The access export (Art. 15) of an applicant holds its applications, decrypted; that of
/// a subject who never applied has no such member.
async fn export(env: &Env) {
    setup(env).await;
    let c = citizen();
    let id = env.draft().await;
    let data = json!({ "familienname": "Müller", "geburtsdatum": "1990-02-03" });
    env.expect(
        StatusCode::OK,
        "PUT",
        "/applications/{id}/data",
        &uri(&id, "/data"),
        Some(&c),
        Some(json!({ "data": data })),
    )
    .await;
    env.expect(
        StatusCode::CREATED,
        "POST",
        "/applications/{id}/submission",
        &uri(&id, "/submission"),
        Some(&c),
        None,
    )
    .await;
    let path = "/dpo/subjects/{subject}/export";
    let export = env
        .expect(
            StatusCode::OK,
            "GET",
            path,
            &format!("/dpo/subjects/{}/export", common::CITIZEN_ACCOUNT),
            Some(&dpo()),
            None,
        )
        .await;
    let applications = export["applications"].as_array().expect("applications");
    assert_eq!(applications.len(), 1);
    assert_eq!(applications[0]["application_id"], id.as_str());
    assert_eq!(applications[0]["data"], data);
    assert_eq!(applications[0]["status"], "submitted");
    let other = env
        .expect(
            StatusCode::OK,
            "GET",
            path,
            &format!("/dpo/subjects/{}/export", common::OTHER_ACCOUNT),
            Some(&dpo()),
            None,
        )
        .await;
    assert!(other.get("applications").is_none(), "{other}");
}

/// A form whose data names a required attachment (`nachweis`) by its SHA-256.
fn schema_with_upload() -> Value {
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["familienname", "nachweis"],
        "additionalProperties": false,
        "properties": {
            "familienname": {"type": "string", "minLength": 1, "x-fim-id": "F60000227",
                             "x-editor": {"element": "input"}},
            "nachweis": {"type": "string", "x-editor": {"element": "upload", "label": "Nachweis"}}
        }
    })
}

async fn setup_with_upload(env: &Env) -> String {
    let form = env.published_form(schema_with_upload()).await;
    env.directory(json!([
        { "leika": LEIKA, "region": "14627", "authority": "lra-meissen", "form": form,
          "payment": "after_decision", "service_name": "Wohngeld beantragen" }
    ]))
    .await;
    form
}

/// Personal data of the erasure test, which must be nowhere in the database afterwards.
const SECRET_NAME: &str = "Zwetschgenbaum";
const SECRET_CONTENT: &str = "Vertraulicher Mietvertrag Zwetschgenweg 7";
const SECRET_FILE: &str = "mietvertrag-zwetschgenbaum.txt";

impl Env {
    /// Upload `content` as the attachment `name` of `id`, with `headers`; the reply.
    async fn upload(
        &self,
        id: &str,
        name: &str,
        content: Vec<u8>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let mut request = common::request(
            "PUT",
            &uri(id, &format!("/attachments/{name}")),
            Some(&citizen()),
            Body::from(content),
        );
        for (k, v) in headers {
            request.headers_mut().insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                axum::http::HeaderValue::from_str(v).expect("value"),
            );
        }
        let reply = common::send(&self.app, request).await;
        conforms(
            &self.doc,
            "PUT",
            "/applications/{id}/attachments/{name}",
            &reply,
        );
        reply
    }

    /// The hashes of the contents kept for the application `id`, sorted.
    async fn contents(&self, id: &str) -> Vec<String> {
        let rows = self
            .db
            .db()
            .fetch_all(
                "SELECT sha256 FROM applications_attachment_contents WHERE application_id = $1 ORDER BY sha256",
                &[id.to_owned().into()],
            )
            .await
            .expect("query");
        rows.iter()
            .map(|row| row.get::<String>("sha256").expect("sha256"))
            .collect()
    }

    /// The DPO's erasure of the citizen: status and body.
    async fn erase_citizen(&self) -> (StatusCode, Value) {
        let reply = self
            .call(
                "POST",
                "/dpo/subjects/{subject}/erasure",
                &format!("/dpo/subjects/{}/erasure", common::CITIZEN_ACCOUNT),
                Some(&dpo()),
                None,
            )
            .await;
        (reply.status, reply.json())
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::of(bytes).to_string()
}

/// A draft with its attachment uploaded and its data naming it; the draft's id.
async fn draft_with_attachment(env: &Env) -> String {
    let id = env.draft().await;
    let reply = env
        .upload(
            &id,
            "nachweis",
            SECRET_CONTENT.as_bytes().to_vec(),
            &[
                ("content-type", "text/plain; charset=utf-8"),
                (
                    "content-disposition",
                    &format!("attachment; filename=\"{SECRET_FILE}\""),
                ),
            ],
        )
        .await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&reply.bytes)
    );
    let view = reply.json();
    assert_eq!(
        view["attachments"]["nachweis"],
        json!({"sha256": sha256_hex(SECRET_CONTENT.as_bytes()), "size": SECRET_CONTENT.len()})
    );
    env.expect(
        StatusCode::OK,
        "PUT",
        "/applications/{id}/data",
        &uri(&id, "/data"),
        Some(&citizen()),
        Some(json!({ "data": {
            "familienname": SECRET_NAME,
            "nachweis": sha256_hex(SECRET_CONTENT.as_bytes()),
        } })),
    )
    .await;
    id
}

/// Art. 17: an application in progress holds its applicant; after its closure plus the
/// retention period the applicant is erased with the application's form data, file names
/// and attachments. The log still verifies, the database holds no plaintext, and the
/// Art. 15 export shows the data erased.
async fn erasure_after_retention(env: &Env) {
    // Both adapters' runs share the process, and so this setting; no other test here
    // depends on it.
    amtsbuch_api::applications::retention::set_retention_period(chrono::Duration::seconds(3));
    setup_with_upload(env).await;
    let (c, o) = (citizen(), official());
    let id = draft_with_attachment(env).await;
    let receipt = env
        .expect(
            StatusCode::CREATED,
            "POST",
            "/applications/{id}/submission",
            &uri(&id, "/submission"),
            Some(&c),
            None,
        )
        .await;
    assert_eq!(
        receipt["attachments"]["nachweis"]["sha256"],
        sha256_hex(SECRET_CONTENT.as_bytes())
    );
    let reference = format!("application-{id}");

    // In progress: refused, naming the hold; nothing is written.
    let head = env.head().await;
    let (status, problem) = env.erase_citizen().await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["type"], "urn:amtsbuch:problem:retention-hold");
    assert_eq!(
        problem["holds"],
        json!([{"module": "applications", "reason": "open_procedure", "until": null,
                "reference": reference}])
    );
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains(&reference),
        "{problem}"
    );
    assert!(problem.get("erasable_from").is_none(), "{problem}");
    assert_eq!(env.head().await, head, "nothing written");

    for (path, rest, body) in [
        (
            "/applications/{id}/reception",
            "/reception",
            Some(json!({"file_number": "AZ 7/2026"})),
        ),
        (
            "/applications/{id}/decision",
            "/decision",
            Some(json!({
            "outcome": "granted", "document_sha256": sha256_hex(b"Bescheid")})),
        ),
        ("/applications/{id}/closure", "/closure", None),
    ] {
        env.expect(
            StatusCode::OK,
            "POST",
            path,
            &uri(&id, rest),
            Some(&o),
            body,
        )
        .await;
    }

    // Closed: kept for the retention period after the closure.
    let (status, problem) = env.erase_citizen().await;
    assert_eq!(status, StatusCode::CONFLICT, "{problem}");
    assert_eq!(problem["holds"][0]["reason"], "closed_procedure");
    assert_eq!(problem["holds"][0]["reference"], reference.as_str());
    let until = problem["erasable_from"]
        .as_str()
        .expect("erasable_from")
        .to_owned();
    assert_eq!(problem["holds"][0]["until"], until.as_str());

    // After it: erased, and the application shredded with the applicant.
    let until: chrono::DateTime<chrono::Utc> = until.parse().expect("instant");
    let wait = (until - chrono::Utc::now()).to_std().unwrap_or_default();
    tokio::time::sleep(wait + Duration::from_millis(200)).await;
    let (status, erased) = env.erase_citizen().await;
    assert_eq!(status, StatusCode::OK, "{erased}");
    assert_eq!(erased["shredded"]["applications"], json!([reference]));

    let seen = env
        .expect(
            StatusCode::OK,
            "GET",
            "/applications/{id}",
            &uri(&id, ""),
            Some(&c),
            None,
        )
        .await;
    assert_eq!(seen["data"], json!({"erased": true}));
    let export = env
        .expect(
            StatusCode::OK,
            "GET",
            "/dpo/subjects/{subject}/export",
            &format!("/dpo/subjects/{}/export", common::CITIZEN_ACCOUNT),
            Some(&dpo()),
            None,
        )
        .await;
    assert_eq!(
        export["applications"][0]["data"],
        json!({"erased": true}),
        "{export}"
    );
    assert_eq!(export["applications"][0]["status"], "closed");

    // The log verifies; no plaintext is left anywhere in the database.
    let verdict = amtsbuch_api::cli::verify::verify_store(&env.store, |_, _| {})
        .await
        .expect("verify");
    assert!(
        matches!(verdict, amtsbuch_api::cli::verify::Verdict::Intact { .. }),
        "{verdict:?}"
    );
    let rows = env
        .db
        .db()
        .fetch_all("SELECT sha256 FROM applications_attachment_contents", &[])
        .await
        .expect("query");
    assert!(
        rows.is_empty(),
        "the attachments' sealed content is deleted"
    );
    let dump = env.db.dump();
    assert!(dump.len() > 10_000, "the dump holds the database");
    for secret in [SECRET_NAME, SECRET_CONTENT, SECRET_FILE, "Zwetschgen"] {
        assert!(
            !dump.windows(secret.len()).any(|w| w == secret.as_bytes()),
            "{secret} in the database"
        );
    }
}

/// Attachments: uploaded to the draft, limited in size, required at submission with
/// matching hashes; writes with `If-Match` refused with `412` on another version. Each
/// refusal changes nothing.
async fn attachments(env: &Env) {
    setup_with_upload(env).await;
    let c = citizen();
    let id = env.draft().await;
    let content = b"%PDF-1.7 Nachweis".to_vec();
    let hash = sha256_hex(&content);

    // The data names the attachment, which has not been uploaded: no submission.
    env.expect(
        StatusCode::OK,
        "PUT",
        "/applications/{id}/data",
        &uri(&id, "/data"),
        Some(&c),
        Some(json!({ "data": { "familienname": "Müller", "nachweis": hash } })),
    )
    .await;
    let head = env.head().await;
    let missing = env
        .expect(
            StatusCode::UNPROCESSABLE_ENTITY,
            "POST",
            "/applications/{id}/submission",
            &uri(&id, "/submission"),
            Some(&c),
            None,
        )
        .await;
    assert_eq!(missing["type"], "urn:amtsbuch:problem:attachment-missing");
    assert_eq!(env.head().await, head);

    // Another file than the data names: no submission either.
    let other = env
        .upload(
            &id,
            "nachweis",
            b"another file".to_vec(),
            &[("content-type", "application/pdf")],
        )
        .await;
    assert_eq!(other.status, StatusCode::OK);
    let head = env.head().await;
    let mismatch = env
        .expect(
            StatusCode::UNPROCESSABLE_ENTITY,
            "POST",
            "/applications/{id}/submission",
            &uri(&id, "/submission"),
            Some(&c),
            None,
        )
        .await;
    assert_eq!(mismatch["type"], "urn:amtsbuch:problem:attachment-missing");
    assert_eq!(env.head().await, head);

    // Bad uploads: nothing stored.
    let too_large = vec![b'x'; 10 * 1024 * 1024 + 1];
    for (name, body, status, kind) in [
        (
            "nachweis",
            too_large,
            StatusCode::PAYLOAD_TOO_LARGE,
            "attachment-too-large",
        ),
        (
            "nachweis",
            Vec::new(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "empty-attachment",
        ),
        (
            "foto",
            content.clone(),
            StatusCode::NOT_FOUND,
            "unknown-attachment",
        ),
    ] {
        let reply = env.upload(&id, name, body, &[]).await;
        assert_eq!(
            reply.status,
            status,
            "{}",
            String::from_utf8_lossy(&reply.bytes)
        );
        assert_eq!(reply.json()["type"], format!("urn:amtsbuch:problem:{kind}"));
        assert_eq!(env.head().await, head, "{kind}: nothing stored");
    }
    // Exactly 10 MiB is accepted.
    let largest = env
        .upload(&id, "nachweis", vec![b'y'; 10 * 1024 * 1024], &[])
        .await;
    assert_eq!(largest.status, StatusCode::OK);

    // If-Match: the version read, or 412 and nothing changed.
    let version = largest.json()["version"].as_u64().expect("version");
    let read = env
        .call("GET", "/applications/{id}", &uri(&id, ""), Some(&c), None)
        .await;
    assert_eq!(
        read.header(axum::http::header::ETAG),
        Some(format!("\"{version}\"").as_str())
    );
    let head = env.head().await;
    let stale = env
        .upload(
            &id,
            "nachweis",
            content.clone(),
            &[("if-match", &format!("\"{}\"", version - 1))],
        )
        .await;
    assert_eq!(stale.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(stale.json()["actual_version"], version);
    assert_eq!(env.head().await, head, "nothing stored");
    assert_eq!(
        env.contents(&id).await,
        [sha256_hex(&vec![b'y'; 10 * 1024 * 1024])],
        "only the content the element names is kept: neither the replaced one nor the refused one"
    );
    let fresh = env
        .upload(
            &id,
            "nachweis",
            content.clone(),
            &[("if-match", &format!("\"{version}\""))],
        )
        .await;
    assert_eq!(
        fresh.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&fresh.bytes)
    );
    let version = fresh.json()["version"].as_u64().expect("version");

    // Submission with Expected-Version of the version before: 412; with the current: 201.
    let mut stale = common::request("POST", &uri(&id, "/submission"), Some(&c), Body::empty());
    stale.headers_mut().insert(
        "expected-version",
        (version - 1).to_string().parse().expect("header"),
    );
    let reply = common::send(&env.app, stale).await;
    conforms(&env.doc, "POST", "/applications/{id}/submission", &reply);
    assert_eq!(reply.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(env.head().await, head + 1, "only the upload was stored");
    let mut current = common::request("POST", &uri(&id, "/submission"), Some(&c), Body::empty());
    current.headers_mut().insert(
        "if-match",
        format!("\"{version}\"").parse().expect("header"),
    );
    let reply = common::send(&env.app, current).await;
    conforms(&env.doc, "POST", "/applications/{id}/submission", &reply);
    assert_eq!(
        reply.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&reply.bytes)
    );
    let receipt = reply.json();
    assert_eq!(
        receipt["attachments"],
        json!({"nachweis": {"sha256": hash, "size": content.len()}})
    );

    // The sealed content is kept, not the plain one.
    let rows = env
        .db
        .db()
        .fetch_all(
            "SELECT sealed FROM applications_attachment_contents WHERE application_id = $1",
            &[id.clone().into()],
        )
        .await
        .expect("query");
    assert_eq!(
        rows.len(),
        1,
        "three files were uploaded, the element names the last"
    );
    for row in rows {
        let sealed: String = row.get("sealed").expect("sealed");
        assert!(sealed.contains("A256GCM") && !sealed.contains("Nachweis"));
    }

    // After the submission no upload is taken.
    let late = env.upload(&id, "nachweis", content, &[]).await;
    assert_eq!(late.status, StatusCode::CONFLICT);
}

/// An application's attachments hold at most 25 MiB together, the replaced one not
/// counted; a refusal stores nothing.
async fn attachments_are_capped_together(env: &Env) {
    let upload = json!({"type": "string", "x-editor": {"element": "upload", "label": "Nachweis"}});
    let form = env
        .published_form(json!({
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "type": "object",
            "required": ["familienname"],
            "additionalProperties": false,
            "properties": {
                "familienname": {"type": "string", "minLength": 1, "x-fim-id": "F60000227",
                                 "x-editor": {"element": "input"}},
                "a": upload, "b": upload, "c": upload
            }
        }))
        .await;
    env.directory(json!([
        { "leika": LEIKA, "region": "14627", "authority": "lra-meissen", "form": form,
          "payment": "after_decision", "service_name": "Wohngeld beantragen" }
    ]))
    .await;
    let id = env.draft().await;
    const MIB: usize = 1024 * 1024;
    for (name, byte) in [("a", b'a'), ("b", b'b')] {
        let reply = env.upload(&id, name, vec![byte; 10 * MIB], &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{name}");
    }
    let head = env.head().await;
    let over = env.upload(&id, "c", vec![b'c'; 5 * MIB + 1], &[]).await;
    assert_eq!(over.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(
        over.json()["type"],
        "urn:amtsbuch:problem:attachments-too-large"
    );
    assert_eq!(env.head().await, head, "nothing stored");
    assert_eq!(env.contents(&id).await.len(), 2);
    let full = env.upload(&id, "c", vec![b'c'; 5 * MIB], &[]).await;
    assert_eq!(full.status, StatusCode::OK);
    // A replacement counts instead of the content it replaces.
    let replaced = env.upload(&id, "a", vec![b'A'; 10 * MIB], &[]).await;
    assert_eq!(replaced.status, StatusCode::OK);
    let mut kept = vec![
        sha256_hex(&vec![b'A'; 10 * MIB]),
        sha256_hex(&vec![b'b'; 10 * MIB]),
        sha256_hex(&vec![b'c'; 5 * MIB]),
    ];
    kept.sort();
    assert_eq!(env.contents(&id).await, kept);
}

/// Drafts expire 30 days after their last edit, announced 7 days before; their personal
/// data is shredded. The sweeper runs at instants injected here.
async fn draft_expiry(env: &Env) {
    setup_with_upload(env).await;
    let id = draft_with_attachment(env).await;
    let now = chrono::Utc::now();
    let sweep = |at| amtsbuch_api::applications::sweeper::sweep(&env.state, at);
    assert_eq!(
        sweep(now + chrono::Duration::days(22))
            .await
            .expect("sweep"),
        (0, 0)
    );
    assert_eq!(
        sweep(now + chrono::Duration::days(24))
            .await
            .expect("sweep"),
        (1, 0)
    );
    assert_eq!(
        sweep(now + chrono::Duration::days(25))
            .await
            .expect("sweep"),
        (0, 0),
        "announced once"
    );
    let announced = env
        .expect(
            StatusCode::OK,
            "GET",
            "/applications/{id}",
            &uri(&id, ""),
            Some(&citizen()),
            None,
        )
        .await;
    assert_eq!(announced["status"], "draft");
    assert_eq!(announced["data"]["familienname"], SECRET_NAME);
    assert_eq!(
        sweep(now + chrono::Duration::days(31))
            .await
            .expect("sweep"),
        (0, 1)
    );
    let expired = env
        .expect(
            StatusCode::OK,
            "GET",
            "/applications/{id}",
            &uri(&id, ""),
            Some(&citizen()),
            None,
        )
        .await;
    assert_eq!(expired["status"], "expired");
    assert_eq!(expired["zbp_status"], "COMPLETED");
    assert_eq!(expired["data"], json!({"erased": true}));
    let rows = env
        .db
        .db()
        .fetch_all("SELECT sha256 FROM applications_attachment_contents", &[])
        .await
        .expect("query");
    assert!(
        rows.is_empty(),
        "the attachment's sealed content is deleted"
    );
    assert_eq!(
        sweep(now + chrono::Duration::days(40))
            .await
            .expect("sweep"),
        (0, 0)
    );
    // An expired draft is not submitted.
    env.expect(
        StatusCode::CONFLICT,
        "POST",
        "/applications/{id}/submission",
        &uri(&id, "/submission"),
        Some(&citizen()),
        None,
    )
    .await;
}

/// Two editors of one form version: a revision made against a form version read before
/// another's revision is refused with `412`, and nothing changes.
async fn form_revision_if_match(env: &Env) {
    let op = operator();
    let form = env
        .expect(
            StatusCode::CREATED,
            "POST",
            "/forms",
            "/forms",
            Some(&op),
            Some(json!({"title": "Antrag auf Wohngeld"})),
        )
        .await;
    let id = form["form_id"].as_str().expect("form id").to_owned();
    env.expect(
        StatusCode::CREATED,
        "POST",
        "/forms/{form}/versions",
        &format!("/forms/{id}/versions"),
        Some(&op),
        Some(json!({ "schema": schema() })),
    )
    .await;
    let read = env
        .expect(
            StatusCode::OK,
            "GET",
            "/forms/{form}",
            &format!("/forms/{id}"),
            None,
            None,
        )
        .await;
    let version = read["version"].as_u64().expect("version");
    let revise = |tag: String, schema: Value| {
        let mut request = common::request(
            "PUT",
            &format!("/forms/{id}/versions/1"),
            Some(&op),
            Body::from(json!({ "schema": schema }).to_string()),
        );
        request
            .headers_mut()
            .insert("if-match", tag.parse().expect("header"));
        request
            .headers_mut()
            .insert("content-type", "application/json".parse().expect("header"));
        request
    };
    let mut first = schema_with_upload();
    first["properties"]["familienname"]["maxLength"] = json!(80);
    let reply = common::send(&env.app, revise(format!("\"{version}\""), first.clone())).await;
    conforms(&env.doc, "PUT", "/forms/{form}/versions/{v}", &reply);
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&reply.bytes)
    );
    let head = env.head().await;
    let reply = common::send(&env.app, revise(format!("\"{version}\""), schema())).await;
    conforms(&env.doc, "PUT", "/forms/{form}/versions/{v}", &reply);
    assert_eq!(reply.status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(reply.json()["actual_version"], version + 1);
    assert_eq!(env.head().await, head, "nothing stored");
    let now = env
        .expect(
            StatusCode::OK,
            "GET",
            "/forms/{form}/versions/{v}",
            &format!("/forms/{id}/versions/1"),
            None,
            None,
        )
        .await;
    assert_eq!(now["schema"], first, "the first revision stands");
}

/// Another API node on the same database keeps forms folded between requests, and still
/// answers with what the first node changed since: each read brings its kept form up to
/// date with the form's stream (here: a version retired through the first node).
async fn a_second_node_follows_form_changes(env: &Env) {
    let mut other = common::state_with(&env.store, None, HubLimits::default()).await;
    other.sealer = env.state.sealer.clone();
    let other = amtsbuch_api::router(other);
    let form = env.published_form(schema()).await;
    let read = |app: Router| {
        let uri = format!("/forms/{form}");
        async move {
            let reply = common::send(&app, common::request("GET", &uri, None, Body::empty())).await;
            assert_eq!(reply.status, StatusCode::OK);
            reply.json()
        }
    };
    let before = read(other.clone()).await;
    assert_eq!(before["versions"][0]["status"], "published");
    env.expect(
        StatusCode::OK,
        "POST",
        "/forms/{form}/versions/{v}/retirement",
        &format!("/forms/{form}/versions/1/retirement"),
        Some(&operator()),
        None,
    )
    .await;
    let after = read(other.clone()).await;
    assert_eq!(after["versions"][0]["status"], "retired", "{after}");
    assert_eq!(
        after["version"],
        before["version"].as_u64().expect("version") + 1
    );
}

/// The payment policy `before_submission`: the submission is refused with
/// `payment-outstanding` while no fee can be requested (no fee schedule) and while the
/// fee's receivable is not paid, naming what is owed; once the cash office books the
/// payment, the same submission goes through. Refusals change no application.
async fn fee_before_submission(env: &Env) {
    let form = env.published_form(schema()).await;
    env.directory(json!([
        { "leika": LEIKA, "region": "14627", "authority": "lra-meissen", "form": form,
          "payment": "before_submission", "service_name": "Wohngeld beantragen" }
    ]))
    .await;
    let id = env.draft().await;
    let c = citizen();
    env.expect(
        StatusCode::OK,
        "PUT",
        "/applications/{id}/data",
        &uri(&id, "/data"),
        Some(&c),
        Some(json!({ "data": { "familienname": "Müller", "geburtsdatum": "1990-02-03" } })),
    )
    .await;
    let (submission, application) = (uri(&id, "/submission"), uri(&id, ""));
    let submit = || {
        env.call(
            "POST",
            "/applications/{id}/submission",
            &submission,
            Some(&c),
            None,
        )
    };
    let version = |app: &Value| app["version"].as_u64().expect("version");
    let get = || {
        env.expect(
            StatusCode::OK,
            "GET",
            "/applications/{id}",
            &application,
            Some(&c),
            None,
        )
    };
    let before = version(&get().await);

    // No fee schedule: nothing can be requested, and the refusal names the schedule.
    let refused = submit().await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    let problem = refused.json();
    assert_eq!(
        problem["type"], "urn:amtsbuch:problem:payment-outstanding",
        "{problem}"
    );
    let reference = problem["obligations"][0]["reference"]
        .as_str()
        .expect("reference");
    assert!(reference.starts_with("fee_schedule-"), "{problem}");

    // With a schedule, the fee is requested for the applicant; still refused until paid.
    env.expect(
        StatusCode::OK,
        "PUT",
        "/fee-schedules/{leika}/{authority}",
        &format!("/fee-schedules/{LEIKA}/lra-meissen"),
        Some(&operator()),
        Some(json!({
            "mandant": "14612000", "bewirtschafter": "b100", "gross_cents": 2500, "due_days": 14,
            "lines": [
                { "haushaltsstelle": "1100.100", "buchungstext": "GEBÜHR", "gross_cents": 2000, "net_cents": 2000, "tax_cents": 0 },
                { "haushaltsstelle": "1100.200", "buchungstext": "AUSLAGEN", "gross_cents": 500, "net_cents": 500, "tax_cents": 0 }
            ]
        })),
    )
    .await;
    let refused = submit().await;
    assert_eq!(refused.status, StatusCode::CONFLICT);
    let problem = refused.json();
    assert_eq!(
        problem["type"], "urn:amtsbuch:problem:payment-outstanding",
        "{problem}"
    );
    let reference = problem["obligations"][0]["reference"]
        .as_str()
        .expect("reference");
    let fee = reference
        .strip_prefix("receivable-")
        .expect("a receivable")
        .to_owned();
    let receivable = env
        .expect(
            StatusCode::OK,
            "GET",
            "/receivables/{id}",
            &format!("/receivables/{fee}"),
            Some(&c),
            None,
        )
        .await;
    assert_eq!(receivable["status"], "open");
    assert_eq!(receivable["balance_cents"], 2500);
    assert_eq!(receivable["application_id"], id.as_str());
    assert_eq!(
        version(&get().await),
        before,
        "the refusals changed nothing"
    );

    // The cash office books the payment (the HKR's Ist-Buchung of the whole fee).
    let kassenzeichen = receivable["kassenzeichen"].as_str().expect("kassenzeichen");
    let today = chrono::Utc::now().date_naive();
    let imported = env
        .expect(
            StatusCode::OK,
            "POST",
            "/reconciliation/imports",
            "/reconciliation/imports",
            Some(&operator()),
            Some(json!({
                "mandant": "14612000",
                "format": "hkr",
                "content": format!("buchungs_id;buchungsdatum;kassenzeichen;haushaltsstelle;betrag;art;hkr_referenz\nH-1;{today};{kassenzeichen};1100.100;25,00;IST;BEL-77\n")
            })),
        )
        .await;
    assert_eq!(imported["booked"], 1, "{imported}");
    let submitted = submit().await;
    assert_eq!(
        submitted.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&submitted.bytes)
    );
    assert_eq!(get().await["status"], "submitted");
}

/// A submission with its data in one request: invalid data is refused with `422` and
/// pointers and stores nothing; valid data is saved (sealed) and submitted in one append,
/// answered with a receipt whose data hash is that of the data sent; a missing attachment
/// the data names refuses both; a second submission is refused. The two-step path is
/// what `lifecycle` covers.
async fn submission_in_one_request(env: &Env) {
    setup(env).await;
    let c = citizen();
    let id = env.draft().await;
    let submit = |body: Option<Value>, status: StatusCode| {
        let id = id.clone();
        let c = c.clone();
        async move {
            env.expect(
                status,
                "POST",
                "/applications/{id}/submission",
                &uri(&id, "/submission"),
                Some(&c),
                body,
            )
            .await
        }
    };
    let head = env.head().await;
    let invalid = submit(
        Some(json!({ "data": { "familienname": "", "kinder": -1 } })),
        StatusCode::UNPROCESSABLE_ENTITY,
    )
    .await;
    assert_eq!(invalid["type"], "urn:amtsbuch:problem:invalid-data");
    let pointers: Vec<&str> = invalid["violations"]
        .as_array()
        .expect("violations")
        .iter()
        .filter_map(|v| v["pointer"].as_str())
        .collect();
    for p in ["/familienname", "/geburtsdatum", "/kinder"] {
        assert!(pointers.contains(&p), "{p} in {pointers:?}");
    }
    submit(Some(json!({ "daten": {} })), StatusCode::BAD_REQUEST).await;
    submit(Some(json!({ "data": 1 })), StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(env.head().await, head, "nothing stored");
    let draft = env
        .expect(
            StatusCode::OK,
            "GET",
            "/applications/{id}",
            &uri(&id, ""),
            Some(&c),
            None,
        )
        .await;
    assert_eq!(draft["status"], "draft");
    assert_eq!(draft["data"], Value::Null, "no data saved");

    let data = json!({ "familienname": "Müller", "geburtsdatum": "1990-02-03", "kinder": 2 });
    let receipt = submit(Some(json!({ "data": data })), StatusCode::CREATED).await;
    let position = receipt["position"].as_u64().expect("position");
    assert_eq!(env.head().await, head + 2, "the data and the submission");
    assert_eq!(
        position,
        head + 2,
        "one append: the submission right after the data"
    );
    let saved = env
        .store
        .read_all(head, 2)
        .await
        .expect("log")
        .iter()
        .map(|e| e.record().expect("record").event_type.to_string())
        .collect::<Vec<_>>();
    assert_eq!(saved, ["ApplicationDataSaved", "ApplicationSubmitted"]);
    for e in env.store.read_all(head, 2).await.expect("log") {
        assert!(
            !String::from_utf8_lossy(&e.bytes).contains("Müller"),
            "the data is sealed"
        );
    }
    let submitted = env
        .expect(
            StatusCode::OK,
            "GET",
            "/applications/{id}",
            &uri(&id, ""),
            Some(&c),
            None,
        )
        .await;
    assert_eq!(submitted["status"], "submitted");
    assert_eq!(submitted["data"], data);
    check_receipt(env, &id, &receipt, &data).await;

    // A second submission, with data or without, is refused and stores nothing.
    let head = env.head().await;
    submit(Some(json!({ "data": data })), StatusCode::CONFLICT).await;
    submit(Some(json!({})), StatusCode::CONFLICT).await;
    assert_eq!(env.head().await, head);

    // Valid data that names an attachment never uploaded: neither saved nor submitted.
    let form = env.published_form(schema_with_upload()).await;
    env.directory(json!([
        { "leika": LEIKA, "region": "14627", "authority": "lra-meissen", "form": form,
          "payment": "after_decision", "service_name": "Wohngeld beantragen" }
    ]))
    .await;
    let id = env.draft().await;
    let head = env.head().await;
    let missing = env
        .expect(
            StatusCode::UNPROCESSABLE_ENTITY,
            "POST",
            "/applications/{id}/submission",
            &uri(&id, "/submission"),
            Some(&c),
            Some(json!({ "data": {
                "familienname": "Müller",
                "nachweis": sha256_hex(b"never uploaded"),
            } })),
        )
        .await;
    assert_eq!(missing["type"], "urn:amtsbuch:problem:attachment-missing");
    assert_eq!(env.head().await, head, "nothing stored");
}

/// Run `test` on an `Env` on a fresh database of `adapter`.
async fn on(adapter: common::Adapter, test: impl AsyncFnOnce(&Env)) {
    let env = Env::start(adapter).await;
    test(&env).await;
    env.close().await;
}

common::on_both_adapters!(using on; lifecycle, bad_input, inbox, export, erasure_after_retention, attachments, attachments_are_capped_together, draft_expiry, form_revision_if_match, a_second_node_follows_form_changes, fee_before_submission, submission_in_one_request);
