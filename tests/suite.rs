//! `etl-harness test`: a suite of scenarios with a line each, a summary, exit 0/1/2, and a JUnit XML report that
//! parses, with one testcase per scenario and a failure carrying the seed and the command to reproduce it.

mod common;

use std::path::Path;
use std::process::Command;

fn scenario(name: &str, seed: u64, expect: &str) -> String {
    common::small_scenario(name, seed, expect)
}

fn harness() -> Command {
    Command::new(env!("CARGO_BIN_EXE_etl-harness"))
}

fn write(dir: &Path, file: &str, text: &str) {
    std::fs::write(dir.join(file), text).unwrap();
}

#[test]
fn a_suite_reports_each_scenario_and_writes_junit() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "good.toml", &scenario("good", 3, ""));
    // Nothing is lost in a fault-free run, so "lost > 0" fails.
    write(
        dir.path(),
        "bad.toml",
        &scenario("bad", 5, "\n[expect]\nlost = \">0\"\n"),
    );
    write(dir.path(), "notes.txt", "not a scenario");
    let junit = dir.path().join("out").join("junit.xml");
    let out = harness()
        .arg("test")
        .arg(dir.path())
        .arg("--junit")
        .arg(&junit)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("test good [embedded] ... ok"), "{stdout}");
    assert!(
        stdout.contains("test bad [embedded] ... FAILED"),
        "{stdout}"
    );
    assert!(stdout.contains("1 passed, 1 failed, 0 skipped"), "{stdout}");

    let xml = std::fs::read_to_string(&junit).unwrap();
    let report = quick_junit::Report::deserialize_from_str(&xml).expect("JUnit XML parses");
    assert_eq!(report.test_suites.len(), 1);
    let cases = &report.test_suites[0].test_cases;
    assert_eq!(cases.len(), 2, "one testcase per scenario: {xml}");
    let bad = cases
        .iter()
        .find(|c| c.name.as_str() == "bad [embedded]")
        .expect("bad");
    match &bad.status {
        quick_junit::TestCaseStatus::NonSuccess { message, .. } => {
            let message = message.as_ref().map(|m| m.as_str()).unwrap_or("");
            assert!(message.contains("seed 5"), "{message}");
            assert!(message.contains("etl-harness run"), "{message}");
        }
        other => panic!("bad is a failure: {other:?}"),
    }
    assert!(bad
        .system_out
        .as_ref()
        .is_some_and(|o| o.as_str().contains("lost")));
    let good = cases
        .iter()
        .find(|c| c.name.as_str() == "good [embedded]")
        .expect("good");
    assert!(matches!(
        good.status,
        quick_junit::TestCaseStatus::Success { .. }
    ));
}

#[test]
fn a_filter_picks_scenarios_and_an_unreadable_one_is_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "good.toml", &scenario("good", 3, ""));
    write(
        dir.path(),
        "broken.toml",
        "name = \"broken\"\n[pipeline]\nconsumers = 0\n",
    );
    let out = harness()
        .arg("test")
        .arg(dir.path())
        .args(["--filter", "good", "--jobs", "1"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("running 1 scenarios"), "{stdout}");

    let out = harness().arg("test").arg(dir.path()).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(stdout.contains("1 could not run"), "{stdout}");
    assert!(
        stdout.contains("broken.toml:3"),
        "the load error keeps its location: {stdout}"
    );

    let out = harness()
        .arg("test")
        .arg(dir.path().join("missing"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// The acceptance run: every shipped scenario through `etl-harness test`, one testcase each, all passing.
#[test]
fn every_shipped_scenario_passes_through_the_suite_runner() {
    let dir = tempfile::tempdir().unwrap();
    let junit = dir.path().join("junit.xml");
    let scenarios = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let out = harness()
        .arg("test")
        .arg(&scenarios)
        .arg("--junit")
        .arg(&junit)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    // The scheduled faults' expected effects (fetches failing while a leader is down, connections cut) are
    // logged below the default level: the terminal shows the results, not pages of warnings.
    let stderr = String::from_utf8_lossy(&out.stderr);
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("WARN")).collect();
    assert!(
        warnings.is_empty(),
        "warnings at the default level:\n{}",
        warnings.join("\n")
    );
    let shipped = std::fs::read_dir(&scenarios)
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "toml"))
        .count();
    let report =
        quick_junit::Report::deserialize_from_str(&std::fs::read_to_string(&junit).unwrap())
            .expect("JUnit XML parses");
    assert_eq!(report.test_suites[0].test_cases.len(), shipped, "{stdout}");
}
