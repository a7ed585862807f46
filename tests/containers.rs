//! The containers backend's foundations against a real daemon (podman's API service in CI): the images built on
//! this machine run under testcontainers with the same MariaDB and the pinned jars the local backend uses; a
//! leftover of a dead harness is swept while a running harness's container is kept; a missing daemon is one
//! sentence and exit 2 on the command line.
//!
//! Without a daemon the tests print "skipped: no container daemon" and pass, unless `ETL_HARNESS_REQUIRE_REAL=1`.

mod common;

use std::process::Command;

use openmrs_etl_harness::run::diff::diff;
use openmrs_etl_harness::run::RunOptions;
use openmrs_etl_harness::scenario::Backend;
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
/// the same verdict for every invariant on every backend it lists (`etl-harness diff --backends <its list>`), and
/// leaves no container of this process behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shipped_scenario_listing_containers_passes_and_agrees_on_every_backend_it_lists() {
    let _one = ONE_AT_A_TIME.lock().await;
    let Some(daemon) = common::container_daemon().await else {
        return;
    };
    common::init_tracing();
    let shipped = common::shipped_scenarios(Backend::Containers);
    assert!(!shipped.is_empty(), "no shipped scenario lists containers");
    let mut failures = Vec::new();
    for (path, scenario) in &shipped {
        let options = RunOptions {
            scenario_path: path.clone(),
            progress: false,
        };
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
        match diff(scenario, &options, &scenario.backends).await {
            Err(e) => failures.push(format!("{path}: {e}; reproduce with: {reproduce}")),
            Ok(d) => {
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
    let swept = labels::sweep(&daemon).await.unwrap();
    let ours: Vec<&String> = swept
        .kept
        .iter()
        .filter(|(_, owner)| *owner == labels::owner_value())
        .map(|(name, _)| name)
        .collect();
    assert!(ours.is_empty(), "containers left behind: {ours:?}");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
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
