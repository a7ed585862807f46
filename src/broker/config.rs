//! Broker-wide defaults (what `server.properties` holds) and per-topic settings (what `kafka-configs` alters),
//! with Kafka 3.9's names and defaults, parsed from the strings clients send in CreateTopics.

use std::collections::BTreeMap;

/// Settings of one topic's logs. Field names follow the Kafka topic config they hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TopicConfig {
    /// `cleanup.policy` contains `delete`.
    pub cleanup_delete: bool,
    /// `cleanup.policy` contains `compact`.
    pub cleanup_compact: bool,
    /// `retention.ms`; -1 keeps forever.
    pub retention_ms: i64,
    /// `retention.bytes` per partition; -1 means no size limit.
    pub retention_bytes: i64,
    /// `segment.bytes`.
    pub segment_bytes: i64,
    /// `segment.ms`.
    pub segment_ms: i64,
    /// `delete.retention.ms`: how long a compacted tombstone survives after it was first cleaned.
    pub delete_retention_ms: i64,
    /// `max.message.bytes`: the largest record batch a producer may send.
    pub max_message_bytes: i64,
    /// `min.insync.replicas`: acks=all needs this many ISR members, and the high watermark stands still below it.
    pub min_insync_replicas: i64,
    /// `unclean.leader.election.enable`: with no live ISR replica, elect any live replica (losing data).
    pub unclean_leader_election: bool,
}

impl Default for TopicConfig {
    fn default() -> Self {
        TopicConfig {
            cleanup_delete: true,
            cleanup_compact: false,
            retention_ms: 604_800_000,
            retention_bytes: -1,
            segment_bytes: 1_073_741_824,
            segment_ms: 604_800_000,
            delete_retention_ms: 86_400_000,
            max_message_bytes: 1_048_588,
            min_insync_replicas: 1,
            unclean_leader_election: false,
        }
    }
}

/// A topic setting the cluster does not know or cannot parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Not a topic config this cluster implements.
    #[error("unknown or unsupported topic config '{name}' (supported: {})", TopicConfig::NAMES.join(", "))]
    Unknown { name: String },
    /// The value does not parse or is out of range.
    #[error("invalid value '{value}' for config '{name}': {reason}")]
    Invalid {
        name: String,
        value: String,
        reason: &'static str,
    },
}

impl TopicConfig {
    /// Every topic config this cluster understands, as DescribeConfigs lists them.
    pub const NAMES: [&'static str; 10] = [
        "cleanup.policy",
        "delete.retention.ms",
        "max.message.bytes",
        "min.insync.replicas",
        "retention.bytes",
        "retention.ms",
        "segment.bytes",
        "segment.ms",
        "message.timestamp.type",
        "unclean.leader.election.enable",
    ];

