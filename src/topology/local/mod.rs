//! The `local` topology: the real services as child processes on 127.0.0.1, no Docker.
//!
//! [`LocalTopology::start`] provisions the pinned JVM components (see [`provision`]), then starts MariaDB (with
//! the schema fixture and a Debezium user), ZooKeeper, one Kafka broker and one Kafka Connect worker in
//! distributed mode, each waited for with a timeout. Every generated config and every process log lives in a
//! per-run directory that is kept after the run (its path is printed at start); data directories inside it are
//! removed after a clean [`LocalTopology::shutdown`]. Every process is killed when the topology is dropped, also
//! on panic, and dies with the harness even when the harness is SIGKILLed (see [`process`]).
//!
//! This is the first light of the local backend: one broker and no faults. The backend grows from here.

mod connect;
mod debezium;
mod error;
mod java;
mod kafka;
mod mariadb;
pub mod prerequisites;
pub mod process;
pub mod provision;
mod zookeeper;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use connect::{ConnectRest, ConnectorStatus, WorkerState, CONNECT_GROUP_ID};
pub use debezium::{ConnectorFlavour, DebeziumConnector};
pub use error::LocalError;
pub use mariadb::{MariaDbEndpoint, DEBEZIUM_PASSWORD, DEBEZIUM_USER, SOURCE_SERVER_ID};
pub use process::ServiceProcess;
pub use provision::{
    jvm_cache_dir, provision_jvm_components, JvmComponents, Provisioned, JVM_CACHE_ENV,
};

/// Environment variable naming the directory under which per-run directories are created.
pub const RUNS_DIR_ENV: &str = "ETL_HARNESS_RUNS_DIR";
/// Run directories kept under the runs directory; older ones are removed when a new run starts, so failed runs
/// (which keep their data) cannot fill the disk.
const KEPT_RUNS: usize = 20;

/// How to start a [`LocalTopology`].
#[derive(Debug, Clone)]
pub struct LocalTopologyOptions {
    /// SQL run in the OpenMRS database after it is created (the schema fixture and its seed rows).
    pub schema_sql: String,
    /// The source database name.
    pub database: String,
    /// Parent of the per-run directory.
    pub runs_dir: PathBuf,
    /// The JVM component cache.
    pub jvm_cache: PathBuf,
    /// How long each service may take to become ready.
    pub ready_timeout: Duration,
    pub zookeeper_heap: String,
    pub kafka_heap: String,
    pub connect_heap: String,
}

impl LocalTopologyOptions {
    /// Defaults: database `openmrs`, runs under `$ETL_HARNESS_RUNS_DIR` or `<tmp>/openmrs-etl-harness/runs`,
    /// the default JVM cache, 120 s per service, heaps 128m / 384m / 512m.
    pub fn new(schema_sql: impl Into<String>) -> Self {
        let runs_dir = std::env::var_os(RUNS_DIR_ENV)
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                std::env::temp_dir()
                    .join("openmrs-etl-harness")
                    .join("runs")
            });
        LocalTopologyOptions {
            schema_sql: schema_sql.into(),
            database: "openmrs".into(),
            runs_dir,
            jvm_cache: jvm_cache_dir(),
            ready_timeout: Duration::from_secs(120),
            zookeeper_heap: "128m".into(),
            kafka_heap: "384m".into(),
            connect_heap: "512m".into(),
        }
    }
}

/// A MariaDB server alone (no Kafka, no JVM): loading generated workloads and checking them with SQL. Same
/// configuration as the topology's source; killed on drop.
#[derive(Debug)]
pub struct StandaloneMariaDb {
    process: ServiceProcess,
    endpoint: MariaDbEndpoint,
    run: RunDir,
}

impl StandaloneMariaDb {
    /// Starts `mariadbd` on a free 127.0.0.1 port with a fresh data directory and loads `options.schema_sql`.
    pub async fn start(options: &LocalTopologyOptions) -> Result<Self, LocalError> {
        for program in ["mariadbd", "mariadb-install-db"] {
            prerequisites::require(program)?;
        }
        let run = RunDir::create(&options.runs_dir)?;
        let (process, endpoint) = start_source_database(&run, options).await?;
        Ok(StandaloneMariaDb {
            process,
            endpoint,
            run,
        })
    }

    pub fn endpoint(&self) -> &MariaDbEndpoint {
        &self.endpoint
    }

