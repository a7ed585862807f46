//! The team's own consumer ([`team_tests::ChangeReader`]) inside a live run: it reads the `obs` change topic
//! while the test kills that topic's partition-0 leader and brings it back, and must end up with exactly the
//! changes the source committed — every one, once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openmrs_etl_harness::live::Harness;
use openmrs_etl_harness::scenario::Scenario;
use team_tests::ChangeReader;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_reader_sees_every_obs_change_once_through_a_leader_kill() {
    let scenario = Scenario::builder("team: obs reader through a leader kill")
        .seed(21)
        .brokers(3)
        .partitions(3)
        .replication_factor(3)
        .min_insync_replicas(2)
        .patients(50)
        .operations(1200)
        .rate(300.0)
        .consumers(2)
        .build()
        .expect("the scenario is valid");
    let live = Harness::new(scenario)
        .start()
        .await
        .expect("the run starts");
    let topic = live.topic("obs");
    let partitions = live.scenario().topic_settings("obs").partitions as i32;

    // Our consumer runs beside the pipeline from the first commit on.
    let stop = Arc::new(AtomicBool::new(false));
    let reading = {
        let bootstrap = live.bootstrap_servers().to_owned();
        let topic = topic.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut reader = ChangeReader::connect(&bootstrap, &topic, partitions)
                .await
                .expect("the reader connects");
            while !stop.load(Ordering::Acquire) {
                if reader.poll().await == 0 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            // Everything is in Kafka now: read to the end.
            reader.read_to_end().await;
            reader
        })
    };

    tokio::time::sleep(Duration::from_secs(1)).await;
    let killed = live
        .kill_leader_of(&topic, 0)
        .await
        .expect("the leader is killed");
    tokio::time::sleep(Duration::from_secs(1)).await;
    live.restart_broker(killed)
        .await
        .expect("the broker restarts");
    live.in_kafka().await.expect("every commit reaches Kafka");
    stop.store(true, Ordering::Release);
    let reader = tokio::time::timeout(Duration::from_secs(60), reading)
        .await
        .expect("the reader reaches the end within a minute")
        .expect("the reader did not panic");

    let outcome = live.finish().await.expect("the run is judged");
    outcome.assert_passed();
    let committed = &outcome.report.analysis.source.by_table["obs"];
    assert_eq!(
        reader.counts(),
        committed,
        "our reader's obs changes by operation (left) against what the source committed (right); seed {}",
        outcome.report.info.seed
    );
    assert_eq!(
        reader.tombstones(),
        committed.get("d").copied().unwrap_or(0)
    );
    // The kill and the restart are in the report, as the test asked for them.
    let asked: Vec<&str> = outcome
        .report
        .faults
        .iter()
        .filter(|f| f.phase == "live")
        .map(|f| f.action.as_str())
        .collect();
    assert_eq!(asked, ["kill", "restart"]);
}
