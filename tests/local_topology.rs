//! The local topology with several real brokers, on ZooKeeper and on a KRaft quorum controller: three Kafka 3.9.1
//! brokers register; a scenario's change topics are created with its partitions, replication factors and configs;
//! a SIGKILLed broker drops out of Metadata and its partitions get other leaders once its session expires, and
//! restarted on the same port and data it rejoins the ISR; a stopped one (controlled shutdown) leaves without
//! waiting for its session; a paused one and one isolated at its proxies are dropped and rejoin when resumed or
//! healed; the Connect worker restarts on its port. `etl-harness up --backend local` prints its three endpoints and leaves no service process behind when it
//! is killed, and neither does `etl-harness run` on local killed while its stream runs.
//!
//! Without `mariadbd`, `java` or `mvn` the tests print why and pass as skipped, unless
//! `ETL_HARNESS_REQUIRE_REAL=1` (CI) makes that a failure.

mod common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use openmrs_etl_harness::broker::Isolation;
use openmrs_etl_harness::scenario::{Coordination, Scenario};
use openmrs_etl_harness::topology::local::{ClusterMetadata, LocalTopology, LocalTopologyOptions};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// After the session expires the controller still has to notice, elect and tell the others.
const FAILOVER_SLACK: Duration = Duration::from_secs(10);
const REJOIN_TIMEOUT: Duration = Duration::from_secs(60);

/// RF 3 with min ISR 2 everywhere, and one table with its own partitions and replication factor.
const SCENARIO: &str = r#"
name = "local-topology-test"
backends = ["local"]

[topology]
backend = "local"
brokers = 3

[topics]
partitions = 2
replication_factor = 3
min_insync_replicas = 2

[topics.tables.obs]
partitions = 3
replication_factor = 2
min_insync_replicas = 1
"#;

/// `broker` is in the ISR of every partition it replicates.
fn in_every_isr(answer: &ClusterMetadata, broker: i32) -> bool {
    answer
        .topics
        .values()
        .flatten()
        .all(|p| !p.replicas.contains(&broker) || p.isr.contains(&broker))
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_millis() as i64
}

fn repo_schema() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/openmrs-schema.sql");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading the schema fixture {}: {e}", path.display()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_brokers_survive_kill_stop_and_pause_and_connect_restarts() {
    three_brokers_survive_faults(Coordination::Zookeeper).await;
}

/// The same with a KRaft quorum controller in place of ZooKeeper: brokers fenced when their heartbeats stop
/// (also when isolation cuts them off from the controller at their proxies), leaders moved by the controller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_brokers_on_kraft_survive_kill_stop_pause_and_isolation() {
    three_brokers_survive_faults(Coordination::Kraft).await;
}

