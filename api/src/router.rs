//! The router: every route, its OpenAPI description, who may call it, and the layers every
//! request passes (correlation id and log span, metrics, timeout, the limits no handler
//! should see broken, a handler's panic answered as a problem, authentication).
//!
//! Each handler carries a `#[utoipa::path]` annotation, and routes are registered through
//! `utoipa_axum`, so the router and `/openapi.json` are built from the same declarations and
//! cannot disagree on paths or methods. The annotation's `security` is also *who may call
//! the route*: `security(())` marks a public route, `security(("bearer" = ["operator", …]))`
//! lists the roles (OpenAPI 3.1 allows role names in a bearer requirement). At start-up the
//! `guard` reads those requirements back out of the generated document into an
//! `AccessTable` and enforces them for every request before any handler runs. A route
//! without a declaration is refused to everybody (fail closed), and a test checks there
//! is none. The handler then sees the caller narrowed to the roles the route lists, so a
//! role the route does not grant can neither help nor hinder inside it.

use std::any::Any;
use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::rejection::RawPathParamsRejection;
use axum::extract::{DefaultBodyLimit, MatchedPath, RawPathParams, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use futures_util::FutureExt;
use tracing::Instrument;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::OpenApi as OpenApiDoc;
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use amtsbuch_domain::access::Role;

use crate::auth::{require, Authenticator, Caller};
use crate::domains::MODULES;
use crate::http::{self, MAX_BODY_BYTES};
use crate::ledger_http;
use crate::module::DomainModule;
use crate::problem::Problem;
use crate::state::AppState;

/// Longest time a handler may take to produce its response head. Streaming bodies (SSE,
/// exports) are not cut off: their head is sent at once.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The request header carrying a correlation id, echoed on the response.
pub const CORRELATION_HEADER: &str = "x-correlation-id";

/// Most header fields a request may carry (hyper's default, which `server` raises so that
/// this limit is the one a client meets, answered with a problem).
pub const MAX_HEADERS: usize = 100;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Amtsbuch",
        description = "Audit-proof event records for the e-government base components of the Free State of Saxony. Every route states in its `security` requirement the roles that may call it; `{}` marks a public route. Errors are RFC 9457 problems (`application/problem+json`).",
        license(name = "EUPL-1.2", identifier = "EUPL-1.2")
    ),
    modifiers(&BearerScheme),
    tags(
        (name = "service", description = "Health, readiness, metrics and this document"),
        (name = "streams", description = "The raw event log (operators)"),
        (name = "subscriptions", description = "Following the log: Server-Sent Events and NATS consumers"),
        (name = "ledger", description = "Checkpoints, proofs, receipts and exports for auditors")
    )
)]
struct ApiDoc;

struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut OpenApiDoc) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut http = Http::new(HttpAuthScheme::Bearer);
        http.bearer_format = Some("JWT".into());
        http.description = Some("A JWT from the configured OIDC provider (or, with `serve --dev`, from `amtsbuch token`). Claims: `roles`, and the bindings each role needs: `account` (citizen), `authority` and `regions` (authority), `authority` and `services` (fachverfahren).".into());
        components.add_security_scheme("bearer", SecurityScheme::Http(http));
    }
}

/// Every route with its OpenAPI description, the core's and every domain module's; no
/// state is needed to describe them.
fn routes() -> OpenApiRouter<AppState> {
    routes_with(MODULES)
}

/// The core's routes and those of `modules`.
fn routes_with(modules: &[&DomainModule]) -> OpenApiRouter<AppState> {
    modules.iter().fold(core_routes(), |routes, module| {
        routes.merge((module.routes)())
    })
}

/// The core's routes: the service, the raw log, subscriptions and the ledger.
fn core_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(http::healthz))
        .routes(routes!(http::readyz))
        .routes(routes!(openapi_json))
        .routes(routes!(metrics))
        .routes(routes!(http::read_stream, http::append))
        .routes(routes!(http::read_all))
        .routes(routes!(http::list_streams))
        .routes(routes!(crate::sse::subscribe))
        .routes(routes!(crate::nats_http::put_consumer))
        .routes(routes!(ledger_http::record))
        .routes(routes!(ledger_http::receipt))
        .routes(routes!(ledger_http::latest_checkpoint))
        .routes(routes!(ledger_http::checkpoint_at))
        .routes(routes!(ledger_http::inclusion))
        .routes(routes!(ledger_http::consistency))
        .routes(routes!(ledger_http::export))
        .routes(routes!(ledger_http::keys))
}

