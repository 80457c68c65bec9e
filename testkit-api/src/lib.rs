//! The test kit's part that needs the service, for its integration tests (api/tests): an
//! authenticator that accepts development tokens, tokens for each role (valid, scoped to
//! other authorities, expired, or signed by keys the server does not know), a temporary
//! SQLite store with the state built on it, one-shot requests through the router, the
//! service on a free port in this process (`Serving`), a reader that takes a
//! Server-Sent-Events body apart frame by frame, the sample data every domain module
//! provides through its `TestSupport` (`Samples`, `seed`, `keep`), and a check of replies
//! against the OpenAPI document (`schema`).
//!
//! It names no business domain: what a domain contributes comes from the registry
//! (`amtsbuch_api::domains::MODULES`). Everything of `amtsbuch-testkit` is re-exported,
//! so a test file needs this one name.

pub mod schema;

pub use amtsbuch_testkit::*;

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::body::{Body, BodyDataStream};
use axum::http::{header, HeaderMap, Request, StatusCode};
use axum::response::Response as HttpResponse;
use axum::Router;
use futures_util::StreamExt;
use serde_json::Value;
use tower::ServiceExt;

use amtsbuch_api::auth::{mint, AuthConfig, Authenticator, DevKey, TokenRequest};
use amtsbuch_api::hub::{Hub, HubLimits};
use amtsbuch_api::metrics::Metrics;
use amtsbuch_api::module::SampleValues;
use amtsbuch_api::state::LedgerInfo;
use amtsbuch_api::AppState;
use amtsbuch_domain::access::{BewirtschafterCode, ModerationScope, RegionKey, Role};
use amtsbuch_domain::{AuthorityId, ServiceKey};
use amtsbuch_infra::AnyStore;

fn dev_key() -> &'static DevKey {
    static KEY: OnceLock<DevKey> = OnceLock::new();
    KEY.get_or_init(|| DevKey::generate().expect("development key"))
}

/// Accepts tokens from `token`.
pub fn authenticator() -> Arc<Authenticator> {
    Arc::new(
        Authenticator::new(AuthConfig {
            dev_key: Some(dev_key().clone()),
            ..AuthConfig::default()
        })
        .expect("authenticator"),
    )
}

/// A data subject that is not the citizen's: another account.
pub const OTHER_ACCOUNT: &str = "0193a1b2-0000-7000-8000-00000000b0b0";

/// The account a citizen's token is bound to: a fixed account id, so that tests can open
/// the account it names and the citizen then owns it.
pub const CITIZEN_ACCOUNT: &str = "0193a1b2-0000-7000-8000-00000000ac01";

/// The Bewirtschafter a cashier's test token works for.
pub const CASHIER_BEWIRTSCHAFTER: &str = "b100";

/// A bearer token for `role` with the bindings the role needs: authority `lra-meissen`
/// with region `14627` and service `99108001000000`, account `CITIZEN_ACCOUNT`,
/// Bewirtschafter `CASHIER_BEWIRTSCHAFTER`; a moderator moderates what the authority
/// (`authority`) runs.
pub fn token(role: Role) -> String {
    token_for(role, "lra-meissen", &["99108001000000"])
}

/// The request `token_for` signs: `role` with the bindings it needs.
pub fn request_for(role: Role, authority: &str, services: &[&str]) -> TokenRequest {
    let mut request = TokenRequest::new(format!("test-{role}"), vec![role]);
    match role {
        Role::Citizen => request.account = Some(CITIZEN_ACCOUNT.into()),
        Role::Authority => {
            request.authority = Some(AuthorityId::parse(authority).expect("authority"));
            request.regions = vec![RegionKey::parse("14627").expect("region")];
        }
        Role::Fachverfahren => {
            request.authority = Some(AuthorityId::parse(authority).expect("authority"));
            request.services = services
                .iter()
                .map(|s| ServiceKey::parse(s).expect("service"))
                .collect();
        }
        Role::Cashier => {
            request.bewirtschafter =
                vec![BewirtschafterCode::parse(CASHIER_BEWIRTSCHAFTER).expect("bewirtschafter")];
        }
        Role::Moderator => {
            request.moderates = vec![ModerationScope::parse(authority).expect("scope")];
        }
        _ => {}
    }
    request.ttl = Duration::from_secs(600);
    request
}

