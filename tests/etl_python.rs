//! A team's own ETL as the system under test: the Python example (`examples/etl-python/`, confluent-kafka and
//! PyMySQL in the virtualenv its `setup.sh` makes) run as `[pipeline] kind = "command"` on the embedded backend
//! (with a MariaDB the harness starts for its sink) and on local (real Debezium and Kafka, the sink on the
//! backend's MariaDB), each scenario on both with its seed through `diff`.
//!
//! The correct ETL (commit after write, or offsets stored with its data and judged by its progress row) must
//! pass on both; the one that commits before it writes must fail on
//! both (exit status 1) with its loss attributed to commits ahead of writes; the backends must agree on every
//! verdict. Every `.toml` of the example is run and must be classified here.
//!
//! Without the virtualenv, `mariadbd` or `java` the test prints why and passes as skipped, unless
//! `ETL_HARNESS_REQUIRE_REAL=1` (CI, which runs `examples/etl-python/setup.sh`) makes that a failure.

mod common;

use std::path::Path;

use openmrs_etl_harness::run::diff::diff_on;
use openmrs_etl_harness::run::{LocalSession, RunOptions};
use openmrs_etl_harness::scenario::{Backend, Coordination, Scenario};

const EXAMPLE: &str = "examples/etl-python";

/// What each example scenario must show: whether the ETL passes.
fn expected_to_pass(file: &str) -> Option<bool> {
    match file {
        "correct.toml" | "sink-progress.toml" | "builtin-shape.toml" => Some(true),
        "commit-before-write.toml" => Some(false),
        _ => None,
    }
}

fn venv_ready() -> bool {
    let python = Path::new(EXAMPLE).join(".venv/bin/python");
    let ok = std::process::Command::new(&python)
        .args(["-c", "import confluent_kafka, pymysql"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return true;
    }
    let reason = format!(
        "the example's virtualenv ({}) cannot import confluent_kafka and pymysql; run {EXAMPLE}/setup.sh",
        python.display()
    );
    if std::env::var("ETL_HARNESS_REQUIRE_REAL").is_ok_and(|v| v == "1") {
        panic!("ETL_HARNESS_REQUIRE_REAL=1 requires {reason}");
    }
    println!("skipped: {reason}");
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_examples_are_judged_alike_on_embedded_and_local() {
    common::init_tracing();
    if !common::real_services_available(&["mariadbd", "mariadb-install-db", "java"])
        || !venv_ready()
    {
        return;
    }
    let mut files: Vec<String> = std::fs::read_dir(EXAMPLE)
        .expect("the example's directory")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".toml"))
        .collect();
    files.sort();
    assert_eq!(
        files.len(),
        4,
        "{EXAMPLE} has {files:?}; classify every scenario in expected_to_pass"
    );
    let mut session = LocalSession::start(3, Coordination::Zookeeper)
        .await
        .unwrap_or_else(|e| panic!("starting the local topology: {e}"));
    let mut all_failures = Vec::new();
    for file in &files {
        let path = format!("{EXAMPLE}/{file}");
        let reproduce = |seed: u64| {
            format!("seed {seed}; reproduce: etl-harness diff {path} --backends embedded,local --seed {seed}")
        };
        let Some(passes) = expected_to_pass(file) else {
            all_failures.push(format!("{path}: not classified in tests/etl_python.rs"));
            continue;
        };
        let loaded = Scenario::load(Path::new(&path))
            .unwrap_or_else(|e| panic!("{path} does not parse: {e}"));
        // The buggy ETL is killed at its first commit after a backlog built and again after its restart (`after =
        // "consumer 1 commits"`: the harness freezes it the moment its group's offsets move), so it loses two
        // batches on its own seed, no retries.
        let scenario = loaded;
        let options = RunOptions {
            scenario_path: path.clone(),
            progress: false,
        };
        let began = std::time::Instant::now();
        let d = match diff_on(
            &scenario,
            &options,
            &[Backend::Embedded, Backend::Local],
            Some(&mut session),
        )
        .await
        {
            Ok(d) => d,
            Err(e) => {
                all_failures.push(format!("{path}: {e} ({})", reproduce(scenario.seed)));
                continue;
            }
        };
        println!(
            "{path} (both backends: {:.1} s)\n{}",
            began.elapsed().as_secs_f64(),
            d.table()
        );
        if !d.agree() {
            all_failures.push(format!(
                "{path}: the backends disagree on {:?} ({})\n{}",
                d.disagreements(),
                reproduce(scenario.seed),
                d.table()
            ));
        }
        for (backend, run) in &d.runs {
            let report = &run.report;
            let why = || {
                format!(
                    "{path} on {backend:?} ({}):\n{}",
                    reproduce(scenario.seed),
                    report.terminal()
                )
            };
            if report.passed() != passes {
                all_failures.push(format!(
                    "expected it to {}: {}",
                    if passes { "pass" } else { "fail" },
                    why()
                ));
                continue;
            }
            let a = &report.analysis;
            let tables = &a.final_state.tables;
            if tables.is_empty()
                || tables
                    .iter()
                    .any(|t| t.problem.is_some() || t.oracle_rows == 0)
            {
                all_failures.push(format!(
                    "a table was not compared with a non-empty oracle: {}",
                    why()
                ));
            }
            if !passes {
                // The loss, attributed: the ETL's committed offsets passed every record it never wrote.
                if report.exit_code() != 1
                    || a.lost.count == 0
                    || a.lost.committed_before_written != a.lost.count
                {
                    all_failures.push(format!(
                        "expected exit 1 with every lost row attributed to commits ahead of writes: {}",
                        why()
                    ));
                }
            }
        }
    }
    session.shutdown().await;
    assert!(all_failures.is_empty(), "{}", all_failures.join("\n\n"));
}