/// The two fault walks take turns: each waits on session timeouts with a 10 s slack, which two topologies (ten
/// JVMs) sharing two cores can overrun.
static FAULT_WALKS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn three_brokers_survive_faults(coordination: Coordination) {
    if !common::real_services_available(&common::LOCAL_TOPOLOGY_PROGRAMS) {
        return;
    }
    let _turn = FAULT_WALKS.lock().await;
    let scenario =
        Scenario::parse(SCENARIO, "local_topology.rs").expect("the test scenario is valid");
    let mut options = LocalTopologyOptions::new(repo_schema());
    options.brokers = scenario.topology.brokers;
    options.coordination = coordination;
    let started = Instant::now();
    let mut topology =
        tokio::time::timeout(common::LOCAL_START_TIMEOUT, LocalTopology::start(&options))
            .await
            .expect("the topology starts in time")
            .unwrap_or_else(|e| panic!("the local topology did not start: {e}"));
    println!(
        "started 3 brokers ({coordination:?}) in {:?} ({:?})",
        started.elapsed(),
        topology.timings()
    );
    assert_eq!(topology.coordination(), coordination);
    let session = topology.session_timeout();
    assert_eq!(topology.broker_ids(), [1, 2, 3]);
    assert_eq!(topology.bootstrap_servers().split(',').count(), 3);

    let cluster = topology.metadata(Some(&[])).await.expect("Metadata");
    assert_eq!(
        cluster.brokers.keys().copied().collect::<Vec<_>>(),
        [1, 2, 3],
        "every broker registered"
    );
    // In KRaft mode this is a live broker chosen at random (the quorum controller is not a broker); avoiding it
    // costs nothing.
    let controller = cluster.controller.expect("Metadata names a controller");

    let plans = topology
        .create_scenario_topics(&scenario, Duration::from_secs(60))
        .await
        .unwrap_or_else(|e| panic!("creating the scenario's topics: {e}"));
    let names: Vec<String> = plans.iter().map(|plan| plan.name.clone()).collect();
    let created = topology.metadata(Some(&names)).await.expect("Metadata");
    for plan in &plans {
        let partitions = created
            .topics
            .get(&plan.name)
            .unwrap_or_else(|| panic!("{} was not created: {created:?}", plan.name));
        assert_eq!(
            partitions.len() as u32,
            plan.settings.partitions,
            "{} partitions",
            plan.name
        );
        for partition in partitions {
            assert_eq!(
                partition.replicas.len() as u32,
                plan.settings.replication_factor,
                "{} partition {} replicas {:?}",
                plan.name,
                partition.partition,
                partition.replicas
            );
            assert!(partition.leader.is_some(), "{} has a leader", plan.name);
        }
    }
    for plan in &plans {
        let configs = topology
            .topic_configs(&plan.name)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        for (name, value) in plan.settings.kafka_configs() {
            assert_eq!(
                configs.get(name),
                Some(&value),
                "{} config {name}",
                plan.name
            );
        }
    }
    let obs = plans
        .iter()
        .find(|plan| plan.table == "obs")
        .expect("an obs topic");
    assert_eq!(
        (obs.settings.partitions, obs.settings.replication_factor),
        (3, 2),
        "the override applies"
    );

    // The victim leads something and is not the controller, so the failover is the partitions' alone.
    let victim = [1, 2, 3]
        .into_iter()
        .filter(|id| *id != controller)
        .max_by_key(|id| created.led_by(*id).len())
        .expect("a broker besides the controller");
    let led = created.led_by(victim);
    assert!(
        !led.is_empty(),
        "broker {victim} leads no partition: {created:?}"
    );
    assert_eq!(
        topology.registration_held_until(victim).expect("broker"),
        None,
        "a running broker holds no restart back"
    );
    let killed_at = Instant::now();
    let killed_ms = now_ms();
    topology.kill_broker(victim).expect("kill");
    // A restart must wait for the session the dead process leaves behind: the nemesis moves it to this time.
    let held = topology
        .registration_held_until(victim)
        .expect("broker")
        .expect("a killed broker's registration is held");
    let session_ms = session.as_millis() as i64;
    assert!(
        (killed_ms + session_ms..=now_ms() + session_ms).contains(&held),
        "held until {held}, killed at {killed_ms}, session {session:?}"
    );
    let (after_kill, failover) = common::wait_for_metadata(
        &topology,
        &names,
        session + FAILOVER_SLACK,
        &format!(
            "broker {victim} dropped and its {} partitions led elsewhere",
            led.len()
        ),
        |answer| {
            !answer.brokers.contains_key(&victim)
                && led.iter().all(|(topic, index)| {
                    answer.topics.get(topic).is_some_and(|partitions| {
                        partitions.iter().any(|p| {
                            p.partition == *index && p.leader.is_some_and(|leader| leader != victim)
                        })
                    })
                })
        },
    )
    .await;
    println!(
        "broker {victim} killed: {} partitions led elsewhere after {failover:?} (session timeout {session:?})",
        led.len(),
    );
    assert!(!after_kill.brokers.contains_key(&victim));

    // `held` is the expiry's millisecond, rounded down: the hold is certainly over from the next one on (CI
    // once woke at `held` itself, a fraction of a millisecond early).
    if let Some(wait) = (held + 1).checked_sub(now_ms()).filter(|ms| *ms > 0) {
        tokio::time::sleep(Duration::from_millis(wait as u64)).await;
    }
    assert_eq!(
        topology.registration_held_until(victim).expect("broker"),
        None,
        "nothing holds the restart back once the session is over"
    );
    let port = topology.broker_port(victim).expect("port");
    topology
        .restart_broker(victim)
        .await
        .unwrap_or_else(|e| panic!("restarting broker {victim}: {e}"));
    assert_eq!(
        topology.broker_port(victim).expect("port"),
        port,
        "same port"
    );
    let (_, rejoin) = common::wait_for_metadata(
        &topology,
        &names,
        REJOIN_TIMEOUT,
        &format!("broker {victim} back in the ISR of every partition it replicates"),
        |answer| answer.brokers.contains_key(&victim) && in_every_isr(answer, victim),
    )
    .await;
    println!(
        "broker {victim} back in every ISR {rejoin:?} after its restart ({:?} since the kill)",
        killed_at.elapsed()
    );

    // SIGTERM is a controlled shutdown: the broker hands its leaders over and leaves without a session timeout.
    let stopped = [1, 2, 3]
        .into_iter()
        .find(|id| *id != controller && *id != victim)
        .expect("a third broker");
    let stopping = Instant::now();
    topology.stop_broker(stopped).await.expect("stop");
    let took = stopping.elapsed();
    let (after_stop, _) = common::wait_for_metadata(
        &topology,
        &names,
        FAILOVER_SLACK,
        &format!("broker {stopped} gone after its controlled shutdown"),
        |answer| !answer.brokers.contains_key(&stopped),
    )
    .await;
    assert!(
        after_stop.led_by(stopped).is_empty(),
        "broker {stopped} still leads after stopping"
    );
    println!("broker {stopped} stopped (controlled shutdown) in {took:?}");
    topology
        .restart_broker(stopped)
        .await
        .unwrap_or_else(|e| panic!("restarting broker {stopped}: {e}"));

    // A paused broker keeps its sockets but stops heartbeating: its session expires like a killed one's, and on
    // SIGCONT it registers again and catches up.
    topology.pause_broker(victim).expect("pause");
    common::wait_for_metadata(
        &topology,
        &names,
        session + FAILOVER_SLACK,
        &format!("paused broker {victim} dropped"),
        |answer| !answer.brokers.contains_key(&victim) && answer.led_by(victim).is_empty(),
    )
    .await;
    topology.resume_broker(victim).expect("resume");
    let (_, back) = common::wait_for_metadata(
        &topology,
        &names,
        REJOIN_TIMEOUT,
        &format!("resumed broker {victim} back in every ISR"),
        |answer| answer.brokers.contains_key(&victim) && in_every_isr(answer, victim),
    )
    .await;
    println!("broker {victim} paused, dropped, resumed and back in every ISR after {back:?}");

    // Isolated from everyone at its proxies, the coordinator's included: its session expires (it cannot
    // heartbeat), it leaves every ISR; healed, it registers again and catches up. On ZooKeeper that is
    // `tests/local_proxy.rs`'s walk already; here on KRaft, where the quorum controller fences the broker.
    if coordination == Coordination::Kraft {
        isolate_and_heal(&topology, &names, stopped, session).await;
    }

    // The Connect worker comes back on the same REST port.
    let connect_url = topology.connect().base_url().to_owned();
    topology.kill_connect();
    assert!(
        topology.ensure_running().is_err(),
        "a killed worker is noticed"
    );
    topology
        .restart_connect()
        .await
        .unwrap_or_else(|e| panic!("restarting Connect: {e}"));
    assert_eq!(topology.connect().base_url(), connect_url);
    topology.ensure_running().expect("every service runs");

    let stopping = Instant::now();
    let run_dir = topology.shutdown().await.expect("shutdown");
    println!(
        "shut down in {:?}; logs in {}",
        stopping.elapsed(),
        run_dir.display()
    );
}

