//! The containers backend's foundations against a real daemon (podman's API service in CI): the images built on
//! this machine run under testcontainers with the same MariaDB and the pinned jars the local backend uses; a
//! leftover of a dead harness is swept while a running harness's container is kept; a missing daemon is one
//! sentence and exit 2 on the command line.
//!
//! Without a daemon the tests print "skipped: no container daemon" and pass, unless `ETL_HARNESS_REQUIRE_REAL=1`.

mod common;

use std::process::Command;

use openmrs_etl_harness::run::diff::diff_on;
use openmrs_etl_harness::run::{LocalSession, RunOptions};
use openmrs_etl_harness::scenario::{Backend, Coordination};
use openmrs_etl_harness::topology::containers::{images, labels};
use openmrs_etl_harness::topology::local::default_jvm_components;
use testcontainers::core::{ExecCommand, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerRequest, GenericImage, ImageExt};

/// The tests here run one at a time: a test's check of what it left must not see another's containers.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A host-network container of `image` that sleeps, labelled as owned by `owner`.
fn sleeper(image: &images::ImageRef, owner: String) -> ContainerRequest<GenericImage> {
    GenericImage::new(image.repo.as_str(), image.tag.as_str())
        .with_wait_for(WaitFor::Nothing)
        .with_cmd(["sleep", "600"])
        .with_label(labels::OWNER, owner)
        .with_label(labels::PURPOSE, "tests/containers.rs")
        .with_host_config_modifier(|hc| hc.network_mode = Some("host".into()))
}

/// Runs `command` in a host-network container of `image` (labelled as the harness's) and returns its stdout.
async fn output_of(image: &images::ImageRef, command: &str) -> String {
    let container = sleeper(image, labels::owner_value())
        .start()
        .await
        .unwrap_or_else(|e| panic!("starting {image}: {e}"));
    let mut exec = container
        .exec(ExecCommand::new(["sh", "-c", command]))
        .await
        .unwrap_or_else(|e| panic!("{command} in {image}: {e}"));
    let stdout = String::from_utf8_lossy(&exec.stdout_to_vec().await.unwrap()).into_owned();
    container.rm().await.unwrap();
    stdout
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_images_run_the_local_backends_versions_under_testcontainers() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(daemon) = common::container_daemon().await else {
        return;
    };
    let jvm = default_jvm_components()
        .await
        .expect("the JVM jars resolve");
    let mut said = Vec::new();
    let built = images::ensure(&daemon, &jvm, &mut |line| said.push(line))
        .await
        .expect("the images build");
    // A second call builds nothing: every tag is a hash of its inputs.
    let mut again = Vec::new();
    assert_eq!(
        images::ensure(&daemon, &jvm, &mut |line| again.push(line))
            .await
            .unwrap(),
        built
    );
    assert!(again.iter().all(|l| l.ends_with(": present")), "{again:?}");

    // The same MariaDB as the local backend's (both from this machine's apt sources).
    let host = Command::new("mariadbd").arg("--version").output();
    let in_image = output_of(&built.mariadb, "mariadbd --version").await;
    if let Ok(host) = host {
        let host = String::from_utf8_lossy(&host.stdout);
        let version = |text: &str| text.split_whitespace().nth(2).map(str::to_owned);
        assert_eq!(
            version(&in_image),
            version(&host),
            "image: {in_image} host: {host}"
        );
    }
    assert!(in_image.contains("MariaDB"), "{in_image}");

    // Java 17 and the pinned jars, under the image's JVM root.
    let java = output_of(
        &built.jvm,
        &format!(
            "java -version 2>&1 | head -1; ls {root}/kafka {root}/connect {root}/plugins",
            root = images::JVM_ROOT
        ),
    )
    .await;
    assert!(java.contains("version \"17."), "{java}");
    let kafka = format!(
        "kafka_2.13-{}.jar",
        openmrs_etl_harness::topology::local::JvmComponents::kafka_version()
    );
    assert!(java.contains(&kafka), "{kafka} missing: {java}");
    assert!(java.contains("debezium"), "{java}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_harnesss_leftover_is_swept_and_a_running_ones_kept() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(daemon) = common::container_daemon().await else {
        return;
    };
    let jvm = default_jvm_components()
        .await
        .expect("the JVM jars resolve");
    let built = images::ensure(&daemon, &jvm, &mut |_| {}).await.unwrap();
    // A pid above Linux's pid_max: no process owns it.
    let dead = sleeper(&built.mariadb, "4194305:1".into())
        .start()
        .await
        .unwrap();
    let alive = sleeper(&built.mariadb, labels::owner_value())
        .start()
        .await
        .unwrap();
    let dead_id = dead.id().to_owned();
    // Leave the dead harness's container as SIGKILL would: no handle left to remove it.
    std::mem::forget(dead);

    let swept = labels::sweep(&daemon).await.unwrap();
    let inspect = |id: String| {
        let docker = testcontainers::core::client::docker_client_instance();
        async move {
            docker
                .await
                .unwrap()
                .inspect_container(&id, None)
                .await
                .is_ok()
        }
    };
    assert!(
        !inspect(dead_id.clone()).await,
        "the leftover is still there: {swept:?}"
    );
    assert!(
        inspect(alive.id().to_owned()).await,
        "a running harness's container was removed"
    );
    assert!(
        swept
            .kept
            .iter()
            .any(|(_, owner)| *owner == labels::owner_value()),
        "{swept:?}"
    );
    alive.rm().await.unwrap();
}

