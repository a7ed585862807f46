//! A team's ETL as the system under test (`[pipeline] kind = "command"`): `consumers` processes of the team's
//! program, each started with the environment of docs/your-etl.md, acted on by the consumer faults (SIGKILL,
//! SIGTERM, SIGSTOP/SIGCONT, a new process), and watched through the progress it reports — its group's
//! committed offsets (OffsetFetch through librdkafka, without joining the group) or the `etl_progress` row it
//! writes with its data.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::command_watch::{self, CommitWatches, Instance, Instances};
use super::group::Gate;
use super::{lock, PipelineError};
use crate::scenario::{CommandEtl, Progress};
use crate::topology::local::process::{ServiceCommand, ServiceProcess};

/// The sink database a command ETL writes (created empty for each run).
pub const COMMAND_SINK_DATABASE: &str = "etl_sink";
/// The progress table of `progress = "sink_table"`.
pub const PROGRESS_TABLE: &str = "etl_progress";
/// How long one OffsetFetch or progress query may take.
const PROGRESS_TIMEOUT: Duration = Duration::from_secs(5);

/// Everything a command ETL is started with.
#[derive(Debug, Clone, PartialEq)]
pub struct CommandConfig {
    pub etl: CommandEtl,
    pub instances: u32,
    pub group_id: String,
    pub bootstrap: String,
    /// The change topics, with their partition counts.
    pub topics: Vec<(String, i32)>,
    pub seed: u64,
    /// The MariaDB server the sink database lives on: `mysql://user[:password]@host:port/...`.
    pub server_url: String,
    /// Where each process's stdout and stderr go (`etl-N.log`).
    pub log_dir: PathBuf,
}

/// The running processes of a command ETL.
pub(crate) struct CommandEtlProcesses {
    config: CommandConfig,
    processes: Vec<Option<ServiceProcess>>,
    sink_url: String,
    observer: Option<Arc<BaseConsumer>>,
    progress: Mutex<BTreeMap<(String, i32), i64>>,
    /// Each instance's process group and whether a fault froze it, for the commit watches.
    instances: Instances,
    watches: CommitWatches,
}

impl std::fmt::Debug for CommandEtlProcesses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommandEtlProcesses")
            .field("run", &self.config.etl.run)
            .field("instances", &self.config.instances)
            .finish()
    }
}

fn failed(what: impl std::fmt::Display) -> PipelineError {
    PipelineError::Command(what.to_string())
}

impl CommandEtlProcesses {
    /// Creates the sink database empty and starts every instance.
    pub(crate) async fn start(config: CommandConfig) -> Result<CommandEtlProcesses, PipelineError> {
        let opts = mysql_async::Opts::from_url(&config.server_url)
            .map_err(|e| failed(format!("the sink server's URL {}: {e}", config.server_url)))?;
        let mut conn = mysql_async::Conn::new(opts.clone()).await.map_err(|e| {
            failed(format!(
                "connecting to the sink server {}: {e}",
                config.server_url
            ))
        })?;
        conn.query_drop(format!(
            "DROP DATABASE IF EXISTS `{COMMAND_SINK_DATABASE}`; CREATE DATABASE `{COMMAND_SINK_DATABASE}` CHARACTER SET utf8mb4"
        ))
        .await
        .map_err(|e| failed(format!("creating the sink database {COMMAND_SINK_DATABASE}: {e}")))?;
        let _ = conn.disconnect().await;
        let sink_url = sink_url(&opts);
        let state = config.log_dir.join("state");
        std::fs::create_dir_all(&state)
            .map_err(|e| failed(format!("creating {}: {e}", state.display())))?;
        let observer = match config.etl.progress {
            Progress::GroupOffsets => Some(Arc::new(observer(&config)?)),
            Progress::SinkTable => None,
        };
        let config_instances = config.instances;
        let mut etl = CommandEtlProcesses {
            processes: (0..config.instances).map(|_| None).collect(),
            config,
            sink_url,
            observer,
            progress: Mutex::new(BTreeMap::new()),
            instances: Arc::new(Mutex::new(vec![
                Instance::default();
                config_instances as usize
            ])),
            watches: CommitWatches::default(),
        };
        for n in 1..=etl.config.instances {
            etl.spawn(n)?;
        }
        Ok(etl)
    }

