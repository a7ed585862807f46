//! Scenario files: the test plan in one TOML file — topology, topics, producer settings, workload, pipeline,
//! faults and expectations. `scenarios/README.md` is the reference for every key.
//!
//! Loading has three steps, each reporting `file:line:column: key: what was expected, what was found`:
//! 1. TOML syntax and types (serde with `deny_unknown_fields`, so a misspelt key is an error, not a default);
//! 2. defaults filled in (the structs below carry them), giving the resolved scenario `validate` prints;
//! 3. cross-field checks (`validate.rs`): replication factor against brokers, fault targets against topics,
//!    fault times against the run's length, features against the backends the scenario claims to support.
//!
//! Fault targets are parsed here but resolved only when a fault fires (see [`target`]).

mod builder;
mod command;
mod expect;
mod images;
mod location;
mod pipeline;
pub mod target;
pub mod units;
mod validate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use crate::model::schema;
use crate::workload::{Mix, WorkloadSpec};
pub use builder::ScenarioBuilder;
pub use command::{CommandEtl, Kind as PipelineKind, Oracle, Progress};
pub use expect::{Count, CountVar, Expect, FinalState, Relation};
pub use images::ImageChoices;
pub use pipeline::{Assignment, Assignor, CommitPolicy, ConsumerEvent, EventKind, Pipeline, Sink};
pub use target::FaultTarget;
pub use units::{Bytes, Millis, DEFAULT_LOG_MEMORY};
pub(crate) use validate::fault_problems;

/// A scenario error with its place in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    /// Dotted key path (`topology.brokers`, `faults[1].at`); empty for syntax errors outside any key.
    pub key: String,
    pub message: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.file, self.line, self.column)?;
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        f.write_str(&self.message)
    }
}

/// Every error found in one scenario file (at least one).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ScenarioErrors(pub Vec<ScenarioError>);

impl fmt::Display for ScenarioErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Where the services run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    Embedded,
    Local,
    Containers,
    External,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Embedded => "embedded",
            Backend::Local => "local",
            Backend::Containers => "containers",
            Backend::External => "external",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Coordination {
    Zookeeper,
    Kraft,
}

/// Real time, or a virtual clock the run advances (embedded only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockMode {
    Real,
    Virtual,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Topology {
    pub backend: Backend,
    pub brokers: u32,
    pub coordination: Coordination,
    pub clock: ClockMode,
    /// Deterministic mode (embedded, virtual clock): the same seed gives the same exact counts.
    pub deterministic: bool,
    /// `[topology.images]`: images the containers backend runs instead of those it builds on this machine.
    #[serde(skip_serializing_if = "ImageChoices::is_empty")]
    pub images: ImageChoices,
    /// Embedded only: record batch bytes the cluster keeps in memory over all brokers; older batches go to a spill
    /// file in the temporary directory. `"unlimited"` keeps everything in memory.
    #[serde(skip_serializing_if = "Bytes::is_default_log_memory")]
    pub log_memory: Bytes,
}

impl Default for Topology {
    fn default() -> Topology {
        Topology {
            backend: Backend::Embedded,
            brokers: 3,
            coordination: Coordination::Zookeeper,
            clock: ClockMode::Real,
            deterministic: false,
            images: ImageChoices::default(),
            log_memory: DEFAULT_LOG_MEMORY,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CleanupPolicy {
    Delete,
    Compact,
    #[serde(rename = "compact,delete")]
    CompactDelete,
}

/// Resolved settings of one topic.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicSettings {
    pub partitions: u32,
    pub replication_factor: u32,
    pub min_insync_replicas: u32,
    pub retention_ms: Millis,
    pub retention_bytes: Bytes,
    pub segment_bytes: Bytes,
    pub cleanup_policy: CleanupPolicy,
    pub unclean_leader_election: bool,
}

impl TopicSettings {
    /// The settings as Kafka topic configs (what CreateTopics or `kafka-topics --config` takes).
    pub fn kafka_configs(&self) -> Vec<(&'static str, String)> {
        vec![
            ("min.insync.replicas", self.min_insync_replicas.to_string()),
            ("retention.ms", self.retention_ms.0.to_string()),
            ("retention.bytes", self.retention_bytes.0.to_string()),
            ("segment.bytes", self.segment_bytes.0.to_string()),
            (
                "cleanup.policy",
                match self.cleanup_policy {
                    CleanupPolicy::Delete => "delete",
                    CleanupPolicy::Compact => "compact",
                    CleanupPolicy::CompactDelete => "compact,delete",
                }
                .to_string(),
            ),
            (
                "unclean.leader.election.enable",
                self.unclean_leader_election.to_string(),
            ),
        ]
    }
}

/// Per-table overrides: only the keys written replace the defaults.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TopicOverride {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replication_factor: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_insync_replicas: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_ms: Option<Millis>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_bytes: Option<Bytes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segment_bytes: Option<Bytes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cleanup_policy: Option<CleanupPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unclean_leader_election: Option<bool>,
}

/// `[topics]`: the settings of every change topic, and per-table overrides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Topics {
    /// Debezium's `topic.prefix` (the seed's `dbserver1`).
    pub prefix: String,
    /// The captured database.
    pub database: String,
    pub partitions: u32,
    pub replication_factor: u32,
    pub min_insync_replicas: u32,
    pub retention_ms: Millis,
    pub retention_bytes: Bytes,
    pub segment_bytes: Bytes,
    pub cleanup_policy: CleanupPolicy,
    pub unclean_leader_election: bool,
    /// Overrides by table name: `[topics.tables.obs]`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub tables: BTreeMap<String, TopicOverride>,
}