/// A token holding all of `roles` at once, with the bindings each of them needs (as
/// `token` gives them: account `CITIZEN_ACCOUNT`, authority `lra-meissen` with region
/// `14627` and service `99108001000000`).
pub fn token_of(roles: &[Role]) -> String {
    signed(&request_of(roles, "lra-meissen", &["99108001000000"]))
}

/// The request for a token holding all of `roles`, each with its bindings.
pub fn request_of(roles: &[Role], authority: &str, services: &[&str]) -> TokenRequest {
    let mut request = TokenRequest::new("test-combined", roles.iter().copied());
    for &role in roles {
        let one = request_for(role, authority, services);
        request.account = request.account.or(one.account);
        request.authority = request.authority.or(one.authority);
        if request.regions.is_empty() {
            request.regions = one.regions;
        }
        if request.services.is_empty() {
            request.services = one.services;
        }
        if request.bewirtschafter.is_empty() {
            request.bewirtschafter = one.bewirtschafter;
        }
        if request.moderates.is_empty() {
            request.moderates = one.moderates;
        }
    }
    request.ttl = Duration::from_secs(600);
    request
}

/// A token bound to another authority or other services.
pub fn token_for(role: Role, authority: &str, services: &[&str]) -> String {
    signed(&request_for(role, authority, services))
}

/// A token saying exactly what `request` says, valid from now.
pub fn signed(request: &TokenRequest) -> String {
    mint(dev_key(), request, chrono::Utc::now()).expect("mint")
}

/// An official of `authority` responsible for `regions`.
pub fn official(authority: &str, regions: &[&str]) -> String {
    let mut request = request_for(Role::Authority, authority, &[]);
    request.regions = regions
        .iter()
        .map(|r| RegionKey::parse(r).expect("region"))
        .collect();
    signed(&request)
}

/// A token holding every role at once, with every binding: it passes every guard.
pub fn everyone() -> String {
    let mut request = TokenRequest::new("test-everyone", Role::ALL);
    request.account = Some(CITIZEN_ACCOUNT.into());
    request.authority = Some(AuthorityId::parse("lra-meissen").expect("authority"));
    request.regions = vec![RegionKey::parse("14").expect("region")];
    request.services = vec![ServiceKey::parse("99108001000000").expect("service")];
    request.bewirtschafter =
        vec![BewirtschafterCode::parse(CASHIER_BEWIRTSCHAFTER).expect("bewirtschafter")];
    request.moderates = vec![ModerationScope::parse("lra-meissen").expect("scope")];
    signed(&request)
}

/// A token for `role` that was valid for ten minutes, an hour ago: far beyond the
/// tolerated clock skew.
pub fn expired(role: Role) -> String {
    let an_hour_ago = chrono::Utc::now() - chrono::Duration::hours(1);
    mint(
        dev_key(),
        &request_for(role, "lra-meissen", &["99108001000000"]),
        an_hour_ago,
    )
    .expect("mint")
}

/// A well-formed token for `role` that names the development key id but is signed by
/// another development key, as a server with another key file would issue it.
pub fn signed_by_a_stranger(role: Role) -> String {
    static STRANGER: OnceLock<DevKey> = OnceLock::new();
    let key = STRANGER.get_or_init(|| DevKey::generate().expect("development key"));
    mint(
        key,
        &request_for(role, "lra-meissen", &["99108001000000"]),
        chrono::Utc::now(),
    )
    .expect("mint")
}

/// A token for `role` signed with a fresh Ed25519 key under a key id the server has never
/// heard of, with otherwise valid claims.
pub fn of_an_unknown_key(role: Role) -> String {
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    let pkcs8 = amtsbuch_domain::note::Signer::generate_pkcs8().expect("key");
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("rotated-away-2019".into());
    let now = chrono::Utc::now().timestamp();
    let mut claims = serde_json::json!({
        "iss": amtsbuch_api::auth::DEV_ISSUER,
        "sub": format!("test-{role}"),
        "aud": amtsbuch_api::auth::DEFAULT_AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "roles": [role.as_str()],
    });
    let request = request_for(role, "lra-meissen", &["99108001000000"]);
    if let Some(account) = &request.account {
        claims["account"] = Value::from(account.as_str());
    }
    if let Some(authority) = &request.authority {
        claims["authority"] = Value::from(authority.as_str());
    }
    claims["regions"] = request.regions.iter().map(|r| r.as_str()).collect();
    claims["services"] = request.services.iter().map(|s| s.as_str()).collect();
    claims["moderates"] = request.moderates.iter().map(|s| s.as_str()).collect();
    jsonwebtoken::encode(&header, &claims, &EncodingKey::from_ed_der(&pkcs8)).expect("sign")
}