/// Every shipped scenario that lists `containers` (the directory decides, not a list here) passes there, gives
/// the same verdict for every invariant as the embedded run of the same seed, and leaves no container of this
/// process behind. The runs share one containers topology (reset between scenarios, as the local backend's tests
/// do). Local is not run again here: `tests/local_run.rs` holds every scenario listing local to the embedded
/// verdicts of the same seed, so equal verdicts here make `diff --backends embedded,local,containers` agree.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shipped_scenario_listing_containers_passes_and_agrees_with_embedded() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(daemon) = common::container_daemon().await else {
        return;
    };
    common::init_tracing();
    let mut shipped = common::shipped_scenarios(Backend::Containers);
    assert!(!shipped.is_empty(), "no shipped scenario lists containers");
    // Few topology restarts: the ZooKeeper three-broker scenarios first.
    shipped.sort_by_key(|(path, s)| {
        (
            s.topology.coordination != Coordination::Zookeeper,
            s.topology.brokers,
            path.clone(),
        )
    });
    let first = &shipped[0].1.topology;
    let mut session =
        LocalSession::start_in_containers(first.brokers, first.coordination, &first.images)
            .await
            .unwrap_or_else(|e| panic!("starting the containers topology: {e}"));
    let mut failures = Vec::new();
    for (path, scenario) in &shipped {
        let options = RunOptions {
            scenario_path: path.clone(),
            progress: false,
        };
        let backends: Vec<Backend> = scenario
            .backends
            .iter()
            .copied()
            .filter(|b| *b != Backend::Local)
            .collect();
        let reproduce = format!(
            "etl-harness diff {path} --backends {} --seed {}",
            scenario
                .backends
                .iter()
                .map(|b| b.name())
                .collect::<Vec<_>>()
                .join(","),
            scenario.seed
        );
        let began = std::time::Instant::now();
        match diff_on(scenario, &options, &backends, Some(&mut session)).await {
            Err(e) => failures.push(format!("{path}: {e}; reproduce with: {reproduce}")),
            Ok(d) => {
                println!(
                    "{path} ({:.1} s)\n{}",
                    began.elapsed().as_secs_f64(),
                    d.table()
                );
                for (backend, outcome) in &d.runs {
                    if !outcome.report.passed() {
                        failures.push(format!(
                            "{path} failed on {}:\n{}\nreproduce with: {reproduce}",
                            backend.name(),
                            outcome.report.terminal()
                        ));
                    }
                }
                if !d.agree() {
                    failures.push(format!(
                        "{path}: the backends disagree on {}:\n{}reproduce with: {reproduce}",
                        d.disagreements().join(", "),
                        d.table()
                    ));
                }
            }
        }
    }
    let logs = session.run_dir().await;
    session.shutdown().await;
    let swept = labels::sweep(&daemon).await.unwrap();
    let ours: Vec<&String> = swept
        .kept
        .iter()
        .filter(|(_, owner)| *owner == labels::owner_value())
        .map(|(name, _)| name)
        .collect();
    assert!(ours.is_empty(), "containers left behind: {ours:?}");
    assert!(
        failures.is_empty(),
        "service logs in {}:\n{}",
        logs.display(),
        failures.join("\n\n")
    );
}

