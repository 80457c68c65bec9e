//! Who may call what: every operation of the OpenAPI document against every role and
//! against no token, checked through the router, plus what each role sees of the event
//! log through `GET /events/stream`.
//!
//! The expected access is written out below as a table, on purpose: the guard reads each
//! route's roles from its OpenAPI annotation, so a changed annotation changes who may call
//! the route, and this table makes that a deliberate, reviewed change of the tests too.
//! The table must name exactly the operations the document has, so a new route cannot be
//! added without deciding here who may call it.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::Router;
use serde_json::{json, Value};

use amtsbuch_api::hub::HubLimits;
use amtsbuch_api::router::{self, Access, AccessTable};
use amtsbuch_domain::access::Role::{self, *};

mod common;
use common::{Reply, Samples, SseReader};

/// Who may call an operation.
#[derive(Debug, Clone, Copy)]
enum Allowed {
    Public,
    Roles(&'static [Role]),
}
use Allowed::{Public, Roles};

const EVERY_ROLE: &[Role] = &Role::ALL;

/// The expected access of every operation: (method, path as documented, who).
const TABLE: &[(&str, &str, Allowed)] = &[
    ("GET", "/healthz", Public),
    ("GET", "/readyz", Public),
    ("GET", "/openapi.json", Public),
    ("GET", "/metrics", Public),
    ("GET", "/streams/{stream}/events", Roles(&[Operator])),
    ("POST", "/streams/{stream}/events", Roles(&[Operator])),
    ("GET", "/events", Roles(&[Operator])),
    (
        "GET",
        "/events/stream",
        Roles(&[Authority, Fachverfahren, Auditor, Operator]),
    ),
    ("GET", "/events/{id}/record", Roles(&[Auditor, Operator])),
    ("GET", "/streams", Roles(&[Operator])),
    (
        "PUT",
        "/subscriptions/nats/{name}",
        Roles(&[Fachverfahren, Operator]),
    ),
    ("GET", "/events/{id}/receipt", Roles(&[Auditor, Operator])),
    ("GET", "/ledger/checkpoint", Roles(EVERY_ROLE)),
    ("GET", "/ledger/checkpoints/{size}", Roles(EVERY_ROLE)),
    ("GET", "/ledger/key", Roles(EVERY_ROLE)),
    (
        "GET",
        "/ledger/proof/inclusion",
        Roles(&[Auditor, Operator]),
    ),
    (
        "GET",
        "/ledger/proof/consistency",
        Roles(&[Auditor, Operator]),
    ),
    ("GET", "/ledger/export", Roles(&[Auditor, Operator])),
    // Servicekonto accounts: the Servicekonto back end opens them and links identities as
    // an operator; a citizen reads and changes its own (the handlers check the account).
    ("POST", "/accounts", Roles(&[Operator])),
    ("GET", "/accounts/{id}", Roles(&[Citizen, Dpo, Operator])),
    (
        "PUT",
        "/accounts/{id}/master-data",
        Roles(&[Citizen, Operator]),
    ),
    ("POST", "/accounts/{id}/identity-links", Roles(&[Operator])),
    (
        "POST",
        "/accounts/{id}/deletion-request",
        Roles(&[Citizen, Operator]),
    ),
    // Consents: given, changed and withdrawn by the citizen (or entered by staff of the
    // Servicekonto from paper), revoked by the data protection officer.
    ("POST", "/consents", Roles(&[Citizen, Operator])),
    ("GET", "/consents", Roles(&[Citizen])),
    ("GET", "/consents/{id}", Roles(&[Citizen, Dpo])),
    (
        "POST",
        "/consents/{id}/withdrawal",
        Roles(&[Citizen, Operator]),
    ),
    (
        "POST",
        "/consents/{id}/renewal",
        Roles(&[Citizen, Operator]),
    ),
    ("POST", "/consents/{id}/scope", Roles(&[Citizen, Operator])),
    ("POST", "/consents/{id}/revocation", Roles(&[Dpo])),
    ("GET", "/consents/{id}/receipt", Roles(&[Citizen, Dpo])),
    // A disclosure is asked for by whoever wants to use the data: the recipient is the
    // authority its token is bound to.
    ("POST", "/disclosures", Roles(&[Authority, Fachverfahren])),
    ("GET", "/dpo/subjects/{subject}/consents", Roles(&[Dpo])),
    ("GET", "/dpo/subjects/{subject}/disclosures", Roles(&[Dpo])),
    ("GET", "/dpo/subjects/{subject}/export", Roles(&[Dpo])),
    ("POST", "/dpo/subjects/{subject}/erasure", Roles(&[Dpo])),
    ("GET", "/dpo/processing", Roles(&[Dpo])),
    ("GET", "/dpo/consents/expiring", Roles(&[Dpo])),
    ("POST", "/retention-holds", Roles(&[Dpo, Operator])),
    (
        "POST",
        "/retention-holds/{id}/release",
        Roles(&[Dpo, Operator]),
    ),
];

fn document() -> Value {
    serde_json::to_value(router::openapi()).expect("document as JSON")
}

#[test]
fn the_table_names_exactly_the_documented_operations() {
    let documented: BTreeSet<(String, String)> = common::documented_operations(&document())
        .into_iter()
        .collect();
    let tabled: BTreeSet<(String, String)> = TABLE
        .iter()
        .map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(
        tabled.len(),
        TABLE.len(),
        "the table names an operation twice"
    );
    let untabled: Vec<_> = documented.difference(&tabled).collect();
    assert!(
        untabled.is_empty(),
        "operations of the OpenAPI document without an entry in TABLE (decide who may call them and add them): {untabled:?}"
    );
    let undocumented: Vec<_> = tabled.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "TABLE names operations the OpenAPI document does not have: {undocumented:?}"
    );
}