    /// Sets one config from its string form, as a client sends it.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), ConfigError> {
        let invalid = |reason| ConfigError::Invalid {
            name: name.to_string(),
            value: value.to_string(),
            reason,
        };
        let long = |min: i64| -> Result<i64, ConfigError> {
            let v: i64 = value
                .trim()
                .parse()
                .map_err(|_| invalid("not an integer"))?;
            if v < min {
                return Err(invalid("below the allowed minimum"));
            }
            Ok(v)
        };
        match name {
            "cleanup.policy" => {
                let mut delete = false;
                let mut compact = false;
                for policy in value.split(',').map(str::trim) {
                    match policy {
                        "delete" => delete = true,
                        "compact" => compact = true,
                        _ => return Err(invalid("expected delete, compact or both")),
                    }
                }
                self.cleanup_delete = delete;
                self.cleanup_compact = compact;
            }
            "retention.ms" => self.retention_ms = long(-1)?,
            "retention.bytes" => self.retention_bytes = long(-1)?,
            "segment.bytes" => self.segment_bytes = long(14)?,
            "segment.ms" => self.segment_ms = long(1)?,
            "delete.retention.ms" => self.delete_retention_ms = long(0)?,
            "max.message.bytes" => self.max_message_bytes = long(0)?,
            "min.insync.replicas" => self.min_insync_replicas = long(1)?,
            "unclean.leader.election.enable" => {
                self.unclean_leader_election = match value.trim() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(invalid("expected true or false")),
                }
            }
            // Only CreateTime is implemented; accept the setting that matches it.
            "message.timestamp.type" if value == "CreateTime" => {}
            "message.timestamp.type" => return Err(invalid("only CreateTime is implemented")),
            _ => {
                return Err(ConfigError::Unknown {
                    name: name.to_string(),
                })
            }
        }
        Ok(())
    }

    /// The current value of a config, in the string form DescribeConfigs returns.
    pub fn get(&self, name: &str) -> Option<String> {
        Some(match name {
            "cleanup.policy" => match (self.cleanup_delete, self.cleanup_compact) {
                (true, true) => "compact,delete".to_string(),
                (false, true) => "compact".to_string(),
                (true, false) => "delete".to_string(),
                (false, false) => String::new(),
            },
            "retention.ms" => self.retention_ms.to_string(),
            "retention.bytes" => self.retention_bytes.to_string(),
            "segment.bytes" => self.segment_bytes.to_string(),
            "segment.ms" => self.segment_ms.to_string(),
            "delete.retention.ms" => self.delete_retention_ms.to_string(),
            "max.message.bytes" => self.max_message_bytes.to_string(),
            "min.insync.replicas" => self.min_insync_replicas.to_string(),
            "message.timestamp.type" => "CreateTime".to_string(),
            "unclean.leader.election.enable" => self.unclean_leader_election.to_string(),
            _ => return None,
        })
    }

    /// Applies every `(name, value)` override in order.
    pub fn with_overrides<'a>(
        mut self,
        overrides: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<TopicConfig, ConfigError> {
        for (name, value) in overrides {
            self.set(name, value)?;
        }
        Ok(self)
    }
}

/// Broker-wide settings shared by every broker of the cluster.
#[derive(Clone, Debug)]
pub(crate) struct BrokerDefaults {
    /// `num.partitions` for auto-created topics and CreateTopics with -1.
    pub num_partitions: i32,
    /// `default.replication.factor`.
    pub default_replication_factor: i16,
    /// `auto.create.topics.enable`.
    pub auto_create_topics: bool,
    /// `log.retention.check.interval.ms`.
    pub retention_check_interval_ms: i64,
    /// `socket.request.max.bytes`: frames above it close the connection.
    pub max_request_bytes: usize,
    /// The `log.*` defaults every topic starts from (`message.max.bytes` is `max_message_bytes`).
    pub topic: TopicConfig,
    /// Replication, controller and flush settings.
    pub replication: super::replication::ReplicationSettings,
    /// The group coordinator's `group.*` settings.
    pub group: super::group::GroupConfig,
    /// `offsets.topic.num.partitions`.
    pub offsets_topic_partitions: i32,
    /// `offsets.topic.replication.factor` (capped at the number of brokers; see `coordinator`).
    pub offsets_topic_replication_factor: i16,
}

impl Default for BrokerDefaults {
    fn default() -> Self {
        BrokerDefaults {
            num_partitions: 1,
            default_replication_factor: 1,
            auto_create_topics: true,
            retention_check_interval_ms: 300_000,
            max_request_bytes: 104_857_600,
            topic: TopicConfig::default(),
            replication: Default::default(),
            group: Default::default(),
            offsets_topic_partitions: 50,
            offsets_topic_replication_factor: 3,
        }
    }
}

