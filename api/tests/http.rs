//! The HTTP API through the router (no sockets): every route, and every way to send it
//! bad input. Each bad request must get an RFC 9457 problem and leave the log unchanged.

use axum::body::Body;
use axum::http::{header, Request, StatusCode};
use axum::Router;
use serde_json::{json, Value};
use tower::ServiceExt;

use amtsbuch_api::{router, AppState};
use amtsbuch_domain::access::Role;

use amtsbuch_infra::{AnyStore, EventStore};
use amtsbuch_testkit_api as common;

struct TestApp {
    app: Router,
    store: AnyStore,
    _db: common::TempStore,
}

async fn app() -> TestApp {
    let db = common::temp_store().await;
    let store = db.store.clone();
    TestApp {
        app: router(
            AppState::new(store.clone(), None, common::authenticator())
                .await
                .expect("state"),
        ),
        store,
        _db: db,
    }
}

struct Reply {
    status: StatusCode,
    content_type: String,
    correlation: Option<String>,
    body: Value,
}

impl TestApp {
    async fn send(&self, request: Request<Body>) -> Reply {
        let response = self.app.clone().oneshot(request).await.expect("infallible");
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let correlation = response
            .headers()
            .get("x-correlation-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let bytes = axum::body::to_bytes(response.into_body(), 16 * 1024 * 1024)
            .await
            .expect("body");
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Reply {
            status,
            content_type,
            correlation,
            body,
        }
    }

    /// A GET as an operator, who may use every raw route.
    async fn get(&self, uri: &str) -> Reply {
        self.send(
            Request::get(uri)
                .header(header::AUTHORIZATION, common::bearer(Role::Operator))
                .body(Body::empty())
                .expect("request"),
        )
        .await
    }

    async fn post(&self, uri: &str, expected: Option<&str>, body: impl Into<Body>) -> Reply {
        let mut r = Request::post(uri)
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::AUTHORIZATION, common::bearer(Role::Operator));
        if let Some(e) = expected {
            r = r.header("Expected-Version", e);
        }
        self.send(r.body(body.into()).expect("request")).await
    }

    async fn head(&self) -> u64 {
        self.store.head().await.expect("head").position
    }
}

fn events(n: usize) -> String {
    let list: Vec<Value> = (0..n)
        .map(|i| json!({ "type": "ConsentGiven", "data": { "n": i } }))
        .collect();
    Value::Array(list).to_string()
}