/// A team's ETL whose only process dies mid-stream: quiesce stops waiting at once (not after its 120 s
/// `quiesce_timeout`) and the report says why, with the end of the process's log. Needs no virtualenv: the
/// "ETL" is a shell script.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_etl_whose_processes_all_exit_fails_liveness_with_its_log() {
    common::init_tracing();
    if !common::real_services_available(&["mariadbd", "mariadb-install-db"]) {
        return;
    }
    let dir = tempfile::tempdir().expect("a temporary directory");
    let script = dir.path().join("crash.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\necho \"reading $ETL_HARNESS_TOPICS\"\nsleep 1\necho 'boom: the ETL gave up' >&2\nexit 3\n",
    )
    .expect("the script");
    std::process::Command::new("chmod")
        .args(["+x", &script.display().to_string()])
        .status()
        .expect("chmod");
    let path = dir.path().join("crash.toml");
    std::fs::write(
        &path,
        "name = \"crash\"\nseed = 3\n[topology]\nclock = \"real\"\n[workload]\npatients = 10\noperations = 300\nrate = 100\n\
         [pipeline]\nkind = \"command\"\nquiesce_timeout = \"120s\"\n[pipeline.command]\nrun = [\"./crash.sh\"]\n\
         table = \"t\"\noracle_sql = \"SELECT encounter_id FROM encounter\"\nprogress = \"sink_table\"\n",
    )
    .expect("the scenario");
    let scenario = Scenario::load(&path).expect("the scenario parses");
    let options = RunOptions {
        scenario_path: path.display().to_string(),
        progress: false,
    };
    let outcome = openmrs_etl_harness::run::run(&scenario, &options)
        .await
        .unwrap_or_else(|e| {
            panic!(
                "the run: {e} (seed 3; reproduce: etl-harness run {})",
                path.display()
            )
        });
    let reproduce = outcome.report.terminal();
    match &outcome.analysis.liveness {
        openmrs_etl_harness::check::Liveness::TimedOut { pending, .. } => {
            assert!(
                pending
                    .first()
                    .is_some_and(|p| p.contains("every process of the ETL has exited")),
                "{reproduce}"
            );
            assert!(
                pending.iter().any(|p| p.contains("consumer 1 exited") && p.contains("boom: the ETL gave up")),
                "{reproduce}"
            );
        }
        other => panic!("expected a liveness failure, got {other:?}:\n{reproduce}"),
    }
    assert!(!outcome.report.passed(), "{reproduce}");
}
