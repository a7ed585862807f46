//! `etl-harness up`: prints the bootstrap servers and a ready line, serves clients, stops on Ctrl-C (SIGINT).

mod common;

use std::process::Stdio;

use common::{bounded, client};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[tokio::test]
async fn up_prints_where_the_cluster_is_serves_it_and_stops_on_ctrl_c() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_etl-harness"))
        .args([
            "up",
            "--brokers",
            "3",
            "--partitions",
            "6",
            "--topic",
            "encounters",
            "--topic",
            "obs",
        ])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("etl-harness starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout piped")).lines();
    let mut bootstrap = None;
    loop {
        let line = bounded("up output", lines.next_line())
            .await
            .unwrap()
            .expect("up prints a ready line");
        if let Some(servers) = line.strip_prefix("bootstrap servers: ") {
            bootstrap = Some(servers.to_string());
        }
        if line.starts_with("ready") {
            break;
        }
    }
    let bootstrap = bootstrap.expect("bootstrap servers printed before the ready line");
    assert_eq!(bootstrap.split(',').count(), 3);

    let client = client(&bootstrap).await;
    let topics = bounded("list topics", client.list_topics()).await.unwrap();
    for name in ["encounters", "obs"] {
        let topic = topics
            .iter()
            .find(|t| t.name == name)
            .expect("topic created by up");
        assert_eq!(topic.partitions.len(), 6);
    }

    let pid = child.id().expect("running").to_string();
    let status = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .expect("kill runs");
    assert!(status.success());
    let exit = bounded("up stops", child.wait()).await.unwrap();
    assert!(exit.success(), "up exits cleanly on Ctrl-C: {exit}");
}