impl Default for Topics {
    /// Kafka 3.9's broker defaults and the seed's names.
    fn default() -> Topics {
        Topics {
            prefix: "dbserver1".into(),
            database: "openmrs".into(),
            partitions: 1,
            replication_factor: 1,
            min_insync_replicas: 1,
            retention_ms: Millis(7 * 86_400_000),
            retention_bytes: Bytes(-1),
            segment_bytes: Bytes(1 << 30),
            cleanup_policy: CleanupPolicy::Delete,
            unclean_leader_election: false,
            tables: BTreeMap::new(),
        }
    }
}

impl Topics {
    /// The settings every topic gets unless its table overrides them.
    pub fn defaults(&self) -> TopicSettings {
        TopicSettings {
            partitions: self.partitions,
            replication_factor: self.replication_factor,
            min_insync_replicas: self.min_insync_replicas,
            retention_ms: self.retention_ms,
            retention_bytes: self.retention_bytes,
            segment_bytes: self.segment_bytes,
            cleanup_policy: self.cleanup_policy,
            unclean_leader_election: self.unclean_leader_election,
        }
    }
}

/// Producer acknowledgements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    None,
    Leader,
    All,
}

impl Acks {
    /// The value on the wire (`acks` of ProduceRequest).
    pub fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

impl Serialize for Acks {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Acks::All => s.serialize_str("all"),
            other => s.serialize_i64(other.wire() as i64),
        }
    }
}

impl<'de> Deserialize<'de> for Acks {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Acks, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Text(String),
        }
        let expected = "expected acks = \"all\" (or -1), 1 or 0";
        match Raw::deserialize(d).map_err(|_| de::Error::custom(expected))? {
            Raw::Int(0) => Ok(Acks::None),
            Raw::Int(1) => Ok(Acks::Leader),
            Raw::Int(-1) => Ok(Acks::All),
            Raw::Text(t) if t == "all" || t == "-1" => Ok(Acks::All),
            Raw::Text(t) if t == "1" => Ok(Acks::Leader),
            Raw::Text(t) if t == "0" => Ok(Acks::None),
            Raw::Int(n) => Err(de::Error::custom(format!("{expected}, found {n}"))),
            Raw::Text(t) => Err(de::Error::custom(format!("{expected}, found \"{t}\""))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
}

/// The CDC producer's settings (Java producer names, without the dots).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Producer {
    pub acks: Acks,
    pub linger: Millis,
    pub batch_size: Bytes,
    pub retries: u32,
    pub max_in_flight: u32,
    pub idempotence: bool,
    pub compression: Compression,
    /// `delivery.timeout.ms`. Default: what Kafka Connect 3.9.1 gives a source task's producer
    /// (`Worker.baseProducerConfigs` sets `Integer.MAX_VALUE`), so a batch is retried until it is written, never
    /// expired — not the plain Java client's 2 minutes.
    pub delivery_timeout: Millis,
}

/// Kafka Connect's `delivery.timeout.ms` for source task producers: `Integer.MAX_VALUE` ms (about 24.8 days).
pub const CONNECT_DELIVERY_TIMEOUT: Millis = Millis(i32::MAX as u64);

/// The Java producer's `request.timeout.ms` (Connect leaves it at the client's default).
pub const REQUEST_TIMEOUT: Millis = Millis(30_000);