/// The OpenAPI document, built from the same declarations as the router.
pub fn openapi() -> OpenApiDoc {
    openapi_for(MODULES)
}

/// A header is absent or has a value, and an optional request body is absent or a JSON
/// value of its schema; neither is ever `null`. The generator makes every optional
/// parameter's and body's schema admit `null`, which would invite clients to send the
/// text `null`; so header parameters and request bodies lose the `null` alternative here.
fn without_null_headers(mut doc: OpenApiDoc) -> OpenApiDoc {
    use utoipa::openapi::path::ParameterIn;
    use utoipa::openapi::schema::{Schema, SchemaType, Type};
    use utoipa::openapi::RefOr;
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for op in operations.into_iter().flatten() {
            for content in op
                .request_body
                .iter_mut()
                .flat_map(|body| body.content.values_mut())
            {
                if let Some(RefOr::T(Schema::OneOf(one))) = content.schema.as_ref() {
                    let kept: Vec<RefOr<Schema>> = one
                        .items
                        .iter()
                        .filter(|item| !is_null(item))
                        .cloned()
                        .collect();
                    if let [only] = kept.as_slice() {
                        content.schema = Some(only.clone());
                    }
                }
            }
            for parameter in op.parameters.iter_mut().flatten() {
                if !matches!(parameter.parameter_in, ParameterIn::Header) {
                    continue;
                }
                if let Some(RefOr::T(Schema::Object(object))) = parameter.schema.as_mut() {
                    if let SchemaType::Array(types) = &object.schema_type {
                        let kept: Vec<Type> = types
                            .iter()
                            .filter(|t| **t != Type::Null)
                            .cloned()
                            .collect();
                        object.schema_type = match kept.as_slice() {
                            [one] => SchemaType::Type(one.clone()),
                            _ => SchemaType::Array(kept),
                        };
                    }
                }
            }
        }
    }
    doc
}

/// The OpenAPI document of the core and `modules` only: what a module's golden test
/// compares, so that it does not change when another module is added.
pub fn openapi_for(modules: &[&DomainModule]) -> OpenApiDoc {
    with_auth_responses(without_null_headers(
        routes_with(modules).split_for_parts().1,
    ))
}

/// Add the guard's own answers, 401 and 403, to every operation that needs a token, so the
/// document lists every status a client can get. The typed document is changed in place:
/// a round trip through JSON would not do, since utoipa cannot read back the schemas of
/// fields that take any JSON value (they have no `type`), and the document would silently
/// stay without these answers.
fn with_auth_responses(mut doc: OpenApiDoc) -> OpenApiDoc {
    use utoipa::openapi::content::ContentBuilder;
    use utoipa::openapi::response::ResponseBuilder;
    use utoipa::openapi::Ref;
    let problem = |description: &str| {
        ResponseBuilder::new()
            .description(description)
            .content(
                "application/problem+json",
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("ProblemDoc")))
                    .build(),
            )
            .build()
    };
    for item in doc.paths.paths.values_mut() {
        let operations = [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ];
        for op in operations.into_iter().flatten() {
            let protected = serde_json::to_value(&op.security)
                .ok()
                .as_ref()
                .and_then(access_of)
                .is_some_and(|a| a != Access::Public);
            if !protected {
                continue;
            }
            let responses = &mut op.responses.responses;
            responses.entry("401".into()).or_insert_with(|| {
                problem("No valid bearer token (missing, expired, unknown key, or claims that do not fit its roles)").into()
            });
            responses
                .entry("403".into())
                .or_insert_with(|| problem("The token's roles may not use this route").into());
        }
    }
    doc
}

/// Whether a schema is `{"type": "null"}`.
fn is_null(schema: &utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>) -> bool {
    use utoipa::openapi::schema::{Schema, SchemaType, Type};
    use utoipa::openapi::RefOr;
    matches!(schema, RefOr::T(Schema::Object(o)) if o.schema_type == SchemaType::Type(Type::Null))
}

