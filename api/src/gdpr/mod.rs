//! The GDPR domain over HTTP: Servicekonto accounts, § 10 SächsEGovG consents, checked
//! disclosures, and the data protection officer's replay, export and erasure — one domain
//! module ([`MODULE`]), registered in `crate::domains`.
//!
//! Every command runs through the core's command path (`crate::command::execute`): read
//! the aggregate's stream, fold it, decide, append with the stream's version as the
//! expected version. Events that carry personal data are sealed under the account's key
//! on the way in, and opened on the way out; after erasure they read as
//! `Personal::Erased`. Time is the server's: the instant of a command is taken when it is
//! handled.
//!
//! Commands that change what a subject has consented to, and the disclosures judged against
//! those consents, take the subject's lock (`crate::command::lock_subject`) and only then
//! read the clock. Otherwise a withdrawal could take its instant, and a disclosure a later
//! one but read the consents before the withdrawal committed: the log would then hold a
//! grant at an instant the replay shows the consent withdrawn.
//!
//! Answers a data protection officer relies on for completeness — the Art. 15 export, the
//! disclosures of a subject, and the retention holds an erasure must respect — come partly
//! from read models, which follow the log a moment behind. Those routes first wait until
//! the read models they use have reached the log's head
//! (`crate::command::read_models_current`).

pub mod accounts;
pub mod bench;
pub mod consents;
pub mod dpo;
pub mod samples;
pub mod shapes;
pub mod sweeper;

use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use amtsbuch_domain::access::{Principal, Role};
use amtsbuch_domain::gdpr::retention::{HoldId, ERASURE_CATEGORY};
use amtsbuch_domain::gdpr::{AccountId, ConsentId, DisclosureId};

use crate::command::Meta;
use crate::module::{DomainModule, Reserved, TestSupport};
use crate::problem::Problem;
use crate::AppState;

/// The GDPR domain, as the service registers it.
pub static MODULE: DomainModule = DomainModule {
    name: "gdpr",
    routes,
    projections: amtsbuch_projections::gdpr::projections,
    reserved: Some(Reserved {
        categories: &[
            AccountId::CATEGORY,
            ConsentId::CATEGORY,
            DisclosureId::CATEGORY,
            HoldId::CATEGORY,
            ERASURE_CATEGORY,
        ],
        title: "The stream is written by the GDPR routes only",
        detail: "{stream} belongs to a GDPR aggregate (an account, consent, disclosure, retention hold or erasure); its events are written only through /accounts, /consents, /disclosures, /retention-holds and /dpo, which check their rules",
    }),
    jobs: Some(sweeper::JOBS),
    bench: Some(bench::BENCH),
    export: Some(dpo::EXPORT),
    processing: Some(dpo::PROCESSING),
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
    (name = "accounts", description = "Servicekonto accounts; master data sealed per subject"),
    (name = "consents", description = "§ 10 SächsEGovG consents, consent receipts, and disclosures checked against them"),
    (name = "dpo", description = "For data protection officers: replay, Art. 15 export, Art. 17 erasure, Art. 30 overview, retention holds")
))]
struct GdprDoc;

/// Every route of the GDPR domain, with its OpenAPI description and tags.
fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(GdprDoc::openapi())
        .routes(routes!(accounts::open_account))
        .routes(routes!(accounts::get_account))
        .routes(routes!(accounts::change_master_data))
        .routes(routes!(accounts::link_identity))
        .routes(routes!(accounts::request_deletion))
        .routes(routes!(consents::give, consents::list_own))
        .routes(routes!(consents::get))
        .routes(routes!(consents::withdraw))
        .routes(routes!(consents::renew))
        .routes(routes!(consents::narrow))
        .routes(routes!(consents::revoke))
        .routes(routes!(consents::receipt))
        .routes(routes!(consents::disclose))
        .routes(routes!(dpo::consent_history))
        .routes(routes!(dpo::disclosures))
        .routes(routes!(dpo::export))
        .routes(routes!(dpo::erase))
        .routes(routes!(dpo::processing))
        .routes(routes!(dpo::expiring))
        .routes(routes!(dpo::place_hold))
        .routes(routes!(dpo::release_hold))
}

/// Parse an account id from a path or body.
pub fn account_id(raw: &str) -> Result<AccountId, Problem> {
    Uuid::parse_str(raw)
        .ok()
        .filter(|u| raw == u.hyphenated().to_string())
        .map(AccountId)
        .ok_or_else(|| {
            Problem::bad_request(
                "invalid-subject",
                "a subject (account id) is a lowercase hyphenated UUID",
            )
        })
}

