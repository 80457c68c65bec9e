//! The OpenAPI document against the running router: it is served, it is OpenAPI 3.1, every
//! operation says who may call it and what it answers, every documented path is routed,
//! and the JSON bodies the API sends have exactly the properties their schemas declare.
//!
//! Bodies are checked by the small structural checker in `common::schema`, written against
//! the document itself; the first test here shows it refuses what does not fit.

use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use axum::Router;
use serde_json::{json, Value};

use amtsbuch_api::hub::HubLimits;
use amtsbuch_api::router;
use amtsbuch_domain::access::Role;
use amtsbuch_domain::record::SealedSection;
use amtsbuch_domain::{AppendRequest, EventType, ExpectedVersion, NewEvent, StreamId};
use amtsbuch_infra::EventStore;

use amtsbuch_testkit_api as common;
use common::schema::{conforms, errors_of, resolve};
use common::{Reply, Samples};

fn document() -> Value {
    serde_json::to_value(router::openapi()).expect("document as JSON")
}

#[test]
fn the_checker_refuses_what_does_not_fit() {
    let doc = document();
    let health = json!({ "$ref": "#/components/schemas/Health" });
    assert_eq!(
        errors_of(&doc, &health, &json!({ "status": "ok" })),
        Vec::<String>::new()
    );
    for bad in [
        json!({}),
        json!({ "status": 1 }),
        json!({ "status": "ok", "uptime": 3 }),
        json!("ok"),
    ] {
        assert!(!errors_of(&doc, &health, &bad).is_empty(), "{bad} passed");
    }
    // Nested: a log page whose event lacks its metadata, or carries an undeclared field.
    let page = json!({ "$ref": "#/components/schemas/LogPage" });
    let event = json!({
        "position": 1, "id": "0193a1b2-0000-7000-8000-000000000000", "stream": "consent-1",
        "version": 1, "type": "ConsentGiven", "data": {}, "leaf_hash": "00", "chain_hash": "00",
        "metadata": { "schema_version": 1, "occurred_at": "2026-01-01T00:00:00Z", "recorded_at": "2026-01-01T00:00:00Z" }
    });
    assert_eq!(
        errors_of(
            &doc,
            &page,
            &json!({ "events": [event.clone()], "next_after": 1 })
        ),
        Vec::<String>::new()
    );
    let mut without_metadata = event.clone();
    without_metadata
        .as_object_mut()
        .expect("object")
        .remove("metadata");
    let mut with_extra = event.clone();
    with_extra["metadata"]["colour"] = json!("red");
    let mut bad_id = event.clone();
    bad_id["id"] = json!("not-a-uuid");
    let mut negative = event;
    negative["position"] = json!(-1);
    for bad in [without_metadata, with_extra, bad_id, negative] {
        let errors = errors_of(&doc, &page, &json!({ "events": [bad], "next_after": 1 }));
        assert!(!errors.is_empty(), "{bad} passed");
    }
    // An optional reference (`oneOf` null or the schema).
    let sealed_schema = &doc["components"]["schemas"]["EventView"]["properties"]["sealed"];
    assert!(errors_of(&doc, sealed_schema, &Value::Null).is_empty());
    assert!(!errors_of(&doc, sealed_schema, &json!({ "subject": "s" })).is_empty());
    // Keywords the checker does not know are reported, not skipped.
    assert!(!errors_of(&doc, &json!({ "pattern": "^a$" }), &json!("a")).is_empty());
}

// ---------------------------------------------------------------------------------------
// The document

#[tokio::test]
async fn the_document_is_served_and_is_openapi_3_1() {
    let store = common::temp_store().await;
    let app = router::router(common::state_with(&store.store, None, HubLimits::default()).await);
    let reply = common::send(
        &app,
        common::request("GET", "/openapi.json", None, Body::empty()),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.media_type(), "application/json");
    let served = reply.json();
    assert!(
        served["openapi"]
            .as_str()
            .is_some_and(|v| v.starts_with("3.1")),
        "{}",
        served["openapi"]
    );
    assert!(served["info"]["title"].is_string() && served["info"]["version"].is_string());
    // What is served is what the router was built from.
    assert_eq!(served, document());
}

