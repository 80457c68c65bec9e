//! The OpenAPI document against the running router: it is served, it is OpenAPI 3.1, every
//! operation says who may call it and what it answers, every documented path is routed,
//! and the JSON bodies the API sends have exactly the properties their schemas declare.
//!
//! Bodies are checked by a small structural checker written here against the document
//! itself (`check`): it follows `$ref`s into `components.schemas`, and for an object schema
//! that lists `properties` it requires the `required` ones and refuses any property not
//! listed. It refuses schema keywords it does not know instead of skipping them, so the
//! document cannot grow a constraint these tests silently ignore.

use std::time::Duration;

use axum::body::Body;
use axum::http::StatusCode;
use axum::Router;
use serde_json::{json, Value};

use amtsbuch_api::router;
use amtsbuch_api::sse::HubLimits;
use amtsbuch_domain::access::Role;
use amtsbuch_domain::record::SealedSection;
use amtsbuch_domain::{AppendRequest, EventType, ExpectedVersion, NewEvent, StreamId};
use amtsbuch_infra::EventStore;

mod common;
use common::{Reply, Samples};

fn document() -> Value {
    serde_json::to_value(router::openapi()).expect("document as JSON")
}

// ---------------------------------------------------------------------------------------
// The structural checker

/// Keywords that only describe and never constrain.
const ANNOTATIONS: &[&str] = &[
    "description",
    "title",
    "example",
    "examples",
    "default",
    "deprecated",
    "readOnly",
    "writeOnly",
    "externalDocs",
];

/// Resolve a local `$ref` such as `#/components/schemas/LogPage`.
fn resolve<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    let pointer = reference.strip_prefix('#')?;
    doc.pointer(pointer)
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_fits(declared: &str, value: &Value) -> bool {
    let kind = kind_of(value);
    declared == kind || (declared == "number" && kind == "integer")
}

/// Check `value` against `schema`, resolving references in `doc`; what does not fit is
/// added to `errors`, each with the JSON pointer of the offending part.
fn check(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    if schema.as_bool() == Some(true) {
        return;
    }
    let Some(schema) = schema.as_object() else {
        errors.push(format!("{at}: the schema {schema} is not an object"));
        return;
    };
    for (keyword, argument) in schema {
        match keyword.as_str() {
            k if ANNOTATIONS.contains(&k) => {}
            "$ref" => match argument.as_str().and_then(|r| resolve(doc, r)) {
                Some(target) => check(doc, target, value, at, errors),
                None => errors.push(format!("{at}: unresolvable $ref {argument}")),
            },
            "type" => {
                let fits = match argument {
                    Value::String(t) => type_fits(t, value),
                    Value::Array(ts) => ts
                        .iter()
                        .filter_map(Value::as_str)
                        .any(|t| type_fits(t, value)),
                    _ => false,
                };
                if !fits {
                    errors.push(format!("{at}: {value} is not of type {argument}"));
                }
            }
            "format" => check_format(argument.as_str().unwrap_or(""), value, at, errors),
            "minimum" => {
                if let (Some(min), Some(v)) = (argument.as_f64(), value.as_f64()) {
                    if v < min {
                        errors.push(format!("{at}: {v} is below the minimum {min}"));
                    }
                }
            }
            "maximum" => {
                if let (Some(max), Some(v)) = (argument.as_f64(), value.as_f64()) {
                    if v > max {
                        errors.push(format!("{at}: {v} is above the maximum {max}"));
                    }
                }
            }
            "enum" => {
                if !argument.as_array().is_some_and(|list| list.contains(value)) {
                    errors.push(format!("{at}: {value} is not one of {argument}"));
                }
            }
            "const" => {
                if argument != value {
                    errors.push(format!("{at}: {value} is not {argument}"));
                }
            }
            "items" => {
                if let Some(items) = value.as_array() {
                    for (i, item) in items.iter().enumerate() {
                        check(doc, argument, item, &format!("{at}/{i}"), errors);
                    }
                }
            }
            "required" => {
                if let Some(object) = value.as_object() {
                    for name in argument.as_array().into_iter().flatten() {
                        let name = name.as_str().unwrap_or_default();
                        if !object.contains_key(name) {
                            errors.push(format!("{at}: the required property {name:?} is missing"));
                        }
                    }
                }
            }
            "properties" => {
                let Some(object) = value.as_object() else {
                    continue;
                };
                let declared = argument.as_object().cloned().unwrap_or_default();
                for (name, property) in object {
                    let here = format!("{at}/{name}");
                    match declared.get(name) {
                        Some(s) => check(doc, s, property, &here, errors),
                        None => match schema.get("additionalProperties") {
                            Some(Value::Bool(true)) => {}
                            Some(extra @ Value::Object(_)) => {
                                check(doc, extra, property, &here, errors)
                            }
                            // Declared properties are the whole list unless the schema
                            // says otherwise.
                            _ => errors.push(format!(
                                "{here}: the property {name:?} is not declared by the schema"
                            )),
                        },
                    }
                }
            }
            "additionalProperties" => {
                // With `properties`, handled there; alone, it constrains every property.
                if schema.contains_key("properties") {
                    continue;
                }
                if let Some(object) = value.as_object() {
                    for (name, property) in object {
                        let here = format!("{at}/{name}");
                        match argument {
                            Value::Bool(true) => {}
                            Value::Object(_) => check(doc, argument, property, &here, errors),
                            _ => errors.push(format!(
                                "{here}: the property {name:?} is not declared by the schema"
                            )),
                        }
                    }
                }
            }
            "oneOf" | "anyOf" => {
                let passing = argument
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|branch| {
                        let mut branch_errors = Vec::new();
                        check(doc, branch, value, at, &mut branch_errors);
                        branch_errors.is_empty()
                    })
                    .count();
                let ok = if keyword == "oneOf" {
                    passing == 1
                } else {
                    passing >= 1
                };
                if !ok {
                    errors.push(format!(
                        "{at}: {value} fits {passing} branches of {keyword} {argument}"
                    ));
                }
            }
            "allOf" => {
                for branch in argument.as_array().into_iter().flatten() {
                    check(doc, branch, value, at, errors);
                }
            }
            other => errors.push(format!(
                "{at}: the checker does not know the schema keyword {other:?}; teach it before relying on it"
            )),
        }
    }
}