    /// The environment of instance `n` (docs/your-etl.md).
    pub(crate) fn environment(&self, n: u32) -> Vec<(String, String)> {
        let c = &self.config;
        let opts = mysql_async::Opts::from_url(&self.sink_url).ok();
        let host = opts
            .as_ref()
            .map(|o| o.ip_or_hostname().to_string())
            .unwrap_or_default();
        let port = opts.as_ref().map(|o| o.tcp_port()).unwrap_or(3306);
        let user = opts
            .as_ref()
            .and_then(|o| o.user().map(str::to_owned))
            .unwrap_or_default();
        let password = opts
            .as_ref()
            .and_then(|o| o.pass().map(str::to_owned))
            .unwrap_or_default();
        let mut env: Vec<(String, String)> = c.etl.env.clone().into_iter().collect();
        env.extend(
            [
                ("ETL_HARNESS_BOOTSTRAP_SERVERS", c.bootstrap.clone()),
                (
                    "ETL_HARNESS_TOPICS",
                    c.topics
                        .iter()
                        .map(|(t, _)| t.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                ),
                ("ETL_HARNESS_GROUP_ID", c.group_id.clone()),
                ("ETL_HARNESS_PROGRESS", c.etl.progress.name().to_owned()),
                ("ETL_HARNESS_SINK_URL", self.sink_url.clone()),
                ("ETL_HARNESS_SINK_HOST", host),
                ("ETL_HARNESS_SINK_PORT", port.to_string()),
                ("ETL_HARNESS_SINK_USER", user),
                ("ETL_HARNESS_SINK_PASSWORD", password),
                (
                    "ETL_HARNESS_SINK_DATABASE",
                    COMMAND_SINK_DATABASE.to_owned(),
                ),
                ("ETL_HARNESS_TABLE", c.etl.table.clone()),
                ("ETL_HARNESS_INSTANCE", n.to_string()),
                ("ETL_HARNESS_INSTANCES", c.instances.to_string()),
                ("ETL_HARNESS_SEED", c.seed.to_string()),
                (
                    "ETL_HARNESS_STATE_DIR",
                    self.state_dir().display().to_string(),
                ),
                ("ETL_HARNESS_RUN_ID", self.run_id()),
            ]
            .map(|(k, v)| (k.to_owned(), v)),
        );
        env
    }

    fn program(&self) -> PathBuf {
        let first = PathBuf::from(&self.config.etl.run[0]);
        if first.is_relative() && self.config.etl.run[0].contains('/') {
            self.base_dir().join(first)
        } else {
            first
        }
    }

    /// The scenario file's directory, absolute (a relative program is resolved in the child after its chdir).
    fn base_dir(&self) -> PathBuf {
        let dir = &self.config.etl.base_dir;
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir.clone()
        };
        std::fs::canonicalize(&dir).unwrap_or(dir)
    }

    /// A directory for what the ETL keeps outside its sink (checkpoints): new for every run, the same for a
    /// restarted process.
    fn state_dir(&self) -> PathBuf {
        self.config.log_dir.join("state")
    }

