//! End to end on the embedded default: `etl-harness run` on the shipped quickstart scenario and on small
//! variants, through the library (for the report) and through the binary (for exit codes and messages).

mod common;

use std::path::Path;
use std::process::Command;

use openmrs_etl_harness::run::{run, RunOptions};
use openmrs_etl_harness::scenario::Scenario;

fn options(path: &str) -> RunOptions {
    RunOptions {
        scenario_path: path.to_string(),
        progress: false,
    }
}

async fn run_file(path: &str) -> openmrs_etl_harness::run::RunOutcome {
    let scenario = Scenario::load(Path::new(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    run(&scenario, &options(path))
        .await
        .unwrap_or_else(|e| panic!("{path} (seed {}): {e}", scenario.seed))
}

/// The shipped quickstart passes, and its stable report (verdicts and what the seed decides) never changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quickstart_passes_with_a_stable_report() {
    let outcome = run_file("scenarios/quickstart.toml").await;
    assert!(
        outcome.report.passed(),
        "quickstart failed; reproduce with: etl-harness run scenarios/quickstart.toml --seed 42\n{}",
        outcome.report.terminal()
    );
    // Every stream commit and snapshot read reached the sink: the history proves it, not only the verdicts.
    let changes = outcome.history.changes().count();
    assert!(
        changes >= 20_000,
        "quickstart should carry at least 20,000 row changes, carried {changes}"
    );
    insta::assert_snapshot!(outcome.report.stable_text());
}

/// The stable text holds nothing that timing decides: two runs of the same seed give the same text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stable_text_is_the_same_for_the_same_seed() {
    let text = small_scenario(7, "[expect]\nlost = 0\n");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("small.toml");
    std::fs::write(&path, text).unwrap();
    let path = path.display().to_string();
    let first = run_file(&path).await;
    let second = run_file(&path).await;
    assert!(first.report.passed(), "{}", first.report.terminal());
    assert_eq!(first.report.stable_text(), second.report.stable_text());
}

/// With no memory for record batches every batch the run produces lives in the embedded cluster's spill file:
/// the run passes all the same (every change delivered, final state equal) and its report says what was spilled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_past_its_log_memory_serves_everything_from_the_spill_file() {
    let text =
        small_scenario(11, "").replace("brokers = 3\n", "brokers = 3\nlog_memory = \"0B\"\n");
    assert!(text.contains("log_memory"), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("spill.toml");
    std::fs::write(&path, text).unwrap();
    let outcome = run_file(&path.display().to_string()).await;
    assert!(outcome.report.passed(), "{}", outcome.report.terminal());
    let spill = outcome
        .report
        .metrics
        .log_spill
        .expect("the report says what was spilled");
    assert!(
        spill.peak_bytes > 0 && spill.written_bytes >= spill.peak_bytes,
        "{spill:?}"
    );
    assert!(outcome.report.terminal().contains("log spill"));
}

/// A small real-time scenario: a few hundred operations, fast.
fn small_scenario(seed: u64, extra: &str) -> String {
    common::small_scenario("small", seed, extra)
}

fn harness() -> Command {
    Command::new(env!("CARGO_BIN_EXE_etl-harness"))
}

/// An expectation that cannot hold makes the run exit 1, print the seed and the reproduce command, and write the
/// JSON report and the resolved scenario.
#[test]
fn a_failed_expectation_exits_1_with_the_reproduce_command() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wrong.toml");
    // Nothing is lost in a fault-free run, so "lost > 0" fails.
    std::fs::write(&path, small_scenario(3, "[expect]\nlost = \">0\"\n")).unwrap();
    let report = dir.path().join("out.json");
    let out = harness()
        .arg("run")
        .arg(&path)
        .arg("--report")
        .arg(&report)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(
        stderr.contains(&format!("etl-harness run {} --seed 3", path.display())),
        "no reproduce command in:\n{stderr}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(json["info"]["seed"], 3, "{json}");
    assert_eq!(json["passed"], false, "{json}");
    let resolved = report.with_extension("scenario.toml");
    let again = Scenario::load(&resolved).expect("the resolved scenario loads");
    assert_eq!(again.seed, 3);
}

/// `--seed` overrides the file's seed; a bad scenario is exit 2 with file:line:column.
#[test]
fn bad_scenario_exits_2_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "name = \"bad\"\n[pipeline]\nconsumers = 0\n").unwrap();
    let out = harness().arg("run").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:3:", path.display())) && stderr.contains("consumers"),
        "{stderr}"
    );
}

/// A backend that cannot run scenarios yet is a clear error, not a silent fallback to embedded.
#[test]
fn unavailable_backend_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("external.toml");
    let text = small_scenario(1, "")
        .replacen("seed = 1\n", "seed = 1\nbackends = [\"external\"]\n", 1)
        .replacen("[topology]\n", "[topology]\nbackend = \"external\"\n", 1);
    std::fs::write(&path, text).unwrap();
    let out = harness().arg("run").arg(&path).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("external"), "{stderr}");
}

/// `--backend` overrides the file's `[topology] backend` (as `--seed` overrides its seed), among the backends the
/// scenario lists; one it does not list, or an unknown name, is exit 2 with the reason.
#[test]
fn the_backend_flag_overrides_the_file_within_its_list() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("either.toml");
    let text = small_scenario(4, "")
        .replacen(
            "seed = 4\n",
            "seed = 4\nbackends = [\"containers\", \"embedded\"]\n",
            1,
        )
        .replacen("[topology]\n", "[topology]\nbackend = \"containers\"\n", 1);
    std::fs::write(&path, text).unwrap();
    let out = harness()
        .arg("run")
        .arg(&path)
        .args(["--backend", "embedded", "--no-progress"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("lost"));

    for (backend, expected) in [
        ("local", "lists only containers, embedded"),
        ("kafka", "unknown backend `kafka`"),
    ] {
        let out = harness()
            .arg("run")
            .arg(&path)
            .args(["--backend", backend])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert!(stderr.contains(expected), "{backend}: {stderr}");
    }
}
