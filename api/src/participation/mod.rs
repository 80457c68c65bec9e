//! The participation domain over HTTP — one domain module ([`MODULE`]), registered in
//! `crate::domains`: the public search over participation procedures, each procedure with
//! its rounds, its published contributions (opened from the log, where their texts stay
//! sealed under their authors' keys), its moderation log, and the calendar (`public`);
//! an authority's drafting, announcing, scheduling and cancelling of its own procedures
//! (`organiser`); a participant's contributions with their receipts, and reports
//! (`participant`); events and appointment slots with their registrations (`gatherings`);
//! a moderator's queue, hiding and unhiding within the procedures it moderates
//! (`moderation`).
//!
//! The streams of the domain's aggregates (procedures, contributions, gatherings) are
//! reserved: only the domain's commands write them, each decided against its aggregate's
//! rules, so nothing appended around them can record what the rules forbid.

pub mod bench;
pub mod export;
mod folded;
pub mod gatherings;
pub mod moderation;
pub mod organiser;
pub mod participant;
pub mod public;
pub mod samples;

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use amtsbuch_domain::participation::{ContributionId, GatheringId, ProcedureId};

use crate::module::{DomainModule, Reserved, TestSupport};
use crate::AppState;

/// The participation domain, as the service registers it.
pub static MODULE: DomainModule = DomainModule {
    name: "participation",
    routes,
    projections: amtsbuch_projections::participation::projections,
    reserved: Some(Reserved {
        categories: &[
            ProcedureId::CATEGORY,
            ContributionId::CATEGORY,
            GatheringId::CATEGORY,
        ],
        title: "The stream is written by the participation routes only",
        detail: "{stream} belongs to a participation aggregate (a procedure, contribution or gathering); its events are written only by the participation commands, which check their rules",
    }),
    jobs: None,
    bench: Some(bench::BENCH),
    export: Some(export::EXPORT),
    processing: None,
    retention: None,
    erasure: None,
    obligations: None,
    tests: TestSupport {
        access: samples::ACCESS,
        last: samples::LAST,
        samples: &samples::SAMPLES,
    },
};

#[derive(OpenApi)]
#[openapi(tags(
    (name = "participation", description = "Participation procedures of the Beteiligungsportal: search, rounds, published contributions, moderation log, calendar")
))]
struct ParticipationDoc;

/// Every route of the participation domain, with its OpenAPI description and tags. The
/// calendar is registered before `/participations/{id}`, which would otherwise take
/// `calendar` for an id.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ParticipationDoc::openapi())
        .routes(routes!(public::search, organiser::draft))
        .routes(routes!(public::calendar))
        .routes(routes!(public::get))
        .routes(routes!(public::contributions, participant::contribute))
        .routes(routes!(public::moderation_log))
        .routes(routes!(organiser::announce))
        .routes(routes!(organiser::schedule_round))
        .routes(routes!(organiser::cancel))
        .routes(routes!(organiser::answer))
        .routes(routes!(organiser::evaluate))
        .routes(routes!(organiser::weigh))
        .routes(routes!(organiser::decide))
        .routes(routes!(public::results))
        .routes(routes!(participant::receipt))
        .routes(routes!(participant::report))
        .routes(routes!(participant::withdraw))
        .routes(routes!(participant::support, participant::unsupport))
        .routes(routes!(gatherings::schedule))
        .routes(routes!(gatherings::register))
        .routes(routes!(gatherings::cancel))
        .routes(routes!(moderation::queue))
        .routes(routes!(moderation::hide))
        .routes(routes!(moderation::unhide))
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;
    use crate::module;

    #[test]
    fn raw_appends_to_the_aggregates_streams_are_refused() {
        let stream = |s: &str| amtsbuch_domain::StreamId::parse(s).expect("stream");
        let id = "0193a1b2-0000-7000-8000-000000000001";
        for category in ["participation", "contribution", "gathering"] {
            let problem = module::refuse_reserved(&[&MODULE], &stream(&format!("{category}-{id}")))
                .expect_err("refused");
            assert_eq!(problem.status, StatusCode::FORBIDDEN);
            assert_eq!(problem.kind, "reserved-stream");
        }
        assert!(module::refuse_reserved(&[&MODULE], &stream("participation-1")).is_ok());
    }
}
