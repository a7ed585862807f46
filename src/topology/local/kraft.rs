//! KRaft mode: one dedicated quorum controller (`process.roles=controller`, node id [`CONTROLLER_NODE_ID`]) in
//! place of ZooKeeper, and brokers with `process.roles=broker` that register with it, heartbeat to it and fetch
//! the metadata log from it.
//!
//! One controller process, not controllers combined into the brokers: like ZooKeeper it is outside the brokers, so
//! a broker fault never takes the quorum with it — the embedded cluster models its controller the same way — and
//! a broker's isolation cuts it off from the controller (its coordinator proxy) as in ZooKeeper mode.
//!
//! Every node's log directory is formatted once, before its first start, with the cluster's id (Kafka's
//! `StorageTool format`); restarts reuse it.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use base64::Engine as _;
use sha2::Digest as _;

use super::error::LocalError;
use super::java::{kafka_jar_command, write_properties};
use super::process::{wait_until_ready, ServiceProcess};
use super::provision::JvmComponents;
use super::RunDir;

/// The quorum controller's node id: outside the brokers' 1..=N.
pub const CONTROLLER_NODE_ID: i32 = 1000;
/// The listener name of the controller's endpoint, in every node's config.
pub(crate) const CONTROLLER_LISTENER: &str = "CONTROLLER";
/// How long formatting one node's storage may take (a JVM start and a few files).
const FORMAT_TIMEOUT: Duration = Duration::from_secs(60);

/// A KRaft cluster id: 16 bytes as Kafka's `Uuid` prints them (URL-safe base64, no padding), derived from the run
/// directory so that each run has its own.
pub(crate) fn cluster_id(run: &RunDir) -> String {
    let digest = sha2::Sha256::digest(run.root.to_string_lossy().as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    // Kafka reserves the all-zero id and id 1 (the metadata topic's), and `kafka-storage format` reads an id that
    // starts with `-` as an option (Kafka's own random ids avoid that too). First byte 0b01xx_xxxx: the id is
    // neither reserved one and starts with a letter (`Q`..`f`). (0b1xxx_xxxx made 1 run directory in 32 fail.)
    bytes[0] = (bytes[0] & 0x3f) | 0x40;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `controller.quorum.voters` for a node that reaches the controller at `port` (the controller's own port, or a
/// broker's coordinator proxy).
pub(crate) fn quorum_voters(port: u16) -> String {
    format!("{CONTROLLER_NODE_ID}@127.0.0.1:{port}")
}

/// Settings every KRaft node shares: its role, id, the voters and how the controller listener is spoken.
pub(crate) fn node_properties(
    role: &str,
    node_id: i32,
    controller_port: u16,
) -> Vec<(&'static str, String)> {
    vec![
        ("process.roles", role.into()),
        ("node.id", node_id.to_string()),
        ("controller.quorum.voters", quorum_voters(controller_port)),
        ("controller.listener.names", CONTROLLER_LISTENER.into()),
        (
            "listener.security.protocol.map",
            format!("PLAINTEXT:PLAINTEXT,{CONTROLLER_LISTENER}:PLAINTEXT"),
        ),
    ]
}

/// Writes the controller's config, formats its storage and starts it; ready when its listener accepts
/// connections (brokers then wait for it themselves: registration is what makes them ready).
pub(crate) async fn start_controller(
    run: &RunDir,
    jvm: &JvmComponents,
    cluster_id: &str,
    port: u16,
    session_timeout: Duration,
    max_heap: &str,
    ready_timeout: Duration,
) -> Result<ServiceProcess, LocalError> {
    let name = "kraft-controller";
    let data_dir = run.data_dir(name)?;
    let mut properties = node_properties("controller", CONTROLLER_NODE_ID, port);
    properties.extend([
        (
            "listeners",
            format!("{CONTROLLER_LISTENER}://127.0.0.1:{port}"),
        ),
        ("log.dirs", data_dir.display().to_string()),
        // How long a broker that stopped heartbeating stays unfenced: the KRaft counterpart of the ZooKeeper
        // session, tuned down alike.
        (
            "broker.session.timeout.ms",
            session_timeout.as_millis().to_string(),
        ),
        ("num.network.threads", "1".into()),
        ("num.io.threads", "2".into()),
        ("background.threads", "1".into()),
    ]);
    let config = write_properties(run, &format!("{name}.properties"), &properties)?;
    format_storage(run, jvm, &[(name, config.clone())], cluster_id).await?;
    let command = kafka_jar_command(
        run,
        jvm,
        name,
        max_heap,
        "kafka.Kafka",
        vec![config.into_os_string()],
        &[],
    )?;
    let mut process = ServiceProcess::spawn(&command)?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    wait_until_ready(
        &mut process,
        &format!("the controller listener on {addr}"),
        ready_timeout,
        || async move {
            tokio::net::TcpStream::connect(addr)
                .await
                .map(drop)
                .map_err(|e| format!("connect to {addr}: {e}"))
        },
    )
    .await?;
    Ok(process)
}

/// Formats the log directories of `nodes` (service name, config file) with `cluster_id`, all at once; a node
/// already formatted is left as it is.
pub(crate) async fn format_storage(
    run: &RunDir,
    jvm: &JvmComponents,
    nodes: &[(&str, std::path::PathBuf)],
    cluster_id: &str,
) -> Result<(), LocalError> {
    let mut formatting = Vec::new();
    for (node, config) in nodes {
        let command = kafka_jar_command(
            run,
            jvm,
            &format!("format-{node}"),
            "128m",
            "kafka.tools.StorageTool",
            vec![
                "format".into(),
                "--ignore-formatted".into(),
                "--cluster-id".into(),
                cluster_id.into(),
                "--config".into(),
                config.clone().into_os_string(),
            ],
            &[("kafka", "WARN"), ("org.apache", "WARN")],
        )?;
        formatting.push(ServiceProcess::spawn(&command)?);
    }
    for mut process in formatting {
        process
            .wait_for_success("formatting its storage", FORMAT_TIMEOUT)
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_ids_are_kafka_uuids_and_differ_per_run() {
        let a = cluster_id(&RunDir {
            root: "/tmp/runs/run-1".into(),
            images: None,
        });
        let b = cluster_id(&RunDir {
            root: "/tmp/runs/run-2".into(),
            images: None,
        });
        assert_eq!(a.len(), 22, "{a}");
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(a, b);
        for n in 0..2000 {
            let id = cluster_id(&RunDir {
                root: format!("/tmp/runs/run-{n}").into(),
                images: None,
            });
            assert!(id.starts_with(|c: char| c.is_ascii_alphabetic()), "{id}");
        }
        let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&a)
            .expect("base64");
        assert_eq!(decoded.len(), 16);
    }

    #[test]
    fn every_node_names_the_single_voter() {
        let props = node_properties("broker", 2, 4567);
        let get = |key: &str| {
            props
                .iter()
                .find(|(k, _)| *k == key)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            get("controller.quorum.voters").as_deref(),
            Some("1000@127.0.0.1:4567")
        );
        assert_eq!(get("node.id").as_deref(), Some("2"));
        assert_eq!(get("process.roles").as_deref(), Some("broker"));
    }
}
