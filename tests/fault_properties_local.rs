//! The differential fault campaign (issue 18): drawn fault schedules, each case on the embedded cluster and on the
//! local backend (MariaDB, 3 Kafka 3.9 brokers, Connect + Debezium as processes) with the same seed; a case fails
//! when either backend loses, reorders or diverges, or when their verdicts differ. CI runs a few cases
//! (`FAULT_CASES`, default 2; 35–50 s each on 2 cores); a long campaign is
//! `etl-harness fuzz-faults --backends embedded,local --cases N` (docs/fidelity.md).
//!
//! Without `mariadbd` or `java` it prints why and passes as skipped, unless `ETL_HARNESS_REQUIRE_REAL=1` (CI).

mod common;

use openmrs_etl_harness::fuzz_faults::{self, base_scenario, CampaignConfig, DIFFERENTIAL_BASE};
use openmrs_etl_harness::scenario::Backend;

#[test]
fn drawn_fault_schedules_give_the_same_verdicts_on_embedded_and_local() {
    common::init_tracing();
    if !common::real_services_available(&["mariadbd", "mariadb-install-db", "java"]) {
        return;
    }
    let env = |name| std::env::var(name).ok().and_then(|v| v.parse::<u64>().ok());
    let cases = env("FAULT_CASES").unwrap_or(2) as u32;
    let seed = env("FAULT_SEED").unwrap_or(1);
    let base = base_scenario(DIFFERENTIAL_BASE, "DIFFERENTIAL_BASE").expect("the base parses");
    let out = tempfile::tempdir().expect("a temporary directory");
    let mut config = CampaignConfig::new(cases, seed, out.path());
    config.backends = vec![Backend::Embedded, Backend::Local];
    // A failure is kept, not shrunk at length: each shrink run is a case on both backends.
    config.max_shrink_runs = 4;
    let mut faults_drawn = 0;
    let report = fuzz_faults::search(&base, &config, &mut |p| {
        if let fuzz_faults::Progress::Case {
            number,
            seed,
            faults,
            held,
            unapplied,
            elapsed,
        } = p
        {
            faults_drawn += faults;
            let verdict = if !unapplied.is_empty() {
                format!("INCOMPLETE ({})", unapplied.join("; "))
            } else if *held {
                "held".to_string()
            } else {
                "FAILED".to_string()
            };
            println!(
                "case {number}/{cases}: seed {seed}, {faults} faults, {verdict} ({:.1} s)",
                elapsed.as_secs_f64()
            );
        }
    })
    .unwrap_or_else(|e| {
        panic!("differential campaign seed {seed}: {e}; reproduce: etl-harness fuzz-faults --backends embedded,local --cases {cases} --seed {seed}")
    });
    println!(
        "{} cases in {:.1} s ({:.1} cases/min)",
        report.cases,
        report.search_time.as_secs_f64(),
        report.cases_per_minute()
    );
    if let Some(failure) = &report.failure {
        let text = std::fs::read_to_string(&failure.path).unwrap_or_default();
        panic!(
            "campaign seed {seed}: {} (shrunk to {} faults); reproduce with: {}\n{text}",
            failure.failed.join(", "),
            failure.scenario.faults.len(),
            failure.reproduce()
        );
    }
    assert_eq!(report.cases, cases);
    assert!(
        report.cases_incomplete < report.cases,
        "every case had a fault a backend could not apply ({:?}): the campaign judged nothing; reproduce: etl-harness fuzz-faults --backends embedded,local --cases {cases} --seed {seed}",
        report.incomplete_examples
    );
    assert!(
        faults_drawn > 0,
        "no case drew a fault: the campaign tested nothing"
    );
}