#[test]
fn every_operation_declares_who_may_call_it_and_what_it_answers() {
    let doc = document();
    let schemes = doc["components"]["securitySchemes"]
        .as_object()
        .expect("security schemes");
    let operations = common::documented_operations(&doc);
    assert!(operations.len() >= 10, "{operations:?}");
    for (method, path) in operations {
        let what = format!("{method} {path}");
        let op = &doc["paths"][&path][method.to_lowercase()];
        let security = op["security"]
            .as_array()
            .unwrap_or_else(|| panic!("{what} declares no security"));
        assert!(!security.is_empty(), "{what}: an empty security list");
        for requirement in security {
            let requirement = requirement.as_object().expect("requirement object");
            for (scheme, roles) in requirement {
                assert!(
                    schemes.contains_key(scheme),
                    "{what}: unknown scheme {scheme}"
                );
                let roles = roles.as_array().expect("role list");
                assert!(
                    !roles.is_empty(),
                    "{what}: a bearer requirement without roles"
                );
                for role in roles {
                    let role = role.as_str().expect("role name");
                    assert!(role.parse::<Role>().is_ok(), "{what}: unknown role {role}");
                }
            }
        }
        let responses = op["responses"]
            .as_object()
            .unwrap_or_else(|| panic!("{what} declares no responses"));
        assert!(!responses.is_empty(), "{what} declares no responses");
        // The guard's own answers are listed wherever it asks for a token.
        let public = security
            .iter()
            .any(|r| r.as_object().is_some_and(|o| o.is_empty()));
        if !public {
            for status in ["401", "403"] {
                assert!(
                    responses.contains_key(status),
                    "{what} needs a token but does not list {status}"
                );
            }
        }
        for (status, response) in responses {
            assert!(
                status == "default"
                    || (status.len() == 3
                        && status.parse::<u16>().is_ok_and(|s| (100..600).contains(&s))),
                "{what}: response key {status}"
            );
            assert!(
                response["description"].is_string(),
                "{what} {status}: no description"
            );
            for (media, content) in response["content"].as_object().into_iter().flatten() {
                assert!(
                    content.get("schema").is_some(),
                    "{what} {status} {media}: no schema"
                );
                if media.ends_with("json") {
                    // The schema must be checkable: the checker reports unknown keywords
                    // and unresolvable references even for values that never occur.
                    let mut errors = Vec::new();
                    walk_refs(&doc, &content["schema"], &mut errors);
                    assert!(errors.is_empty(), "{what} {status}: {errors:?}");
                }
            }
        }
        // A problem is what every error of this API looks like.
        for (status, response) in responses {
            if status.starts_with('4') || status.starts_with('5') {
                assert!(
                    response["content"]
                        .get("application/problem+json")
                        .is_some(),
                    "{what} {status}: errors are RFC 9457 problems"
                );
            }
        }
    }
}

/// Every `$ref` under `schema` resolves, transitively.
fn walk_refs(doc: &Value, schema: &Value, errors: &mut Vec<String>) {
    fn walk(doc: &Value, v: &Value, seen: &mut Vec<String>, errors: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                if let Some(r) = map.get("$ref").and_then(Value::as_str) {
                    if seen.iter().any(|s| s == r) {
                        return;
                    }
                    seen.push(r.to_owned());
                    match resolve(doc, r) {
                        Some(target) => walk(doc, target, seen, errors),
                        None => errors.push(format!("unresolvable $ref {r}")),
                    }
                }
                for child in map.values() {
                    walk(doc, child, seen, errors);
                }
            }
            Value::Array(items) => {
                for child in items {
                    walk(doc, child, seen, errors);
                }
            }
            _ => {}
        }
    }
    walk(doc, schema, &mut Vec::new(), errors);
}

// ---------------------------------------------------------------------------------------
// The document against the router

struct TestApp {
    app: Router,
    samples: Samples,
    store: common::TempStore,
    doc: Value,
    _nats: common::TestNats,
    _runner: amtsbuch_projections::RunnerHandle,
}

/// A signing server with a few events and a checkpoint covering them, the read models
/// running, and a sealer for personal data with every domain module's samples seeded (for
/// the GDPR domain an account, a consent of it, a retention hold on it), so every
/// operation can succeed.
async fn app() -> TestApp {
    build(true).await
}

