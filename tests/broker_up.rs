//! `etl-harness up`: prints the bootstrap servers and a ready line, serves clients, stops on Ctrl-C (SIGINT).

mod common;

use std::process::Stdio;

use common::{bounded, client};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Reads `up`'s output until its ready line; returns the rest of its output and the bootstrap servers it printed.
async fn until_ready(
    child: &mut tokio::process::Child,
) -> (
    tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    String,
) {
    let mut lines = BufReader::new(child.stdout.take().expect("stdout piped")).lines();
    let mut bootstrap = String::new();
    loop {
        let line = bounded("up output", lines.next_line())
            .await
            .unwrap()
            .expect("up prints a ready line");
        if let Some(servers) = line.strip_prefix("bootstrap servers: ") {
            bootstrap = servers.to_string();
        }
        if line.starts_with("ready") {
            return (lines, bootstrap);
        }
    }
}

/// Ctrl-C (SIGINT) to `up`, which must exit cleanly.
async fn ctrl_c(mut child: tokio::process::Child) {
    let pid = child.id().expect("running").to_string();
    Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .unwrap();
    let exit = bounded("up stops", child.wait()).await.unwrap();
    assert!(exit.success(), "up exits cleanly on Ctrl-C: {exit}");
}

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

    ctrl_c(child).await;
}

/// `up --describe-groups`: a kcat balanced consumer joins, reads and leaves; `up` prints the group with its member
/// and partitions while it is there, then its committed offsets and lag once it left.
#[tokio::test]
async fn up_describes_the_consumer_groups_when_they_change() {
    let Some(kcat) = common::kcat() else { return };
    let mut child = Command::new(env!("CARGO_BIN_EXE_etl-harness"))
        .args([
            "up",
            "--brokers",
            "1",
            "--partitions",
            "3",
            "--topic",
            "visits",
        ])
        .args(["--log-default", "group.initial.rebalance.delay.ms=0"])
        .args(["--describe-groups", "1"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("etl-harness starts");
    let (mut lines, bootstrap) = until_ready(&mut child).await;
    let printed = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink = printed.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    let mut producer = Command::new(&kcat)
        .args(["-P", "-b", &bootstrap, "-t", "visits", "-K:"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("kcat -P");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = producer.stdin.take().unwrap();
        stdin.write_all(b"a:1\nb:2\nc:3\nd:4\n").await.unwrap();
    }
    assert!(bounded("kcat -P", producer.wait()).await.unwrap().success());
    let mut consumer = Command::new(&kcat)
        .args([
            "-G",
            "watched",
            "-b",
            &bootstrap,
            "-X",
            "auto.offset.reset=earliest",
            "visits",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("kcat -G");
    let wait_for = |what: &'static str, predicate: fn(&[String]) -> bool| {
        let printed = printed.clone();
        async move {
            for _ in 0..200 {
                if predicate(&printed.lock().unwrap()) {
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            panic!(
                "{what}: not printed within 20 s: {:?}",
                printed.lock().unwrap()
            );
        }
    };
    wait_for("a Stable group with its member's partitions", |lines| {
        lines
            .iter()
            .any(|l| l.starts_with("group watched: Stable generation 1 protocol consumer/range"))
            && lines
                .iter()
                .any(|l| l.trim_start().starts_with("member ") && l.ends_with("visits[0,1,2]"))
    })
    .await;
    // kcat commits what it read when it closes on SIGINT.
    let pid = consumer.id().expect("running").to_string();
    Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .await
        .unwrap();
    bounded("kcat -G stops", consumer.wait()).await.unwrap();
    wait_for(
        "the emptied group with its committed offsets and lag",
        |lines| {
            lines.iter().any(|l| l.starts_with("group watched: Empty"))
                && lines
                    .iter()
                    .filter(|l| {
                        l.trim_start().starts_with("offset visits-") && l.ends_with("lag 0")
                    })
                    .count()
                    >= 1
        },
    )
    .await;
    ctrl_c(child).await;
}

/// `up --replication-factor 3`: the --topic topics and auto-created ones have three replicas, all in sync, as kcat
/// lists them; broker-level defaults go through --log-default (auto-creation makes 2 partitions here).
#[tokio::test]
async fn up_makes_replicated_topics_kcat_sees_in_sync() {
    let Some(kcat) = common::kcat() else { return };
    let mut child = Command::new(env!("CARGO_BIN_EXE_etl-harness"))
        .args([
            "up",
            "--brokers",
            "3",
            "--replication-factor",
            "3",
            "--topic",
            "obs",
        ])
        .args(["--log-default", "num.partitions=2"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("etl-harness starts");
    let (_lines, bootstrap) = until_ready(&mut child).await;
    // Auto-creation through a produce to a topic that does not exist yet.
    let mut producer = Command::new(&kcat)
        .args(["-P", "-b", &bootstrap, "-t", "auto"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("kcat -P");
    {
        use tokio::io::AsyncWriteExt;
        let mut stdin = producer.stdin.take().unwrap();
        stdin.write_all(b"x\n").await.unwrap();
    }
    assert!(bounded("kcat -P", producer.wait()).await.unwrap().success());
    let listed = bounded(
        "kcat -L",
        Command::new(&kcat).args(["-L", "-b", &bootstrap]).output(),
    )
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&listed.stdout).into_owned();
    for (topic, partitions) in [("obs", 1), ("auto", 2)] {
        let block: Vec<&str> = text
            .split("  topic ")
            .find(|b| b.starts_with(&format!("\"{topic}\"")))
            .unwrap_or_else(|| panic!("{topic} listed: {text}"))
            .lines()
            .filter(|l| l.contains("replicas:"))
            .collect();
        assert_eq!(block.len(), partitions, "{topic}: {text}");
        for line in block {
            let list = |key: &str| -> usize {
                line.split(key)
                    .nth(1)
                    .unwrap()
                    .split([' ', ')'])
                    .find(|s| !s.is_empty())
                    .unwrap()
                    .split(',')
                    .filter(|id| !id.is_empty())
                    .count()
            };
            assert_eq!(list("replicas: "), 3, "{topic}: {line}");
            assert_eq!(list("isrs: "), 3, "{topic}: {line}");
        }
    }
    ctrl_c(child).await;
}

/// A bad broker default is refused before anything starts, exit 2, with its reason said once.
#[test]
fn a_bad_broker_default_is_said_once() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_etl-harness"))
        .args([
            "up",
            "--brokers",
            "1",
            "--log-default",
            "default.replication.factor=3",
        ])
        .output()
        .expect("etl-harness runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr.matches("larger than the number of brokers").count(),
        1,
        "{stderr}"
    );
    assert!(stderr.contains("default.replication.factor"), "{stderr}");
}
