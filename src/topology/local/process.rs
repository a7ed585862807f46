//! Service processes: spawning, readiness waits, signals and guaranteed cleanup.
//!
//! Every service runs in its own process group, so a stop reaches everything it forked. Children are spawned
//! from one long-lived thread with a parent-death signal (`PR_SET_PDEATHSIG` = SIGKILL): the kernel sends it when
//! the spawning *thread* exits, so spawning from short-lived (e.g. tokio blocking) threads would kill services
//! early, while a thread that lives as long as the harness makes them die with it — even on SIGKILL of the
//! harness. Dropping a [`ServiceProcess`] kills its group, which covers panics and early returns.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::error::LocalError;
use crate::topology::containers::bridge::{self, ContainerSpec};
use crate::topology::containers::images::ImageRef;

/// How to start one service.
#[derive(Debug, Clone)]
pub(crate) struct ServiceCommand {
    /// Human name used in errors and log file names: `mariadb`, `zookeeper`, `kafka-1`, `connect`.
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<OsString>,
    pub working_dir: PathBuf,
    /// stdout and stderr of the process are appended here.
    pub log: PathBuf,
    /// Where it runs.
    pub launch: Launch,
}

/// Where a service runs: a process of this machine, or a container (the containers backend: the same command,
/// its program looked up on the image's PATH, with host networking and the run directory mounted at its path).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum Launch {
    #[default]
    Host,
    Container {
        image: ImageRef,
        /// Host directories mounted read-write at the same path.
        binds: Vec<PathBuf>,
        /// Host directories mounted read-only at the same path.
        read_only: Vec<PathBuf>,
    },
}

/// A running service: a process group of this machine (killed when this is dropped), or a container (killed and
/// removed when this is dropped).
#[derive(Debug)]
pub struct ServiceProcess {
    name: String,
    log: PathBuf,
    runner: Runner,
    exit_status: Option<ExitStatus>,
}

#[derive(Debug)]
enum Runner {
    Host(Child),
    Container(String),
}

/// A container's exit code as a process exit status (128 + n: killed by signal n).
fn container_exit(code: i64) -> ExitStatus {
    use std::os::unix::process::ExitStatusExt;
    let code = i32::try_from(code).unwrap_or(255);
    if (129..=159).contains(&code) {
        ExitStatus::from_raw(code - 128)
    } else {
        ExitStatus::from_raw((code & 0xff) << 8)
    }
}

impl ServiceProcess {
    pub(crate) fn spawn(spec: &ServiceCommand) -> Result<Self, LocalError> {
        ServiceProcess::spawn_with_env(spec, &[])
    }

