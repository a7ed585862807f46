//! Errors of the local (real processes) topology. Each one says what failed, where to look, and how to fix it.

use std::path::PathBuf;
use std::time::Duration;

/// Something the local topology could not do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LocalError {
    /// The containers backend could not get its daemon or images.
    #[error("containers: {0}")]
    Containers(String),

    /// A program the local topology runs is not installed.
    #[error("{program} not found on PATH ({purpose}); install it with: {install}")]
    MissingProgram {
        program: &'static str,
        purpose: &'static str,
        install: &'static str,
    },

    /// Maven could not resolve the pinned JVM components.
    #[error(
        "resolving the JVM components with Maven failed ({status}); Maven's output is in {log}, last lines:\n{tail}\n\
         check that Maven Central is reachable, or pre-resolve with .ci/install-real-stack"
    )]
    Provisioning {
        status: String,
        log: PathBuf,
        tail: String,
    },

    /// A file or directory operation failed.
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A service process could not be started at all.
    #[error("starting {service} ({program}) failed: {source}; its log would be {log}")]
    Spawn {
        service: String,
        program: String,
        log: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// A service process exited while it should have been starting or running.
    #[error("{service} exited ({status}) while {stage}; see its log at {log}")]
    Exited {
        service: String,
        status: String,
        stage: String,
        log: PathBuf,
    },

    /// A service did not become ready in time.
    #[error("{service} was not ready after {waited:?} (waiting for {condition}; last attempt: {last_attempt}); see its log at {log}")]
    NotReady {
        service: String,
        condition: String,
        waited: Duration,
        last_attempt: String,
        log: PathBuf,
    },

    /// A SQL statement against the topology's MariaDB failed.
    #[error("MariaDB at {url} failed while {stage}: {source}; its log is {log}")]
    Sql {
        url: String,
        stage: String,
        log: PathBuf,
        #[source]
        source: Box<mysql_async::Error>,
    },

    /// The Kafka Connect REST API answered something unexpected.
    #[error(
        "Kafka Connect at {url} answered {status} to {request}: {body}; the worker log is {log}"
    )]
    ConnectRest {
        url: String,
        request: String,
        status: String,
        body: String,
        log: PathBuf,
    },

    /// The Debezium connector or its task failed after registration.
    #[error("Debezium connector {connector} is {state}: {trace}; the worker log is {log}")]
    ConnectorFailed {
        connector: String,
        state: String,
        trace: String,
        log: PathBuf,
    },

    /// A change topic could not be created on the local cluster.
    #[error("creating topic {topic} on {bootstrap} failed: {reason}; the brokers' logs are in the run directory's logs/")]
    TopicCreation {
        topic: String,
        bootstrap: String,
        reason: String,
    },

    /// No broker answered an admin request (Metadata, DescribeConfigs).
    #[error("no broker of {bootstrap} answered: {reason}")]
    Metadata { bootstrap: String, reason: String },

    /// A fault or query named a broker the topology does not have.
    #[error("the local topology has no broker {id}; its brokers are {known:?}")]
    UnknownBroker { id: i32, known: Vec<i32> },
}

impl LocalError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        LocalError::Io {
            action,
            path: path.into(),
            source,
        }
    }
}
