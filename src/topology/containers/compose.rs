//! `docker/docker-compose.yml` and the files it mounts, held to the harness: the registry images
//! ([`registry::REGISTRY_MARIADB`], [`registry::registry_jvm`]) with the pinned Kafka version, the local backend's
//! ZooKeeper, broker and Connect configurations (the same functions write both), and the connector
//! registration the harness makes. The compose topology is the harness's default one at fixed ports: ZooKeeper
//! on 2181, brokers 1–3 on 9092–9094, Connect on 8083, MariaDB on 3306.
//!
//! When a configuration changes, `ETL_HARNESS_UPDATE_COMPOSE=1 cargo test --lib compose` rewrites the files; the
//! test fails on any difference otherwise.

use std::path::Path;

use super::registry;
use crate::scenario::Producer;
use crate::topology::local::connect::{worker_properties, WorkerSettings};
use crate::topology::local::debezium::{ConnectorFlavour, DebeziumConnector};
use crate::topology::local::java::properties_text;
use crate::topology::local::kafka::{broker_properties, BrokerSettings, Coordinator};
use crate::topology::local::mariadb::MariaDbEndpoint;
use crate::topology::local::zookeeper::zookeeper_properties;

/// The compose topology's fixed ports.
const ZOOKEEPER_PORT: u16 = 2181;
const BROKER_PORTS: [u16; 3] = [9092, 9093, 9094];
const CONNECT_PORT: u16 = 8083;
const MARIADB_PORT: u16 = 3306;
/// Where the compose file mounts the Debezium plugin directory in the Connect container.
const PLUGIN_MOUNT: &str = "/opt/debezium-plugins";

fn properties_file(what: &str, properties: &[(&str, String)]) -> String {
    properties_text(
        &format!(
            "{what}, as the harness's local backend configures it (written by src/topology/containers/compose.rs)."
        ),
        properties,
    )
}

fn bootstrap_servers() -> String {
    BROKER_PORTS
        .iter()
        .map(|port| format!("127.0.0.1:{port}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Every file under `docker/` the harness's code decides, with its content.
pub(crate) fn expected_files() -> Vec<(String, String)> {
    let mut files = vec![(
        "config/zookeeper.properties".to_owned(),
        properties_file(
            "ZooKeeper",
            &zookeeper_properties(Path::new("/var/lib/zookeeper"), ZOOKEEPER_PORT),
        ),
    )];
    for (i, port) in BROKER_PORTS.into_iter().enumerate() {
        let broker_id = i as i32 + 1;
        let settings = BrokerSettings {
            broker_id,
            port,
            advertised_port: port,
            coordinator: Coordinator::ZooKeeper {
                port: ZOOKEEPER_PORT,
            },
            cluster_size: BROKER_PORTS.len() as u32,
            max_heap: "384m",
        };
        files.push((
            format!("config/broker-{broker_id}.properties"),
            properties_file(
                &format!("Kafka broker {broker_id}"),
                &broker_properties(&settings, Path::new("/var/lib/kafka/data")),
            ),
        ));
    }
    let bootstrap = bootstrap_servers();
    let worker = WorkerSettings {
        port: CONNECT_PORT,
        bootstrap_servers: &bootstrap,
        internal_replication: BROKER_PORTS.len() as u32,
        max_heap: "512m",
    };
    files.push((
        "config/connect-distributed.properties".to_owned(),
        properties_file(
            "The Kafka Connect worker",
            &worker_properties(&worker, Path::new(PLUGIN_MOUNT)),
        ),
    ));
    let connector =
        DebeziumConnector::seed(ConnectorFlavour::MariaDb).with_producer(&Producer::default());
    let source = MariaDbEndpoint {
        port: MARIADB_PORT,
        database: "openmrs".into(),
    };
    let registration = serde_json::json!({
        "name": connector.name,
        "config": connector.config(&source, &bootstrap),
    });
    files.push((
        "register-mariadb.json".to_owned(),
        serde_json::to_string_pretty(&registration).unwrap_or_default() + "\n",
    ));
    files
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::topology::local::JvmComponents;

    fn docker_dir() -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("docker")
    }

    #[test]
    fn the_compose_files_are_the_harnesss_configurations() {
        let update = std::env::var("ETL_HARNESS_UPDATE_COMPOSE").is_ok_and(|v| v == "1");
        let mut stale = Vec::new();
        for (name, expected) in expected_files() {
            let path = docker_dir().join(&name);
            let found = std::fs::read_to_string(&path).unwrap_or_default();
            if found == expected {
                continue;
            }
            if update {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &expected).unwrap();
            } else {
                stale.push(format!(
                    "docker/{name}: expected\n{expected}\nfound\n{found}"
                ));
            }
        }
        assert!(
            stale.is_empty(),
            "the compose files differ from what the harness runs (ETL_HARNESS_UPDATE_COMPOSE=1 cargo test --lib compose rewrites them):\n{}",
            stale.join("\n")
        );
    }

    #[test]
    fn the_compose_file_runs_the_registry_images_on_the_pinned_versions() {
        let compose = std::fs::read_to_string(docker_dir().join("docker-compose.yml")).unwrap();
        let images: Vec<&str> = compose
            .lines()
            .filter_map(|l| l.trim().strip_prefix("image: "))
            .collect();
        let jvm = registry::registry_jvm();
        assert!(jvm.ends_with(&format!(":{}", JvmComponents::kafka_version())));
        assert!(images.contains(&registry::REGISTRY_MARIADB), "{images:?}");
        assert!(images.contains(&jvm.as_str()), "{images:?}");
        assert!(
            images
                .iter()
                .all(|i| *i == registry::REGISTRY_MARIADB || *i == jvm),
            "an image the containers backend does not name: {images:?}"
        );
        // Both are images the harness can run: it knows where the JVM image keeps its jars.
        let chosen = registry::Chosen::resolve(&crate::scenario::ImageChoices {
            mariadb: Some(registry::REGISTRY_MARIADB.into()),
            jvm: Some(jvm.clone()),
            jvm_libs: None,
        })
        .unwrap();
        assert!(chosen.jvm.is_some());

        // Every service on the host's network (the listeners above are all 127.0.0.1), every generated file mounted.
        let services = compose.matches("\n  ").count();
        assert!(services > 0);
        let host = compose.matches("network_mode: host").count();
        assert_eq!(
            host,
            2 + 1 + 1,
            "mariadb, zookeeper, connect and the brokers' anchor: {compose}"
        );
        for (name, _) in expected_files() {
            if name.starts_with("config/") {
                assert!(
                    compose.contains(&format!("./{name}:")),
                    "docker/{name} is not mounted"
                );
            }
        }
        // MariaDB as the local backend sets it up: the binlog settings Debezium needs, loopback only.
        for flag in [
            "--bind-address=127.0.0.1",
            "--binlog-format=ROW",
            "--binlog-row-image=FULL",
            "--gtid-strict-mode=ON",
        ] {
            assert!(compose.contains(flag), "{flag} missing");
        }
    }
}