/// Isolates `isolated` from everyone and waits until it is out of the cluster and every ISR; heals it and waits
/// until it is back in every ISR.
async fn isolate_and_heal(
    topology: &LocalTopology,
    names: &[String],
    isolated: i32,
    session: Duration,
) {
    topology
        .isolate_broker(isolated, Isolation::FromEveryone)
        .expect("isolate");
    let (_, dropped) = common::wait_for_metadata(
        topology,
        names,
        session + FAILOVER_SLACK,
        &format!("isolated broker {isolated} dropped and out of every ISR"),
        |answer| {
            !answer.brokers.contains_key(&isolated)
                && answer.led_by(isolated).is_empty()
                && answer
                    .topics
                    .values()
                    .flatten()
                    .all(|p| !p.isr.contains(&isolated))
        },
    )
    .await;
    topology.heal_broker(isolated).expect("heal");
    let (_, healed) = common::wait_for_metadata(
        topology,
        names,
        REJOIN_TIMEOUT,
        &format!("healed broker {isolated} back in every ISR"),
        |answer| answer.brokers.contains_key(&isolated) && in_every_isr(answer, isolated),
    )
    .await;
    println!(
        "broker {isolated} isolated: dropped after {dropped:?}; healed: back in every ISR after {healed:?}"
    );
}

