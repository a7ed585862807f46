//! The brokers' replication and failure-detection settings, with Kafka 3.9's defaults, and the metadata mode
//! (ZooKeeper or KRaft) that decides the default session timeout.

use std::time::Duration;

/// How the cluster's metadata is kept; it decides the default session timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetadataMode {
    /// `zookeeper.session.timeout.ms` = 18 s.
    Zookeeper,
    /// `broker.session.timeout.ms` = 9 s.
    Kraft,
}

/// Broker settings for replication, failure detection and flushing, with Kafka 3.9's defaults.
#[derive(Clone, Debug)]
pub(crate) struct ReplicationSettings {
    pub metadata_mode: MetadataMode,
    /// Overrides the mode's session timeout.
    pub session_timeout_ms: Option<i64>,
    /// `replica.lag.time.max.ms`.
    pub replica_lag_time_max_ms: i64,
    /// `replica.fetch.wait.max.ms`: longest a follower waits for new data between fetch rounds (real time).
    pub replica_fetch_wait_max_ms: i64,
    /// `replica.fetch.max.bytes`.
    pub replica_fetch_max_bytes: usize,
    /// Harness knob: real time a follower waits after an append before fetching it (0: next scheduling point).
    pub replica_fetch_delay: Duration,
    /// `auto.leader.rebalance.enable`.
    pub auto_leader_rebalance: bool,
    /// `leader.imbalance.check.interval.seconds`, in ms.
    pub leader_imbalance_check_interval_ms: i64,
    /// `log.flush.interval.ms`; `None` (Kafka's default) flushes only when a segment rolls and on a clean stop.
    pub flush_interval_ms: Option<i64>,
}

impl Default for ReplicationSettings {
    fn default() -> Self {
        ReplicationSettings {
            metadata_mode: MetadataMode::Zookeeper,
            session_timeout_ms: None,
            replica_lag_time_max_ms: 30_000,
            replica_fetch_wait_max_ms: 500,
            replica_fetch_max_bytes: 1_048_576,
            replica_fetch_delay: Duration::ZERO,
            auto_leader_rebalance: true,
            leader_imbalance_check_interval_ms: 300_000,
            flush_interval_ms: None,
        }
    }
}

impl ReplicationSettings {
    pub(crate) fn session_timeout_ms(&self) -> i64 {
        self.session_timeout_ms
            .unwrap_or(match self.metadata_mode {
                MetadataMode::Zookeeper => 18_000,
                MetadataMode::Kraft => 9_000,
            })
            .max(1)
    }

    /// How often brokers heartbeat and the controller checks sessions (KRaft: 2 s against 9 s).
    pub(crate) fn heartbeat_interval_ms(&self) -> i64 {
        (self.session_timeout_ms() / 4).clamp(1, 2_000)
    }
}