/// A problem response: right status, the problem media type, a `type` and a `detail`,
/// and the request's correlation id.
fn assert_problem(r: &Reply, status: StatusCode, kind: &str) {
    assert_eq!(r.status, status, "{}", r.body);
    assert_eq!(r.content_type, "application/problem+json");
    assert_eq!(
        r.body["type"],
        format!("urn:amtsbuch:problem:{kind}"),
        "{}",
        r.body
    );
    assert_eq!(r.body["status"], status.as_u16());
    assert!(r.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
    assert!(
        r.correlation
            .as_deref()
            .is_some_and(|c| uuid::Uuid::parse_str(c).is_ok()),
        "{} {kind} without a correlation id",
        r.status
    );
}

#[tokio::test]
async fn health_and_readiness() {
    let app = app().await;
    assert_eq!(app.get("/healthz").await.status, StatusCode::OK);
    let ready = app.get("/readyz").await;
    assert_eq!(ready.status, StatusCode::OK);
    assert_eq!(ready.body["store"], "sqlite");
}

#[tokio::test]
async fn append_then_read_the_stream_and_the_log() {
    let app = app().await;
    let created = app
        .post("/streams/consent-1/events", Some("no-stream"), events(2))
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    assert_eq!(created.body["positions"], json!([1, 2]));
    assert_eq!(created.body["next_expected_version"], 2);
    assert_eq!(created.body["duplicate"], false);

    let next = app
        .post("/streams/consent-1/events", Some("2"), events(1))
        .await;
    assert_eq!(next.status, StatusCode::CREATED);
    assert_eq!(next.body["positions"], json!([3]));

    let stream = app.get("/streams/consent-1/events?from=2&limit=10").await;
    assert_eq!(stream.status, StatusCode::OK);
    let list = stream.body["events"].as_array().expect("events");
    assert_eq!(list.len(), 2);
    assert_eq!(list[0]["version"], 2);
    assert_eq!(list[0]["data"], json!({ "n": 1 }));
    assert_eq!(list[0]["type"], "ConsentGiven");

    let backwards = app
        .get("/streams/consent-1/events?direction=backwards&limit=1")
        .await;
    assert_eq!(backwards.body["events"][0]["version"], 3);
    assert_eq!(backwards.body["next_from"], 2);

    let log = app.get("/events?after=1&limit=5").await;
    assert_eq!(log.status, StatusCode::OK);
    let list = log.body["events"].as_array().expect("events");
    assert_eq!(
        list.iter()
            .map(|e| e["position"].as_u64())
            .collect::<Vec<_>>(),
        vec![Some(2), Some(3)]
    );
    assert_eq!(list[0]["leaf_hash"].as_str().map(str::len), Some(64));
    assert_eq!(list[0]["chain_hash"].as_str().map(str::len), Some(64));
    assert_eq!(log.body["next_after"], 3);
}

#[tokio::test]
async fn a_version_conflict_is_409_and_says_the_actual_version() {
    let app = app().await;
    app.post("/streams/cart-1/events", Some("no-stream"), events(1))
        .await;
    let conflict = app
        .post("/streams/cart-1/events", Some("no-stream"), events(1))
        .await;
    assert_problem(&conflict, StatusCode::CONFLICT, "wrong-expected-version");
    assert_eq!(conflict.body["actual_version"], 1);
    let stale = app
        .post("/streams/cart-1/events", Some("0"), events(1))
        .await;
    assert_problem(&stale, StatusCode::CONFLICT, "wrong-expected-version");
    assert_eq!(app.head().await, 1);
}

#[tokio::test]
async fn a_retry_returns_the_original_positions_and_a_changed_retry_conflicts() {
    let app = app().await;
    let id = uuid::Uuid::now_v7();
    let body = json!([{ "id": id, "type": "Submitted", "data": { "a": 1 } }]).to_string();
    let first = app
        .post(
            "/streams/application-9/events",
            Some("no-stream"),
            body.clone(),
        )
        .await;
    assert_eq!(first.status, StatusCode::CREATED);
    let retry = app
        .post("/streams/application-9/events", Some("no-stream"), body)
        .await;
    assert_eq!(retry.status, StatusCode::OK);
    assert_eq!(retry.body["positions"], first.body["positions"]);
    assert_eq!(retry.body["duplicate"], true);
    let changed = json!([{ "id": id, "type": "Submitted", "data": { "a": 2 } }]).to_string();
    let conflict = app
        .post("/streams/application-9/events", None, changed)
        .await;
    assert_problem(&conflict, StatusCode::CONFLICT, "event-id-conflict");
    assert_eq!(app.head().await, 1);
}

#[tokio::test]
async fn bad_input_gets_a_problem_and_changes_nothing() {
    let app = app().await;
    app.post("/streams/ok-1/events", None, events(1)).await;
    let too_big = format!(
        "[{{\"type\":\"Big\",\"data\":\"{}\"}}]",
        "x".repeat(amtsbuch_api::http::MAX_BODY_BYTES)
    );
    let v4 = uuid::Uuid::from_u128(0x6f1c_2a3b_4c5d_4e6f_8a0b_1c2d_3e4f_5a6b);
    let cases: Vec<(&str, Option<&str>, String, StatusCode, &str)> = vec![
        (
            "/streams/ok-1/events",
            None,
            "{not json".into(),
            StatusCode::BAD_REQUEST,
            "invalid-body",
        ),
        (
            "/streams/ok-1/events",
            None,
            "{}".into(),
            StatusCode::BAD_REQUEST,
            "invalid-body",
        ),
        (
            "/streams/ok-1/events",
            None,
            "[]".into(),
            StatusCode::BAD_REQUEST,
            "invalid-body",
        ),
        (
            "/streams/ok-1/events",
            None,
            r#"[{"type":"A","data":1,"extra":true}]"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid-body",
        ),
        (
            "/streams/ok-1/events",
            None,
            r#"[{"type":"1bad","data":1}]"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid-body",
        ),
        (
            "/streams/ok-1/events",
            None,
            r#"[{"type":"A"}]"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid-body",
        ),
        (
            "/streams/ok-1/events",
            None,
            r#"[{"type":"A","data":1,"metadata":{"colour":"red"}}]"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid-body",
        ),
        (
            "/streams/ok-1/events",
            None,
            r#"[{"type":"A","data":1,"metadata":{"tenant":""}}]"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid-events",
        ),
        (
            "/streams/ok-1/events",
            None,
            r#"[{"type":"A","data":{"n":18014398509481984}}]"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid-body",
        ),
        // Stored as the plain integer 10000000000000000, beyond 2^53 − 1, however written.
        (
            "/streams/ok-1/events",
            None,
            r#"[{"type":"A","data":{"n":1e16}}]"#.into(),
            StatusCode::BAD_REQUEST,
            "invalid-body",
        ),
        (
            "/streams/ok-1/events",
            None,
            format!(r#"[{{"id":"{v4}","type":"A","data":1}}]"#),
            StatusCode::BAD_REQUEST,
            "invalid-event-id",
        ),
        (
            "/streams/ok-1/events",
            Some("soon"),
            events(1),
            StatusCode::BAD_REQUEST,
            "invalid-expected-version",
        ),
        (
            "/streams/ok-1/events",
            Some("-1"),
            events(1),
            StatusCode::BAD_REQUEST,
            "invalid-expected-version",
        ),
        (
            "/streams/NoCategory/events",
            None,
            events(1),
            StatusCode::BAD_REQUEST,
            "invalid-stream-id",
        ),
        (
            "/streams/bad-stream%20id/events",
            None,
            events(1),
            StatusCode::BAD_REQUEST,
            "invalid-stream-id",
        ),
        (
            "/streams/bad-%FF/events",
            None,
            events(1),
            StatusCode::BAD_REQUEST,
            "invalid-path",
        ),
        (
            "/streams/ok-1/events",
            None,
            too_big,
            StatusCode::PAYLOAD_TOO_LARGE,
            "body-too-large",
        ),
    ];
    for (uri, expected, body, status, kind) in cases {
        let r = app.post(uri, expected, body).await;
        assert_problem(&r, status, kind);
    }
    assert_eq!(app.head().await, 1, "a refused request wrote something");
}

/// JSON that `serde_json` would read, but only by changing it: a repeated member name
/// (the last one wins) or a number no double holds so that it prints back the same. Each
/// is refused with a problem naming the offending value's JSON pointer, wherever it is.
#[tokio::test]
async fn bodies_that_would_be_stored_changed_are_refused_with_a_pointer() {
    let app = app().await;
    let subject = "0193a1b2-0000-7000-8000-00000000ac01";
    let cases = [
        (
            r#"[{"type":"A","data":{"n":123456789012345678901234567890}}]"#.to_owned(),
            "/0/data/n",
        ),
        (r#"[{"type":"A","data":{"n":1e-400}}]"#.into(), "/0/data/n"),
        (r#"[{"type":"A","data":{"n":1e400}}]"#.into(), "/0/data/n"),
        (
            r#"[{"type":"A","data":9007199254740993}]"#.into(),
            "/0/data",
        ),
        (r#"[{"type":"A","data":{"a":1,"a":2}}]"#.into(), "/0/data/a"),
        (
            r#"[{"type":"A","data":{"a":1,"\u0061":2}}]"#.into(),
            "/0/data/a",
        ),
        (
            r#"[{"type":"A","data":1},{"type":"B","data":{"x":{"deep":[0,{"b/c":1,"b/c":2}]}}}]"#
                .into(),
            "/1/data/x/deep/1/b~1c",
        ),
        (
            r#"[{"type":"A","data":1,"metadata":{"tenant":"t","tenant":"u"}}]"#.into(),
            "/0/metadata/tenant",
        ),
        (
            r#"[{"type":"A","data":1,"metadata":{"schema_version":1e-400}}]"#.into(),
            "/0/metadata/schema_version",
        ),
        (
            format!(
                r#"[{{"type":"A","data":1,"personal":{{"subject":"{subject}","data":{{"n":0.30000000000000000001}}}}}}]"#
            ),
            "/0/personal/data/n",
        ),
        (
            format!(
                r#"[{{"type":"A","data":1,"personal":{{"subject":"{subject}","data":{{"k":[{{"z":1,"z":1}}]}}}}}}]"#
            ),
            "/0/personal/data/k/0/z",
        ),
        (r#"[{"type":"A","type":"A","data":1}]"#.into(), "/0/type"),
    ];
    for (body, pointer) in cases {
        let r = app.post("/streams/ok-1/events", None, body.clone()).await;
        assert_problem(&r, StatusCode::BAD_REQUEST, "invalid-body");
        assert_eq!(r.body["pointer"], pointer, "{body}: {}", r.body);
        assert!(
            r.body["detail"]
                .as_str()
                .is_some_and(|d| d.contains(pointer)),
            "{body}: {}",
            r.body
        );
    }
    assert_eq!(app.head().await, 0, "a refused request wrote something");

    // What round-trips is accepted and stored as the same value, in canonical form.
    let created = app
        .post(
            "/streams/ok-1/events",
            None,
            r#"[{"type":"A","data":{"tenth":0.1,"one":1.0,"hundred":1e2,"zero":-0,"half":5e-1,"max":9007199254740991}}]"#,
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let stored = app.get("/streams/ok-1/events").await;
    assert_eq!(
        stored.body["events"][0]["data"].to_string(),
        r#"{"half":0.5,"hundred":100,"max":9007199254740991,"one":1,"tenth":0.1,"zero":0}"#
    );
}

#[tokio::test]
async fn bad_queries_and_unknown_routes_get_problems() {
    let app = app().await;
    for uri in [
        "/events?limit=0",
        "/events?limit=5000",
        "/events?after=-1",
        "/events?after=x",
        "/events?colour=red",
        "/streams/ok-1/events?direction=sideways",
        "/streams/ok-1/events?from=abc",
        "/streams/Bad/events",
        "/streams/bad-%FF/events",
        "/accounts/%C3%28",
        "/events/%80/receipt",
    ] {
        assert_problem(
            &app.get(uri).await,
            StatusCode::BAD_REQUEST,
            if uri.contains("Bad") {
                "invalid-stream-id"
            } else if uri.contains('%') {
                "invalid-path"
            } else {
                "invalid-query"
            },
        );
    }
    assert_problem(
        &app.get("/nowhere").await,
        StatusCode::NOT_FOUND,
        "not-found",
    );
    let delete = app
        .send(
            Request::delete("/streams/ok-1/events")
                .body(Body::empty())
                .expect("request"),
        )
        .await;
    assert_problem(
        &delete,
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
    );
}

/// The limits the HTTP parser itself enforces, over a real socket: a request with more than
/// 100 header fields gets a problem with a correlation id, not hyper's bare 431, and the
/// server still shuts down gracefully.
#[tokio::test]
async fn too_many_headers_get_a_problem_over_a_socket() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = app().await;
    let state = AppState::new(app.store.clone(), None, common::authenticator())
        .await
        .expect("state");
    let server = common::Serving::start(state).await;
    let address = server.address;

    // `Host` and `Connection` are two of the fields.
    let send = |extra: usize| async move {
        let mut head =
            String::from("GET /healthz HTTP/1.1\r\nHost: amtsbuch\r\nConnection: close\r\n");
        for i in 0..extra {
            head.push_str(&format!("X-Extra-{i}: {i}\r\n"));
        }
        head.push_str("\r\n");
        let mut stream = tokio::net::TcpStream::connect(address)
            .await
            .expect("connect");
        stream.write_all(head.as_bytes()).await.expect("write");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.expect("read");
        let answer = String::from_utf8(answer).expect("text");
        let (head, body) = answer.split_once("\r\n\r\n").expect("a head");
        let mut lines = head.lines();
        let status: u16 = lines
            .next()
            .and_then(|l| l.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .expect("a status line");
        let header = |name: &str| {
            head.lines()
                .filter_map(|l| l.split_once(": "))
                .find(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.to_owned())
        };
        (
            status,
            header("content-type"),
            header("x-correlation-id"),
            serde_json::from_str::<Value>(body).unwrap_or(Value::Null),
        )
    };

    let (status, _, correlation, _) = send(98).await;
    assert_eq!(status, 200, "100 fields are allowed");
    assert!(correlation.is_some());
    for extra in [99, 500] {
        let (status, content_type, correlation, body) = send(extra).await;
        assert_eq!(status, 431, "{} fields", extra + 2);
        assert_eq!(content_type.as_deref(), Some("application/problem+json"));
        assert!(correlation.is_some_and(|c| uuid::Uuid::parse_str(&c).is_ok()));
        assert_eq!(
            body["type"], "urn:amtsbuch:problem:too-many-headers",
            "{body}"
        );
        assert_eq!(body["status"], 431);
    }

    tokio::time::timeout(std::time::Duration::from_secs(10), server.stop())
        .await
        .expect("the server stops after the signal")
        .expect("task")
        .expect("serve");
}