/// The router with every route of this API and the layers every request passes.
pub fn router(state: AppState) -> Router {
    let (routes, doc) = routes().split_for_parts();
    let access = Arc::new(AccessTable::from_openapi(&with_auth_responses(doc)));
    // The guard is a `route_layer`: it runs only for a matched route and method, so that a
    // wrong path stays a 404 rather than a 401. `observe` is a `layer` added after the
    // fallbacks, so it wraps them too and every answer, 404 and 405 included, carries a
    // correlation id; it runs first, then `unwinding`, then the guard.
    routes
        .route_layer(middleware::from_fn_with_state(
            (access, state.auth.clone()),
            guard,
        ))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn(unwinding))
        .layer(middleware::from_fn_with_state(state.clone(), observe))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// This API's OpenAPI 3.1 description.
#[utoipa::path(get, path = "/openapi.json", tag = "service", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
async fn openapi_json() -> Response {
    static DOC: OnceLock<Result<String, String>> = OnceLock::new();
    match DOC.get_or_init(|| openapi().to_json().map_err(|e| e.to_string())) {
        Ok(text) => (
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            text.clone(),
        )
            .into_response(),
        Err(e) => Problem::internal(e).into_response(),
    }
}

/// Metrics in the Prometheus text format. They carry route templates, projection names
/// and counts, nothing about any person.
#[utoipa::path(get, path = "/metrics", tag = "service", security(()),
    responses((status = 200, description = "Prometheus text exposition format", body = String, content_type = "text/plain")))]
async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
        .into_response()
}

async fn not_found() -> Problem {
    Problem::not_found("no such resource; GET /openapi.json lists the routes of this API")
}

async fn method_not_allowed() -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        "this resource does not support that method; events are appended with POST and never changed or deleted",
    )
}

/// Who may call a route.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Anybody, without a token.
    Public,
    /// An authenticated caller holding one of these roles.
    Roles(Vec<Role>),
}

/// Every route's `Access`, read from the OpenAPI document's security requirements.
#[derive(Debug, Default)]
pub struct AccessTable {
    routes: HashMap<(Method, String), Access>,
}

impl AccessTable {
    /// Read each operation's security requirement. An operation with none, or with a role
    /// name this build does not know, is left out — and so refused to everybody.
    pub fn from_openapi(doc: &OpenApiDoc) -> Self {
        let mut routes = HashMap::new();
        let Ok(value) = serde_json::to_value(doc) else {
            return Self { routes };
        };
        let Some(paths) = value.get("paths").and_then(|p| p.as_object()) else {
            return Self { routes };
        };
        for (path, item) in paths {
            let Some(item) = item.as_object() else {
                continue;
            };
            for (method, op) in item {
                let Ok(method) = method.to_uppercase().parse::<Method>() else {
                    continue;
                };
                if let Some(access) = op.get("security").and_then(access_of) {
                    routes.insert((method, path.clone()), access);
                }
            }
        }
        Self { routes }
    }

    pub fn get(&self, method: &Method, path: &str) -> Option<&Access> {
        self.routes.get(&(method.clone(), path.to_owned()))
    }

    /// Every declared route, for tests.
    pub fn iter(&self) -> impl Iterator<Item = (&(Method, String), &Access)> {
        self.routes.iter()
    }
}

fn access_of(security: &serde_json::Value) -> Option<Access> {
    let requirements = security.as_array()?;
    if requirements
        .iter()
        .any(|r| r.as_object().is_some_and(|o| o.is_empty()))
    {
        return Some(Access::Public);
    }
    let mut roles = Vec::new();
    for r in requirements {
        for name in r.get("bearer")?.as_array()? {
            roles.push(name.as_str()?.parse::<Role>().ok()?);
        }
    }
    (!roles.is_empty()).then_some(Access::Roles(roles))
}