/// `app`, or with `seeded` false a server without a key-encryption key and without any
/// sample data: the domain modules' routes answer 404, 409 or 503.
async fn build(seeded: bool) -> TestApp {
    let store = common::temp_store().await;
    let ledger = common::start_ledger(&store.store);
    let event_id = common::append_consents(&store.store, 3).await;
    let checkpoint_size = common::wait_for_checkpoint(&store.store, 3).await;
    let mut state = common::state_with(&store.store, Some(ledger), HubLimits::default()).await;
    let runner =
        amtsbuch_projections::spawn(store.store.clone(), amtsbuch_api::domains::projections());
    let nats = common::TestNats::create().await;
    let nats_prefix = nats.config.prefix.to_string();
    state.nats = Some(std::sync::Arc::new(amtsbuch_api::state::NatsLink::new(
        nats.config.clone(),
    )));
    let mut samples = Samples::new(event_id, checkpoint_size, &nats_prefix);
    if seeded {
        state.sealer = Some(common::sealer(&store.store, store.dir()));
    }
    let app = router::router(state.clone());
    if seeded {
        common::seed(&app, &state, &mut samples).await;
        // A receipt (the consent receipt) needs a checkpoint covering the samples.
        let head = amtsbuch_infra::EventStore::head(&store.store)
            .await
            .expect("head");
        common::wait_for_checkpoint(&store.store, head.position).await;
    }
    TestApp {
        app,
        _nats: nats,
        _runner: runner,
        samples,
        store,
        doc: document(),
    }
}

impl TestApp {
    /// Send as a caller holding every role, and check the answer against the document.
    async fn send(&self, method: &str, path: &str, uri: &str, body: Option<Value>) -> Reply {
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        let reply = common::send(
            &self.app,
            common::request(method, uri, Some(&common::everyone()), body),
        )
        .await;
        conforms(&self.doc, method, path, &reply);
        reply
    }
}

/// The router's answer for a path it does not have, as opposed to a handler's 404.
fn is_fallback(reply: &Reply) -> bool {
    reply.status == StatusCode::METHOD_NOT_ALLOWED
        || (reply.status == StatusCode::NOT_FOUND
            && reply.json()["detail"]
                .as_str()
                .is_some_and(|d| d.contains("GET /openapi.json lists the routes")))
}

/// Call `method path` with the samples as a caller holding every role; the answer must
/// come from the route, not the router's fallback, and be one the document declares.
async fn call_documented(app: &TestApp, method: &str, path: &str) -> Reply {
    let request = app.samples.request(method, path, Some(&common::everyone()));
    let reply = common::send(&app.app, request).await;
    assert!(
        !is_fallback(&reply),
        "{method} {path} is not routed: {}",
        reply.status
    );
    conforms(&app.doc, method, path, &reply);
    reply
}

#[tokio::test]
async fn every_documented_operation_is_routed_and_answers_as_documented() {
    let app = app().await;
    let mut operations = common::documented_operations(&app.doc);
    // Operations that change the seeded samples for good run after every other one, in
    // the order their module gives.
    let last = amtsbuch_api::domains::MODULES
        .iter()
        .flat_map(|m| m.tests.last.iter());
    for last in last {
        let at = operations
            .iter()
            .position(|(m, p)| (m.as_str(), p.as_str()) == *last)
            .unwrap_or_else(|| panic!("{last:?} is not documented"));
        let op = operations.remove(at);
        operations.push(op);
    }
    for (method, path) in &operations {
        let reply = call_documented(&app, method, path).await;
        assert!(
            reply.status.is_success(),
            "{method} {path}: {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.bytes)
        );
    }
    // The fallback test can tell: an undocumented path and method are caught.
    let nowhere = common::send(
        &app.app,
        common::request("GET", "/nowhere", Some(&common::everyone()), Body::empty()),
    )
    .await;
    assert!(is_fallback(&nowhere));
    let delete = common::send(
        &app.app,
        common::request(
            "DELETE",
            "/events",
            Some(&common::everyone()),
            Body::empty(),
        ),
    )
    .await;
    assert!(is_fallback(&delete));
}

#[tokio::test]
async fn without_personal_data_every_operation_still_answers_as_documented() {
    // No sample data exists and nothing can be sealed: the domain modules' routes answer
    // 404, 409 or 503, and each of those must be an answer the document lists.
    let app = build(false).await;
    let mut failures = 0;
    for (method, path) in common::documented_operations(&app.doc) {
        let reply = call_documented(&app, &method, &path).await;
        if !reply.status.is_success() {
            failures += 1;
            assert_eq!(
                reply.media_type(),
                "application/problem+json",
                "{method} {path}"
            );
        }
    }
    // The samples name things that do not exist here, so this is no rerun of the test
    // above: most of the domain modules' routes must have failed.
    assert!(failures >= 15, "only {failures} operations failed");
}

