//! Service containers driven from synchronous code. The local backend's service layer
//! ([`crate::topology::local::ServiceProcess`]) signals, polls and stops its services synchronously; for a
//! service in a container those acts are daemon requests. One long-lived thread owns a runtime, the
//! testcontainers handles and the log followers, and answers requests sent over a channel — the same shape as the
//! local backend's process spawner thread.
//!
//! Each container runs with host networking (the service listens on 127.0.0.1 ports the harness chose), the run
//! directory bind-mounted at its own path (configs, data and logs where the local backend puts them), the
//! harness's [`labels`], and its stdout and stderr appended to the service's log file.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{mpsc, Mutex, OnceLock};

use testcontainers::bollard::query_parameters::{
    InspectContainerOptions, KillContainerOptionsBuilder,
};
use testcontainers::core::{Mount, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};
use tokio::io::AsyncWriteExt;

use super::images::ImageRef;
use super::labels;

/// What one service container runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSpec {
    /// The service (`kafka-1`): the container's purpose label.
    pub name: String,
    pub image: ImageRef,
    /// Program and arguments (the program is looked up on the image's PATH).
    pub cmd: Vec<String>,
    pub working_dir: String,
    /// Host directories bind-mounted read-write at the same path.
    pub binds: Vec<PathBuf>,
    /// Host directories bind-mounted read-only at the same path.
    pub read_only: Vec<PathBuf>,
    /// Where stdout and stderr are appended.
    pub log: PathBuf,
}

/// A container's state as the daemon reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerState {
    pub running: bool,
    pub paused: bool,
    /// The exit code once it stopped.
    pub exit_code: Option<i64>,
    /// The main process's pid on the host, while it runs.
    pub pid: Option<u32>,
}

enum Job {
    Start(ContainerSpec, mpsc::Sender<Result<String, String>>),
    Kill(String, &'static str, mpsc::Sender<Result<(), String>>),
    Pause(String, bool, mpsc::Sender<Result<(), String>>),
    State(String, mpsc::Sender<Result<ContainerState, String>>),
    Remove(String, mpsc::Sender<Result<(), String>>),
}

fn jobs() -> Result<tokio::sync::mpsc::UnboundedSender<Job>, String> {
    static JOBS: OnceLock<Mutex<Option<tokio::sync::mpsc::UnboundedSender<Job>>>> = OnceLock::new();
    let slot = JOBS.get_or_init(|| {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let started = std::thread::Builder::new()
            .name("etl-harness-containers".into())
            .spawn(move || serve(rx));
        Mutex::new(started.ok().map(|_| tx))
    });
    slot.lock()
        .map_err(|_| "the container thread's lock is poisoned".to_string())?
        .clone()
        .ok_or_else(|| "the container thread could not be started".to_string())
}

fn ask<T>(make: impl FnOnce(mpsc::Sender<Result<T, String>>) -> Job) -> Result<T, String> {
    let (reply, answer) = mpsc::channel();
    jobs()?
        .send(make(reply))
        .map_err(|_| "the container thread is gone".to_string())?;
    answer
        .recv()
        .map_err(|_| "the container thread dropped the request".to_string())?
}

/// Starts a container for `spec`; returns its id.
pub fn start(spec: ContainerSpec) -> Result<String, String> {
    ask(|reply| Job::Start(spec, reply))
}

/// Sends `signal` (`SIGKILL`, `SIGTERM`, …) to the container's main process.
pub fn kill(id: &str, signal: &'static str) -> Result<(), String> {
    ask(|reply| Job::Kill(id.to_owned(), signal, reply))
}

/// Freezes (`true`) or thaws (`false`) every process of the container (the cgroup freezer).
pub fn pause(id: &str, frozen: bool) -> Result<(), String> {
    ask(|reply| Job::Pause(id.to_owned(), frozen, reply))
}

/// The container's state.
pub fn state(id: &str) -> Result<ContainerState, String> {
    ask(|reply| Job::State(id.to_owned(), reply))
}

/// Removes the container (killing it if it runs).
pub fn remove(id: &str) -> Result<(), String> {
    ask(|reply| Job::Remove(id.to_owned(), reply))
}

fn serve(mut jobs: tokio::sync::mpsc::UnboundedReceiver<Job>) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    runtime.block_on(async move {
        let mut containers: HashMap<String, ContainerAsync<GenericImage>> = HashMap::new();
        let mut interrupted = Interrupts::install();
        loop {
            let job = tokio::select! {
                job = jobs.recv() => match job {
                    Some(job) => job,
                    None => break,
                },
                signal = interrupted.next() => {
                    if !CALLER_HANDLES_INTERRUPTS.load(std::sync::atomic::Ordering::SeqCst) {
                        remove_all_and_exit(&mut containers, signal).await;
                    }
                    continue;
                }
            };
            match job {
                Job::Start(spec, reply) => {
                    let result = launch(&spec).await.map(|c| {
                        let id = c.id().to_owned();
                        containers.insert(id.clone(), c);
                        id
                    });
                    let _ = reply.send(result);
                }
                Job::Kill(id, signal, reply) => {
                    let _ = reply.send(send_signal(&id, signal).await);
                }
                Job::Pause(id, frozen, reply) => {
                    let result = match containers.get(&id) {
                        Some(c) if frozen => c.pause().await.map_err(|e| e.to_string()),
                        Some(c) => c.unpause().await.map_err(|e| e.to_string()),
                        None => Err(format!("no container {id}")),
                    };
                    let _ = reply.send(result);
                }
                Job::State(id, reply) => {
                    let _ = reply.send(inspect(&id).await);
                }
                Job::Remove(id, reply) => {
                    let result = match containers.remove(&id) {
                        Some(c) => c.rm().await.map_err(|e| e.to_string()),
                        None => Ok(()),
                    };
                    let _ = reply.send(result);
                }
            }
        }
    });
}

