//! The command a user types to see a broker kill on the real stack — `etl-harness run scenarios/broker-kill.toml
//! --backend local` — from the built binary: it passes, its report is on stdout, and its terminal is not pages of
//! warnings: the fault's expected effects (fetches failing while the leader is down, connections it cuts) are
//! logged below the default level.
//!
//! Without `mariadbd` or `java` it prints why and passes as skipped, unless `ETL_HARNESS_REQUIRE_REAL=1` (CI).

mod common;

use std::process::Command;

#[test]
fn broker_kill_runs_on_local_from_the_command_line_with_a_quiet_terminal() {
    if !common::real_services_available(&["mariadbd", "mariadb-install-db", "java"]) {
        return;
    }
    let out = Command::new(env!("CARGO_BIN_EXE_etl-harness"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "run",
            "scenarios/broker-kill.toml",
            "--backend",
            "local",
            "--no-progress",
        ])
        .env_remove("RUST_LOG")
        .output()
        .expect("the binary starts");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "exit status; seed 8; reproduce with: etl-harness run scenarios/broker-kill.toml --backend local\n\
         stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("broker-kill — passed"), "{stdout}");
    assert!(stdout.contains("backend local"), "{stdout}");
    assert!(
        stdout.contains("scheduled     kill leader of dbserver1.openmrs.obs partition 0"),
        "{stdout}"
    );
    let warnings: Vec<&str> = stderr.lines().filter(|l| l.contains("WARN")).collect();
    assert!(
        warnings.is_empty(),
        "warnings at the default level:\n{}",
        warnings.join("\n")
    );
}
