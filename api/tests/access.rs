//! Who may call what: every operation of the OpenAPI document against every role, every
//! pair of roles held by one token, and no token, for the caller's own data subject and
//! for another's, checked through the router; plus what each role sees of the event log
//! through `GET /events/stream`.
//!
//! The expected access is written out as a table, on purpose: the guard reads each route's
//! roles from its OpenAPI annotation, so a changed annotation changes who may call the
//! route, and the table makes that a deliberate, reviewed change of the tests too. The
//! core's rows are below; every domain module adds its own (`TestSupport::access`). The
//! table must name exactly the operations the document has, so a new route cannot be
//! added without deciding who may call it, and whose data each of its roles reaches.
//!
//! The rule the combinations check: a token passes a route if ANY of its roles that the
//! route lists passes on its own — a second role may add what that role itself may do
//! there, and never lifts a limit of another (a citizen who is also an auditor still acts
//! only for its own account).

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::Router;
use serde_json::{json, Value};

use amtsbuch_api::hub::HubLimits;
use amtsbuch_api::module::Target::{self, Nobody};
use amtsbuch_api::router::{self, Access, AccessTable};
use amtsbuch_domain::access::Role::{self, *};

use amtsbuch_testkit_api as common;
use common::{Reply, Samples, SseReader};

