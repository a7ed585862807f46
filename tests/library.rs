//! The library API a team's Rust tests use (`openmrs_etl_harness::live`, `Scenario::builder`): whole runs from a
//! plain `#[test]`, live runs with fault verbs, what is refused, and that a dropped run stops its cluster. The
//! example crate `examples/team-tests` shows the same API from outside, with its own consumer.

mod common;

use std::time::Duration;

use openmrs_etl_harness::live::{Harness, LiveError, RunError};
use openmrs_etl_harness::scenario::{Backend, Count, Fault, FaultAction, FaultTarget, Scenario};

fn replicated(name: &str, operations: u64, rate: f64) -> Scenario {
    Scenario::builder(name)
        .seed(11)
        .brokers(3)
        .partitions(2)
        .replication_factor(3)
        .min_insync_replicas(2)
        .patients(30)
        .operations(operations)
        .rate(rate)
        .consumers(2)
        .expect_lost(Count::Exactly(0))
        .build()
        .expect("a valid scenario")
}

#[test]
fn a_built_scenario_runs_from_a_plain_test_with_the_same_stable_report_each_time() {
    let scenario = replicated("library-stable", 300, 600.0);
    let first = Harness::new(scenario.clone()).run_blocking().unwrap();
    first.assert_passed();
    let second = Harness::new(scenario.clone()).run_blocking().unwrap();
    assert_eq!(first.report.stable_text(), second.report.stable_text());
    insta::assert_snapshot!(first.report.stable_text());

    // The reproduce command names a file that says what ran.
    let reproduce = &first.report.reproduce;
    assert!(reproduce.ends_with("--seed 11"), "{reproduce}");
    let path = reproduce
        .strip_prefix("etl-harness run ")
        .and_then(|rest| rest.strip_suffix(" --seed 11"))
        .expect("etl-harness run FILE --seed N");
    let written = Scenario::load(std::path::Path::new(path)).expect("the written scenario parses");
    assert_eq!(written, scenario);
}

#[tokio::test]
async fn live_fault_verbs_act_now_are_checked_first_and_are_in_the_report() {
    // A current-thread test runtime: the run has its own, so the test's awaits never hold it up.
    let scenario = replicated("library-live", 600, 200.0);
    let live = Harness::new(scenario).start().await.unwrap();
    let bootstrap = live.bootstrap_servers().to_owned();
    assert_eq!(bootstrap.split(',').count(), 3, "{bootstrap}");
    assert_eq!(live.database_url(), None);
    let obs = live.topic("obs");
    assert_eq!(obs, "dbserver1.openmrs.obs");

    // Refused before anything is done, with what does not fit.
    match live.kill_broker(4).await {
        Err(LiveError::Invalid(why)) => {
            assert!(
                why.contains("expected a broker id between 1 and 3"),
                "{why}"
            )
        }
        other => panic!("broker 4 of 3: {other:?}"),
    }
    match live.stall_consumer(3, Duration::from_secs(1)).await {
        Err(LiveError::Invalid(why)) => assert!(why.contains("consumer between 1 and 2"), "{why}"),
        other => panic!("consumer 3 of 2: {other:?}"),
    }
    match live.kill_leader_of(&obs, 2).await {
        Err(LiveError::Invalid(why)) => assert!(why.contains("partitions 0..2"), "{why}"),
        other => panic!("partition 2 of 2: {other:?}"),
    }

    // A fault with a duration is undone by the run, as a scheduled one is.
    let isolated = live
        .fault(
            Fault::new(FaultAction::Isolate, FaultTarget::follower_of(&obs, 1))
                .lasting(Duration::from_millis(400)),
        )
        .await
        .unwrap();
    assert_eq!(isolated.len(), 1, "{isolated:?}");

    let killed = live.kill_leader_of(&obs, 0).await.unwrap();
    assert!((1..=3).contains(&killed));
    tokio::time::sleep(Duration::from_millis(500)).await;
    live.restart_broker(killed).await.unwrap();
    live.stream_done().await.unwrap();
    live.in_kafka().await.unwrap();
    let outcome = live.finish().await.unwrap();
    outcome.assert_passed();

    let faults: Vec<(&str, &str, &str)> = outcome
        .report
        .faults
        .iter()
        .map(|f| (f.phase, f.action.as_str(), f.resolved.as_str()))
        .collect();
    let broker = format!("broker {killed}");
    assert!(
        faults.contains(&("live", "kill", broker.as_str())),
        "{faults:?}"
    );
    assert!(
        faults
            .iter()
            .any(|(phase, action, resolved)| *phase == "live"
                && *action == "restart"
                && resolved.starts_with(&broker)),
        "{faults:?}"
    );
    assert!(
        faults.contains(&("live", "isolate", isolated[0].as_str())),
        "{faults:?}"
    );
    assert!(
        faults
            .iter()
            .any(|(phase, action, resolved)| *phase == "undone"
                && *action == "heal"
                && resolved.starts_with(&isolated[0])),
        "{faults:?}"
    );
    // The refused ones were never tried.
    assert_eq!(
        faults.iter().filter(|f| f.0 == "live").count(),
        3,
        "{faults:?}"
    );
    // Their times are the test's, so the stable text leaves them out.
    let text = outcome.report.stable_text();
    assert!(
        text.contains(&format!(
            "(timing)  live      kill leader of {obs} partition 0"
        )),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_run_dropped_unfinished_stops_its_cluster() {
    let live = Harness::new(replicated("library-dropped", 2000, 200.0))
        .start()
        .await
        .unwrap();
    let addresses: Vec<String> = live
        .bootstrap_servers()
        .split(',')
        .map(str::to_owned)
        .collect();
    for a in &addresses {
        tokio::net::TcpStream::connect(a)
            .await
            .expect("the broker answers while live");
    }
    drop(live);
    for a in &addresses {
        assert!(
            tokio::net::TcpStream::connect(a).await.is_err(),
            "{a} still accepts connections after the run was dropped"
        );
    }
}

#[tokio::test]
async fn what_a_run_cannot_do_is_refused_before_anything_starts() {
    let deterministic = Scenario::builder("library-virtual")
        .deterministic()
        .build()
        .unwrap();
    assert!(matches!(
        Harness::new(deterministic.clone()).start().await,
        Err(RunError::LiveNeedsRealClock)
    ));
    // The same scenario runs whole.
    Harness::new(deterministic)
        .run()
        .await
        .unwrap()
        .assert_passed();

    let embedded_only = replicated("library-unlisted", 100, 500.0);
    match Harness::new(embedded_only)
        .backend(Backend::Local)
        .run()
        .await
    {
        Err(RunError::NotListed { backend, .. }) => assert_eq!(backend, "local"),
        Err(other) => panic!("expected NotListed, got {other}"),
        Ok(_) => panic!("expected NotListed, the run went ahead"),
    }
}

#[test]
fn a_failing_run_panics_with_its_seed_and_reproduce_command() {
    let impossible = Scenario::builder("library-failing")
        .seed(5)
        .brokers(1)
        .operations(100)
        .rate(1000.0)
        .expect_duplicates(Count::AtLeast(1_000_000))
        .build()
        .unwrap();
    let outcome = Harness::new(impossible).run_blocking().unwrap();
    assert!(!outcome.report.passed());
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| outcome.assert_passed()))
        .expect_err("a failed run panics");
    let text = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        text.contains("seed 5; reproduce with: etl-harness run "),
        "{text}"
    );
    assert!(
        text.contains("library-failing-seed5.toml --seed 5"),
        "{text}"
    );
}