    /// The run directory holding the server's config and log.
    pub fn run_dir(&self) -> &Path {
        &self.run.root
    }

    pub fn process(&self) -> &ServiceProcess {
        &self.process
    }
}

/// ZooKeeper and one Kafka 3.9.1 broker alone (no MariaDB, no Connect): for clients that only need a real
/// broker, such as the harness producer's tests. Same broker configuration as the topology's; killed on drop.
#[derive(Debug)]
pub struct StandaloneKafka {
    // Declared in stop order: fields drop top to bottom.
    kafka: ServiceProcess,
    zookeeper: ServiceProcess,
    kafka_port: u16,
    run: RunDir,
}

impl StandaloneKafka {
    /// Provisions the JVM components if needed, then starts ZooKeeper and the broker on free loopback ports.
    pub async fn start(options: &LocalTopologyOptions) -> Result<Self, LocalError> {
        prerequisites::require("java")?;
        let run = RunDir::create(&options.runs_dir)?;
        let jvm_cache = options.jvm_cache.clone();
        let provisioned = tokio::task::spawn_blocking(move || provision_jvm_components(&jvm_cache))
            .await
            .map_err(|e| {
                LocalError::io("provisioning", &options.jvm_cache, std::io::Error::other(e))
            })??;
        let jvm = provisioned.components;
        let zookeeper_port = process::free_loopback_port()?;
        let zookeeper = zookeeper::start_zookeeper(
            &run,
            &jvm,
            zookeeper_port,
            &options.zookeeper_heap,
            options.ready_timeout,
        )
        .await?;
        let (kafka, kafka_port) = start_single_broker(&run, &jvm, zookeeper_port, options).await?;
        Ok(StandaloneKafka {
            kafka,
            zookeeper,
            kafka_port,
            run,
        })
    }

    /// `127.0.0.1:<port>` of the broker.
    pub fn bootstrap_servers(&self) -> String {
        format!("127.0.0.1:{}", self.kafka_port)
    }

    /// The run directory holding configs and logs.
    pub fn run_dir(&self) -> &Path {
        &self.run.root
    }

    /// Stops the broker, then ZooKeeper (SIGTERM, SIGKILL after a grace period), and removes the data.
    pub async fn shutdown(self) -> Result<PathBuf, LocalError> {
        let StandaloneKafka {
            mut kafka,
            mut zookeeper,
            run,
            ..
        } = self;
        let run_root = run.root.clone();
        tokio::task::spawn_blocking(move || {
            kafka.stop(Duration::from_secs(15));
            zookeeper.stop(Duration::from_secs(5));
            run.remove_data()
        })
        .await
        .map_err(|e| LocalError::io("stopping Kafka in", &run_root, std::io::Error::other(e)))??;
        Ok(run_root)
    }
}

/// The MariaDB source with the options' schema, on a free loopback port.
async fn start_source_database(
    run: &RunDir,
    options: &LocalTopologyOptions,
) -> Result<(ServiceProcess, MariaDbEndpoint), LocalError> {
    mariadb::start_mariadb(
        run,
        &mariadb::MariaDbSettings {
            port: process::free_loopback_port()?,
            database: &options.database,
            schema_sql: &options.schema_sql,
            ready_timeout: options.ready_timeout,
        },
    )
    .await
}

/// The one Kafka broker of this first-light topology (id 0), on a free loopback port.
async fn start_single_broker(
    run: &RunDir,
    jvm: &JvmComponents,
    zookeeper_port: u16,
    options: &LocalTopologyOptions,
) -> Result<(ServiceProcess, u16), LocalError> {
    let port = process::free_loopback_port()?;
    let broker = kafka::start_broker(
        run,
        jvm,
        &kafka::BrokerSettings {
            broker_id: 0,
            port,
            zookeeper_port,
            max_heap: &options.kafka_heap,
            ready_timeout: options.ready_timeout,
        },
    )
    .await?;
    Ok((broker, port))
}

/// How long each start phase took.
#[derive(Debug, Clone, Default)]
pub struct StartupTimings {
    pub provision: Duration,
    /// True when Maven ran during this start (cold cache).
    pub provision_resolved: bool,
    pub mariadb: Duration,
    pub zookeeper: Duration,
    pub kafka: Duration,
    pub connect: Duration,
    pub total: Duration,
}