#[test]
fn the_guard_reads_the_same_access_from_the_document() {
    let doc = router::openapi();
    let access = AccessTable::from_openapi(&doc);
    assert_eq!(access.iter().count(), TABLE.len(), "{access:?}");
    for (method, path, allowed) in TABLE {
        let method = method.parse().expect("method");
        let read = access.get(&method, path);
        match allowed {
            Public => assert_eq!(read, Some(&Access::Public), "{method} {path}"),
            Roles(roles) => {
                let Some(Access::Roles(read)) = read else {
                    panic!("{method} {path}: the guard reads {read:?}");
                };
                let read: BTreeSet<Role> = read.iter().copied().collect();
                let expected: BTreeSet<Role> = roles.iter().copied().collect();
                assert_eq!(read, expected, "{method} {path}");
            }
        }
    }
}

struct TestApp {
    app: Router,
    samples: Samples,
    _store: common::TempStore,
    _runner: amtsbuch_projections::RunnerHandle,
}

/// A signing server with a few events and a checkpoint covering them, personal data
/// enabled and the GDPR samples seeded: the citizen's account, a consent of it and a hold
/// on it. So a role that may call a GDPR route gets past the handler's own checks (a
/// citizen owns the sample account and consent) instead of stopping at a 404.
async fn app() -> TestApp {
    let store = common::temp_store("access").await;
    let ledger = common::start_ledger(&store.store);
    let event_id = common::append_consents(&store.store, 3).await;
    let checkpoint_size = common::wait_for_checkpoint(&store.store, 3).await;
    let mut state = common::state_with(&store.store, Some(ledger), HubLimits::default()).await;
    state.sealer = Some(common::sealer(&store.store, store.dir()));
    let runner = amtsbuch_projections::spawn(store.store.clone(), amtsbuch_projections::all());
    let app = router::router(state.clone());
    let mut samples = Samples::new(event_id, checkpoint_size, "amtsbuch");
    common::seed_gdpr(&app, &state, &mut samples).await;
    TestApp {
        app,
        samples,
        _store: store,
        _runner: runner,
    }
}

impl TestApp {
    async fn call(&self, method: &str, path: &str, token: Option<&str>) -> Reply {
        common::send(&self.app, self.samples.request(method, path, token)).await
    }
}