/// `Authorization` header value for `role`.
pub fn bearer(role: Role) -> String {
    format!("Bearer {}", token(role))
}

/// A SQLite store in a fresh temporary directory (with room for the test's other files,
/// `dir()`), removed when dropped.
pub type TempStore = TestDb;

pub async fn temp_store() -> TempStore {
    TestDb::fresh(Adapter::Sqlite).await
}

/// The state of a server on `store` whose live feed has `limits`: what `AppState::new`
/// builds, but with a hub a test can make small.
pub async fn state_with(
    store: &AnyStore,
    ledger: Option<LedgerInfo>,
    limits: HubLimits,
) -> AppState {
    let metrics = Metrics::new();
    let hub = Hub::spawn(store.clone(), limits, metrics.clone())
        .await
        .expect("hub");
    AppState {
        store: store.clone(),
        ledger,
        auth: authenticator(),
        metrics,
        hub,
        nats: None,
        sealer: None,
        modules: Default::default(),
    }
}

/// A sealer for personal data on `store`, whose key-encryption key is generated into `dir`
/// (as `amtsbuch kek generate` does).
pub fn sealer(store: &AnyStore, dir: &std::path::Path) -> amtsbuch_infra::sealer::Sealer {
    let path = dir.join(format!("kek-{}", uuid::Uuid::now_v7().simple()));
    let id = amtsbuch_domain::seal::KeyId::parse("kek-test").expect("KEK id");
    amtsbuch_infra::kek::generate_kek_file(&path, &id).expect("generate KEK");
    let keyring = amtsbuch_infra::kek::load_keyring(&[path]).expect("load KEK");
    amtsbuch_infra::sealer::Sealer::new(amtsbuch_infra::vault::KeyVault::new(
        store.clone(),
        keyring,
    ))
}

/// Make the seeded samples of every domain module outlive every operation
/// (`Samples::keep`), for tests that call each operation many times over.
pub async fn keep(app: &Router, state: &AppState, samples: &Samples) {
    let operator = token(Role::Operator);
    for module in amtsbuch_api::domains::MODULES {
        module
            .tests
            .samples
            .keep(app, state, &operator, &samples.values)
            .await;
    }
}

/// Every role alone and every pair of roles, each pair held by one token.
pub fn role_sets() -> Vec<Vec<Role>> {
    let mut sets: Vec<Vec<Role>> = Role::ALL.iter().map(|&r| vec![r]).collect();
    for (i, &a) in Role::ALL.iter().enumerate() {
        for &b in &Role::ALL[i + 1..] {
            sets.push(vec![a, b]);
        }
    }
    sets
}

/// Seed the sample data of every domain module (`TestSupport::samples`), so that every
/// route of every module can be called with the samples and succeed; the state must have
/// a sealer.
pub async fn seed(app: &Router, state: &AppState, samples: &mut Samples) {
    let operator = token(Role::Operator);
    for module in amtsbuch_api::domains::MODULES {
        module
            .tests
            .samples
            .seed(app, state, &operator, &mut samples.values)
            .await;
    }
}

/// Wait until every projection the service runs (`amtsbuch_api::domains::projections`) has
/// applied the log up to its head as it is now.
pub async fn read_models_caught_up(store: &AnyStore) {
    use amtsbuch_infra::EventStore;
    let head = store.head().await.expect("head").position;
    if head == 0 {
        return;
    }
    let db = amtsbuch_projections::ReadDb::new(store);
    let names: Vec<&str> = amtsbuch_api::domains::projections()
        .iter()
        .map(|p| p.name())
        .collect();
    for _ in 0..1200 {
        let done = amtsbuch_projections::checkpoint::all(&db)
            .await
            .expect("checkpoints");
        let behind = names.iter().any(|name| {
            !done
                .iter()
                .any(|(n, position)| n == name && *position >= head)
        });
        if !behind {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the read models did not reach position {head} within 30 s");
}

/// A response taken apart: status, headers and the whole body.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub bytes: Vec<u8>,
}

impl Reply {
    /// The body as JSON, `Null` if it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or(Value::Null)
    }

    /// The media type without parameters, e.g. `text/plain`.
    pub fn media_type(&self) -> String {
        media_type(&self.headers)
    }

    pub fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

pub fn media_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase()
}

