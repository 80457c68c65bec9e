//! The payments domain over HTTP — one domain module ([`MODULE`]), registered in
//! `crate::domains`: receivables with their Kassenzeichen, checkout at an XBezahldienste
//! provider (`provider`), statuses believed only from Amtsbuch's own pull, refunds under
//! four eyes, and reconciliation with the bank and the HKR (`service` holds the flows,
//! `routes` the handlers). `serve`'s flags configure the provider (`jobs`); `bench
//! payments` measures the callback path and reconciliation (`bench`); a payer's receivables
//! are part of the subject's access export (`export`). The fee schedule (`fees`) and the
//! payment policy's process manager (`policy`) request an application's fee before its
//! submission or with its decision, and answer the registry's obligations (ADR 0007).
//!
//! The receivable, Kassenzeichen and fee schedule streams are reserved: only the domain's
//! commands write them, each decided against its aggregate's rules.

pub mod bench;
pub mod export;
pub mod fees;
pub mod jobs;
pub mod policy;
pub mod provider;
pub mod retention;
pub mod routes;
pub mod samples;
pub mod service;

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use amtsbuch_domain::payments::ReceivableId;

use crate::module::{DomainModule, Reserved, TestSupport};
use crate::AppState;

/// The payments domain, as the service registers it.
pub static MODULE: DomainModule = DomainModule {
    name: "payments",
    routes,
    projections: amtsbuch_projections::payments::projections,
    reserved: Some(Reserved {
        categories: &[
            ReceivableId::CATEGORY,
            amtsbuch_domain::payments::claim::CLAIM_CATEGORY,
            amtsbuch_domain::payments::fees::FEE_SCHEDULE_CATEGORY,
        ],
        title: "The stream is written by the payments routes only",
        detail: "{stream} belongs to a receivable, a Kassenzeichen claim or a fee schedule; its events are written only by the payments commands, which check their rules",
    }),
    jobs: Some(jobs::JOBS),
    bench: Some(bench::BENCH),
    export: Some(export::EXPORT),
    processing: None,
    retention: Some(retention::RETENTION),
    erasure: None,
    obligations: Some(policy::OBLIGATIONS),
    tests: TestSupport {
        access: samples::ACCESS,
        last: samples::LAST,
        samples: &samples::SAMPLES,
    },
};

#[derive(OpenApi)]
#[openapi(tags(
    (name = "payments", description = "Payments: receivables (Sollstellungen) with Kassenzeichen, checkout at an XBezahldienste provider, statuses believed only from Amtsbuch's own pull, refunds under four eyes, reconciliation with bank statements (camt.053/054) and the HKR")
))]
struct PaymentsDoc;

/// Every route of the payments domain, with its OpenAPI description and tags.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(PaymentsDoc::openapi())
        .routes(routes!(routes::request, routes::list))
        .routes(routes!(routes::get))
        .routes(routes!(routes::cancel))
        .routes(routes!(routes::checkout))
        .routes(routes!(routes::payer_return))
        .routes(routes!(routes::callback))
        .routes(routes!(routes::request_refund))
        .routes(routes!(routes::approve_refund))
        .routes(routes!(routes::import))
        .routes(routes!(routes::mismatches))
        .routes(routes!(routes::daily))
        .routes(routes!(fees::set, fees::get))
}