/// A running local topology. Dropping it kills every process.
#[derive(Debug)]
pub struct LocalTopology {
    // Declared in stop order: fields drop top to bottom.
    connect: ServiceProcess,
    kafka: ServiceProcess,
    zookeeper: ServiceProcess,
    mariadb: ServiceProcess,
    mariadb_endpoint: MariaDbEndpoint,
    kafka_port: u16,
    connect_rest: ConnectRest,
    run: RunDir,
    timings: StartupTimings,
    started: Instant,
}

impl LocalTopology {
    /// Provisions what is missing and starts every service; on error, whatever was started is killed and the
    /// run directory (printed to stderr) keeps the logs.
    pub async fn start(options: &LocalTopologyOptions) -> Result<Self, LocalError> {
        let started = Instant::now();
        for program in ["mariadbd", "mariadb-install-db", "java"] {
            prerequisites::require(program)?;
        }
        let run = RunDir::create(&options.runs_dir)?;
        eprintln!(
            "[etl-harness] local topology run directory: {}",
            run.root.display()
        );
        let mut timings = StartupTimings::default();

        let phase = Instant::now();
        let jvm_cache = options.jvm_cache.clone();
        let provisioned = tokio::task::spawn_blocking(move || provision_jvm_components(&jvm_cache))
            .await
            .map_err(|e| {
                LocalError::io("provisioning", &options.jvm_cache, std::io::Error::other(e))
            })??;
        timings.provision = phase.elapsed();
        timings.provision_resolved = provisioned.resolved;
        let jvm = provisioned.components;

        let phase = Instant::now();
        let (mariadb, mariadb_endpoint) = start_source_database(&run, options).await?;
        timings.mariadb = phase.elapsed();

        let phase = Instant::now();
        let zookeeper_port = process::free_loopback_port()?;
        let zookeeper = zookeeper::start_zookeeper(
            &run,
            &jvm,
            zookeeper_port,
            &options.zookeeper_heap,
            options.ready_timeout,
        )
        .await?;
        timings.zookeeper = phase.elapsed();

        let phase = Instant::now();
        let (kafka, kafka_port) = start_single_broker(&run, &jvm, zookeeper_port, options).await?;
        timings.kafka = phase.elapsed();

        let phase = Instant::now();
        let connect_port = process::free_loopback_port()?;
        let bootstrap_servers = format!("127.0.0.1:{kafka_port}");
        let connect = connect::start_worker(
            &run,
            &jvm,
            &connect::WorkerSettings {
                port: connect_port,
                bootstrap_servers: &bootstrap_servers,
                max_heap: &options.connect_heap,
                ready_timeout: options.ready_timeout,
                required_plugin: ConnectorFlavour::MariaDb.connector_class(),
            },
        )
        .await?;
        timings.connect = phase.elapsed();
        timings.total = started.elapsed();
        let connect_rest = ConnectRest::new(connect_port, connect.log_path().to_path_buf());

        Ok(LocalTopology {
            connect,
            kafka,
            zookeeper,
            mariadb,
            mariadb_endpoint,
            kafka_port,
            connect_rest,
            run,
            timings,
            started,
        })
    }

    /// The MariaDB source.
    pub fn mariadb(&self) -> &MariaDbEndpoint {
        &self.mariadb_endpoint
    }

    /// `127.0.0.1:<port>` of the broker.
    pub fn bootstrap_servers(&self) -> String {
        format!("127.0.0.1:{}", self.kafka_port)
    }

    /// The Connect worker's REST API.
    pub fn connect(&self) -> &ConnectRest {
        &self.connect_rest
    }

    /// The per-run directory (configs in `conf/`, logs in `logs/`, data in `data/`).
    pub fn run_dir(&self) -> &Path {
        &self.run.root
    }

    pub fn timings(&self) -> &StartupTimings {
        &self.timings
    }

    /// Time since `start` was called.
    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// The service processes, in start order.
    pub fn processes(&self) -> [&ServiceProcess; 4] {
        [&self.mariadb, &self.zookeeper, &self.kafka, &self.connect]
    }

    /// Errors if any service has exited.
    pub fn ensure_running(&mut self) -> Result<(), LocalError> {
        for process in [
            &mut self.mariadb,
            &mut self.zookeeper,
            &mut self.kafka,
            &mut self.connect,
        ] {
            process.ensure_running("the topology was in use")?;
        }
        Ok(())
    }