impl Default for Producer {
    /// The Java producer's defaults in Kafka 3.9, except `delivery_timeout`, which is Connect's.
    fn default() -> Producer {
        Producer {
            acks: Acks::All,
            linger: Millis(0),
            batch_size: Bytes(16 * 1024),
            retries: i32::MAX as u32,
            max_in_flight: 5,
            idempotence: true,
            compression: Compression::None,
            delivery_timeout: CONNECT_DELIVERY_TIMEOUT,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Skew {
    /// The first N patients are hot.
    pub hot_patients: u64,
    /// The share of operations that go to hot patients (0..=1).
    pub hot_share: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Workload {
    /// Patients that exist before capture starts.
    pub patients: u64,
    /// Operations in the stream (or give `duration`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operations: Option<u64>,
    /// Length of the stream at `rate` (or give `operations`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration: Option<Millis>,
    /// Operations per second.
    pub rate: f64,
    pub mix: Mix,
    pub skew: Skew,
}

impl Default for Workload {
    fn default() -> Workload {
        Workload {
            patients: 100,
            operations: None,
            duration: None,
            rate: 50.0,
            mix: Mix::default(),
            skew: Skew::default(),
        }
    }
}

impl Workload {
    /// Operations in the stream: `operations`, or `duration × rate`, or 1000.
    pub fn operation_count(&self) -> u64 {
        match (self.operations, self.duration) {
            (Some(n), _) => n,
            (None, Some(d)) => (d.0 as f64 / 1000.0 * self.rate).round() as u64,
            (None, None) => 1000,
        }
    }

    /// How long the stream lasts at its rate.
    pub fn run_length(&self) -> Millis {
        match self.duration {
            Some(d) => d,
            None if self.rate > 0.0 => {
                Millis((self.operation_count() as f64 * 1000.0 / self.rate).ceil() as u64)
            }
            None => Millis(0),
        }
    }
}

/// Which Debezium connector the capture is (or imitates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Connector {
    /// `io.debezium.connector.mysql.MySqlConnector`: what users run against MySQL.
    Mysql,
    /// `io.debezium.connector.mariadb.MariaDbConnector`: what the local backend runs against MariaDB.
    Mariadb,
}

impl Connector {
    pub fn name(self) -> &'static str {
        match self {
            Connector::Mysql => "mysql",
            Connector::Mariadb => "mariadb",
        }
    }
}

/// Change capture settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Capture {
    pub connector: Connector,
    /// `include.schema.changes`: DDL records on the `<prefix>` topic.
    pub include_schema_changes: bool,
}

impl Default for Capture {
    fn default() -> Capture {
        Capture {
            connector: Connector::Mysql,
            include_schema_changes: true,
        }
    }
}

/// What a fault does to its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultAction {
    /// Clean stop (SIGTERM): a broker does a controlled shutdown.
    Stop,
    /// SIGKILL: the process dies, its log survives (page cache).
    Kill,
    /// Machine crash: the unflushed log tail is lost (embedded only).
    Crash,
    Restart,
    Isolate,
    Heal,
    Pause,
    Resume,
    /// Added network latency (`latency` key).
    Latency,
    /// A consumer stops reading for `duration`.
    Stall,
}

impl FaultAction {
    pub fn name(self) -> &'static str {
        match self {
            FaultAction::Stop => "stop",
            FaultAction::Kill => "kill",
            FaultAction::Crash => "crash",
            FaultAction::Restart => "restart",
            FaultAction::Isolate => "isolate",
            FaultAction::Heal => "heal",
            FaultAction::Pause => "pause",
            FaultAction::Resume => "resume",
            FaultAction::Latency => "latency",
            FaultAction::Stall => "stall",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// Time from the start of the stream.
    pub at: Millis,
    pub action: FaultAction,
    pub target: FaultTarget,
    /// Undone after this long: a stopped, killed or crashed broker or connector is restarted, an isolated broker
    /// healed, a paused target resumed, latency removed, a stall ended. Required for `stall`; not allowed on
    /// `restart`/`heal`/`resume`. "Restart leader of X" would name the *new* leader, so a kill that must be
    /// undone on the same broker says so here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<Millis>,
    /// For `latency`: the delay added to each request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<Millis>,
    /// Fire at the first such consumer event once `at` has passed, instead of at `at` (group mode): the
    /// consumer waits at the event until the fault is done, so "killed between its commit and its write" is
    /// certain, not a matter of timing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<ConsumerEvent>,
}

/// A scenario with every default filled in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// The backends this scenario is valid on.
    #[serde(default = "default_backends")]
    pub backends: Vec<Backend>,
    #[serde(default)]
    pub topology: Topology,
    #[serde(default)]
    pub topics: Topics,
    #[serde(default)]
    pub producer: Producer,
    #[serde(default)]
    pub workload: Workload,
    #[serde(default)]
    pub capture: Capture,
    #[serde(default)]
    pub pipeline: Pipeline,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expect: Option<Expect>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<Fault>,
}

fn default_seed() -> u64 {
    1
}

fn default_backends() -> Vec<Backend> {
    vec![Backend::Embedded]
}

