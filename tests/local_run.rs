//! Scenarios on the `local` backend (MariaDB, ZooKeeper, 3 Kafka 3.9 brokers, Connect + Debezium as processes),
//! judged like embedded runs, and the differential check: the same scenario and seed on both backends must give
//! the same verdict for every invariant.
//!
//! Without `mariadbd` or `java` the service tests print why and pass as skipped, unless
//! `ETL_HARNESS_REQUIRE_REAL=1` (CI) makes that a failure.

mod common;

use openmrs_etl_harness::run::diff::{diff, diff_on, Diff};
use openmrs_etl_harness::run::{run, LocalSession, RunError, RunOptions};
use openmrs_etl_harness::scenario::{Backend, Coordination, FaultAction, Scenario, Sink};

fn options(path: &str) -> RunOptions {
    RunOptions {
        scenario_path: path.into(),
        progress: false,
    }
}

/// Every local run of this file on one topology (3 brokers), started once: each run after the first gets a fresh
/// source database, a new Debezium connector and new topic names ([`LocalSession`]).
///
/// The scenarios are the files in `scenarios/` whose `backends` lists `local` — the directory, not a list in
/// this file: a scenario that lists a backend must pass there. Each runs on both backends with its own seed
/// ([`scenario_agrees`]): the local run meets the file's `[expect]`, every verdict is the embedded run's, every
/// fault applied without error on local, and the run really went through Debezium (GTIDs on streamed commits
/// and on consumed records). The ZooKeeper scenarios run first and the KRaft ones last (the session replaces its
/// topology when the coordination changes, so only once); quickstart runs first, and right after it quickstart
/// again on local alone with the MySQL sink ([`quickstart_with_the_mysql_sink_passes`]).
///
/// Every scenario is run even after one fails; the test fails at the end with all the failures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shipped_scenario_listing_local_agrees_with_embedded() {
    common::init_tracing();
    if !common::real_services_available(&["mariadbd", "mariadb-install-db", "java"]) {
        return;
    }
    let mut shipped = common::shipped_scenarios(Backend::Local);
    shipped.sort_by_key(|(path, scenario)| {
        (
            scenario.topology.coordination != Coordination::Zookeeper,
            path != QUICKSTART,
            path.clone(),
        )
    });
    assert_eq!(
        shipped.first().map(|(path, _)| path.as_str()),
        Some(QUICKSTART),
        "quickstart must list local"
    );
    let mut session = LocalSession::start(3, Coordination::Zookeeper)
        .await
        .unwrap_or_else(|e| panic!("starting the local topology: {e}"));
    let mut failures = Vec::new();
    let mut runs = 0;
    for (path, scenario) in &shipped {
        runs += 1;
        if let Err(failure) = scenario_agrees(&mut session, path, scenario).await {
            failures.push(failure);
        }
        if path == QUICKSTART {
            runs += 1;
            if let Err(failure) = quickstart_with_the_mysql_sink_passes(&mut session).await {
                failures.push(failure);
            }
        }
    }
    let logs = session.run_dir().await;
    session.shutdown().await;
    assert!(
        failures.is_empty(),
        "{} of {runs} local runs failed (service logs in {}):\n\n{}",
        failures.len(),
        logs.display(),
        failures.join("\n\n")
    );
}

const QUICKSTART: &str = "scenarios/quickstart.toml";

/// Both backends on `path`, the local one on `session`; an error says how to reproduce.
async fn diff_both(
    session: &mut LocalSession,
    path: &str,
    scenario: &Scenario,
) -> Result<Diff, String> {
    let began = std::time::Instant::now();
    let d = diff_on(
        scenario,
        &options(path),
        &[Backend::Embedded, Backend::Local],
        Some(session),
    )
    .await
    .map_err(|e| {
        format!(
            "{path}: {e} (seed {}; reproduce: etl-harness diff {path} --backends embedded,local)",
            scenario.seed
        )
    })?;
    println!(
        "{path} (both backends: {:.1} s)\n{}",
        began.elapsed().as_secs_f64(),
        d.table()
    );
    Ok(d)
}