fn assert_unauthorized(reply: &Reply, challenge: &str, what: &str) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{what}");
    assert_eq!(reply.media_type(), "application/problem+json", "{what}");
    assert_eq!(
        reply.json()["type"],
        "urn:amtsbuch:problem:unauthorized",
        "{what}"
    );
    assert_eq!(
        reply.header(header::WWW_AUTHENTICATE),
        Some(challenge),
        "{what}"
    );
}

/// The roles a 403 problem says may use the route.
fn roles_named(detail: &str) -> BTreeSet<Role> {
    let (_, rest) = detail
        .split_once("may be used by the roles ")
        .unwrap_or_else(|| panic!("the detail names no roles: {detail:?}"));
    let (list, _) = rest.split_once(';').unwrap_or((rest, ""));
    list.split(", ")
        .map(|name| name.parse().expect("a role name"))
        .collect()
}

#[tokio::test]
async fn every_operation_admits_exactly_its_roles() {
    let app = app().await;
    let mut cells = 0;
    for (method, path, allowed) in TABLE {
        for role in Role::ALL {
            let what = format!("{method} {path} as {role}");
            let reply = app.call(method, path, Some(&common::token(role))).await;
            cells += 1;
            match allowed {
                Roles(roles) if !roles.contains(&role) => {
                    assert_eq!(reply.status, StatusCode::FORBIDDEN, "{what}");
                    assert_eq!(reply.media_type(), "application/problem+json", "{what}");
                    let body = reply.json();
                    assert_eq!(body["type"], "urn:amtsbuch:problem:forbidden", "{what}");
                    assert_eq!(body["status"], 403, "{what}");
                    let detail = body["detail"].as_str().expect("detail");
                    assert_eq!(
                        roles_named(detail),
                        roles.iter().copied().collect(),
                        "{what}: {detail}"
                    );
                }
                _ => assert!(
                    ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&reply.status),
                    "{what}: {} {}",
                    reply.status,
                    reply.json()
                ),
            }
        }
        let what = format!("{method} {path} without a token");
        let reply = app.call(method, path, None).await;
        cells += 1;
        match allowed {
            Public => assert!(
                reply.status.is_success(),
                "{what}: {} {}",
                reply.status,
                reply.json()
            ),
            Roles(_) => assert_unauthorized(&reply, "Bearer", &what),
        }
    }
    assert_eq!(cells, TABLE.len() * (Role::ALL.len() + 1));
}

#[tokio::test]
async fn expired_and_foreign_tokens_are_refused_on_every_protected_route() {
    let app = app().await;
    for (method, path, allowed) in TABLE {
        for (kind, token) in [
            ("expired", common::expired(Operator)),
            (
                "signed by another development key",
                common::signed_by_a_stranger(Operator),
            ),
            ("of an unknown key", common::of_an_unknown_key(Operator)),
        ] {
            let what = format!("{method} {path} with a token {kind}");
            let reply = app.call(method, path, Some(&token)).await;
            match allowed {
                // A public route does not look at tokens at all.
                Public => assert!(reply.status.is_success(), "{what}: {}", reply.status),
                Roles(_) => assert_unauthorized(&reply, "Bearer error=\"invalid_token\"", &what),
            }
        }
    }
    // The tokens are refused for what they are, not for some other defect: the same
    // operator token, freshly minted with the right key, is accepted.
    let reply = app
        .call("GET", "/events", Some(&common::token(Operator)))
        .await;
    assert_eq!(reply.status, StatusCode::OK);
    let expired = app
        .call("GET", "/events", Some(&common::expired(Operator)))
        .await;
    assert!(
        expired.json()["detail"]
            .as_str()
            .is_some_and(|d| d.contains("expired")),
        "{}",
        expired.json()
    );
}

// ---------------------------------------------------------------------------------------
// What each role sees of the log through `GET /events/stream`

const WOHNGELD: &str = "99108001000000";
const PARKEN: &str = "99050012104000";

/// One event of a batch: a label to recognise it by, and the metadata that decides who
/// sees it.
struct Routed {
    label: &'static str,
    authority: Option<&'static str>,
    tenant: Option<&'static str>,
    service: Option<&'static str>,
}

