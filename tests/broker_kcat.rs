//! The embedded cluster through kcat (librdkafka), a client that is not ours: metadata, keyed produce, consume.
//! kcat is required when ETL_HARNESS_REQUIRE_REAL=1 (CI installs Debian's package); otherwise a missing kcat
//! skips these tests with a printed reason.

mod common;

use std::collections::BTreeSet;
use std::process::Stdio;

use common::{bounded, init_tracing};
use openmrs_etl_harness::broker::{Cluster, NewTopic};
use tokio::io::AsyncWriteExt;
use tokio::process::Command;

/// The kcat binary, or `None` (after saying why) when the test may be skipped.
fn kcat() -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("kcat"))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        if std::env::var("ETL_HARNESS_REQUIRE_REAL").as_deref() == Ok("1") {
            panic!("kcat is not on PATH but ETL_HARNESS_REQUIRE_REAL=1 requires it (apt-get install kcat)");
        }
        eprintln!("skipping: kcat is not on PATH (apt-get install kcat; set ETL_HARNESS_REQUIRE_REAL=1 to require it)");
    }
    found
}

/// Runs kcat with `args`, feeding `stdin`; returns stdout, failing the test on a non-zero exit.
async fn run_kcat(kcat: &std::path::Path, args: &[&str], stdin: &str) -> String {
    let mut child = Command::new(kcat)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("kcat starts");
    let mut input = child.stdin.take().expect("stdin piped");
    input
        .write_all(stdin.as_bytes())
        .await
        .expect("write to kcat");
    drop(input);
    let output = bounded("kcat", child.wait_with_output())
        .await
        .expect("kcat runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "kcat {args:?} failed ({}):\nstdout: {stdout}\nstderr: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

#[tokio::test]
async fn kcat_lists_every_broker() {
    let Some(kcat) = kcat() else { return };
    init_tracing();
    let cluster = Cluster::builder()
        .brokers(3)
        .topic(NewTopic::new("encounters", 6))
        .start()
        .await
        .unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let listing = run_kcat(&kcat, &["-b", &bootstrap, "-L"], "").await;
    for (id, addr) in cluster.broker_ids().iter().zip(cluster.broker_addrs()) {
        assert!(
            listing.contains(&format!("broker {id} at {addr}")),
            "broker {id} missing:\n{listing}"
        );
    }
    assert!(listing.contains(&format!("broker {} at", cluster.controller())));
    assert!(listing.contains("(controller)"), "{listing}");
    assert!(
        listing.contains("topic \"encounters\" with 6 partitions"),
        "{listing}"
    );
    cluster.shutdown().await;
}

#[tokio::test]
async fn kcat_produces_keyed_records_and_consumes_every_one() {
    let Some(kcat) = kcat() else { return };
    init_tracing();
    let cluster = Cluster::builder()
        .brokers(3)
        .topic(NewTopic::new("obs", 3))
        .start()
        .await
        .unwrap();
    let bootstrap = cluster.bootstrap_servers();
    let produced: Vec<String> = (0..60)
        .map(|i| format!("patient-{}:obs-{i}", i % 7))
        .collect();
    run_kcat(
        &kcat,
        &["-b", &bootstrap, "-P", "-t", "obs", "-K", ":"],
        &(produced.join("\n") + "\n"),
    )
    .await;

    let consumed = run_kcat(
        &kcat,
        &[
            "-b", &bootstrap, "-C", "-t", "obs", "-e", "-q", "-f", "%k:%s\n",
        ],
        "",
    )
    .await;
    let consumed: BTreeSet<&str> = consumed.lines().collect();
    let expected: BTreeSet<&str> = produced.iter().map(String::as_str).collect();
    assert_eq!(consumed, expected);

    // One partition from an explicit offset, as a consumer without a group does it.
    let partition0 = run_kcat(
        &kcat,
        &[
            "-b", &bootstrap, "-C", "-t", "obs", "-p", "0", "-o", "1", "-e", "-q", "-f", "%o\n",
        ],
        "",
    )
    .await;
    let offsets: Vec<i64> = partition0.lines().map(|l| l.parse().unwrap()).collect();
    assert!(offsets.first().is_none_or(|&o| o == 1), "{offsets:?}");
    assert!(offsets.windows(2).all(|w| w[1] == w[0] + 1), "{offsets:?}");
    cluster.shutdown().await;
}