/// Who may call an operation.
#[derive(Debug, Clone, Copy)]
enum Allowed {
    Public,
    Roles(&'static [Role]),
}
use Allowed::{Public, Roles};

const EVERY_ROLE: &[Role] = &Role::ALL;

/// A citizen acts for its own account; the operation's other roles for anybody's.
const OWN_FOR_CITIZENS: Target = Target::Subject {
    own_only: &[Citizen],
};

/// The expected access of every operation of the core: (method, path as documented, who,
/// whose data).
const CORE: &[(&str, &str, Allowed, Target)] = &[
    ("GET", "/healthz", Public, Nobody),
    ("GET", "/readyz", Public, Nobody),
    ("GET", "/openapi.json", Public, Nobody),
    ("GET", "/metrics", Public, Nobody),
    (
        "GET",
        "/streams/{stream}/events",
        Roles(&[Operator]),
        Nobody,
    ),
    (
        "POST",
        "/streams/{stream}/events",
        Roles(&[Operator]),
        Nobody,
    ),
    ("GET", "/events", Roles(&[Operator]), Nobody),
    (
        "GET",
        "/events/stream",
        Roles(&[Authority, Fachverfahren, Auditor, Operator]),
        Nobody,
    ),
    (
        "GET",
        "/events/{id}/record",
        Roles(&[Auditor, Operator]),
        Nobody,
    ),
    ("GET", "/streams", Roles(&[Operator]), Nobody),
    (
        "PUT",
        "/subscriptions/nats/{name}",
        Roles(&[Fachverfahren, Operator]),
        Nobody,
    ),
    (
        "GET",
        "/events/{id}/receipt",
        Roles(&[Auditor, Operator]),
        Nobody,
    ),
    ("GET", "/ledger/checkpoint", Roles(EVERY_ROLE), Nobody),
    (
        "GET",
        "/ledger/checkpoints/{size}",
        Roles(EVERY_ROLE),
        Nobody,
    ),
    ("GET", "/ledger/key", Roles(EVERY_ROLE), Nobody),
    (
        "GET",
        "/ledger/proof/inclusion",
        Roles(&[Auditor, Operator]),
        Nobody,
    ),
    (
        "GET",
        "/ledger/proof/consistency",
        Roles(&[Auditor, Operator]),
        Nobody,
    ),
    ("GET", "/ledger/export", Roles(&[Auditor, Operator]), Nobody),
];

/// The expected access of every operation: the core's rows and every domain module's.
fn table() -> Vec<(&'static str, &'static str, Allowed, Target)> {
    let mut table = CORE.to_vec();
    for module in amtsbuch_api::domains::MODULES {
        table.extend(module.tests.access.iter().map(|row| {
            let allowed = row.roles.map_or(Public, Roles);
            (row.method, row.path, allowed, row.target)
        }));
    }
    table
}

fn document() -> Value {
    serde_json::to_value(router::openapi()).expect("document as JSON")
}

#[test]
fn the_table_names_exactly_the_documented_operations() {
    let documented: BTreeSet<(String, String)> = common::documented_operations(&document())
        .into_iter()
        .collect();
    let table = table();
    let tabled: BTreeSet<(String, String)> = table
        .iter()
        .map(|(m, p, ..)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(
        tabled.len(),
        table.len(),
        "the table names an operation twice"
    );
    let untabled: Vec<_> = documented.difference(&tabled).collect();
    assert!(
        untabled.is_empty(),
        "operations of the OpenAPI document without an entry in the table (decide who may call them and add them to CORE or to their module's TestSupport::access): {untabled:?}"
    );
    let undocumented: Vec<_> = tabled.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "the table names operations the OpenAPI document does not have: {undocumented:?}"
    );
}

#[test]
fn the_guard_reads_the_same_access_from_the_document() {
    let doc = router::openapi();
    let access = AccessTable::from_openapi(&doc);
    let table = table();
    assert_eq!(access.iter().count(), table.len(), "{access:?}");
    for (method, path, allowed, _) in &table {
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
    /// The citizen's account (the one its token is bound to), its consent and its hold.
    own: Samples,
    /// Another subject's account, consent and hold.
    other: Samples,
    _store: common::TempStore,
    _runner: amtsbuch_projections::RunnerHandle,
}

/// A signing server with a few events and a checkpoint covering them, personal data
/// enabled and every domain module's samples seeded for two subjects: the citizen's
/// account and another (for the GDPR domain each with a consent and a hold that the tests
/// may release). So a role that may call a module's route gets past the handler's own
/// checks (a citizen owns its sample account and consent) instead of stopping at a 404.
/// The modules also keep their samples from being removed for good (for the GDPR domain,
/// a second hold that nothing releases), so that no erasure in the matrix removes a
/// subject the later rows need.
async fn app() -> TestApp {
    let store = common::temp_store().await;
    let ledger = common::start_ledger(&store.store);
    let event_id = common::append_consents(&store.store, 3).await;
    let checkpoint_size = common::wait_for_checkpoint(&store.store, 3).await;
    let mut state = common::state_with(&store.store, Some(ledger), HubLimits::default()).await;
    state.sealer = Some(common::sealer(&store.store, store.dir()));
    let runner =
        amtsbuch_projections::spawn(store.store.clone(), amtsbuch_api::domains::projections());
    let app = router::router(state.clone());
    let mut own = Samples::new(event_id, checkpoint_size, "amtsbuch");
    let mut other =
        Samples::of_subject(event_id, checkpoint_size, "amtsbuch", common::OTHER_ACCOUNT);
    for samples in [&mut own, &mut other] {
        common::seed(&app, &state, samples).await;
        common::keep(&app, &state, samples).await;
    }
    TestApp {
        app,
        own,
        other,
        _store: store,
        _runner: runner,
    }
}

impl TestApp {
    /// Call `method path` with the citizen's own samples.
    async fn call(&self, method: &str, path: &str, token: Option<&str>) -> Reply {
        self.call_on(&self.own, method, path, token).await
    }

    async fn call_on(
        &self,
        samples: &Samples,
        method: &str,
        path: &str,
        token: Option<&str>,
    ) -> Reply {
        common::send(&self.app, samples.request(method, path, token)).await
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

/// What a caller holding `roles` must get from an operation, on its own data subject or
/// (`foreign`) on another's.
#[derive(Debug, PartialEq)]
enum Expected {
    /// Past the guard and the handler's own checks: neither 401 nor 403.
    Admitted,
    /// 403 from the guard, which names the operation's roles.
    NotItsRoute(BTreeSet<Role>),
    /// 403 from the handler: the roles the route lets in do not reach this subject.
    NotItsSubject,
    /// 404 from the handler, as if there were nothing: the roles the route lets in do not
    /// reach this subject, whose data is hidden from them.
    Unseen,
}

/// A token passes if any one of its roles that the operation lists passes by itself;
/// its other roles change nothing.
fn expected(allowed: Allowed, target: Target, roles: &[Role], foreign: bool) -> Expected {
    let Roles(route) = allowed else {
        return Expected::Admitted;
    };
    let granted: Vec<Role> = roles
        .iter()
        .copied()
        .filter(|r| route.contains(r))
        .collect();
    if granted.is_empty() {
        return Expected::NotItsRoute(route.iter().copied().collect());
    }
    match target {
        Target::Subject { own_only } if foreign => {
            if granted.iter().any(|r| !own_only.contains(r)) {
                Expected::Admitted
            } else {
                Expected::NotItsSubject
            }
        }
        Target::HiddenSubject { own_only } if foreign => {
            if granted.iter().any(|r| !own_only.contains(r)) {
                Expected::Admitted
            } else {
                Expected::Unseen
            }
        }
        _ => Expected::Admitted,
    }
}

#[test]
fn the_rule_of_combinations_reads_as_intended() {
    let master_data = (Roles(&[Citizen, Operator]), OWN_FOR_CITIZENS);
    let check = |roles: &[Role], foreign| expected(master_data.0, master_data.1, roles, foreign);
    assert_eq!(check(&[Citizen], false), Expected::Admitted);
    assert_eq!(check(&[Citizen], true), Expected::NotItsSubject);
    assert_eq!(check(&[Citizen, Auditor], true), Expected::NotItsSubject);
    assert_eq!(check(&[Citizen, Operator], true), Expected::Admitted);
    assert!(matches!(
        check(&[Auditor, Dpo], false),
        Expected::NotItsRoute(_)
    ));
    let hidden = Target::HiddenSubject {
        own_only: &[Citizen],
    };
    let route = Roles(&[Citizen, Authority]);
    assert_eq!(expected(route, hidden, &[Citizen], true), Expected::Unseen);
    assert_eq!(
        expected(route, hidden, &[Citizen], false),
        Expected::Admitted
    );
    assert_eq!(
        expected(route, hidden, &[Citizen, Authority], true),
        Expected::Admitted
    );
}

/// The table's `Target` agrees with the samples: an operation acts on a data subject
/// exactly when the citizen's samples and the other subject's send different requests.
#[tokio::test]
async fn the_table_knows_which_operations_act_on_a_subject() {
    let app = app().await;
    for (method, path, _, target) in table() {
        let differs = app.own.uri(path) != app.other.uri(path)
            || app.own.body(method, path) != app.other.body(method, path);
        assert_eq!(
            matches!(
                target,
                Target::Subject { .. } | Target::HiddenSubject { .. }
            ),
            differs,
            "{method} {path}: the table says {target:?}"
        );
    }
}

#[tokio::test]
async fn every_operation_admits_exactly_its_roles_in_every_combination() {
    let app = app().await;
    let tokens: Vec<(Vec<Role>, String)> = common::role_sets()
        .into_iter()
        .map(|roles| {
            let token = common::token_of(&roles);
            (roles, token)
        })
        .collect();
    let mut cells = 0;
    let mut expected_cells = 0;
    let mut failures = Vec::new();
    for (method, path, allowed, target) in table() {
        let subjects: &[(&Samples, bool)] = match target {
            Nobody => &[(&app.own, false)],
            Target::Subject { .. } | Target::HiddenSubject { .. } => {
                &[(&app.own, false), (&app.other, true)]
            }
        };
        expected_cells += subjects.len() * tokens.len() + 1;
        for &(samples, foreign) in subjects {
            for (roles, token) in &tokens {
                let whose = if foreign { "another's" } else { "its own" };
                let what = format!("{method} {path} with roles {roles:?} on {whose} subject");
                let reply = app.call_on(samples, method, path, Some(token)).await;
                cells += 1;
                if let Some(wrong) = judge(&reply, expected(allowed, target, roles, foreign)) {
                    failures.push(format!("{what}: {wrong}"));
                }
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
    assert!(
        failures.is_empty(),
        "{} of {cells} calls were answered wrongly:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert_eq!(cells, expected_cells);
    let n = Role::ALL.len();
    assert_eq!(
        tokens.len(),
        n + n * (n - 1) / 2,
        "each role alone and every pair"
    );
}

/// What is wrong with `reply` when `expected` was due, if anything.
fn judge(reply: &Reply, expected: Expected) -> Option<String> {
    let got = || {
        let body: String = reply.json().to_string().chars().take(160).collect();
        format!("{} {body}", reply.status)
    };
    let refused = match expected {
        Expected::Admitted => {
            return [StatusCode::UNAUTHORIZED, StatusCode::FORBIDDEN]
                .contains(&reply.status)
                .then(|| format!("refused: {}", got()));
        }
        Expected::Unseen => {
            let body = reply.json();
            return (reply.status != StatusCode::NOT_FOUND
                || reply.media_type() != "application/problem+json"
                || body["type"] != "urn:amtsbuch:problem:not-found")
                .then(|| format!("not answered with a 404 problem: {}", got()));
        }
        refused => refused,
    };
    let body = reply.json();
    if reply.status != StatusCode::FORBIDDEN
        || reply.media_type() != "application/problem+json"
        || body["type"] != "urn:amtsbuch:problem:forbidden"
        || body["status"] != 403
    {
        return Some(format!("not refused with a 403 problem: {}", got()));
    }
    if let Expected::NotItsRoute(route) = refused {
        let detail = body["detail"].as_str().unwrap_or_default();
        if !detail.contains("may be used by the roles ") || roles_named(detail) != route {
            return Some(format!(
                "the refusal names other roles than {route:?}: {detail}"
            ));
        }
    }
    None
}

#[tokio::test]
async fn expired_and_foreign_tokens_are_refused_on_every_protected_route() {
    let app = app().await;
    for (method, path, allowed, _) in table() {
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
    let store = common::temp_store().await;
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
        // A role adds what it sees itself; the citizen and DPO roles see no raw events,
        // and widen nothing of the other role.
        (
            "a citizen who is also an official of Meißen for 14627",
            common::token_of(&[Citizen, Authority]),
            meissen_officials_14627.to_vec(),
        ),
        (
            "a DPO and citizen who is also the Wohngeld system of Meißen",
            common::token_of(&[Citizen, Dpo, Fachverfahren]),
            vec![
                "meissen-14627-wohngeld",
                "meissen-14612-wohngeld",
                "meissen-untenanted-wohngeld",
            ],
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
    let store = common::temp_store().await;
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
    for (method, path, allowed, _) in table() {
        if method != "GET" || !seen.insert(path) {
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

// ---------------------------------------------------------------------------------------
// A NATS consumer belongs to one authority

/// The filter subjects of the consumer `name`, as the NATS server holds them.
async fn consumer_filters(nats: &common::TestNats, name: &str) -> Vec<String> {
    let context = amtsbuch_infra::relay::connect(&nats.config)
        .await
        .expect("NATS");
    let stream = context
        .get_stream(&nats.config.stream)
        .await
        .expect("stream");
    let info = stream.consumer_info(name).await.expect("consumer");
    if info.config.filter_subject.is_empty() {
        info.config.filter_subjects.clone()
    } else {
        vec![info.config.filter_subject.clone()]
    }
}

/// Authority ids may contain `-`, so `lra` is a prefix of `lra-meissen`: the consumers of
/// `lra-meissen` (`lra-meissen-<name>`) must not be `lra`'s to change, nor to take before
/// `lra-meissen` sets them up. Against the NATS server of the tests.
#[tokio::test]
async fn a_fachverfahren_changes_only_its_own_authoritys_consumers() {
    let store = common::temp_store().await;
    let nats = common::TestNats::create().await;
    let mut state = common::state_with(&store.store, None, HubLimits::default()).await;
    state.nats = Some(std::sync::Arc::new(amtsbuch_api::state::NatsLink::new(
        nats.config.clone(),
    )));
    let app = router::router(state);
    let prefix = nats.config.prefix.to_string();
    let put = |token: String, name: &'static str, body: Value| {
        let app = app.clone();
        async move {
            let mut request = common::request(
                "PUT",
                &format!("/subscriptions/nats/{name}"),
                Some(&token),
                Body::from(body.to_string()),
            );
            request.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            common::send(&app, request).await
        }
    };
    let meissen = || common::token_for(Fachverfahren, "lra-meissen", &[WOHNGELD]);
    let lra = || common::token_for(Fachverfahren, "lra", &[PARKEN]);
    let meissen_filters = vec![format!("{prefix}.*.lra-meissen.*.{WOHNGELD}")];
    let lra_filters = vec![format!("{prefix}.*.lra.*.{PARKEN}")];

    let made = put(meissen(), "lra-meissen-wohngeld", json!({})).await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.json());
    assert_eq!(
        consumer_filters(&nats, "lra-meissen-wohngeld").await,
        meissen_filters
    );

    // `lra` can neither rewrite lra-meissen's consumer nor take a name of lra-meissen's
    // that is still free.
    for name in ["lra-meissen-wohngeld", "lra-meissen-spaeter"] {
        let refused = put(lra(), name, json!({})).await;
        assert_eq!(
            refused.status,
            StatusCode::FORBIDDEN,
            "{name}: {}",
            refused.json()
        );
        assert_eq!(refused.media_type(), "application/problem+json");
        assert_eq!(refused.json()["type"], "urn:amtsbuch:problem:forbidden");
    }
    assert_eq!(
        consumer_filters(&nats, "lra-meissen-wohngeld").await,
        meissen_filters,
        "the consumer is unchanged"
    );
    let context = amtsbuch_infra::relay::connect(&nats.config)
        .await
        .expect("NATS");
    let stream = context
        .get_stream(&nats.config.stream)
        .await
        .expect("stream");
    assert!(
        stream.consumer_info("lra-meissen-spaeter").await.is_err(),
        "no consumer was made under lra-meissen's name"
    );

    // Its own names it may use; a name ends in one part after the authority, so that the
    // authority is what comes before the last `-`.
    let own = put(lra(), "lra-parken", json!({})).await;
    assert_eq!(own.status, StatusCode::OK, "{}", own.json());
    assert_eq!(consumer_filters(&nats, "lra-parken").await, lra_filters);
    for name in ["lra-meissen-wohn-geld", "lra-", "lra"] {
        let refused = put(meissen(), name, json!({})).await;
        assert_eq!(
            refused.status,
            StatusCode::FORBIDDEN,
            "{name}: {}",
            refused.json()
        );
    }

    // A token that is Fachverfahren and operator at once acts as the Fachverfahren when it
    // names no filters, and as the operator when it does.
    let both = common::signed(&common::request_of(
        &[Fachverfahren, Operator],
        "lra-meissen",
        &[WOHNGELD],
    ));
    let as_fachverfahren = put(both.clone(), "lra-meissen-beides", json!({})).await;
    assert_eq!(
        as_fachverfahren.status,
        StatusCode::OK,
        "{}",
        as_fachverfahren.json()
    );
    assert_eq!(
        consumer_filters(&nats, "lra-meissen-beides").await,
        meissen_filters
    );
    let everything = vec![format!("{prefix}.>")];
    let as_operator = put(both, "ops_all", json!({ "filter_subjects": everything })).await;
    assert_eq!(as_operator.status, StatusCode::OK, "{}", as_operator.json());
    assert_eq!(consumer_filters(&nats, "ops_all").await, everything);
    // The operator may change any consumer, the Fachverfahren's too.
    let rewritten = put(
        common::token(Operator),
        "lra-parken",
        json!({ "filter_subjects": everything }),
    )
    .await;
    assert_eq!(rewritten.status, StatusCode::OK, "{}", rewritten.json());
    assert_eq!(consumer_filters(&nats, "lra-parken").await, everything);
}

/// Two Fachverfahren of one authority may handle different services: the consumer one of
/// them set up is its own (its owner is recorded), and the other can neither rewrite its
/// filters to its own services nor take it over. A consumer without a recorded owner (an
/// operator's) is the operators' alone.
async fn a_consumer_belongs_to_the_fachverfahren_that_set_it_up(db: common::TestDb) {
    let nats = common::TestNats::create().await;
    let mut state = common::state_with(&db.store, None, HubLimits::default()).await;
    state.nats = Some(std::sync::Arc::new(amtsbuch_api::state::NatsLink::new(
        nats.config.clone(),
    )));
    let app = router::router(state);
    let prefix = nats.config.prefix.to_string();
    let put = |token: String, name: &'static str, body: Value| {
        let app = app.clone();
        async move {
            let mut request = common::request(
                "PUT",
                &format!("/subscriptions/nats/{name}"),
                Some(&token),
                Body::from(body.to_string()),
            );
            request.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static("application/json"),
            );
            common::send(&app, request).await
        }
    };
    let system = |subject: &str, service: &str| {
        let mut request = common::request_for(Fachverfahren, "lra-meissen", &[service]);
        request.subject = subject.into();
        common::signed(&request)
    };
    let wohngeld = || system("fv-wohngeld", WOHNGELD);
    let parken = || system("fv-parken", PARKEN);
    let wohngeld_filters = vec![format!("{prefix}.*.lra-meissen.*.{WOHNGELD}")];

    let made = put(wohngeld(), "lra-meissen-wohngeld", json!({})).await;
    assert_eq!(made.status, StatusCode::OK, "{}", made.json());
    let refused = put(parken(), "lra-meissen-wohngeld", json!({ "start": "new" })).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.json());
    assert_eq!(refused.media_type(), "application/problem+json");
    assert_eq!(
        consumer_filters(&nats, "lra-meissen-wohngeld").await,
        wohngeld_filters,
        "the Parken system did not redirect the Wohngeld system's consumer"
    );
    // Its owner may set it up again, as after a restart.
    let again = put(wohngeld(), "lra-meissen-wohngeld", json!({})).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.json());

    // A consumer an operator set up has no recorded owner: no Fachverfahren may take it.
    let everything = vec![format!("{prefix}.>")];
    let operators = put(
        common::token(Operator),
        "lra-meissen-gemeinsam",
        json!({ "filter_subjects": everything }),
    )
    .await;
    assert_eq!(operators.status, StatusCode::OK, "{}", operators.json());
    let refused = put(wohngeld(), "lra-meissen-gemeinsam", json!({})).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.json());
    assert_eq!(
        consumer_filters(&nats, "lra-meissen-gemeinsam").await,
        everything
    );
    // And an operator changing a Fachverfahren's consumer does not make it the
    // operator's: its owner still may, the other system still may not.
    let changed = put(
        common::token(Operator),
        "lra-meissen-wohngeld",
        json!({ "filter_subjects": everything }),
    )
    .await;
    assert_eq!(changed.status, StatusCode::OK, "{}", changed.json());
    let refused = put(parken(), "lra-meissen-wohngeld", json!({})).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "{}", refused.json());
    let restored = put(wohngeld(), "lra-meissen-wohngeld", json!({})).await;
    assert_eq!(restored.status, StatusCode::OK, "{}", restored.json());
    assert_eq!(
        consumer_filters(&nats, "lra-meissen-wohngeld").await,
        wohngeld_filters
    );
}

common::on_both_adapters!(a_consumer_belongs_to_the_fachverfahren_that_set_it_up);
