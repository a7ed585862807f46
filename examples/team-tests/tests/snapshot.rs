//! A team's configuration as a scenario built in code, run on the embedded cluster, and its report kept as an
//! insta snapshot: a change to the harness, the configuration or the seed that changes what the run shows
//! fails the test with a diff.

use openmrs_etl_harness::live::Harness;
use openmrs_etl_harness::scenario::{Acks, Count, Scenario};

#[test]
fn our_production_topics_lose_nothing_in_a_clinic_day() {
    let scenario = Scenario::builder("team: production topic settings")
        .seed(2026)
        .brokers(3)
        .partitions(3)
        .replication_factor(3)
        .min_insync_replicas(2)
        .table("obs", |obs| obs.partitions = Some(6))
        .acks(Acks::All)
        .patients(60)
        .operations(500)
        .rate(500.0)
        .consumers(2)
        .expect_lost(Count::Exactly(0))
        .build()
        .expect("the scenario is valid");
    let outcome = Harness::new(scenario)
        .run_blocking()
        .expect("the run is carried out");
    outcome.assert_passed();
    insta::assert_snapshot!(outcome.report.stable_text());
}