/// A change topic of the scenario with its resolved settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TopicPlan {
    pub table: &'static str,
    pub name: String,
    pub settings: TopicSettings,
}

impl Scenario {
    /// Reads and checks a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioErrors> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            ScenarioErrors(vec![ScenarioError {
                file: file.clone(),
                line: 1,
                column: 1,
                key: String::new(),
                message: format!("cannot read the scenario file: {e}"),
            }])
        })?;
        let mut scenario = Scenario::parse(&text, &file)?;
        if let Some(command) = &mut scenario.pipeline.command {
            command.base_dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
        }
        Ok(scenario)
    }

    /// Parses and checks scenario text; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Scenario, ScenarioErrors> {
        let doc = location::Located::new(text, file);
        let mut scenario: Scenario =
            toml::from_str(text).map_err(|e| ScenarioErrors(vec![doc.serde_error(&e)]))?;
        let errors = validate::check(&scenario, &doc);
        if !errors.is_empty() {
            return Err(ScenarioErrors(errors));
        }
        scenario.expect.get_or_insert_with(Expect::default);
        Ok(scenario)
    }

    /// The expectations (defaults when the file has no `[expect]`).
    pub fn expectations(&self) -> Expect {
        self.expect.clone().unwrap_or_default()
    }

    /// The change topics, one per captured table, with overrides applied.
    pub fn topic_plans(&self) -> Vec<TopicPlan> {
        schema::MODELED_TABLES
            .iter()
            .map(|t| TopicPlan {
                table: t.name,
                name: self.topic_name(t.name),
                settings: self.topic_settings(t.name),
            })
            .collect()
    }

    pub fn topic_name(&self, table: &str) -> String {
        format!("{}.{}.{}", self.topics.prefix, self.topics.database, table)
    }

    /// The same scenario under another Debezium `topic.prefix`: its change topics, and the fault targets naming
    /// them, follow (what a second run on one Kafka cluster needs to start from topics of its own).
    pub fn with_topic_prefix(&self, prefix: &str) -> Scenario {
        let mut renamed = self.clone();
        let old = format!("{}.", self.topics.prefix);
        let new = format!("{prefix}.");
        for fault in &mut renamed.faults {
            if let FaultTarget::LeaderOf { topic, .. }
            | FaultTarget::FollowerOf { topic, .. }
            | FaultTarget::FollowersOf { topic, .. } = &mut fault.target
            {
                if let Some(rest) = topic.strip_prefix(&old) {
                    *topic = format!("{new}{rest}");
                }
            }
        }
        renamed.topics.prefix = prefix.to_owned();
        renamed
    }

    /// Settings of one table's topic: the `[topics]` defaults with its `[topics.tables.<table>]` overrides.
    pub fn topic_settings(&self, table: &str) -> TopicSettings {
        let mut s = self.topics.defaults();
        if let Some(o) = self.topics.tables.get(table) {
            s.partitions = o.partitions.unwrap_or(s.partitions);
            s.replication_factor = o.replication_factor.unwrap_or(s.replication_factor);
            s.min_insync_replicas = o.min_insync_replicas.unwrap_or(s.min_insync_replicas);
            s.retention_ms = o.retention_ms.unwrap_or(s.retention_ms);
            s.retention_bytes = o.retention_bytes.unwrap_or(s.retention_bytes);
            s.segment_bytes = o.segment_bytes.unwrap_or(s.segment_bytes);
            s.cleanup_policy = o.cleanup_policy.unwrap_or(s.cleanup_policy);
            s.unclean_leader_election = o
                .unclean_leader_election
                .unwrap_or(s.unclean_leader_election);
        }
        s
    }

    /// The workload generator's input.
    pub fn workload_spec(&self) -> WorkloadSpec {
        WorkloadSpec {
            patients: self.workload.patients,
            operations: self.workload.operation_count(),
            rate: self.workload.rate,
            mix: self.workload.mix.clone(),
            hot_patients: self.workload.skew.hot_patients,
            hot_share: self.workload.skew.hot_share,
            ..WorkloadSpec::default()
        }
    }

    /// The resolved scenario as TOML (what `etl-harness validate` prints).
    pub fn to_toml(&self) -> String {
        let mut resolved = self.clone();
        resolved.expect.get_or_insert_with(Expect::default);
        if resolved.workload.duration.is_none() {
            resolved.workload.operations = Some(self.workload.operation_count());
        }
        toml::to_string(&resolved)
            .unwrap_or_else(|e| format!("# cannot render the scenario: {e}\n"))
    }
}

/// The errors of scenario text as one string (empty when it parses): what the scenario tests assert on.
#[cfg(test)]
pub(crate) fn errors_of(text: &str, file: &str) -> String {
    match Scenario::parse(text, file) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    }
}
