//! Every container the harness starts carries [`OWNER`]: the harness process that started it (pid and start
//! time, so a reused pid is not mistaken for it). testcontainers removes a container when its handle is dropped,
//! which covers a normal end, an error and a panic; nothing in the process survives a SIGKILL, so the next start
//! — and `etl-harness down` — [`sweep`]s the containers whose owner is gone. Containers of a harness still running
//! (another test binary, another terminal) are left alone.

use std::collections::HashMap;

use testcontainers::bollard::query_parameters::{
    ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
};

use super::daemon::Daemon;

/// Label naming the harness process that owns a container: `<pid>:<start time in clock ticks since boot>`.
pub const OWNER: &str = "org.openmrs-etl-harness.owner";
/// Label saying what a container is for (`kafka-1`, `building …`).
pub const PURPOSE: &str = "org.openmrs-etl-harness.purpose";

/// This process's [`OWNER`] value.
pub fn owner_value() -> String {
    let pid = std::process::id();
    format!("{pid}:{}", start_ticks(pid).unwrap_or(0))
}

/// A process's start time in clock ticks since boot (`/proc/<pid>/stat` field 22), if it exists.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name: state is field 3, starttime field 22.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// Whether the process an [`OWNER`] value names is still the one running under that pid.
pub fn owner_alive(owner: &str) -> bool {
    let Some((pid, ticks)) = owner.split_once(':') else {
        return false;
    };
    match (pid.parse::<u32>(), ticks.parse::<u64>()) {
        (Ok(pid), Ok(ticks)) => start_ticks(pid) == Some(ticks),
        _ => false,
    }
}

/// What a sweep did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Swept {
    /// Containers removed: their names.
    pub removed: Vec<String>,
    /// Containers left because their harness still runs: name and owner.
    pub kept: Vec<(String, String)>,
}

/// A container with the harness's [`OWNER`] label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ours {
    pub id: String,
    /// Its name as the daemon lists it (`/jovial_feistel`).
    pub name: String,
    /// Its [`OWNER`] value.
    pub owner: String,
}

impl Ours {
    /// Whether the harness process `pid` started it.
    pub fn owned_by(&self, pid: u32) -> bool {
        self.owner.split(':').next() == Some(pid.to_string().as_str())
    }
}

/// Every container (running or not) that carries [`OWNER`].
pub async fn list(daemon: &Daemon) -> Result<Vec<Ours>, String> {
    let mut filters = HashMap::new();
    filters.insert("label".to_string(), vec![OWNER.to_string()]);
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    // podman reports a container between its exit and its cleanup as `stopped`, a state bollard cannot decode;
    // it lasts milliseconds, so the list is asked for again (as the bridge asks again for an inspection).
    let mut attempt = 0;
    let containers = loop {
        match daemon.docker.list_containers(Some(options.clone())).await {
            Ok(list) => break list,
            Err(e) if attempt < 20 && e.to_string().contains("unknown variant `stopped`") => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => return Err(format!("listing the harness's containers: {e}")),
        }
    };
    Ok(containers
        .into_iter()
        .filter_map(|c| {
            let id = c.id?;
            let name = c
                .names
                .and_then(|n| n.first().cloned())
                .unwrap_or_else(|| id.clone());
            let owner = c
                .labels
                .and_then(|l| l.get(OWNER).cloned())
                .unwrap_or_default();
            Some(Ours { id, name, owner })
        })
        .collect())
}

/// Removes every container labelled with an [`OWNER`] that is no longer running.
pub async fn sweep(daemon: &Daemon) -> Result<Swept, String> {
    let mut swept = Swept::default();
    for Ours { id, name, owner } in list(daemon).await? {
        if owner_alive(&owner) {
            swept.kept.push((name, owner));
            continue;
        }
        daemon
            .docker
            .remove_container(
                &id,
                Some(
                    RemoveContainerOptionsBuilder::new()
                        .force(true)
                        .v(true)
                        .build(),
                ),
            )
            .await
            .map_err(|e| format!("removing leftover container {name}: {e}"))?;
        swept.removed.push(name);
    }
    Ok(swept)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_owns_and_a_gone_one_does_not() {
        assert!(owner_alive(&owner_value()));
        let pid = std::process::id();
        assert!(
            !owner_alive(&format!("{pid}:1")),
            "another start time is another process"
        );
        assert!(!owner_alive("4194305:1"), "a pid above pid_max");
        assert!(!owner_alive("garbage"));
    }
}