/// Set when the caller stops its services itself on Ctrl-C (`etl-harness up`): the container thread then leaves
/// the signals alone.
static CALLER_HANDLES_INTERRUPTS: std::sync::atomic::AtomicBool =
    std::sync::atomic::AtomicBool::new(false);

/// The caller stops its services on Ctrl-C and SIGTERM (removing their containers): the container thread does
/// not exit the process on them.
pub fn caller_handles_interrupts() {
    CALLER_HANDLES_INTERRUPTS.store(true, std::sync::atomic::Ordering::SeqCst);
}

/// Ctrl-C (SIGINT) and SIGTERM, listened for from the first container on: the process is about to die without
/// unwinding, and its containers would outlive it (the services a plain process runs die with the harness through
/// their parent-death signal; a container's process belongs to the daemon).
struct Interrupts {
    int: Option<tokio::signal::unix::Signal>,
    term: Option<tokio::signal::unix::Signal>,
}

impl Interrupts {
    fn install() -> Self {
        use tokio::signal::unix::{signal, SignalKind};
        Interrupts {
            int: signal(SignalKind::interrupt()).ok(),
            term: signal(SignalKind::terminate()).ok(),
        }
    }

    /// The next signal's number (a listener that could not be installed never fires).
    async fn next(&mut self) -> i32 {
        async fn on(signal: &mut Option<tokio::signal::unix::Signal>) {
            match signal {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending().await,
            }
        }
        tokio::select! {
            () = on(&mut self.int) => libc::SIGINT,
            () = on(&mut self.term) => libc::SIGTERM,
        }
    }
}

/// Removes every container of this process, then exits as the signal would have (128 + its number).
async fn remove_all_and_exit(
    containers: &mut HashMap<String, ContainerAsync<GenericImage>>,
    signal: i32,
) {
    let name = if signal == libc::SIGINT {
        "Ctrl-C"
    } else {
        "SIGTERM"
    };
    eprintln!(
        "[etl-harness] {name}: removing {} container(s) before exiting",
        containers.len()
    );
    for (id, container) in containers.drain() {
        if let Err(e) = container.rm().await {
            eprintln!("[etl-harness] removing container {id}: {e}");
        }
    }
    std::process::exit(128 + signal);
}

async fn launch(spec: &ContainerSpec) -> Result<ContainerAsync<GenericImage>, String> {
    let Some((program, args)) = spec.cmd.split_first() else {
        return Err(format!("the {} container has no command", spec.name));
    };
    // The program is the entrypoint and the user root, whatever the image says: a registry image's entrypoint
    // script and unprivileged user are for running it alone, not for the harness's command on its run directory.
    let mut request = GenericImage::new(spec.image.repo.as_str(), spec.image.tag.as_str())
        .with_wait_for(WaitFor::Nothing)
        .with_entrypoint(program)
        .with_cmd(args.to_vec())
        .with_user("0:0")
        .with_working_dir(spec.working_dir.clone())
        .with_label(labels::OWNER, labels::owner_value())
        .with_label(labels::PURPOSE, spec.name.clone())
        .with_host_config_modifier(|hc| hc.network_mode = Some("host".into()));
    for dir in &spec.binds {
        let path = dir.display().to_string();
        request = request.with_mount(Mount::bind_mount(path.clone(), path));
    }
    for dir in &spec.read_only {
        let path = dir.display().to_string();
        request = request.with_mount(
            Mount::bind_mount(path.clone(), path)
                .with_access_mode(testcontainers::core::AccessMode::ReadOnly),
        );
    }
    let container = request.start().await.map_err(|e| {
        format!(
            "starting the {} container from {}: {e}",
            spec.name, spec.image
        )
    })?;
    // Both streams into the service's log, as a process's stdout and stderr are.
    for stream in [container.stdout(true), container.stderr(true)] {
        let log = spec.log.clone();
        tokio::spawn(async move {
            let Ok(mut file) = tokio::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)
                .await
            else {
                return;
            };
            let mut stream = stream;
            let _ = tokio::io::copy(&mut stream, &mut file).await;
            let _ = file.flush().await;
        });
    }
    Ok(container)
}

async fn docker() -> Result<testcontainers::bollard::Docker, String> {
    testcontainers::core::client::docker_client_instance()
        .await
        .map_err(|e| e.to_string())
}

async fn send_signal(id: &str, signal: &str) -> Result<(), String> {
    docker()
        .await?
        .kill_container(
            id,
            Some(KillContainerOptionsBuilder::new().signal(signal).build()),
        )
        .await
        .map_err(|e| format!("sending {signal} to container {id}: {e}"))
}

async fn inspect(id: &str) -> Result<ContainerState, String> {
    let info = docker()
        .await?
        .inspect_container(id, None::<InspectContainerOptions>)
        .await
        .map_err(|e| format!("inspecting container {id}: {e}"))?;
    let state = info.state.unwrap_or_default();
    let running = state.running.unwrap_or(false);
    Ok(ContainerState {
        running,
        paused: state.paused.unwrap_or(false),
        exit_code: if running { None } else { state.exit_code },
        pid: state
            .pid
            .filter(|p| *p > 0)
            .and_then(|p| u32::try_from(p).ok()),
    })
}
