//! The applications domain over HTTP: the responsibility directory, versioned forms and
//! the application lifecycle — one domain module ([`MODULE`]), registered in
//! `crate::domains`.
//!
//! Every command runs through the core's command path (`crate::command::execute`): read the
//! aggregate's stream, fold it, decide, append with the stream's version as the expected
//! version. Time is the server's. The directory and the forms carry no personal data; both
//! are answered by folding their streams, so an answer never lags behind the log. An
//! application's personal data (form data, messages, attachments) is sealed under the
//! application's own key; see `lifecycle` for who reaches an application, `attachments`
//! for uploads, `retention` for the erasure of an applicant, `sweeper` for draft expiry.

pub mod attachments;
pub mod bench;
pub mod directory;
pub mod export;
pub mod forms;
pub mod lifecycle;
pub mod retention;
pub mod samples;
pub mod sweeper;

use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use amtsbuch_domain::applications::application::MAX_ATTACHMENT_BYTES;
use amtsbuch_domain::applications::{ApplicationId, DirectoryId, FormId};

use crate::module::{DomainModule, Reserved, TestSupport};
use crate::problem::Problem;
use crate::AppState;

/// The applications domain, as the service registers it.
pub static MODULE: DomainModule = DomainModule {
    name: "applications",
    routes,
    projections: amtsbuch_projections::applications::projections,
    reserved: Some(Reserved {
        categories: &[
            FormId::CATEGORY,
            DirectoryId::CATEGORY,
            ApplicationId::CATEGORY,
        ],
        title: "The stream is written by the routes of forms, responsibilities and applications only",
        detail: "{stream} belongs to a form, the responsibility directory or an application; its events are written only through /forms, /responsibilities and /applications, which check their rules",
    }),
    jobs: Some(sweeper::JOBS),
    bench: Some(bench::BENCH),
    export: Some(export::EXPORT),
    processing: None,
    retention: Some(retention::RETENTION),
    erasure: Some(retention::ERASURE),
    obligations: None,
    tests: TestSupport {
        access: samples::ACCESS,
        last: samples::LAST,
        samples: &samples::SAMPLES,
    },
};

#[derive(OpenApi)]
#[openapi(tags(
    (name = "forms", description = "Versioned forms: JSON Schema 2020-12 with FIM field ids and form editor elements; published versions never change"),
    (name = "responsibilities", description = "The responsibility directory: which authority handles a service (LeiKa) in a region (AGS/ARS), with which form and payment policy"),
    (name = "applications", description = "Applications: drafted and submitted by citizens (with a verifiable receipt), received, processed and decided by the responsible authority and its Fachverfahren")
))]
struct ApplicationsDoc;

fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApplicationsDoc::openapi())
        .routes(routes!(directory::import))
        .routes(routes!(directory::responsible))
        .routes(routes!(forms::create))
        .routes(routes!(forms::get_form))
        .routes(routes!(forms::draft_version))
        .routes(routes!(forms::get_version, forms::revise_version))
        .routes(routes!(forms::publish))
        .routes(routes!(forms::retire))
        .routes(routes!(lifecycle::create, lifecycle::inbox))
        .routes(routes!(lifecycle::get))
        .routes(routes!(lifecycle::status))
        .routes(routes!(lifecycle::save_data))
        .routes(routes!(lifecycle::submit))
        .routes(routes!(lifecycle::receipt))
        .routes(routes!(lifecycle::withdraw))
        .routes(routes!(lifecycle::provide_information))
        .routes(routes!(lifecycle::receive))
        .routes(routes!(lifecycle::request_information))
        .routes(routes!(lifecycle::decide))
        .routes(routes!(lifecycle::close))
        .routes(routes!(lifecycle::accesses))
        .merge(
            // An attachment may be larger than the service's limit for JSON bodies; one
            // byte over its own limit is refused with `413` by the handler.
            OpenApiRouter::new()
                .routes(routes!(attachments::upload))
                .layer(DefaultBodyLimit::max(
                    usize::try_from(MAX_ATTACHMENT_BYTES).unwrap_or(usize::MAX),
                )),
        )
}

/// Parse a UUID from a path: lowercase and hyphenated, as the service writes them.
pub fn uuid_param(raw: &str, what: &'static str) -> Result<Uuid, Problem> {
    Uuid::parse_str(raw)
        .ok()
        .filter(|u| raw == u.hyphenated().to_string())
        .ok_or_else(|| {
            Problem::bad_request(
                "invalid-id",
                format!("{what} is a lowercase hyphenated UUID"),
            )
        })
}

/// A query parameter that could not be read.
pub fn query_problem(e: axum::extract::rejection::QueryRejection) -> Problem {
    Problem::bad_request("invalid-query", e.body_text())
}

/// Input that is well-formed but breaks a rule of the domain's values: `422`.
pub fn unprocessable(kind: &'static str, detail: impl Into<String>) -> Problem {
    Problem::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        kind,
        "The input breaks a rule",
        detail,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::module;

    #[test]
    fn raw_appends_to_the_domains_streams_are_refused() {
        let stream = |s: &str| amtsbuch_domain::StreamId::parse(s).expect("stream");
        let id = "0193a1b2-0000-7000-8000-000000000001";
        for category in ["form", "responsibilities", "application"] {
            let problem = module::refuse_reserved(&[&MODULE], &stream(&format!("{category}-{id}")))
                .expect_err("refused");
            assert_eq!(problem.kind, "reserved-stream");
        }
        assert!(module::refuse_reserved(&[&MODULE], &stream("forms-1")).is_ok());
    }
}