/// Live processes whose command line mentions `dir`.
fn processes_under(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            entry.file_name().to_str()?.parse::<u32>().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            let state = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .next()?
                .to_owned();
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            (state != "Z" && cmdline.contains(&needle)).then_some(cmdline)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_local_prints_its_endpoints_and_takes_its_services_along_when_killed() {
    if !common::real_services_available(&common::LOCAL_TOPOLOGY_PROGRAMS) {
        return;
    }
    let runs = tempfile::tempdir().expect("runs dir");
    let scenario_file = runs.path().join("scenario.toml");
    std::fs::write(
        &scenario_file,
        SCENARIO
            .replace("brokers = 3", "brokers = 1")
            .replace("replication_factor = 3", "replication_factor = 1")
            .replace("replication_factor = 2", "replication_factor = 1")
            .replace("min_insync_replicas = 2", "min_insync_replicas = 1"),
    )
    .expect("scenario file");
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_etl-harness"))
        .args(["up", "--backend", "local", "--brokers", "1", "--scenario"])
        .arg(&scenario_file)
        .env("ETL_HARNESS_RUNS_DIR", runs.path())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("etl-harness starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout piped")).lines();
    let mut printed = Vec::new();
    let waited = tokio::time::timeout(common::LOCAL_START_TIMEOUT, async {
        while let Some(line) = lines.next_line().await.expect("reading up's output") {
            let ready = line.starts_with("ready");
            printed.push(line);
            if ready {
                return true;
            }
        }
        false
    })
    .await;
    assert!(
        matches!(waited, Ok(true)),
        "up printed no ready line (exit: {:?}); it printed:\n{}",
        child.try_wait(),
        printed.join("\n")
    );
    println!(
        "up ready after {:?}:\n{}",
        started.elapsed(),
        printed.join("\n")
    );
    let endpoint = |label: &str| {
        printed
            .iter()
            .find_map(|line| line.strip_prefix(label))
            .unwrap_or_else(|| panic!("no '{label}' line in:\n{}", printed.join("\n")))
            .to_owned()
    };
    let mariadb = endpoint("mariadb: ");
    assert!(mariadb.starts_with("mysql://root@127.0.0.1:"), "{mariadb}");
    let bootstrap = endpoint("bootstrap servers: ");
    assert!(bootstrap.starts_with("127.0.0.1:"), "{bootstrap}");
    let connect = endpoint("connect: ");
    assert!(connect.starts_with("http://127.0.0.1:"), "{connect}");
    assert!(
        printed
            .iter()
            .any(|line| line.starts_with("topic dbserver1.openmrs.obs: 3 partitions")),
        "{}",
        printed.join("\n")
    );
    let config: serde_json::Value = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("http client")
        .get(format!("{connect}/connectors/openmrs-connector/config"))
        .send()
        .await
        .expect("Connect answers")
        .json()
        .await
        .expect("connector config as JSON");
    assert_eq!(
        config["producer.override.acks"], "all",
        "the scenario's producer settings reach the connector: {config}"
    );
    assert!(
        !processes_under(runs.path()).is_empty(),
        "the services' command lines name the run directory"
    );

    // SIGKILL: nothing of up runs to clean up; the services must die with it all the same.
    kill_and_expect_no_survivors(&mut child, runs.path(), "up").await;
}