/// Send one request through the router and read the whole body — except an event
/// stream's, which does not end: it is dropped unread, which closes the subscription.
pub async fn send(app: &Router, request: Request<Body>) -> Reply {
    let response = call(app, request).await;
    let status = response.status();
    let headers = response.headers().clone();
    if media_type(&headers) == "text/event-stream" {
        return Reply {
            status,
            headers,
            bytes: Vec::new(),
        };
    }
    let bytes = axum::body::to_bytes(response.into_body(), 64 << 20)
        .await
        .expect("body");
    Reply {
        status,
        headers,
        bytes: bytes.to_vec(),
    }
}

/// Send one request through the router and return the response with its body unread.
pub async fn call(app: &Router, request: Request<Body>) -> HttpResponse {
    app.clone().oneshot(request).await.expect("infallible")
}

/// A request with `authorization` as bearer token when given.
pub fn request(method: &str, uri: &str, token: Option<&str>, body: Body) -> Request<Body> {
    let mut r = Request::builder().method(method).uri(uri);
    if let Some(t) = token {
        r = r.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    if method == "POST" {
        r = r.header(header::CONTENT_TYPE, "application/json");
    }
    r.body(body).expect("request")
}

/// One Server-Sent-Events frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub id: Option<String>,
    pub event: Option<String>,
    pub data: String,
}

impl Frame {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).expect("frame data is JSON")
    }

    /// The position an `event: event` frame carries in its id.
    pub fn position(&self) -> u64 {
        self.id
            .as_deref()
            .and_then(|id| id.parse().ok())
            .expect("event frames carry their position as id")
    }
}

/// What reading an SSE body produced.
#[derive(Debug, PartialEq)]
pub enum Next {
    Frame(Frame),
    /// Nothing arrived within the wait.
    Quiet,
    /// The server ended the body.
    End,
}

/// Reads an SSE response body one frame at a time. The body is only polled while `next`
/// runs, so between calls the connection is a consumer that does not read.
pub struct SseReader {
    body: BodyDataStream,
    buffer: Vec<u8>,
}

impl std::fmt::Debug for SseReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SseReader")
            .field("buffered", &self.buffer.len())
            .finish_non_exhaustive()
    }
}

impl SseReader {
    pub fn new(response: HttpResponse) -> Self {
        assert_eq!(response.status(), StatusCode::OK, "not an event stream");
        assert_eq!(media_type(response.headers()), "text/event-stream");
        Self {
            body: response.into_body().into_data_stream(),
            buffer: Vec::new(),
        }
    }

