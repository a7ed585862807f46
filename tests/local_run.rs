//! Scenarios on the `local` backend (MariaDB, ZooKeeper, 3 Kafka 3.9 brokers, Connect + Debezium as processes),
//! judged like embedded runs, and the differential check: the same scenario and seed on both backends must give
//! the same verdict for every invariant.
//!
//! Without `mariadbd` or `java` the service tests print why and pass as skipped, unless
//! `ETL_HARNESS_REQUIRE_REAL=1` (CI) makes that a failure.

mod common;

use openmrs_etl_harness::run::diff::diff;
use openmrs_etl_harness::run::{run, RunError, RunOptions};
use openmrs_etl_harness::scenario::{Backend, FaultAction, Scenario, Sink};

/// One local topology at a time: two on two cores would starve each other's JVMs.
static TOPOLOGY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn options(path: &str) -> RunOptions {
    RunOptions {
        scenario_path: path.into(),
        progress: false,
    }
}

/// quickstart (5,000 operations, 3 brokers, acks=all, RF 3) on both backends: the local run passes on its own
/// (lost 0, reordered 0, final state equal to the batch recomputation from MariaDB's tables), and every verdict
/// is the embedded run's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_on_local_passes_and_agrees_with_embedded() {
    common::init_tracing();
    if !common::real_services_available(&["mariadbd", "mariadb-install-db", "java"]) {
        return;
    }
    let _one_topology_at_a_time = TOPOLOGY.lock().await;
    let path = "scenarios/quickstart.toml";
    let scenario = Scenario::load(path.as_ref()).unwrap_or_else(|e| panic!("{e}"));
    let d = diff(
        &scenario,
        &options(path),
        &[Backend::Embedded, Backend::Local],
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let table = d.table();
    println!("{table}");
    let (_, local) = &d.runs[1];
    assert_eq!(local.report.info.backend, "local");
    assert!(
        local.report.passed(),
        "quickstart on local failed (seed {}; reproduce: etl-harness run {path} with [topology] backend = \"local\"):\n{}",
        scenario.seed,
        local.report.terminal()
    );
    // The local run really went through Debezium: every streamed commit has a MariaDB GTID, and consumers read
    // records carrying them.
    let h = &local.history;
    assert!(h
        .commits
        .iter()
        .filter(|c| !c.snapshot)
        .all(|c| c.gtid.as_deref().is_some_and(|g| g.starts_with("0-1-"))));
    assert!(h
        .consumed
        .iter()
        .filter_map(|c| c.change.as_ref())
        .any(|ch| ch.source.gtid.is_some()));
    assert!(
        d.agree(),
        "embedded and local disagree on {:?}:\n{table}",
        d.disagreements()
    );
}

/// The same on local alone with the MySQL sink: the ETL's images, flat table and offsets in MariaDB's
/// `etl_sink` schema, and the flat table read back from there equals the batch recomputation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_with_the_mysql_sink_on_local_passes() {
    common::init_tracing();
    if !common::real_services_available(&["mariadbd", "mariadb-install-db", "java"]) {
        return;
    }
    let _one_topology_at_a_time = TOPOLOGY.lock().await;
    let path = "scenarios/quickstart.toml";
    let text = std::fs::read_to_string(path).unwrap();
    let text = text
        .replace(
            "backends = [\"embedded\", \"local\"]",
            "backends = [\"local\"]",
        )
        .replace("backend = \"embedded\"", "backend = \"local\"")
        .replace("sink = \"memory\"", "sink = \"mysql\"");
    let scenario = Scenario::parse(&text, path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(scenario.pipeline.sink, Sink::Mysql);
    let outcome = run(&scenario, &options(path))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        outcome.report.passed(),
        "quickstart with the MySQL sink on local failed (seed {}):\n{}",
        scenario.seed,
        outcome.report.terminal()
    );
    assert!(!outcome.finals.sink.is_empty());
    assert_eq!(outcome.finals.sink, outcome.finals.oracle);
}