/// Authenticate and authorize every request against its route's declaration.
async fn guard(
    State((access, auth)): State<(Arc<AccessTable>, Arc<Authenticator>)>,
    mut req: Request,
    next: Next,
) -> Response {
    let Some(path) = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
    else {
        return Problem::internal(&"request without a matched route reached the guard")
            .into_response();
    };
    // axum answers HEAD with the GET route minus the body, so HEAD is guarded like GET
    // (the document lists GET only); otherwise a HEAD to a public route would be refused.
    let method = if req.method() == Method::HEAD {
        Method::GET
    } else {
        req.method().clone()
    };
    match access.get(&method, &path) {
        Some(Access::Public) => next.run(req).await,
        Some(Access::Roles(roles)) => {
            let (principal, expiry) = match auth.authenticate_headers_until(req.headers()) {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(reason = %e, "request not authenticated");
                    return Problem::from(e).into_response();
                }
            };
            // The handler sees the caller in the route's roles only (ADR 0004).
            let principal = match require(&principal, roles) {
                Ok(narrowed) => narrowed,
                Err(problem) => return problem.into_response(),
            };
            req.extensions_mut().insert(Caller(principal));
            req.extensions_mut().insert(expiry);
            next.run(req).await
        }
        None => {
            tracing::error!(method = %req.method(), route = %path, "route declares no access; refused");
            Problem::forbidden("this route declares no access rule and is refused to everybody")
                .into_response()
        }
    }
}

/// The outermost layer: a correlation id for the request (the caller's, if it sent a
/// valid one), a log span carrying it, the refusal of requests no handler should see, the
/// timeout, the request metrics, and a problem for any error answer that is not one yet.
/// Nothing from bodies, tokens or query strings is logged.
async fn observe(
    State(state): State<AppState>,
    path: Result<RawPathParams, RawPathParamsRejection>,
    mut req: Request,
    next: Next,
) -> Response {
    // Before the correlation header is added, which would count as one more field.
    let refused = refusal(&req, path.err());
    let correlation = req
        .headers()
        .get(CORRELATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| Uuid::parse_str(v).ok())
        .unwrap_or_else(Uuid::now_v7);
    if let Ok(v) = HeaderValue::from_str(&correlation.to_string()) {
        req.headers_mut().insert(CORRELATION_HEADER, v);
    }
    let method = req.method().clone();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let span = tracing::info_span!("request", %method, %route, correlation_id = %correlation);
    let started = Instant::now();
    let mut response = match refused {
        Some(problem) => problem.into_response(),
        None => match tokio::time::timeout(
            REQUEST_TIMEOUT,
            next.run(req).instrument(span.clone()),
        )
        .await
        {
            Ok(r) => as_problem(r),
            Err(_) => Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "timeout",
                "The request took too long",
                format!(
                    "the request did not complete within {} s; retry (appends with the same event ids are safe to retry)",
                    REQUEST_TIMEOUT.as_secs()
                ),
            )
            .into_response(),
        }
    };
    let took = started.elapsed();
    let status = response.status();
    if let Ok(v) = HeaderValue::from_str(&correlation.to_string()) {
        response.headers_mut().insert(CORRELATION_HEADER, v);
    }
    let status_label = status.as_u16().to_string();
    state.metrics.count(
        "amtsbuch_http_requests_total",
        "HTTP requests by route template, method and status.",
        &[
            ("route", route.as_str()),
            ("method", method.as_str()),
            ("status", status_label.as_str()),
        ],
        1,
    );
    state.metrics.observe(
        "amtsbuch_http_request_duration_seconds",
        "Time to the response head, by route template.",
        &[("route", route.as_str()), ("method", method.as_str())],
        took,
    );
    if status.is_server_error() {
        tracing::warn!(parent: &span, status = status.as_u16(), took_ms = took.as_millis() as u64, "request failed");
    } else {
        tracing::debug!(parent: &span, status = status.as_u16(), took_ms = took.as_millis() as u64, "request");
    }
    response
}

/// A handler that panics answers the core's `internal` problem (500) instead of dropping
/// the connection, logged once with its route and correlation id (from `observe`'s span).
/// The panic's message is logged only when the code wrote it as a literal; a formatted
/// one may carry input, so it is left out. The release profile unwinds (Cargo.toml sets
/// no `panic = "abort"`), so this holds in production as in tests.
async fn unwinding(req: Request, next: Next) -> Response {
    match AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(response) => response,
        Err(panic) => Problem::internal(&format!(
            "a handler panicked: {}",
            panic_message(panic.as_ref())
        ))
        .into_response(),
    }
}

/// A panic's message if the code wrote it as a literal (`panic!("…")`, `expect("…")`,
/// arithmetic overflow).
fn panic_message(panic: &(dyn Any + Send)) -> &'static str {
    panic
        .downcast_ref::<&'static str>()
        .copied()
        .unwrap_or("a formatted message, not logged: it may carry input")
}