#[test]
fn without_a_daemon_the_command_line_says_so_in_one_sentence_and_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_etl-harness"))
        .args(["images", "list"])
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no container daemon"), "{stderr}");
    assert!(stderr.contains("podman system service"), "{stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one sentence: {stderr}"
    );
}

/// The names of the containers whose owner label names process `pid`.
async fn containers_of(
    daemon: &openmrs_etl_harness::topology::containers::daemon::Daemon,
    pid: u32,
) -> Vec<String> {
    labels::list(daemon)
        .await
        .expect("listing containers")
        .into_iter()
        .filter(|c| c.owned_by(pid))
        .map(|c| c.name)
        .collect()
}

/// Starts `etl-harness run scenarios/broker-kill.toml --backend containers` and waits until it has at least three
/// containers (database, coordination, a broker); returns the child and its stderr file.
async fn a_containers_run_under_way(
    daemon: &openmrs_etl_harness::topology::containers::daemon::Daemon,
    stderr: &std::path::Path,
) -> std::process::Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_etl-harness"))
        .args([
            "run",
            "scenarios/broker-kill.toml",
            "--backend",
            "containers",
            "--no-progress",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(stderr).unwrap())
        .spawn()
        .expect("starting etl-harness");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    loop {
        if containers_of(daemon, child.id()).await.len() >= 3 {
            return child;
        }
        if std::time::Instant::now() > deadline || child.try_wait().ok().flatten().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "no three containers within 300 s: {}",
                std::fs::read_to_string(stderr).unwrap_or_default()
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
    }
}

/// Ctrl-C removes the run's containers before the harness exits (130); after a SIGKILL, which nothing in the
/// process survives, `etl-harness down` (the same sweep every containers start does) removes what was left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_run_removes_its_containers_and_a_killed_runs_are_swept() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(daemon) = common::container_daemon().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let stderr = dir.path().join("interrupted.err");
    let mut child = a_containers_run_under_way(&daemon, &stderr).await;
    let pid = child.id();
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid as i32, libc::SIGINT) };
    let status = tokio::task::spawn_blocking(move || child.wait())
        .await
        .unwrap()
        .unwrap();
    let said = std::fs::read_to_string(&stderr).unwrap();
    assert_eq!(status.code(), Some(130), "{said}");
    assert!(said.contains("Ctrl-C: removing"), "{said}");
    let left = containers_of(&daemon, pid).await;
    assert!(left.is_empty(), "left after Ctrl-C: {left:?}\n{said}");

    let stderr = dir.path().join("killed.err");
    let mut child = a_containers_run_under_way(&daemon, &stderr).await;
    let pid = child.id();
    child.kill().unwrap();
    child.wait().unwrap();
    let left = containers_of(&daemon, pid).await;
    assert!(
        !left.is_empty(),
        "a SIGKILLed harness cannot remove its containers"
    );
    let down = Command::new(env!("CARGO_BIN_EXE_etl-harness"))
        .arg("down")
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&down.stdout).into_owned() + &String::from_utf8_lossy(&down.stderr);
    assert!(down.status.success(), "{said}");
    for name in &left {
        assert!(
            said.contains(name.trim_start_matches('/')),
            "{name} not named: {said}"
        );
    }
    let still = containers_of(&daemon, pid).await;
    assert!(still.is_empty(), "left after down: {still:?}\n{said}");
}