/// Whether the caller may act for the data subject `subject`, and if so, in which role
/// the command is recorded (`Meta`). Each role is asked by its own rule, and the caller
/// passes when one of its roles passes:
///
/// - citizen: its own account only;
/// - DPO and operator: every subject;
/// - authority, Fachverfahren, auditor, cashier, moderator: none (their routes name no
///   subject of theirs).
///
/// Only the roles the route grants are asked, since the guard has narrowed the caller to
/// them; a role never passes because the caller also holds some other role. A citizen who
/// passes for its own account is recorded as that account, even if another role of the
/// token would pass too.
pub fn act_for(caller: &Principal, subject: &AccountId) -> Result<Meta, Problem> {
    let subject = subject.to_string();
    let reaches = |role: Role| match role {
        Role::Citizen => caller.account() == Some(subject.as_str()),
        Role::Dpo | Role::Operator => true,
        Role::Authority | Role::Fachverfahren | Role::Auditor | Role::Cashier | Role::Moderator => {
            false
        }
    };
    caller
        .roles()
        .iter()
        .copied()
        .find(|&role| reaches(role))
        .map(|role| Meta::acting_as(caller, role))
        .ok_or_else(|| Problem::forbidden("a citizen's token acts only for its own account"))
}

/// The vault's name for the holder of an account's data keys: the account as data subject.
pub fn vault_subject(account: AccountId) -> amtsbuch_infra::vault::SubjectId {
    amtsbuch_domain::SubjectId::from(account).into()
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;
    use crate::module;

    /// The command line of `amtsbuch` as far as the module touches it.
    fn parse(args: &[&str]) -> Result<clap::ArgMatches, clap::Error> {
        let cli = clap::Command::new("amtsbuch")
            .subcommand(clap::Command::new("serve"))
            .subcommand(clap::Command::new("bench"));
        module::command_line(cli, &[&MODULE]).try_get_matches_from(args)
    }

    #[test]
    fn serve_takes_the_sweep_interval_from_the_command_line_and_the_environment() {
        let matches = parse(&["amtsbuch", "serve", "--sweep-interval-secs", "5"]).expect("parses");
        let serve = matches.subcommand_matches("serve").expect("serve");
        assert_eq!(serve.get_one::<u64>("sweep_interval_secs"), Some(&5));
        let default = parse(&["amtsbuch", "serve"]).expect("parses");
        let serve = default.subcommand_matches("serve").expect("serve");
        assert_eq!(serve.get_one::<u64>("sweep_interval_secs"), Some(&60));
        // The only test that sets this variable, and the only one that reads it.
        std::env::set_var("AMTSBUCH_SWEEP_INTERVAL_SECS", "7");
        let from_env = parse(&["amtsbuch", "serve"]);
        std::env::remove_var("AMTSBUCH_SWEEP_INTERVAL_SECS");
        let from_env = from_env.expect("parses");
        let serve = from_env.subcommand_matches("serve").expect("serve");
        assert_eq!(serve.get_one::<u64>("sweep_interval_secs"), Some(&7));
        assert!(parse(&["amtsbuch", "serve", "--sweep-interval-secs", "soon"]).is_err());
    }

    #[test]
    fn bench_gdpr_is_offered_with_its_flags() {
        let matches = parse(&[
            "amtsbuch",
            "bench",
            "gdpr",
            "--database-url",
            "postgres://db/test",
            "--events",
            "10",
        ])
        .expect("parses");
        let (_, args) = module::bench_asked(&matches, &[&MODULE]).expect("the GDPR bench");
        let bench =
            <bench::GdprBench as clap::FromArgMatches>::from_arg_matches(&args).expect("its flags");
        assert_eq!(
            (
                bench.database_url.as_str(),
                bench.events,
                bench.subjects,
                bench.samples
            ),
            ("postgres://db/test", 10, 20_000, 2_000)
        );
    }

    #[test]
    fn raw_appends_to_the_aggregates_streams_are_refused_and_to_others_not() {
        let stream = |s: &str| amtsbuch_domain::StreamId::parse(s).expect("stream");
        let id = "0193a1b2-0000-7000-8000-000000000001";
        for category in ["account", "consent", "disclosure", "retention", "erasure"] {
            let reserved = stream(&format!("{category}-{id}"));
            let problem = module::refuse_reserved(&[&MODULE], &reserved).expect_err("refused");
            assert_eq!(problem.kind, "reserved-stream");
            assert_eq!(problem.status, StatusCode::FORBIDDEN);
            assert!(problem
                .detail
                .starts_with(&format!("{category}-{id} belongs to a GDPR aggregate")));
        }
        for free in [
            "consent-1",
            "application-0193a1b2-0000-7000-8000-000000000001",
            "accounts-x",
        ] {
            assert!(
                module::refuse_reserved(&[&MODULE], &stream(free)).is_ok(),
                "{free}"
            );
        }
    }
}