    /// A name no other run has (the run's log directory's name).
    fn run_id(&self) -> String {
        self.config
            .log_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    pub(crate) fn log_path(&self, n: u32) -> PathBuf {
        self.config.log_dir.join(format!("etl-{n}.log"))
    }

    fn spawn(&mut self, n: u32) -> Result<(), PipelineError> {
        let spec = ServiceCommand {
            name: format!("etl-{n}"),
            program: self.program(),
            args: self.config.etl.run[1..].iter().map(Into::into).collect(),
            working_dir: self.base_dir(),
            log: self.log_path(n),
            launch: Default::default(),
        };
        let env = self.environment(n);
        let process = ServiceProcess::spawn_with_env(&spec, &env).map_err(|e| {
            failed(format!(
                "starting consumer {n} ({}): {e}",
                spec.program.display()
            ))
        })?;
        tracing::info!(consumer = n, pid = process.pid(), log = %spec.log.display(), "command ETL started");
        if let Some(i) = lock(&self.instances).get_mut((n - 1) as usize) {
            *i = Instance {
                pid: process.pid() as i32,
                frozen: false,
            };
        }
        self.processes[(n - 1) as usize] = Some(process);
        Ok(())
    }

    fn slot(&mut self, n: u32) -> Result<&mut Option<ServiceProcess>, PipelineError> {
        let instances = self.config.instances;
        self.processes
            .get_mut((n as usize).wrapping_sub(1))
            .ok_or(PipelineError::NoSuchConsumer {
                consumer: n,
                consumers: instances,
            })
    }

    fn running(&mut self, n: u32) -> Result<&mut ServiceProcess, PipelineError> {
        let log = self.log_path(n);
        let alive = self
            .slot(n)?
            .as_mut()
            .is_some_and(|p| p.poll_exit().is_none());
        match self.slot(n)? {
            Some(p) if alive => Ok(p),
            _ => Err(failed(format!(
                "consumer {n} is not running (log: {})",
                log.display()
            ))),
        }
    }

    /// SIGKILL to the process group; its partitions move when its session expires.
    pub(crate) fn kill(&mut self, n: u32) -> Result<(), PipelineError> {
        let process = self.running(n)?;
        process.kill();
        Ok(())
    }

    /// SIGTERM, SIGKILL after `stop_grace`: the program may close its consumer and leave the group.
    pub(crate) async fn stop(&mut self, n: u32) -> Result<(), PipelineError> {
        let grace = self.config.etl.stop_grace.as_duration();
        let Some(mut process) = self.slot(n)?.take() else {
            return Err(failed(format!("consumer {n} is not running")));
        };
        let process = tokio::task::spawn_blocking(move || {
            process.stop(grace);
            process
        })
        .await
        .map_err(failed)?;
        *self.slot(n)? = Some(process);
        Ok(())
    }

    /// A new process for instance `n` (the old one stopped first if it still runs).
    pub(crate) async fn restart(&mut self, n: u32) -> Result<(), PipelineError> {
        if self
            .slot(n)?
            .as_mut()
            .is_some_and(|p| p.poll_exit().is_none())
        {
            self.stop(n).await?;
        }
        self.spawn(n)
    }

    /// SIGSTOP now, SIGCONT after `duration` (a frozen process: no poll, no heartbeat).
    pub(crate) fn stall(&mut self, n: u32, duration: Duration) -> Result<(), PipelineError> {
        let process = self.running(n)?;
        process.signal(libc::SIGSTOP);
        let pid = process.pid() as libc::pid_t;
        self.set_frozen(n, true);
        let instances = self.instances.clone();
        tokio::spawn(async move {
            tokio::time::sleep(duration).await;
            if let Some(i) = lock(&instances).get_mut((n - 1) as usize) {
                i.frozen = false;
            }
            command_watch::signal_group(pid, libc::SIGCONT);
        });
        Ok(())
    }

    /// SIGSTOP (`pause`) or SIGCONT (`resume`).
    pub(crate) fn freeze(&mut self, n: u32, frozen: bool) -> Result<(), PipelineError> {
        let process = self.running(n)?;
        process.signal(if frozen { libc::SIGSTOP } else { libc::SIGCONT });
        self.set_frozen(n, frozen);
        Ok(())
    }

    fn set_frozen(&self, n: u32, frozen: bool) {
        if let Some(i) = lock(&self.instances).get_mut((n as usize).wrapping_sub(1)) {
            i.frozen = frozen;
        }
    }

    /// Arms `fault` on instance `n`'s next commit (docs/your-etl.md): the group's committed offsets are
    /// watched, and the process is frozen the moment they move (`command_watch`).
    pub(crate) fn arm(
        &mut self,
        n: u32,
        fault: usize,
        to: tokio::sync::mpsc::UnboundedSender<(usize, Gate)>,
    ) -> Result<(), PipelineError> {
        let observer = self.observer.clone().ok_or_else(|| {
            failed("a commit event needs progress = \"group_offsets\" (the harness watches the group's offsets)")
        })?;
        self.slot(n)?;
        let read = command_watch::reader(observer, self.config.topics.clone());
        self.watches.arm(read, self.instances.clone(), n, fault, to);
        Ok(())
    }

    /// Stops every commit watch (the stream is over).
    pub(crate) fn disarm_all(&mut self) {
        self.watches.disarm_all();
    }

    /// Instances that exited (on their own or killed by a fault and not started again), with their status, log
    /// and its last `tail` lines: what quiesce reports when progress stalls.
    pub(crate) fn exited(&mut self, tail: usize) -> Vec<String> {
        let mut out = Vec::new();
        for n in 1..=self.config.instances {
            let log = self.log_path(n);
            if let Ok(Some(p)) = self.slot(n) {
                if let Some(status) = p.poll_exit() {
                    out.push(format!(
                        "consumer {n} exited ({status}); its log: {}, ending:\n{}",
                        log.display(),
                        log_tail(&log, tail)
                    ));
                }
            }
        }
        out
    }

    /// Whether no instance runs any more: nothing will make progress.
    pub(crate) fn all_exited(&mut self) -> bool {
        (1..=self.config.instances).all(|n| {
            self.slot(n)
                .map_or(true, |p| p.as_mut().is_none_or(|p| p.poll_exit().is_some()))
        })
    }

    /// Waits until the group has every instance as a member and is stable (progress = group offsets), or just
    /// until every instance runs (sink table); an instance that exits meanwhile ends the wait with its log.
    pub(crate) async fn ready(&mut self, bound: Duration) -> Result<(), PipelineError> {
        let began = Instant::now();
        loop {
            if let Some(why) = self.exited(20).into_iter().next() {
                return Err(failed(why));
            }
            let Some(observer) = self.observer.clone() else {
                return Ok(());
            };
            let group = self.config.group_id.clone();
            let members = tokio::task::spawn_blocking(move || {
                observer
                    .fetch_group_list(Some(&group), PROGRESS_TIMEOUT)
                    .ok()
                    .and_then(|list| {
                        list.groups()
                            .first()
                            .map(|g| (g.state().to_owned(), g.members().len()))
                    })
            })
            .await
            .map_err(failed)?;
            if let Some((state, n)) = &members {
                if state == "Stable" && *n as u32 >= self.config.instances {
                    return Ok(());
                }
            }
            if began.elapsed() >= bound {
                return Err(failed(format!(
                    "the ETL's group {} did not become stable with {} members within {:?} (seen: {:?}); logs in {}",
                    self.config.group_id,
                    self.config.instances,
                    bound,
                    members,
                    self.config.log_dir.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Reads the progress again (OffsetFetch, or the progress table); on failure keeps the last reading.
    pub(crate) async fn refresh_progress(&self) {
        let read = match &self.observer {
            Some(observer) => {
                let observer = observer.clone();
                let topics = self.config.topics.clone();
                tokio::task::spawn_blocking(move || committed(&observer, &topics))
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r)
            }
            None => progress_rows(&self.sink_url).await,
        };
        match read {
            Ok(now) => *lock(&self.progress) = now,
            Err(e) => tracing::debug!(error = %e, "command ETL progress not read"),
        }
    }

    /// The last progress read: the next offset per partition.
    pub(crate) fn positions(&self) -> BTreeMap<(String, i32), i64> {
        lock(&self.progress).clone()
    }

    /// The group id it was given, when its progress is the group's offsets.
    pub(crate) fn group_id(&self) -> Option<String> {
        (self.config.etl.progress == Progress::GroupOffsets).then(|| self.config.group_id.clone())
    }

    /// Every instance stopped (SIGTERM, SIGKILL after the grace).
    pub(crate) async fn shutdown(mut self) {
        let grace = self.config.etl.stop_grace.as_duration();
        let processes: Vec<ServiceProcess> = self.processes.drain(..).flatten().collect();
        let _ = tokio::task::spawn_blocking(move || {
            for mut p in processes {
                p.stop(grace);
            }
        })
        .await;
    }
}

/// The last `lines` lines of a log, for an error.
pub(crate) fn log_tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    all[start..].join("\n")
}

/// The sink database's URL on the server of `opts`.
fn sink_url(opts: &mysql_async::Opts) -> String {
    let auth = match (opts.user(), opts.pass()) {
        (Some(u), Some(p)) => format!("{u}:{p}@"),
        (Some(u), None) => format!("{u}@"),
        _ => String::new(),
    };
    format!(
        "mysql://{auth}{}:{}/{COMMAND_SINK_DATABASE}",
        opts.ip_or_hostname(),
        opts.tcp_port()
    )
}

/// A librdkafka client in the ETL's group that never subscribes: OffsetFetch and DescribeGroups only.
fn observer(config: &CommandConfig) -> Result<BaseConsumer, PipelineError> {
    ClientConfig::new()
        .set("bootstrap.servers", &config.bootstrap)
        .set("group.id", &config.group_id)
        .set("client.id", "etl-harness-progress")
        .set("enable.auto.commit", "false")
        .set("log_level", "0")
        .create()
        .map_err(|e| {
            failed(format!(
                "the progress client for group {}: {e}",
                config.group_id
            ))
        })
}

pub(super) fn committed(
    observer: &BaseConsumer,
    topics: &[(String, i32)],
) -> Result<BTreeMap<(String, i32), i64>, String> {
    let mut tpl = TopicPartitionList::new();
    for (topic, partitions) in topics {
        for p in 0..*partitions {
            tpl.add_partition(topic, p);
        }
    }
    let got = observer
        .committed_offsets(tpl, PROGRESS_TIMEOUT)
        .map_err(|e| e.to_string())?;
    Ok(got
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(at) => Some(((e.topic().to_owned(), e.partition()), at)),
            _ => None,
        })
        .collect())
}

async fn progress_rows(sink_url: &str) -> Result<BTreeMap<(String, i32), i64>, String> {
    let mut conn = mysql_async::Conn::from_url(sink_url)
        .await
        .map_err(|e| e.to_string())?;
    let rows: Vec<(String, i32, i64)> = conn
        .query(format!(
            "SELECT topic, `partition`, next_offset FROM `{PROGRESS_TABLE}`"
        ))
        .await
        .map_err(|e| e.to_string())?;
    let _ = conn.disconnect().await;
    Ok(rows.into_iter().map(|(t, p, o)| ((t, p), o)).collect())
}