/// A fault the local backend cannot perform (a machine crash: the unflushed log exists only in the embedded
/// cluster) is a startup error naming the fault, before any process starts — even when the scenario language's
/// own check (which refuses `crash` for a scenario listing `local`) was bypassed.
#[tokio::test]
async fn a_fault_local_cannot_perform_is_refused_before_anything_starts() {
    let path = "scenarios/broker-kill.toml";
    let mut scenario = Scenario::load(path.as_ref()).unwrap_or_else(|e| panic!("{e}"));
    scenario.topology.backend = Backend::Local;
    scenario.faults[0].action = FaultAction::Crash;
    let error = match run(&scenario, &options(path)).await {
        Err(e) => e,
        Ok(_) => panic!("a crash ran on local"),
    };
    assert!(matches!(error, RunError::Nemesis(_)), "{error}");
    let text = error.to_string();
    assert!(
        text.contains("faults[0]") && text.contains("crash") && text.contains("local"),
        "{text}"
    );
}

/// The fault scenarios that list `local`, run on both backends with the same seed: every invariant has the same
/// verdict, and the local run passes on its own. broker-kill SIGKILLs the obs partition's leader and restarts it
/// (the controller moves leaders after the 6 s ZooKeeper session), connector-restart SIGKILLs the Connect worker
/// and starts it again (Debezium resends from its last committed offsets: duplicates, no loss),
/// consumer-restart kills an ETL consumer, controlled-shutdown SIGTERMs the leader, isolate-follower-realtime cuts
/// a follower off at its proxies (clients, peers, ZooKeeper) for 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_scenarios_on_local_agree_with_embedded() {
    common::init_tracing();
    if !common::real_services_available(&["mariadbd", "mariadb-install-db", "java"]) {
        return;
    }
    let _one_topology_at_a_time = TOPOLOGY.lock().await;
    for name in [
        "broker-kill",
        "connector-restart",
        "consumer-restart",
        "controlled-shutdown",
        "isolate-follower-realtime",
    ] {
        let path = format!("scenarios/{name}.toml");
        let scenario = Scenario::load(path.as_ref()).unwrap_or_else(|e| panic!("{e}"));
        let d = diff(
            &scenario,
            &options(&path),
            &[Backend::Embedded, Backend::Local],
        )
        .await
        .unwrap_or_else(|e| panic!("{path}: {e}"));
        let table = d.table();
        println!("{name}\n{table}");
        let (_, local) = &d.runs[1];
        assert!(
            !local.history.faults.is_empty(),
            "{name}: no fault was recorded on local"
        );
        assert!(
            local.history.faults.iter().all(|f| f.error.is_none()),
            "{name}: a fault failed on local: {:#?}",
            local.history.faults
        );
        assert!(
            local.report.passed(),
            "{name} on local failed (seed {}; reproduce: etl-harness diff {path} --backends embedded,local):\n{}",
            scenario.seed,
            local.report.terminal()
        );
        assert!(
            d.agree(),
            "{name}: embedded and local disagree on {:?} (seed {}; reproduce: etl-harness diff {path} --backends embedded,local):\n{table}",
            d.disagreements(),
            scenario.seed
        );
    }
}

/// A backend the scenario does not list is refused by the differential check.
#[tokio::test]
async fn diff_refuses_a_backend_the_scenario_does_not_list() {
    let path = "scenarios/retention.toml";
    let scenario = Scenario::load(path.as_ref()).unwrap_or_else(|e| panic!("{e}"));
    assert!(!scenario.backends.contains(&Backend::Local));
    let error = match diff(
        &scenario,
        &options(path),
        &[Backend::Embedded, Backend::Local],
    )
    .await
    {
        Err(e) => e,
        Ok(_) => panic!("retention (virtual clock) ran on local"),
    };
    assert!(matches!(error, RunError::NotListed { .. }), "{error}");
}