/// The local run passed, and every verdict is the embedded run's.
fn passed_and_agreed(path: &str, scenario: &Scenario, d: &Diff) -> Result<(), String> {
    let (_, local) = &d.runs[1];
    if local.report.info.backend != "local" {
        return Err(format!(
            "{path}: the second run was on {}",
            local.report.info.backend
        ));
    }
    if !local.report.passed() {
        return Err(format!(
            "{path} on local failed (seed {}; reproduce: etl-harness diff {path} --backends embedded,local):\n{}",
            scenario.seed,
            local.report.terminal()
        ));
    }
    if !d.agree() {
        return Err(format!(
            "{path}: embedded and local disagree on {:?} (seed {}; reproduce: etl-harness diff {path} --backends embedded,local):\n{}",
            d.disagreements(),
            scenario.seed,
            d.table()
        ));
    }
    Ok(())
}

/// `path` on both backends, the local run on `session`: it passed, agreed with the embedded run, applied every
/// fault, aimed every topic-named fault at this run's topics, and went through Debezium.
async fn scenario_agrees(
    session: &mut LocalSession,
    path: &str,
    scenario: &Scenario,
) -> Result<(), String> {
    let d = diff_both(session, path, scenario).await?;
    passed_and_agreed(path, scenario, &d)?;
    let (_, local) = &d.runs[1];
    if !scenario.faults.is_empty() && local.history.faults.is_empty() {
        return Err(format!("{path}: no fault was recorded on local"));
    }
    if local.history.faults.iter().any(|f| f.error.is_some()) {
        return Err(format!(
            "{path}: a fault failed on local: {:#?}",
            local.history.faults
        ));
    }
    // A target naming a topic ("leader of <topic> partition 0") names this run's topic: on a shared topology the
    // earlier runs' topics still exist under the scenario's own names, and a fault aimed at them hits the wrong
    // broker without any error.
    let topics: std::collections::BTreeSet<&str> = local
        .history
        .end_offsets
        .iter()
        .map(|(topic, _, _)| topic.as_str())
        .collect();
    for fault in &local.history.faults {
        if let Some((_, rest)) = fault.target.split_once(" of ") {
            let topic = rest.split(" partition").next().unwrap_or(rest);
            if !topics.contains(topic) {
                return Err(format!(
                    "{path}: fault target `{}` names a topic this run does not have: {topics:?}",
                    fault.target
                ));
            }
        }
    }
    // The local run really went through Debezium: every streamed commit has a MariaDB GTID, and consumers read
    // records carrying them.
    let h = &local.history;
    if !h
        .commits
        .iter()
        .filter(|c| !c.snapshot)
        .all(|c| c.gtid.as_deref().is_some_and(|g| g.starts_with("0-1-")))
    {
        return Err(format!(
            "{path} on local: a streamed commit without a MariaDB GTID"
        ));
    }
    if !h
        .consumed
        .iter()
        .filter_map(|c| c.change.as_ref())
        .any(|ch| ch.source.gtid.is_some())
    {
        return Err(format!(
            "{path} on local: no consumed record carries a GTID"
        ));
    }
    Ok(())
}

async fn quickstart_with_the_mysql_sink_passes(session: &mut LocalSession) -> Result<(), String> {
    let path = QUICKSTART;
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let text = common::with_backends(&text, &["local"])
        .replace("backend = \"embedded\"", "backend = \"local\"")
        .replace("sink = \"memory\"", "sink = \"mysql\"")
        // The sink is what this run is about, not the volume (run 1 streamed the full 5,000 operations).
        .replace("operations = 5000", "operations = 1500");
    let scenario = Scenario::parse(&text, path).map_err(|e| e.to_string())?;
    assert_eq!(scenario.pipeline.sink, Sink::Mysql);
    assert_eq!(scenario.workload.operations, Some(1500));
    let outcome = session
        .run(&scenario, &options(path))
        .await
        .map_err(|e| format!("quickstart with the MySQL sink on local: {e}"))?;
    if !outcome.report.passed() {
        return Err(format!(
            "quickstart with the MySQL sink on local failed (seed {}):\n{}",
            scenario.seed,
            outcome.report.terminal()
        ));
    }
    if outcome.finals.sink.is_empty() || outcome.finals.sink != outcome.finals.oracle {
        return Err("quickstart with the MySQL sink on local: the flat table read back from MariaDB is empty or differs from the batch recomputation".into());
    }
    let fresh_prefix = format!("{}_r2.", scenario.topics.prefix);
    if !outcome
        .history
        .consumed
        .iter()
        .all(|c| c.topic.starts_with(&fresh_prefix))
    {
        return Err(format!(
            "quickstart with the MySQL sink, the second run on the topology, read a topic not under {fresh_prefix}"
        ));
    }
    Ok(())
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
