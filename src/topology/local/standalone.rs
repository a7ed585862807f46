//! A MariaDB server or one Kafka broker started alone, with the topology's configuration, for clients that need
//! only that service.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::brokers::start_brokers;
use super::{
    kafka, prerequisites, process, provision_jvm_components, start_source_database, zookeeper,
    LocalError, LocalTopologyOptions, MariaDbEndpoint, RunDir, ServiceProcess,
};

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
            &options.coordinator_heap,
            options.ready_timeout,
        )
        .await?;
        let single = LocalTopologyOptions {
            brokers: 1,
            ..options.clone()
        };
        let coordinator = kafka::Coordinator::ZooKeeper {
            port: zookeeper_port,
        };
        let mut brokers = start_brokers(&run, &jvm, coordinator, &single, None).await?;
        let broker = brokers.remove(0);
        let kafka_port = broker.service.port;
        Ok(StandaloneKafka {
            kafka: broker.service.process,
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