    /// [`ServiceProcess::spawn`] with more environment variables (a process of this machine only: a team's ETL).
    pub(crate) fn spawn_with_env(
        spec: &ServiceCommand,
        env: &[(String, String)],
    ) -> Result<Self, LocalError> {
        let spawn_error = |source: io::Error| LocalError::Spawn {
            service: spec.name.clone(),
            program: spec.program.display().to_string(),
            log: spec.log.clone(),
            source,
        };
        if let Launch::Container {
            image,
            binds,
            read_only,
        } = &spec.launch
        {
            let program = spec
                .program
                .file_name()
                .unwrap_or(spec.program.as_os_str())
                .to_string_lossy()
                .into_owned();
            let mut cmd = vec![program];
            cmd.extend(spec.args.iter().map(|a| a.to_string_lossy().into_owned()));
            open_log(&spec.log).map_err(spawn_error)?;
            let id = bridge::start(ContainerSpec {
                name: spec.name.clone(),
                image: image.clone(),
                cmd,
                working_dir: spec.working_dir.display().to_string(),
                binds: binds.clone(),
                read_only: read_only.clone(),
                log: spec.log.clone(),
            })
            .map_err(|e| spawn_error(io::Error::other(e)))?;
            return Ok(ServiceProcess {
                name: spec.name.clone(),
                log: spec.log.clone(),
                runner: Runner::Container(id),
                exit_status: None,
            });
        }
        let log = open_log(&spec.log).map_err(spawn_error)?;
        let log_err = log.try_clone().map_err(spawn_error)?;
        let mut command = Command::new(&spec.program);
        command
            .args(&spec.args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .current_dir(&spec.working_dir)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            .process_group(0);
        let harness_pid = std::process::id() as libc::pid_t;
        // SAFETY: the closure runs between fork and exec and only makes async-signal-safe calls
        // (prctl, getppid, _exit); it touches no locks and allocates nothing.
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                ) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                // The harness may have died between fork and prctl: then nobody would stop us.
                if libc::getppid() != harness_pid {
                    libc::_exit(1);
                }
                Ok(())
            });
        }
        let child = spawn_from_long_lived_thread(command).map_err(spawn_error)?;
        Ok(ServiceProcess {
            name: spec.name.clone(),
            log: spec.log.clone(),
            runner: Runner::Host(child),
            exit_status: None,
        })
    }

    /// The service's name (`mariadb`, `zookeeper`, `kafka-1`, `connect`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The log file that receives the process's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Process id (also the process group id); for a container, its main process's pid on this machine (0 when
    /// it does not run).
    pub fn pid(&self) -> u32 {
        match &self.runner {
            Runner::Host(child) => child.id(),
            Runner::Container(id) => bridge::state(id).ok().and_then(|s| s.pid).unwrap_or(0),
        }
    }

    /// Resident set size from /proc, if the process is alive.
    pub fn resident_bytes(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
        let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kib * 1024)
    }

    /// Errors if the process has exited; `stage` says what the harness was doing.
    pub(crate) fn ensure_running(&mut self, stage: &str) -> Result<(), LocalError> {
        if let Some(status) = self.poll_exit() {
            return Err(LocalError::Exited {
                service: self.name.clone(),
                status: status.to_string(),
                stage: stage.to_owned(),
                log: self.log.clone(),
            });
        }
        Ok(())
    }

    /// Sends a signal to the whole process group (SIGSTOP/SIGCONT for pauses, SIGTERM/SIGKILL for stops). A
    /// container is paused and resumed with the cgroup freezer instead, and other signals go to its main process.
    pub fn signal(&self, signal: libc::c_int) {
        if let Runner::Container(id) = &self.runner {
            if self.exit_status.is_none() {
                let result = match signal {
                    libc::SIGSTOP => bridge::pause(id, true),
                    libc::SIGCONT => bridge::pause(id, false),
                    libc::SIGTERM => bridge::kill(id, "SIGTERM"),
                    libc::SIGKILL => bridge::kill(id, "SIGKILL"),
                    libc::SIGINT => bridge::kill(id, "SIGINT"),
                    other => Err(format!("signal {other} is not sent to containers")),
                };
                if let Err(e) = result {
                    tracing::debug!(service = %self.name, signal, error = %e, "container signal");
                }
            }
            return;
        }
        if self.exit_status.is_none() {
            // SAFETY: killpg has no memory-safety preconditions; a stale group id only yields ESRCH.
            unsafe {
                libc::killpg(self.pid() as libc::pid_t, signal);
            }
        }
    }

    /// SIGTERM, then SIGKILL if the process has not exited within `grace`. Blocks for at most `grace` plus the
    /// time the kernel needs to reap it.
    pub fn stop(&mut self, grace: Duration) {
        if self.poll_exit().is_some() {
            return;
        }
        self.signal(libc::SIGTERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if self.poll_exit().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        self.kill();
    }

    /// SIGKILL to the process group, then reap (a container: thawed if frozen, killed, waited for).
    pub fn kill(&mut self) {
        if self.poll_exit().is_some() {
            return;
        }
        if let Runner::Container(id) = &self.runner {
            let id = id.clone();
            if bridge::state(&id).is_ok_and(|s| s.paused) {
                let _ = bridge::pause(&id, false);
            }
            let _ = bridge::kill(&id, "SIGKILL");
            let deadline = Instant::now() + Duration::from_secs(10);
            while self.poll_exit().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            return;
        }
        self.signal(libc::SIGKILL);
        if let Runner::Host(child) = &mut self.runner {
            if let Ok(status) = child.wait() {
                self.exit_status = Some(status);
            }
        }
    }

    /// Waits until a short-lived process (a tool, not a service) exits: `Ok` on exit status 0; an error naming
    /// `stage` and the log on any other status, and after `timeout` (the process is killed then).
    pub(crate) async fn wait_for_success(
        &mut self,
        stage: &str,
        timeout: Duration,
    ) -> Result<(), LocalError> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.poll_exit() {
                if status.success() {
                    return Ok(());
                }
                return Err(LocalError::Exited {
                    service: self.name.clone(),
                    status: status.to_string(),
                    stage: stage.to_owned(),
                    log: self.log.clone(),
                });
            }
            if started.elapsed() >= timeout {
                self.kill();
                return Err(LocalError::NotReady {
                    service: self.name.clone(),
                    condition: format!("its exit after {stage}"),
                    waited: started.elapsed(),
                    last_attempt: "still running; killed".into(),
                    log: self.log.clone(),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// True once the process has exited (it is reaped here).
    pub(crate) fn has_exited(&mut self) -> bool {
        self.poll_exit().is_some()
    }

    pub(crate) fn poll_exit(&mut self) -> Option<ExitStatus> {
        if let Runner::Container(id) = &self.runner {
            if self.exit_status.is_none() {
                match bridge::state(id) {
                    Ok(state) if !state.running => {
                        self.exit_status = Some(container_exit(state.exit_code.unwrap_or(255)));
                    }
                    Ok(_) => {}
                    // Gone from the daemon: it does not run any more.
                    Err(e) if e.contains("No such container") || e.contains("404") => {
                        self.exit_status = Some(container_exit(255));
                    }
                    // Anything else is asked again at the next poll: podman answers a container between its
                    // exit and its cleanup with a state ("stopped") the Docker API does not have, which the
                    // client cannot decode.
                    Err(e) => {
                        tracing::debug!(service = %self.name, error = %e, "container state unreadable; asking again");
                    }
                }
            }
            return self.exit_status;
        }
        let Runner::Host(child) = &mut self.runner else {
            return self.exit_status;
        };
        if self.exit_status.is_none() {
            if let Ok(Some(status)) = child.try_wait() {
                self.exit_status = Some(status);
                // Children of the service (if any) are in its group; make sure they go too.
                // SAFETY: see `signal`.
                unsafe {
                    libc::killpg(self.pid() as libc::pid_t, libc::SIGKILL);
                }
            }
        }
        self.exit_status
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        self.kill();
        if let Runner::Container(id) = &self.runner {
            if let Err(e) = bridge::remove(id) {
                tracing::warn!(service = %self.name, error = %e, "removing the service's container");
            }
        }
    }
}

fn open_log(path: &Path) -> io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

type SpawnJob = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `command` on the harness's spawner thread, which never exits (see the module docs).
fn spawn_from_long_lived_thread(command: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnJob>>> = OnceLock::new();
    let spawner = SPAWNER.get_or_init(|| {
        let (jobs, incoming) = mpsc::channel::<SpawnJob>();
        std::thread::Builder::new()
            .name("etl-harness-spawner".into())
            .spawn(move || {
                for (mut command, reply) in incoming {
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("the OS refused to start the process spawner thread");
        Mutex::new(jobs)
    });
    let (reply, result) = mpsc::channel();
    let sent = spawner
        .lock()
        .map_err(|_| io::Error::other("process spawner lock poisoned"))?
        .send((command, reply));
    sent.map_err(|_| io::Error::other("process spawner thread is gone"))?;
    result
        .recv()
        .map_err(|_| io::Error::other("process spawner thread dropped the request"))?
}

/// Polls `probe` until it succeeds, the process exits, or `timeout` passes. Errors name the service, the condition
/// and the log file.
pub(crate) async fn wait_until_ready<F, Fut>(
    process: &mut ServiceProcess,
    condition: &str,
    timeout: Duration,
    mut probe: F,
) -> Result<(), LocalError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let started = Instant::now();
    let mut last_attempt = String::from("no attempt finished");
    loop {
        process.ensure_running(&format!("waiting for {condition}"))?;
        let remaining = timeout.saturating_sub(started.elapsed());
        if remaining.is_zero() {
            return Err(LocalError::NotReady {
                service: process.name.clone(),
                condition: condition.to_owned(),
                waited: started.elapsed(),
                last_attempt,
                log: process.log.clone(),
            });
        }
        match tokio::time::timeout(remaining.min(Duration::from_secs(10)), probe()).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(reason)) => last_attempt = reason,
            Err(_) => last_attempt = "the probe timed out".into(),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub(crate) fn free_loopback_port() -> Result<u16, LocalError> {
    // Not a port the kernel picks (port 0): those come from the ephemeral range, which every outgoing connection
    // also draws from, so between this check and the service's own bind a client socket could take it (seen: a
    // broker failing with "Address already in use"). Ports below the ephemeral range are only ever listened on.
    static CURSOR: AtomicU32 = AtomicU32::new(0);
    let (low, high) = (10_000u32, ephemeral_low().clamp(10_001, 65_535));
    let span = high - low;
    let seed = std::process::id().wrapping_mul(7_919)
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
    for _ in 0..256 {
        let step = CURSOR.fetch_add(1, Ordering::Relaxed);
        let port = low + seed.wrapping_add(step.wrapping_mul(97)) % span;
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port as u16)).is_ok() {
            return Ok(port as u16);
        }
    }
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .map_err(|e| LocalError::io("binding a free port on", "127.0.0.1:0", e))?;
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(|e| LocalError::io("reading the port of", "127.0.0.1:0", e))
}

/// The first port of the kernel's ephemeral range (32768 when it cannot be read).
fn ephemeral_low() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|n| n.parse().ok()))
        .unwrap_or(32_768)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sleeper(dir: &Path) -> ServiceCommand {
        ServiceCommand {
            name: "sleeper".into(),
            program: "/bin/sh".into(),
            args: vec!["-c".into(), "sleep 600 & sleep 600".into()],
            working_dir: dir.to_path_buf(),
            log: dir.join("sleeper.log"),
            launch: Launch::Host,
        }
    }

    /// Live (not zombie) processes whose process group is `group`, from /proc.
    fn live_members(group: u32) -> Vec<u32> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|entry| {
                let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
                let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
                // Fields after the parenthesised command: state, ppid, pgrp, ...
                let mut fields = stat.rsplit_once(')')?.1.split_whitespace();
                let state = fields.next()?;
                let pgrp: u32 = fields.nth(1)?.parse().ok()?;
                (pgrp == group && state != "Z").then_some(pid)
            })
            .collect()
    }

    #[test]
    fn free_ports_are_below_the_ephemeral_range_and_not_handed_out_twice() {
        let a = free_loopback_port().expect("a port");
        let b = free_loopback_port().expect("a port");
        assert_ne!(a, b);
        for port in [a, b] {
            assert!(
                u32::from(port) < ephemeral_low() && port >= 10_000,
                "{port}"
            );
        }
    }

    #[test]
    fn dropping_a_service_kills_its_whole_process_group() {
        let dir = tempfile::tempdir().expect("temp dir");
        let process = ServiceProcess::spawn(&sleeper(dir.path())).expect("spawn sh");
        let group = process.pid();
        std::thread::sleep(Duration::from_millis(200));
        assert!(
            live_members(group).len() >= 2,
            "sh and its background sleep run"
        );
        drop(process);
        std::thread::sleep(Duration::from_millis(200));
        assert_eq!(
            live_members(group),
            Vec::<u32>::new(),
            "process group {group} survived the drop"
        );
    }

    #[tokio::test]
    async fn readiness_errors_name_the_service_and_its_log() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut process = ServiceProcess::spawn(&sleeper(dir.path())).expect("spawn sh");
        let error = wait_until_ready(
            &mut process,
            "a miracle",
            Duration::from_millis(300),
            || async { Err("not yet".to_string()) },
        )
        .await
        .expect_err("never ready");
        let text = error.to_string();
        assert!(text.contains("sleeper"), "{text}");
        assert!(text.contains("sleeper.log"), "{text}");
        assert!(text.contains("not yet"), "{text}");
    }
}