#[tokio::test]
async fn representative_responses_have_exactly_their_schema_properties() {
    let app = app().await;
    const APPEND: &str = "/streams/{stream}/events";

    // Health and readiness.
    app.send("GET", "/healthz", "/healthz", None).await;
    app.send("GET", "/readyz", "/readyz", None).await;

    // An append with every metadata field set, and its retry.
    let id = uuid::Uuid::now_v7();
    let full = json!([{
        "id": id,
        "type": "ApplicationSubmitted",
        "data": { "form": "wohngeld", "pages": [1, 2] },
        "metadata": {
            "tenant": "14627010",
            "actor": "pseudonym-7",
            "correlation_id": uuid::Uuid::now_v7(),
            "causation_id": uuid::Uuid::now_v7(),
            "authority": "lra-meissen",
            "service": "99108001000000",
            "occurred_at": "2026-11-22T10:00:00Z",
            "schema_version": 2
        }
    }]);
    let created = app
        .send(
            "POST",
            APPEND,
            "/streams/application-7/events",
            Some(full.clone()),
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let retried = app
        .send("POST", APPEND, "/streams/application-7/events", Some(full))
        .await;
    assert_eq!(retried.status, StatusCode::OK);
    assert_eq!(retried.json()["duplicate"], true);

    // An event with a sealed personal-data section, appended the way the GDPR services do.
    let mut sealed = NewEvent::new(
        EventType::parse("MasterDataRecorded").expect("type"),
        json!({ "category": "address" }),
    );
    sealed.sealed = Some(SealedSection {
        subject: "subject-1".into(),
        key_id: "subject-1/1".into(),
        alg: "A256GCM".into(),
        nonce: amtsbuch_domain::base64::encode(&[1u8; 12]),
        ciphertext: amtsbuch_domain::base64::encode(&[2u8; 48]),
    });
    app.store
        .store
        .append(AppendRequest {
            stream: StreamId::parse("account-1").expect("stream"),
            expected: ExpectedVersion::Any,
            events: vec![sealed],
        })
        .await
        .expect("append sealed");

    // Payloads that are not objects are accepted, and must be read back as documented.
    for data in [
        json!(1),
        json!("text"),
        json!([1, 2]),
        json!(null),
        json!(true),
    ] {
        let r = app
            .send(
                "POST",
                APPEND,
                "/streams/misc-1/events",
                Some(json!([{ "type": "Noted", "data": data }])),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.json());
    }

    // Stream reads: a page with a next page, the last page, and backwards.
    let page = app
        .send("GET", APPEND, "/streams/consent-1/events?limit=2", None)
        .await;
    assert_eq!(page.json()["next_from"], 3);
    let last = app
        .send("GET", APPEND, "/streams/consent-1/events?from=3", None)
        .await;
    assert_eq!(last.json()["next_from"], Value::Null);
    let full = app
        .send("GET", APPEND, "/streams/application-7/events", None)
        .await;
    assert_eq!(full.json()["events"][0]["metadata"]["actor"], "pseudonym-7");
    app.send(
        "GET",
        APPEND,
        "/streams/misc-1/events?direction=backwards",
        None,
    )
    .await;

    // The whole log, which holds every kind of event above.
    let log = app.send("GET", "/events", "/events?limit=1000", None).await;
    let events = log.json()["events"].as_array().cloned().unwrap_or_default();
    assert!(events.iter().any(|e| e["sealed"].is_object()), "{events:?}");
    assert!(events.iter().any(|e| e["metadata"]["tenant"].is_string()));

    // Problems: 400 and both kinds of 409, which carry extension members.
    let bad = app
        .send(
            "POST",
            APPEND,
            "/streams/application-7/events",
            Some(json!({ "not": "a list" })),
        )
        .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    let bad_query = app.send("GET", "/events", "/events?limit=0", None).await;
    assert_eq!(bad_query.status, StatusCode::BAD_REQUEST);
    let conflict = common::send(
        &app.app,
        axum::http::Request::post("/streams/application-7/events")
            .header("authorization", format!("Bearer {}", common::everyone()))
            .header("expected-version", "no-stream")
            .body(Body::from(json!([{ "type": "A", "data": {} }]).to_string()))
            .expect("request"),
    )
    .await;
    assert_eq!(conflict.status, StatusCode::CONFLICT);
    assert_eq!(conflict.json()["actual_version"], 1);
    conforms(&app.doc, "POST", APPEND, &conflict);
    let reused = app
        .send(
            "POST",
            APPEND,
            "/streams/application-7/events",
            Some(json!([{ "id": id, "type": "Other", "data": {} }])),
        )
        .await;
    assert_eq!(reused.status, StatusCode::CONFLICT);
    assert_eq!(reused.json()["event_id"], id.to_string());

    // Proofs, and the ledger's own 409.
    let size = common::wait_for_checkpoint(&app.store.store, 4).await;
    app.send(
        "GET",
        "/ledger/proof/inclusion",
        &format!("/ledger/proof/inclusion?index=1&size={size}"),
        None,
    )
    .await;
    app.send(
        "GET",
        "/ledger/proof/consistency",
        &format!("/ledger/proof/consistency?from=1&to={size}"),
        None,
    )
    .await;
    let uncovered = app
        .send(
            "GET",
            "/ledger/proof/inclusion",
            "/ledger/proof/inclusion?index=0&size=100000",
            None,
        )
        .await;
    assert_eq!(uncovered.status, StatusCode::CONFLICT);

    // The SSE stream is an event stream whose frames carry documented events.
    let response = common::call(
        &app.app,
        common::request(
            "GET",
            "/events/stream?after=0",
            Some(&common::everyone()),
            Body::empty(),
        ),
    )
    .await;
    let mut reader = common::SseReader::new(response);
    let event_schema = json!({ "$ref": "#/components/schemas/EventView" });
    for _ in 0..events.len() {
        let frame = reader.frame().await;
        let errors = errors_of(&app.doc, &event_schema, &frame.json());
        assert!(errors.is_empty(), "SSE frame {}: {errors:?}", frame.data);
    }
    reader.assert_quiet(Duration::from_millis(100)).await;
}

#[tokio::test]
async fn before_the_first_checkpoint_proofs_and_receipts_say_when_to_retry() {
    // A signing server whose ledger has not signed yet: an event exists, no checkpoint
    // covers it. Its receipt and proofs are not missing (404 would say "no such event")
    // but not there yet: 409 `not-yet-checkpointed`, with `Retry-After`.
    let store = common::temp_store().await;
    let event_id = common::append_consents(&store.store, 2).await;
    let info = amtsbuch_api::state::LedgerInfo {
        origin: common::ORIGIN.into(),
        vkeys: vec![common::ledger_signer().vkey()],
    };
    let state = common::state_with(&store.store, Some(info), HubLimits::default()).await;
    let app = TestAppRef {
        app: router::router(state),
        doc: document(),
    };
    let not_yet = [
        (
            "/events/{id}/receipt",
            format!("/events/{event_id}/receipt"),
        ),
        (
            "/ledger/proof/inclusion",
            format!("/ledger/proof/inclusion?event_id={event_id}"),
        ),
        (
            "/ledger/proof/inclusion",
            "/ledger/proof/inclusion?index=1".to_owned(),
        ),
        (
            "/ledger/proof/consistency",
            "/ledger/proof/consistency?from=1".to_owned(),
        ),
    ];
    for (path, uri) in &not_yet {
        let reply = app.send(path, uri).await;
        assert_eq!(
            reply.status,
            StatusCode::CONFLICT,
            "{uri}: {}",
            reply.json()
        );
        assert_eq!(
            reply.json()["type"],
            "urn:amtsbuch:problem:not-yet-checkpointed",
            "{uri}"
        );
        assert_eq!(reply.json()["latest_checkpoint_size"], 0, "{uri}");
        assert_eq!(
            reply.header(axum::http::header::RETRY_AFTER),
            Some("1"),
            "{uri}"
        );
    }
    // The latest checkpoint itself is what does not exist yet.
    let none = app.send("/ledger/checkpoint", "/ledger/checkpoint").await;
    assert_eq!(none.status, StatusCode::NOT_FOUND);

    // Once the ledger signs, the same requests succeed.
    common::start_ledger(&store.store);
    common::wait_for_checkpoint(&store.store, 2).await;
    for (path, uri) in &not_yet {
        let reply = app.send(path, uri).await;
        assert_eq!(reply.status, StatusCode::OK, "{uri}: {:?}", reply.bytes);
    }
}

/// A router and its document, without the samples of `TestApp`.
struct TestAppRef {
    app: Router,
    doc: Value,
}

impl TestAppRef {
    /// GET `uri` as a caller holding every role; the answer must be one the document
    /// declares for `path`.
    async fn send(&self, path: &str, uri: &str) -> Reply {
        let reply = common::send(
            &self.app,
            common::request("GET", uri, Some(&common::everyone()), Body::empty()),
        )
        .await;
        conforms(&self.doc, "GET", path, &reply);
        reply
    }
}

#[test]
fn the_documented_grammars_accept_what_the_parsers_accept() {
    // Each pattern the document gives a name must accept exactly the names the service's
    // parser accepts, so that a client building a request from the document is neither
    // refused nor told a refused name is fine.
    let doc = document();
    let parameter = |path: &str, method: &str, name: &str| -> String {
        doc["paths"][path][method]["parameters"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == name))
            .and_then(|p| p["schema"]["pattern"].as_str())
            .unwrap_or_else(|| panic!("{method} {path}: no pattern for {name}"))
            .to_owned()
    };
    let property = |schema: &str, name: &str| -> String {
        doc["components"]["schemas"][schema]["properties"][name]["pattern"]
            .as_str()
            .unwrap_or_else(|| panic!("{schema}.{name}: no pattern"))
            .to_owned()
    };
    let long = |n: usize| "x".repeat(n);
    type Parser = fn(&str) -> bool;
    let cases: Vec<(String, Parser, Vec<String>)> = vec![
        (
            parameter("/streams/{stream}/events", "get", "stream"),
            |s| StreamId::parse(s).is_ok(),
            [
                "consent-1",
                "consent-0193a1b2",
                "c_2-a.b:c-d_e",
                "Consent-1",
                "consent",
                "consent-",
                "-1",
                "1c-x",
                "c-x y",
                "c-é",
                "c-x\n",
            ]
            .map(str::to_owned)
            .into_iter()
            .chain([
                format!("c-{}", long(200)),
                format!("c-{}", long(201)),
                format!("{}-x", "c".repeat(64)),
                format!("{}-x", "c".repeat(65)),
            ])
            .collect(),
        ),
        (
            parameter("/streams", "get", "category"),
            |s| amtsbuch_domain::Category::parse(s).is_ok(),
            ["consent", "c_2", "Consent", "2c", "", "c-1", "c ", "c\n"]
                .map(str::to_owned)
                .into_iter()
                .chain([long(64), long(65)])
                .collect(),
        ),
        (
            parameter("/streams", "get", "authority"),
            |s| amtsbuch_domain::AuthorityId::parse(s).is_ok(),
            [
                "lra-meissen",
                "14612000-ordnungsamt",
                "a_b",
                "-lra",
                "_lra",
                "LRA",
                "",
                "lra meissen",
            ]
            .map(str::to_owned)
            .into_iter()
            .chain([long(64), long(65)])
            .collect(),
        ),
        (
            property("MetadataInput", "service"),
            |s| amtsbuch_domain::ServiceKey::parse(s).is_ok(),
            ["99108001000000", "Abc-1_x", "-1", "_1", "", "a.b", "a b"]
                .map(str::to_owned)
                .into_iter()
                .chain([long(64), long(65)])
                .collect(),
        ),
        (
            property("EventInput", "type"),
            |s| EventType::parse(s).is_ok(),
            ["ConsentGiven", "a.b_c1", "1Given", "_x", "", "A-B", "A B"]
                .map(str::to_owned)
                .into_iter()
                .chain([long(128), long(129)])
                .collect(),
        ),
    ];
    for (pattern, parses, samples) in cases {
        let re = regex::Regex::new(&pattern).expect("the pattern compiles");
        for sample in samples {
            assert_eq!(
                re.is_match(&sample),
                parses(&sample),
                "{pattern} and the parser disagree on {sample:?}"
            );
        }
    }
    // Expected-Version: the pattern takes versions of up to 15 digits (no stream gets
    // near 10^15 events), the parser up to 2^53 - 1; everything else they agree on. (The
    // parser also trims white space, which HTTP strips from a field value anyway.)
    let re = regex::Regex::new(&parameter(
        "/streams/{stream}/events",
        "post",
        "Expected-Version",
    ))
    .expect("the pattern compiles");
    for sample in [
        "any",
        "no-stream",
        "0",
        "17",
        "007",
        "999999999999999",
        "Any",
        "-1",
        "1.0",
        "",
        "1e3",
        "1 2",
    ] {
        assert_eq!(
            re.is_match(sample),
            sample.parse::<ExpectedVersion>().is_ok(),
            "Expected-Version {sample:?}"
        );
    }
}