    /// Registers `connector` against this topology's MariaDB and Kafka and waits until it runs.
    pub async fn start_connector(
        &self,
        connector: &DebeziumConnector,
        timeout: Duration,
    ) -> Result<(), LocalError> {
        let config = connector.config(&self.mariadb_endpoint, &self.bootstrap_servers());
        self.connect_rest
            .create_connector(&connector.name, &config)
            .await?;
        self.connect_rest
            .wait_until_running(&connector.name, timeout)
            .await
    }

    /// Stops every service gracefully (SIGTERM, SIGKILL after a grace period) in reverse start order, then
    /// removes the run's data directories; configs and logs stay.
    pub async fn shutdown(self) -> Result<PathBuf, LocalError> {
        let LocalTopology {
            mut connect,
            mut kafka,
            mut zookeeper,
            mut mariadb,
            run,
            ..
        } = self;
        let run_root = run.root.clone();
        tokio::task::spawn_blocking(move || {
            connect.stop(Duration::from_secs(10));
            kafka.stop(Duration::from_secs(15));
            zookeeper.stop(Duration::from_secs(5));
            mariadb.stop(Duration::from_secs(10));
            run.remove_data()
        })
        .await
        .map_err(|e| {
            LocalError::io(
                "stopping the topology in",
                &run_root,
                std::io::Error::other(e),
            )
        })??;
        Ok(run_root)
    }
}

/// The per-run directory: `conf/` (generated configs), `logs/` (one log per process), `data/` (datadirs).
#[derive(Debug)]
pub(crate) struct RunDir {
    pub root: PathBuf,
}

impl RunDir {
    fn create(runs_dir: &Path) -> Result<Self, LocalError> {
        static SEQUENCE: AtomicU32 = AtomicU32::new(0);
        let unix_secs = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|since| since.as_secs())
            .unwrap_or_default();
        let name = format!(
            "run-{unix_secs}-{}-{}",
            std::process::id(),
            SEQUENCE.fetch_add(1, Ordering::Relaxed)
        );
        prune_old_runs(runs_dir, KEPT_RUNS - 1);
        let root = runs_dir.join(name);
        for sub in ["conf", "logs", "data"] {
            let dir = root.join(sub);
            std::fs::create_dir_all(&dir).map_err(|e| LocalError::io("creating", &dir, e))?;
        }
        Ok(RunDir { root })
    }

    pub fn conf_path(&self, file_name: &str) -> PathBuf {
        self.root.join("conf").join(file_name)
    }

    pub fn log_path(&self, service: &str) -> PathBuf {
        self.root.join("logs").join(format!("{service}.log"))
    }

    /// Creates and returns `data/<name>`.
    pub fn data_dir(&self, name: &str) -> Result<PathBuf, LocalError> {
        let dir = self.root.join("data").join(name);
        std::fs::create_dir_all(&dir).map_err(|e| LocalError::io("creating", &dir, e))?;
        Ok(dir)
    }

    fn remove_data(&self) -> Result<(), LocalError> {
        let dir = self.root.join("data");
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(LocalError::io("removing", &dir, e)),
        }
    }
}

/// Removes all but the newest `keep` `run-*` directories (names start with the start time, so they sort by age).
fn prune_old_runs(runs_dir: &Path, keep: usize) {
    let Ok(entries) = std::fs::read_dir(runs_dir) else {
        return;
    };
    let mut runs: Vec<(u64, PathBuf)> = entries
        .flatten()
        .map(|entry| entry.path())
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?;
            let started: u64 = name.strip_prefix("run-")?.split('-').next()?.parse().ok()?;
            Some((started, path))
        })
        .collect();
    runs.sort();
    let excess = runs.len().saturating_sub(keep);
    for (_, old_run) in runs.into_iter().take(excess) {
        // Best effort: a run directory that cannot be removed is left for the user.
        let _ = std::fs::remove_dir_all(old_run);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn old_run_directories_are_pruned_newest_kept() {
        let runs = tempfile::tempdir().expect("temp dir");
        for started in [100, 300, 200, 400] {
            std::fs::create_dir_all(runs.path().join(format!("run-{started}-1-0")))
                .expect("run dir");
        }
        std::fs::create_dir_all(runs.path().join("notes")).expect("other dir");
        prune_old_runs(runs.path(), 2);
        let mut left: Vec<String> = std::fs::read_dir(runs.path())
            .expect("list")
            .flatten()
            .map(|entry| entry.file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["notes", "run-300-1-0", "run-400-1-0"]);
    }
}