impl BrokerDefaults {
    /// Broker configs as DescribeConfigs lists them for a BROKER resource.
    pub(crate) fn describe(&self) -> BTreeMap<&'static str, String> {
        let t = &self.topic;
        BTreeMap::from([
            ("num.partitions", self.num_partitions.to_string()),
            (
                "default.replication.factor",
                self.default_replication_factor.to_string(),
            ),
            (
                "auto.create.topics.enable",
                self.auto_create_topics.to_string(),
            ),
            ("delete.topic.enable", "true".to_string()),
            (
                "log.retention.check.interval.ms",
                self.retention_check_interval_ms.to_string(),
            ),
            (
                "socket.request.max.bytes",
                self.max_request_bytes.to_string(),
            ),
            ("message.max.bytes", t.max_message_bytes.to_string()),
            ("log.retention.ms", t.retention_ms.to_string()),
            ("log.retention.bytes", t.retention_bytes.to_string()),
            ("log.segment.bytes", t.segment_bytes.to_string()),
            ("log.roll.ms", t.segment_ms.to_string()),
            (
                "log.cleaner.delete.retention.ms",
                t.delete_retention_ms.to_string(),
            ),
            ("min.insync.replicas", t.min_insync_replicas.to_string()),
            (
                "unclean.leader.election.enable",
                t.unclean_leader_election.to_string(),
            ),
            (
                "replica.lag.time.max.ms",
                self.replication.replica_lag_time_max_ms.to_string(),
            ),
            (
                "replica.fetch.wait.max.ms",
                self.replication.replica_fetch_wait_max_ms.to_string(),
            ),
            (
                "group.min.session.timeout.ms",
                self.group.min_session_timeout_ms.to_string(),
            ),
            (
                "group.max.session.timeout.ms",
                self.group.max_session_timeout_ms.to_string(),
            ),
            (
                "group.initial.rebalance.delay.ms",
                self.group.initial_rebalance_delay_ms.to_string(),
            ),
            (
                "offsets.topic.num.partitions",
                self.offsets_topic_partitions.to_string(),
            ),
            (
                "offsets.topic.replication.factor",
                self.offsets_topic_replication_factor.to_string(),
            ),
        ])
    }

    /// Sets a broker-level setting that is not a topic default (`num.partitions`, `default.replication.factor`,
    /// `auto.create.topics.enable`, `group.*`, `offsets.topic.*`); `None` when `name` is not one of them.
    pub(crate) fn set_broker_setting(
        &mut self,
        name: &str,
        value: &str,
    ) -> Option<Result<(), ConfigError>> {
        const NAMES: [&str; 8] = [
            "num.partitions",
            "default.replication.factor",
            "auto.create.topics.enable",
            "group.min.session.timeout.ms",
            "group.max.session.timeout.ms",
            "group.initial.rebalance.delay.ms",
            "offsets.topic.num.partitions",
            "offsets.topic.replication.factor",
        ];
        if !NAMES.contains(&name) {
            return None;
        }
        let invalid = |reason| ConfigError::Invalid {
            name: name.to_string(),
            value: value.to_string(),
            reason,
        };
        if name == "auto.create.topics.enable" {
            return Some(match value.trim() {
                "true" => {
                    self.auto_create_topics = true;
                    Ok(())
                }
                "false" => {
                    self.auto_create_topics = false;
                    Ok(())
                }
                _ => Err(invalid("expected true or false")),
            });
        }
        let Ok(v) = value.trim().parse::<i32>() else {
            return Some(Err(invalid("not an integer")));
        };
        let minimum = match name {
            "offsets.topic.num.partitions"
            | "offsets.topic.replication.factor"
            | "num.partitions"
            | "default.replication.factor" => 1,
            _ => 0,
        };
        if v < minimum {
            return Some(Err(invalid("below the allowed minimum")));
        }
        match name {
            "num.partitions" => self.num_partitions = v,
            "default.replication.factor" => {
                self.default_replication_factor = i16::try_from(v).unwrap_or(i16::MAX);
            }
            "offsets.topic.num.partitions" => self.offsets_topic_partitions = v,
            "offsets.topic.replication.factor" => {
                self.offsets_topic_replication_factor = i16::try_from(v).unwrap_or(i16::MAX);
            }
            _ => {
                super::coordinator::set_group_config(&mut self.group, name, v);
            }
        }
        Some(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_parse_like_kafka() {
        let config = TopicConfig::default()
            .with_overrides([("cleanup.policy", "compact,delete"), ("retention.ms", "-1")])
            .unwrap();
        assert!(config.cleanup_compact && config.cleanup_delete);
        assert_eq!(config.get("retention.ms").as_deref(), Some("-1"));
        assert!(matches!(
            TopicConfig::default().set("retention.ms", "soon"),
            Err(ConfigError::Invalid { .. })
        ));
        assert!(matches!(
            TopicConfig::default().set("no.such.thing", "1"),
            Err(ConfigError::Unknown { .. })
        ));
    }
}
