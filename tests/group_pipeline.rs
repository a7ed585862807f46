//! Group-mode settings the shipped scenarios do not cover, on the embedded backend: auto-commit under a kill
//! right after a write (whatever is lost is what an auto-commit passed), and a consumer that joins mid-stream.

use openmrs_etl_harness::history::GroupEventKind;
use openmrs_etl_harness::run::{run, RunOptions, RunOutcome};
use openmrs_etl_harness::scenario::Scenario;

mod common;

/// `scenarios/group-static-member.toml` with `[pipeline]` and `[[faults]]` replaced.
async fn run_variant(name: &str, pipeline: &str, faults: &str, expect: &str) -> RunOutcome {
    let base =
        std::fs::read_to_string("scenarios/group-static-member.toml").expect("shipped scenario");
    let head = base.split("[pipeline]").next().expect("a [pipeline] table");
    let text = format!("{head}[pipeline]\n{pipeline}\n{faults}\n[expect]\n{expect}\n").replace(
        "name = \"group-static-member\"",
        &format!("name = \"{name}\""),
    );
    let text = common::with_backends(&text, &["embedded"]);
    let scenario =
        Scenario::parse(&text, &format!("{name}.toml")).unwrap_or_else(|e| panic!("{e}"));
    let options = RunOptions {
        scenario_path: format!("{name}.toml"),
        progress: false,
    };
    let outcome = run(&scenario, &options)
        .await
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(
        outcome.report.passed(),
        "{name} (seed {}):\n{}",
        scenario.seed,
        outcome.report.terminal()
    );
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_commit_losses_are_what_an_auto_commit_passed() {
    let outcome = run_variant(
        "group-auto-commit",
        "consumers = 2\nassignment = \"group\"\ncommit = \"auto\"\nauto_commit_interval = \"200ms\"\nsession_timeout = \"6s\"\n",
        "[[faults]]\nat = \"2s\"\nafter = \"consumer 1 writes\"\naction = \"kill\"\ntarget = \"consumer 1\"\nduration = \"2s\"\n",
        "lost = \"= committed_before_written\"\nduplicates = \"any\"\nfinal_state = \"any\"",
    )
    .await;
    let h = &outcome.history;
    assert!(
        h.group
            .iter()
            .any(|e| matches!(e.kind, GroupEventKind::Committed { auto: true, .. })),
        "no auto-commit was recorded"
    );
    assert!(
        !h.group
            .iter()
            .any(|e| matches!(e.kind, GroupEventKind::Committed { auto: false, .. })),
        "an auto-committing member made commits of its own"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_that_joins_mid_stream_gets_partitions_in_a_rebalance() {
    let outcome = run_variant(
        "group-join-later",
        "consumers = 3\nassignment = \"group\"\ncommit = \"after_write\"\nassignor = \"cooperative_sticky\"\nsession_timeout = \"6s\"\njoin_later = [3]\n",
        "[[faults]]\nat = \"2s\"\naction = \"restart\"\ntarget = \"consumer 3\"\n",
        "lost = 0\nduplicates = \"any\"\nrebalances = \">0\"\nfinal_state = \"equal\"",
    )
    .await;
    let h = &outcome.history;
    let formed = h
        .group
        .iter()
        .find(|e| e.kind == GroupEventKind::Formed)
        .expect("the group formed");
    assert!(
        !h.group
            .iter()
            .any(|e| e.consumer == 3 && e.at_ms < formed.at_ms),
        "consumer 3 was there before the stream"
    );
    assert!(
        h.group.iter().any(|e| e.consumer == 3
            && matches!(&e.kind, GroupEventKind::Assigned { partitions } if !partitions.is_empty())),
        "consumer 3 never got a partition"
    );
}