    /// The next frame (comments such as keep-alives are skipped), waiting at most `wait`.
    pub async fn next(&mut self, wait: Duration) -> Next {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.windows(2).position(|w| w == b"\n\n") {
                let block: Vec<u8> = self.buffer.drain(..end + 2).collect();
                let text = String::from_utf8(block).expect("SSE is UTF-8");
                if let Some(frame) = parse_frame(&text) {
                    return Next::Frame(frame);
                }
                continue;
            }
            match tokio::time::timeout_at(deadline, self.body.next()).await {
                Err(_) => return Next::Quiet,
                Ok(None) => return Next::End,
                Ok(Some(chunk)) => self.buffer.extend_from_slice(&chunk.expect("body chunk")),
            }
        }
    }

    /// The next frame, which must arrive within five seconds.
    pub async fn frame(&mut self) -> Frame {
        match self.next(Duration::from_secs(5)).await {
            Next::Frame(f) => f,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// `n` frames, each of which must arrive within five seconds.
    pub async fn frames(&mut self, n: usize) -> Vec<Frame> {
        let mut frames = Vec::with_capacity(n);
        for _ in 0..n {
            frames.push(self.frame().await);
        }
        frames
    }

    /// Assert that nothing more arrives for a while.
    pub async fn assert_quiet(&mut self, wait: Duration) {
        match self.next(wait).await {
            Next::Quiet => {}
            other => panic!("expected nothing more, got {other:?}"),
        }
    }
}

/// A frame from its lines, or `None` for a block of comments only.
fn parse_frame(text: &str) -> Option<Frame> {
    let mut frame = Frame {
        id: None,
        event: None,
        data: String::new(),
    };
    let mut data_lines = Vec::new();
    let mut any = false;
    for line in text.lines() {
        if line.is_empty() || line.starts_with(':') {
            continue;
        }
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        any = true;
        match field {
            "id" => frame.id = Some(value.to_owned()),
            "event" => frame.event = Some(value.to_owned()),
            "data" => data_lines.push(value.to_owned()),
            other => panic!("unexpected SSE field {other:?} in {text:?}"),
        }
    }
    frame.data = data_lines.join("\n");
    any.then_some(frame)
}

/// The origin line of the test ledger.
pub const ORIGIN: &str = "test.amtsbuch/log";

/// The test ledger's signing key.
pub fn ledger_signer() -> amtsbuch_domain::note::Signer {
    amtsbuch_domain::note::Signer::from_seed(ORIGIN, &[7u8; 32]).expect("signer")
}

/// Start signing checkpoints of `store` (after every event, within 20 ms) and return
/// what the HTTP layer needs to know of the ledger.
pub fn start_ledger(store: &AnyStore) -> LedgerInfo {
    amtsbuch_infra::ledger::spawn(
        store.clone(),
        amtsbuch_infra::ledger::LedgerConfig {
            origin: ORIGIN.into(),
            signers: vec![ledger_signer()],
            every_events: 1,
            interval: Duration::from_millis(20),
        },
    );
    LedgerInfo {
        origin: ORIGIN.into(),
        vkeys: vec![ledger_signer().vkey()],
    }
}

/// Wait until a checkpoint covers at least `size` events; returns its size.
pub async fn wait_for_checkpoint(store: &AnyStore, size: u64) -> u64 {
    for _ in 0..400 {
        if let Some(c) = amtsbuch_infra::ledger::latest_checkpoint(store)
            .await
            .expect("read checkpoint")
        {
            if c.size >= size {
                return c.size;
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no checkpoint of size {size} within 10 s");
}

/// Concrete values for the path parameters, queries and bodies of the documented routes,
/// chosen so that each call can succeed on a log that holds `event_id` and has a checkpoint
/// of `checkpoint_size`, and — for the domain modules' routes — once the modules' sample
/// data is seeded (`seed`); each module names its own (`TestSupport::samples`). A route
/// with a parameter nobody names makes `uri` panic, so a new route gets its sample when
/// it is added.
#[derive(Debug, Clone)]
pub struct Samples {
    pub event_id: uuid::Uuid,
    pub checkpoint_size: u64,
    /// The subject prefix of the NATS stream the server relays to, if any.
    pub nats_prefix: String,
    /// The domain modules' named sample values (`account`, `consent`, …).
    pub values: SampleValues,
}

impl Samples {
    /// Samples for a log holding `event_id` with a checkpoint of `checkpoint_size`; the
    /// modules' values are ids that need not exist until `seed`, the account being the
    /// citizen's.
    pub fn new(event_id: uuid::Uuid, checkpoint_size: u64, nats_prefix: &str) -> Self {
        Self::of_subject(event_id, checkpoint_size, nats_prefix, CITIZEN_ACCOUNT)
    }

    /// `new`, for the data subject `account` instead of the citizen's.
    pub fn of_subject(
        event_id: uuid::Uuid,
        checkpoint_size: u64,
        nats_prefix: &str,
        account: &str,
    ) -> Self {
        let mut values = SampleValues::new();
        for module in amtsbuch_api::domains::MODULES {
            values.extend(module.tests.samples.values(account));
        }
        Self {
            event_id,
            checkpoint_size,
            nats_prefix: nats_prefix.to_owned(),
            values,
        }
    }

    /// The path with its parameters filled in, and the query the route needs.
    pub fn uri(&self, path: &str) -> String {
        let mut uri = String::new();
        let first = path.split('/').nth(1).unwrap_or_default();
        for segment in path.split('/').skip(1) {
            uri.push('/');
            match (first, segment) {
                (_, "{stream}") => uri.push_str("consent-1"),
                ("events", "{id}") => uri.push_str(&self.event_id.to_string()),
                (_, "{size}") => uri.push_str(&self.checkpoint_size.to_string()),
                ("subscriptions", "{name}") => uri.push_str("lra-meissen-fv"),
                (_, s) if s.starts_with('{') => {
                    let value = amtsbuch_api::domains::MODULES
                        .iter()
                        .find_map(|m| m.tests.samples.path_param(&self.values, path, s))
                        .unwrap_or_else(|| panic!("no sample value for the path parameter {s} of {path}; add one to the test kit's Samples or the module's samples"));
                    uri.push_str(&value);
                }
                (_, s) => uri.push_str(s),
            }
        }
        match path {
            "/ledger/proof/inclusion" => uri.push_str("?index=0"),
            "/ledger/proof/consistency" => uri.push_str("?from=1"),
            _ => {
                if let Some(query) = amtsbuch_api::domains::MODULES
                    .iter()
                    .find_map(|m| m.tests.samples.query(&self.values, path))
                {
                    uri.push('?');
                    uri.push_str(&query);
                }
            }
        }
        uri
    }

    /// A valid body for the route `method path`, if it takes one.
    pub fn body(&self, method: &str, path: &str) -> Option<Value> {
        use serde_json::json;
        match (method, path) {
            ("POST", "/streams/{stream}/events") => {
                Some(json!([{ "type": "ConsentGiven", "data": { "sample": true } }]))
            }
            // As an operator, who chooses the filters.
            ("PUT", "/subscriptions/nats/{name}") => {
                Some(json!({ "filter_subjects": [format!("{}.>", self.nats_prefix)] }))
            }
            _ => amtsbuch_api::domains::MODULES
                .iter()
                .find_map(|m| m.tests.samples.body(&self.values, method, path)),
        }
    }

    /// A request to the route `method path` with `token`, and the headers the modules'
    /// samples give it.
    pub fn request(&self, method: &str, path: &str, token: Option<&str>) -> Request<Body> {
        let body = self
            .body(method, path)
            .map_or_else(Body::empty, |b| Body::from(b.to_string()));
        let mut request = request(method, &self.uri(path), token, body);
        for module in amtsbuch_api::domains::MODULES {
            for (name, value) in module.tests.samples.headers(&self.values, method, path) {
                request.headers_mut().insert(
                    header::HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                    header::HeaderValue::from_str(&value).expect("header value"),
                );
            }
        }
        request
    }
}

/// The first event's id after appending `n` events to `consent-1` through the store.
pub async fn append_consents(store: &AnyStore, n: usize) -> uuid::Uuid {
    use amtsbuch_domain::{AppendRequest, EventType, ExpectedVersion, NewEvent, StreamId};
    use amtsbuch_infra::EventStore;
    let events: Vec<NewEvent> = (0..n)
        .map(|i| {
            NewEvent::new(
                EventType::parse("ConsentGiven").expect("type"),
                serde_json::json!({ "n": i }),
            )
        })
        .collect();
    let first = events
        .first()
        .map(|e| e.event_id)
        .expect("at least one event");
    store
        .append(AppendRequest {
            stream: StreamId::parse("consent-1").expect("stream"),
            expected: ExpectedVersion::Any,
            events,
        })
        .await
        .expect("append");
    first
}

/// Every operation of the OpenAPI document as (method in upper case, path).
pub fn documented_operations(doc: &Value) -> Vec<(String, String)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("path item").keys() {
            if [
                "get", "put", "post", "delete", "options", "head", "patch", "trace",
            ]
            .contains(&method.as_str())
            {
                ops.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    ops.sort();
    ops
}

/// The service in this process on a free loopback port (`amtsbuch_api::run`), for tests
/// that need a real socket; aborted when dropped unless stopped.
#[derive(Debug)]
pub struct Serving {
    pub address: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Serving {
    /// Serve `state` on a port of its own.
    pub async fn start(state: AppState) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let address = listener.local_addr().expect("address");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(amtsbuch_api::run(listener, state, async {
            let _ = stopped.await;
        }));
        Self {
            address,
            stop: Some(stop),
            task: Some(task),
        }
    }

    /// `http://` and the address.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Signal the graceful shutdown and wait for the server's end: the task's result and
    /// what serving returned.
    pub async fn stop(mut self) -> Result<std::io::Result<()>, tokio::task::JoinError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.task.take() {
            Some(task) => task.await,
            None => Ok(Ok(())),
        }
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Serve `app` — a stand-in for a service outside, speaking its real protocol over HTTP
/// — on a free loopback port until the runtime ends; returns its `http://` URL.
pub async fn serve_router(app: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}