/// A JVM image laid out like a Kafka distribution (every jar in `/opt/kafka/libs`, no Debezium inside), with an
/// unprivileged user and an entrypoint that fails, made from the JVM image built here: what a registry image
/// such as `apache/kafka` looks like to the harness.
async fn a_distribution_layout_image(
    daemon: &openmrs_etl_harness::topology::containers::daemon::Daemon,
    jvm: &images::ImageRef,
) -> images::ImageRef {
    let image = images::ImageRef {
        repo: "localhost/etl-harness-test-kafka-layout".into(),
        tag: jvm.tag.clone(),
    };
    if daemon.has_image(&image).await {
        return image;
    }
    let recipe = format!(
        "mkdir -p /opt/kafka/libs && cp -n {root}/kafka/*.jar {root}/connect/*.jar /opt/kafka/libs/ && rm -rf {root}",
        root = images::JVM_ROOT
    );
    let container = sleeper(jvm, labels::owner_value())
        .with_cmd(["sh", "-c", recipe.as_str()])
        .start()
        .await
        .expect("starting the layout build");
    while container.exit_code().await.unwrap().is_none() {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    assert_eq!(container.exit_code().await.unwrap(), Some(0));
    let options = testcontainers::bollard::query_parameters::CommitContainerOptionsBuilder::new()
        .container(container.id())
        .repo(&image.repo)
        .tag(&image.tag)
        .changes("USER nobody\nENTRYPOINT [\"/bin/false\"]")
        .build();
    daemon
        .docker()
        .commit_container(
            options,
            testcontainers::bollard::models::ContainerConfig::default(),
        )
        .await
        .expect("committing the layout image");
    container.rm().await.unwrap();
    image
}

/// `[topology.images]`: the quickstart passes on a JVM image of another layout (its jars where `jvm_libs` says,
/// the Debezium plugin mounted from the JVM cache, the image's user and entrypoint overridden); an image that
/// cannot be pulled stops the run before any service starts, naming the image and the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn images_named_in_the_scenario_run_instead_of_the_ones_built_here() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(daemon) = common::container_daemon().await else {
        return;
    };
    common::init_tracing();
    let jvm = default_jvm_components()
        .await
        .expect("the JVM jars resolve");
    let built = images::ensure(&daemon, &jvm, &mut |_| {}).await.unwrap();
    let layout = a_distribution_layout_image(&daemon, &built.jvm).await;

    let path = "scenarios/quickstart.toml";
    let mut scenario =
        openmrs_etl_harness::scenario::Scenario::load(std::path::Path::new(path)).unwrap();
    scenario.topology.images.jvm = Some(layout.to_string());
    scenario.topology.images.jvm_libs = Some("/opt/kafka/libs".into());
    let options = RunOptions {
        scenario_path: path.into(),
        progress: false,
    };
    let d = diff_on(&scenario, &options, &[Backend::Containers], None)
        .await
        .unwrap_or_else(|e| panic!("quickstart on {layout}: {e}"));
    let report = &d.runs[0].1.report;
    assert!(
        report.passed(),
        "quickstart on {layout}:\n{}",
        report.terminal()
    );

    // A registry nobody serves (loopback, nothing listening): refused before anything starts.
    let out = Command::new(env!("CARGO_BIN_EXE_etl-harness"))
        .args([
            "run",
            path,
            "--backend",
            "containers",
            "--image",
            "mariadb=127.0.0.1:9/nobody/mariadb:10.11",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("pulling 127.0.0.1:9/nobody/mariadb:10.11 (topology.images.mariadb)"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("run directory"),
        "a service was started: {stderr}"
    );
}