/// SIGKILLs `child` and waits (up to 10 s) until no process whose command line names `dir` is left.
async fn kill_and_expect_no_survivors(child: &mut tokio::process::Child, dir: &Path, what: &str) {
    child.start_kill().expect("SIGKILL the harness");
    child.wait().await.expect("harness reaped");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut survivors = processes_under(dir);
    while !survivors.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        survivors = processes_under(dir);
    }
    assert!(
        survivors.is_empty(),
        "processes of the killed {what} survived it:\n{}",
        survivors.join("\n")
    );
}

/// `etl-harness run` on the local backend, SIGKILLed while its stream runs (Debezium streaming, the harness
/// committing): nothing of the harness runs to clean up, and every MariaDB and JVM process of that run dies with
/// it all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_on_local_killed_mid_stream_leaves_no_process_behind() {
    if !common::real_services_available(&common::LOCAL_TOPOLOGY_PROGRAMS) {
        return;
    }
    let runs = tempfile::tempdir().expect("runs dir");
    let scenario_file = runs.path().join("killed-mid-run.toml");
    // One broker, and a stream of 20,000 operations at 200/s: it is still streaming when killed.
    std::fs::write(
        &scenario_file,
        r#"
name = "killed-mid-run"
seed = 7
backends = ["local"]

[topology]
backend = "local"
brokers = 1

[topics]
partitions = 2
replication_factor = 1
min_insync_replicas = 1

[workload]
patients = 50
operations = 20000
rate = 200

[pipeline]
consumers = 1
"#,
    )
    .expect("scenario file");
    let mut child = Command::new(env!("CARGO_BIN_EXE_etl-harness"))
        .arg("run")
        .arg(&scenario_file)
        .env("ETL_HARNESS_RUNS_DIR", runs.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("etl-harness starts");

    // Streaming: Debezium says so in the Connect worker's log, and the harness commits at 200/s after it.
    let streaming = tokio::time::timeout(common::LOCAL_START_TIMEOUT, async {
        loop {
            let logs = std::fs::read_dir(runs.path())
                .into_iter()
                .flatten()
                .flatten()
                .map(|run| run.path().join("logs").join("connect.log"));
            for log in logs {
                if std::fs::read_to_string(&log)
                    .is_ok_and(|text| text.contains("Starting streaming"))
                {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    })
    .await;
    assert!(
        streaming.is_ok(),
        "Debezium never started streaming (harness exit: {:?})",
        child.try_wait()
    );
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert!(
        matches!(child.try_wait(), Ok(None)),
        "the run ended before it was killed: {:?}",
        child.try_wait()
    );
    let before = processes_under(runs.path());
    assert!(
        before.len() >= 4,
        "MariaDB, ZooKeeper, the broker and Connect should be running: {before:#?}"
    );

    kill_and_expect_no_survivors(&mut child, runs.path(), "run").await;
}