/// A request no handler should see: more header fields than `MAX_HEADERS`, or a path
/// parameter that is not UTF-8 once percent-decoded (axum's `Path` extractor would refuse
/// that in plain text, in every handler that takes one).
fn refusal(req: &Request, path: Option<RawPathParamsRejection>) -> Option<Problem> {
    let fields = req.headers().len();
    if fields > MAX_HEADERS {
        return Some(Problem::new(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "too-many-headers",
            "Too many request header fields",
            format!("a request may carry at most {MAX_HEADERS} header fields; this one carries {fields}"),
        ));
    }
    match path {
        Some(RawPathParamsRejection::InvalidUtf8InPathParam(e)) => Some(Problem::bad_request(
            "invalid-path",
            format!(
                "a path segment is not UTF-8 once percent-decoded ({}); ids and names are ASCII",
                e.body_text()
            ),
        )),
        _ => None,
    }
}

/// Every error answer as a problem. The handlers and extractors of this API answer with
/// problems themselves; an error that is not one comes from a rejection nobody mapped, so
/// it is logged for a fix and replaced by a problem that keeps its status and headers.
fn as_problem(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    tracing::warn!(
        status = status.as_u16(),
        "an error answer was not a problem; answering with a generic one"
    );
    let mut replaced = Problem::new(
        status,
        "http-error",
        status.canonical_reason().unwrap_or("Error"),
        "the request was refused before Amtsbuch's own checks could say why; the status tells what kind of error it is",
    )
    .into_response();
    let (parts, _) = response.into_parts();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            replaced.headers_mut().append(name, value.clone());
        }
    }
    replaced
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_answers_the_internal_problem() {
        use axum::routing::get;
        use tower::ServiceExt;

        async fn literal() -> &'static str {
            panic!("a literal message")
        }
        async fn formatted() -> &'static str {
            let input = "personal";
            panic!("about {input}")
        }
        async fn fine() -> &'static str {
            "fine"
        }
        let app = Router::new()
            .route("/literal", get(literal))
            .route("/formatted", get(formatted))
            .route("/fine", get(fine))
            .layer(middleware::from_fn(unwinding));
        for uri in ["/literal", "/formatted"] {
            let request = Request::builder().uri(uri).body(axum::body::Body::empty());
            let response = app
                .clone()
                .oneshot(request.expect("request"))
                .await
                .expect("infallible");
            assert_eq!(
                response.status(),
                StatusCode::INTERNAL_SERVER_ERROR,
                "{uri}"
            );
            assert_eq!(
                response.headers().get(header::CONTENT_TYPE),
                Some(&HeaderValue::from_static("application/problem+json"))
            );
            let body = axum::body::to_bytes(response.into_body(), 4096).await;
            let doc: serde_json::Value =
                serde_json::from_slice(&body.expect("body")).expect("json");
            assert_eq!(doc["type"], "urn:amtsbuch:problem:internal");
        }
        let request = Request::builder()
            .uri("/fine")
            .body(axum::body::Body::empty());
        let response = app
            .oneshot(request.expect("request"))
            .await
            .expect("infallible");
        assert_eq!(response.status(), StatusCode::OK);

        assert_eq!(panic_message(&"a literal"), "a literal");
        assert!(panic_message(&String::from("about personal")).starts_with("a formatted"));
    }

    #[test]
    fn an_error_answer_that_is_not_a_problem_becomes_one() {
        let plain = (
            StatusCode::BAD_REQUEST,
            [(header::ALLOW, "GET")],
            "Invalid URL: something axum says",
        )
            .into_response();
        let replaced = as_problem(plain);
        assert_eq!(replaced.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            replaced.headers().get(header::CONTENT_TYPE),
            Some(&HeaderValue::from_static("application/problem+json"))
        );
        assert_eq!(
            replaced.headers().get(header::ALLOW),
            Some(&HeaderValue::from_static("GET"))
        );

        // Problems and successes pass unchanged.
        let problem = Problem::not_found("nothing here").into_response();
        assert_eq!(
            as_problem(problem).headers().get(header::CONTENT_TYPE),
            Some(&HeaderValue::from_static("application/problem+json"))
        );
        let ok = (StatusCode::OK, "plain text is fine here").into_response();
        assert_eq!(
            as_problem(ok).headers().get(header::CONTENT_TYPE),
            Some(&HeaderValue::from_static("text/plain; charset=utf-8"))
        );
    }
}
