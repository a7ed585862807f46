//! ZooKeeper 3.8 (the one Kafka 3.9's ZooKeeper mode needs), standalone, with the admin server off.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::error::LocalError;
use super::java::{kafka_jar_command, write_properties};
use super::process::{wait_until_ready, ServiceProcess};
use super::provision::JvmComponents;
use super::RunDir;

pub(crate) async fn start_zookeeper(
    run: &RunDir,
    jvm: &JvmComponents,
    port: u16,
    max_heap: &str,
    ready_timeout: Duration,
) -> Result<ServiceProcess, LocalError> {
    let data_dir = run.data_dir("zookeeper")?;
    let config = write_properties(
        run,
        "zookeeper.properties",
        &zookeeper_properties(&data_dir, port),
    )?;
    let command = kafka_jar_command(
        run,
        jvm,
        "zookeeper",
        max_heap,
        "org.apache.zookeeper.server.quorum.QuorumPeerMain",
        vec![config.into_os_string()],
        &[],
    )?;
    let mut process = ServiceProcess::spawn(&command)?;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    wait_until_ready(
        &mut process,
        &format!("\"imok\" to ruok on {addr}"),
        ready_timeout,
        || are_you_ok(addr),
    )
    .await?;
    Ok(process)
}

async fn are_you_ok(addr: SocketAddr) -> Result<(), String> {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    stream
        .write_all(b"ruok")
        .await
        .map_err(|e| format!("send ruok: {e}"))?;
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .await
        .map_err(|e| format!("read answer: {e}"))?;
    if answer == b"imok" {
        Ok(())
    } else {
        Err(format!("answered {:?}", String::from_utf8_lossy(&answer)))
    }
}

/// ZooKeeper's configuration (also what docker/docker-compose.yml's ZooKeeper is held to).
pub(crate) fn zookeeper_properties(
    data_dir: &std::path::Path,
    port: u16,
) -> Vec<(&'static str, String)> {
    vec![
        ("dataDir", data_dir.display().to_string()),
        ("clientPort", port.to_string()),
        ("clientPortAddress", "127.0.0.1".into()),
        ("maxClientCnxns", "0".into()),
        ("tickTime", "2000".into()),
        ("admin.enableServer", "false".into()),
        ("4lw.commands.whitelist", "ruok,srvr".into()),
    ]
}
