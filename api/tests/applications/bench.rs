//! `amtsbuch bench applications` with tiny numbers, on SQLite and on PostgreSQL, so that
//! the benchmark cannot rot: every measured submission (in one request, and as a pair of
//! save and submit) is answered with its receipt,
//! arrives at the Fachverfahren's NATS subscriber, and the inbox lists the filled log.
//! The figures themselves are printed, never judged (docs/PERFORMANCE.md has them).

use amtsbuch_api::applications::bench::ApplicationsBench;

use super::common;

async fn the_bench_runs_with_tiny_numbers(adapter: common::Adapter) {
    let database_url = match adapter {
        common::Adapter::Postgres => common::database_url(),
        common::Adapter::Sqlite => "sqlite:".to_owned(),
    };
    let bench = ApplicationsBench {
        database_url,
        nats_url: common::nats_url(),
        applications: 60,
        submissions: 12,
        rate: 40,
        fields: 20,
        inbox_pages: 10,
        followers_read_alone: false,
    };
    let figures = bench.figures().await.expect("the bench runs");
    assert_eq!(figures.submission_failed, 0, "{}", figures.report());
    assert_eq!(figures.submission.count, 12);
    assert_eq!(figures.pair_failed, 0, "{}", figures.report());
    assert_eq!(figures.pair.count, 12);
    assert_eq!(figures.baseline_append.count, 12);
    assert_eq!(figures.delivery.count, 12, "{}", figures.report());
    assert_eq!(figures.delivery_missing, 0);
    assert_eq!(figures.inbox.count, 10);
    assert_eq!(figures.baseline_page.count, 10);
    // The official sees the authority's share of the filled log on the first page.
    assert!(figures.inbox_first_page >= 10, "{}", figures.report());
    assert!(figures.log_events >= 60 + 12, "{}", figures.report());
    let report = figures.report();
    for line in [
        "the goal of 15 ms",
        "the goal of 10 ms",
        "the goal of 50 ms",
        "costs per submission",
        "costs per save-and-submit pair",
    ] {
        assert!(report.contains(line), "{report}");
    }
}

/// The subcommand is registered: `amtsbuch bench applications --help` names its flags.
#[tokio::test]
async fn the_subcommand_is_registered() {
    let dir = common::TempDir::new();
    let (code, out, err) = common::run_cli_in(&dir.0, &["bench", "applications", "--help"]).await;
    assert_eq!(code, 0, "{err}");
    for flag in [
        "--applications",
        "--submissions",
        "--rate",
        "--fields",
        "--inbox-pages",
    ] {
        assert!(out.contains(flag), "{flag} in {out}");
    }
}

async fn run(adapter: common::Adapter, test: impl AsyncFnOnce(common::Adapter)) {
    test(adapter).await;
}

common::on_both_adapters!(using run; the_bench_runs_with_tiny_numbers);