fn check_format(format: &str, value: &Value, at: &str, errors: &mut Vec<String>) {
    let fits = match (format, value) {
        (_, Value::Null) => true,
        ("uuid", Value::String(s)) => uuid::Uuid::parse_str(s).is_ok(),
        ("date-time", Value::String(s)) => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
        ("int64", Value::Number(n)) => n.is_i64() || n.is_u64(),
        ("int32", Value::Number(n)) => n
            .as_i64()
            .is_some_and(|v| i32::try_from(v).is_ok() || u32::try_from(v).is_ok()),
        ("uuid" | "date-time", _) | ("int64" | "int32", _) => false,
        (other, _) => {
            errors.push(format!(
                "{at}: the checker does not know the format {other:?}"
            ));
            return;
        }
    };
    if !fits {
        errors.push(format!("{at}: {value} is not a {format}"));
    }
}

fn errors_of(doc: &Value, schema: &Value, value: &Value) -> Vec<String> {
    let mut errors = Vec::new();
    check(doc, schema, value, "", &mut errors);
    errors
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

/// Check that `reply` is an answer the document declares for `method path`: its status,
/// its media type, and — for JSON — its body against the declared schema.
fn conforms(doc: &Value, method: &str, path: &str, reply: &Reply) {
    let what = format!("{method} {path} → {}", reply.status);
    let operation = &doc["paths"][path][method.to_lowercase()];
    assert!(operation.is_object(), "{what}: not in the document");
    let status = reply.status.as_u16().to_string();
    let response = match operation["responses"].get(&status) {
        Some(r) => r,
        None => operation["responses"]
            .get("default")
            .unwrap_or_else(|| panic!("{what}: status not declared; body {}", reply.json())),
    };
    let media = reply.media_type();
    let content = response["content"].get(&media).unwrap_or_else(|| {
        panic!(
            "{what}: media type {media:?} not declared (declared: {})",
            response["content"]
        )
    });
    if !(media == "application/json" || media.ends_with("+json")) {
        assert!(
            std::str::from_utf8(&reply.bytes).is_ok(),
            "{what}: not text"
        );
        return;
    }
    let body: Value = serde_json::from_slice(&reply.bytes)
        .unwrap_or_else(|e| panic!("{what}: the body is not JSON: {e}"));
    let schema = content
        .get("schema")
        .unwrap_or_else(|| panic!("{what}: a JSON response without a schema"));
    let errors = errors_of(doc, schema, &body);
    assert!(
        errors.is_empty(),
        "{what}: the body does not fit its schema:\n  {}\nbody: {body}",
        errors.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------
// The document

#[tokio::test]
async fn the_document_is_served_and_is_openapi_3_1() {
    let store = common::temp_store("openapi-doc").await;
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
}

/// A signing server with a few events and a checkpoint covering them.
async fn app() -> TestApp {
    let store = common::temp_store("openapi").await;
    let ledger = common::start_ledger(&store.store);
    let event_id = common::append_consents(&store.store, 3).await;
    let checkpoint_size = common::wait_for_checkpoint(&store.store, 3).await;
    let mut state = common::state_with(&store.store, Some(ledger), HubLimits::default()).await;
    let nats = common::TestNats::create().await;
    let nats_prefix = nats.config.prefix.to_string();
    state.nats = Some(std::sync::Arc::new(amtsbuch_api::nats_http::NatsLink::new(
        nats.config.clone(),
    )));
    TestApp {
        app: router::router(state),
        _nats: nats,
        samples: Samples {
            nats_prefix: nats_prefix.clone(),
            event_id,
            checkpoint_size,
        },
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

#[tokio::test]
async fn every_documented_operation_is_routed_and_answers_as_documented() {
    let app = app().await;
    for (method, path) in common::documented_operations(&app.doc) {
        let request = app
            .samples
            .request(&method, &path, Some(&common::everyone()));
        let reply = common::send(&app.app, request).await;
        let what = format!("{method} {path}");
        assert!(
            !is_fallback(&reply),
            "{what} is not routed: {}",
            reply.status
        );
        assert!(
            reply.status.is_success(),
            "{what}: {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.bytes)
        );
        conforms(&app.doc, &method, &path, &reply);
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