const fn routed(
    label: &'static str,
    authority: Option<&'static str>,
    tenant: Option<&'static str>,
    service: Option<&'static str>,
) -> Routed {
    Routed {
        label,
        authority,
        tenant,
        service,
    }
}

/// The events of one batch.
const MIX: &[Routed] = &[
    routed(
        "meissen-14627-wohngeld",
        Some("lra-meissen"),
        Some("14627010"),
        Some(WOHNGELD),
    ),
    routed(
        "meissen-14612-wohngeld",
        Some("lra-meissen"),
        Some("14612000"),
        Some(WOHNGELD),
    ),
    routed(
        "bautzen-14627-wohngeld",
        Some("lra-bautzen"),
        Some("14627010"),
        Some(WOHNGELD),
    ),
    routed(
        "meissen-14627-parken",
        Some("lra-meissen"),
        Some("14627010"),
        Some(PARKEN),
    ),
    routed("unrouted", None, Some("14627010"), Some(WOHNGELD)),
    routed("meissen-untenanted", Some("lra-meissen"), None, None),
    routed(
        "meissen-untenanted-wohngeld",
        Some("lra-meissen"),
        None,
        Some(WOHNGELD),
    ),
];

/// Append one batch of `MIX` through the API, each label suffixed with `batch`.
async fn append_mix(app: &Router, batch: &str) {
    let events: Vec<Value> = MIX
        .iter()
        .map(|event| {
            let mut metadata = serde_json::Map::new();
            if let Some(a) = event.authority {
                metadata.insert("authority".into(), json!(a));
            }
            if let Some(t) = event.tenant {
                metadata.insert("tenant".into(), json!(t));
            }
            if let Some(s) = event.service {
                metadata.insert("service".into(), json!(s));
            }
            let label = format!("{}/{batch}", event.label);
            json!({ "type": "ApplicationSubmitted", "data": { "label": label }, "metadata": metadata })
        })
        .collect();
    let reply = common::send(
        app,
        common::request(
            "POST",
            "/streams/application-1/events",
            Some(&common::token(Operator)),
            Body::from(Value::Array(events).to_string()),
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.json());
}

/// Read `labels.len()` frames and check they are exactly the events labelled `labels` of
/// `batch`, in position order.
async fn expect_labels(reader: &mut SseReader, who: &str, batch: &str, labels: &[&str]) {
    let frames = reader.frames(labels.len()).await;
    let mut last = 0;
    let mut seen = Vec::new();
    for frame in &frames {
        assert_eq!(frame.event.as_deref(), Some("event"), "{who}: {frame:?}");
        let event = frame.json();
        assert_eq!(event["position"], frame.position(), "{who}");
        assert!(frame.position() > last, "{who}: out of order");
        last = frame.position();
        seen.push(event["data"]["label"].as_str().expect("label").to_owned());
    }
    let expected: Vec<String> = labels.iter().map(|l| format!("{l}/{batch}")).collect();
    assert_eq!(seen, expected, "{who}");
}

#[tokio::test]
async fn each_caller_sees_exactly_its_events_in_catch_up_and_live() {
    let store = common::temp_store("access-sse").await;
    let app = router::router(common::state_with(&store.store, None, HubLimits::default()).await);
    append_mix(&app, "before").await;

    let meissen_officials_14627 = [
        "meissen-14627-wohngeld",
        "meissen-14627-parken",
        "meissen-untenanted",
        "meissen-untenanted-wohngeld",
    ];
    let everything: Vec<&str> = MIX.iter().map(|event| event.label).collect();
    let callers: Vec<(&str, String, Vec<&str>)> = vec![
        (
            "an official of Meißen for 14627",
            common::official("lra-meissen", &["14627"]),
            meissen_officials_14627.to_vec(),
        ),
        (
            "an official of another authority (Bautzen) for 14627",
            common::official("lra-bautzen", &["14627"]),
            vec!["bautzen-14627-wohngeld"],
        ),
        (
            "an official of Meißen whose region 14612 does not cover 14627",
            common::official("lra-meissen", &["14612"]),
            vec![
                "meissen-14612-wohngeld",
                "meissen-untenanted",
                "meissen-untenanted-wohngeld",
            ],
        ),
        (
            "the Wohngeld system of Meißen",
            common::token_for(Fachverfahren, "lra-meissen", &[WOHNGELD]),
            vec![
                "meissen-14627-wohngeld",
                "meissen-14612-wohngeld",
                "meissen-untenanted-wohngeld",
            ],
        ),
        (
            "the parking system of Meißen (another service)",
            common::token_for(Fachverfahren, "lra-meissen", &[PARKEN]),
            vec!["meissen-14627-parken"],
        ),
        (
            "the Wohngeld system of another authority (Bautzen)",
            common::token_for(Fachverfahren, "lra-bautzen", &[WOHNGELD]),
            vec!["bautzen-14627-wohngeld"],
        ),
        ("an auditor", common::token(Auditor), everything.clone()),
        ("an operator", common::token(Operator), everything.clone()),
    ];

    let mut readers = Vec::new();
    for (who, token, labels) in &callers {
        let response = common::call(
            &app,
            common::request("GET", "/events/stream", Some(token), Body::empty()),
        )
        .await;
        let mut reader = SseReader::new(response);
        // Catch-up from the log.
        expect_labels(&mut reader, who, "before", labels).await;
        readers.push(reader);
    }
    // Live delivery through the hub.
    append_mix(&app, "after").await;
    for ((who, _, labels), reader) in callers.iter().zip(&mut readers) {
        expect_labels(reader, who, "after", labels).await;
    }
    for ((who, ..), reader) in callers.iter().zip(&mut readers) {
        match reader.next(Duration::from_millis(300)).await {
            common::Next::Quiet => {}
            other => panic!("{who} was sent more than its events: {other:?}"),
        }
    }
}

#[tokio::test]
async fn tokens_that_may_not_subscribe_see_nothing() {
    let store = common::temp_store("access-sse-refused").await;
    let app = router::router(common::state_with(&store.store, None, HubLimits::default()).await);
    append_mix(&app, "only").await;
    for (who, token, status) in [
        ("a citizen", common::token(Citizen), StatusCode::FORBIDDEN),
        ("a DPO", common::token(Dpo), StatusCode::FORBIDDEN),
        (
            "an expired official",
            common::expired(Authority),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "an official signed by another key",
            common::signed_by_a_stranger(Authority),
            StatusCode::UNAUTHORIZED,
        ),
    ] {
        let reply = common::send(
            &app,
            common::request("GET", "/events/stream", Some(&token), Body::empty()),
        )
        .await;
        assert_eq!(reply.status, status, "{who}");
        assert_eq!(reply.media_type(), "application/problem+json", "{who}");
        let body = String::from_utf8_lossy(&reply.bytes).into_owned();
        assert!(!body.contains("/only"), "{who} was shown an event: {body}");
    }
}

#[tokio::test]
async fn head_requests_are_guarded_like_their_get_route() {
    let app = app().await;
    let mut seen = HashSet::new();
    for (method, path, allowed) in TABLE {
        if *method != "GET" || !seen.insert(*path) {
            continue;
        }
        let no_token = app.call("HEAD", path, None).await;
        let citizen = app.call("HEAD", path, Some(&common::token(Citizen))).await;
        let what = format!("HEAD {path}");
        match allowed {
            Public => {
                assert!(no_token.status.is_success(), "{what}: {}", no_token.status);
            }
            Roles(roles) => {
                assert_eq!(no_token.status, StatusCode::UNAUTHORIZED, "{what}");
                // The operator where it may, otherwise the first role that may.
                let admitted = if roles.contains(&Operator) {
                    Operator
                } else {
                    roles[0]
                };
                let reply = app.call("HEAD", path, Some(&common::token(admitted))).await;
                assert!(
                    ![StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN].contains(&reply.status),
                    "{what} as {admitted}: {}",
                    reply.status
                );
                let expected = if roles.contains(&Citizen) {
                    !matches!(citizen.status, StatusCode::FORBIDDEN)
                } else {
                    citizen.status == StatusCode::FORBIDDEN
                };
                assert!(expected, "{what} as citizen: {}", citizen.status);
            }
        }
    }
}
