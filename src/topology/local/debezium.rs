//! The Debezium connector configuration the harness registers: the seed project's names (connector
//! `openmrs-connector`, topic prefix `dbserver1`, history topic `schema-changes.openmrs`) on the MariaDB or the
//! MySQL connector class.

use serde_json::{Map, Value};

use super::mariadb::{MariaDbEndpoint, DEBEZIUM_PASSWORD, DEBEZIUM_USER};
use crate::scenario::{Acks, Compression, Producer};

/// Which Debezium connector reads the binlog.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectorFlavour {
    /// `io.debezium.connector.mariadb.MariaDbConnector` (source.connector = "mariadb").
    MariaDb,
    /// `io.debezium.connector.mysql.MySqlConnector` (source.connector = "mysql").
    MySql,
}

impl ConnectorFlavour {
    pub fn connector_class(self) -> &'static str {
        match self {
            ConnectorFlavour::MariaDb => "io.debezium.connector.mariadb.MariaDbConnector",
            ConnectorFlavour::MySql => "io.debezium.connector.mysql.MySqlConnector",
        }
    }
}

/// One Debezium connector registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DebeziumConnector {
    pub name: String,
    pub flavour: ConnectorFlavour,
    /// `topic.prefix`: row topics are `<prefix>.<database>.<table>`, schema changes go to `<prefix>`.
    pub topic_prefix: String,
    /// `database.server.id`: the replica id Debezium uses on the binlog; must differ from the source's.
    pub replica_server_id: u32,
    /// `schema.history.internal.kafka.topic`.
    pub history_topic: String,
    /// `producer.override.*` entries (Java producer names without the prefix); empty keeps the worker's producer
    /// defaults. The worker allows them (`connector.client.config.override.policy=All`).
    pub producer_overrides: Vec<(String, String)>,
}

impl DebeziumConnector {
    /// The seed project's registration, on the given connector class.
    pub fn seed(flavour: ConnectorFlavour) -> Self {
        DebeziumConnector {
            name: "openmrs-connector".into(),
            flavour,
            topic_prefix: "dbserver1".into(),
            replica_server_id: 184_055,
            history_topic: "schema-changes.openmrs".into(),
            producer_overrides: Vec::new(),
        }
    }

    /// The same registration with the scenario's producer settings as `producer.override.*`.
    pub fn with_producer(mut self, producer: &Producer) -> Self {
        self.producer_overrides = producer_configs(producer)
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .collect();
        self
    }

    /// The topic that carries changes of `table`.
    pub fn table_topic(&self, database: &str, table: &str) -> String {
        format!("{}.{database}.{table}", self.topic_prefix)
    }

    /// The `config` object for Connect's REST API.
    pub fn config(&self, source: &MariaDbEndpoint, bootstrap_servers: &str) -> Map<String, Value> {
        let entries: [(&str, String); 15] = [
            ("connector.class", self.flavour.connector_class().into()),
            ("tasks.max", "1".into()),
            ("database.hostname", "127.0.0.1".into()),
            ("database.port", source.port.to_string()),
            ("database.user", DEBEZIUM_USER.into()),
            ("database.password", DEBEZIUM_PASSWORD.into()),
            ("database.server.id", self.replica_server_id.to_string()),
            ("topic.prefix", self.topic_prefix.clone()),
            ("database.include.list", source.database.clone()),
            ("include.schema.changes", "true".into()),
            (
                "schema.history.internal.kafka.bootstrap.servers",
                bootstrap_servers.into(),
            ),
            (
                "schema.history.internal.kafka.topic",
                self.history_topic.clone(),
            ),
            ("snapshot.mode", "initial".into()),
            // Heartbeats (to `__debezium-heartbeat.<prefix>`) carry the current source offset, so Connect commits
            // an offset past the snapshot even before the first change: without one, a worker killed right after
            // the snapshot takes the whole snapshot again on restart.
            ("heartbeat.interval.ms", "500".into()),
            // Plain TCP to the loopback MariaDB; the TLS default would probe for certificates.
            ("database.ssl.mode", "disable".into()),
        ];
        let overrides = self
            .producer_overrides
            .iter()
            .map(|(key, value)| (format!("producer.override.{key}"), value.clone()));
        entries
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value))
            .chain(overrides)
            .map(|(key, value)| (key, Value::String(value)))
            .collect()
    }
}

/// A scenario's producer settings under the Java producer's names.
pub fn producer_configs(producer: &Producer) -> Vec<(&'static str, String)> {
    vec![
        (
            "acks",
            match producer.acks {
                Acks::None => "0",
                Acks::Leader => "1",
                Acks::All => "all",
            }
            .into(),
        ),
        ("linger.ms", producer.linger.0.to_string()),
        ("retries", producer.retries.to_string()),
        ("enable.idempotence", producer.idempotence.to_string()),
        (
            "max.in.flight.requests.per.connection",
            producer.max_in_flight.to_string(),
        ),
        ("batch.size", producer.batch_size.0.to_string()),
        (
            "delivery.timeout.ms",
            producer.delivery_timeout.0.to_string(),
        ),
        (
            "compression.type",
            match producer.compression {
                Compression::None => "none",
                Compression::Gzip => "gzip",
                Compression::Snappy => "snappy",
                Compression::Lz4 => "lz4",
                Compression::Zstd => "zstd",
            }
            .into(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_settings_become_producer_overrides() {
        let producer = Producer {
            acks: Acks::Leader,
            linger: crate::scenario::Millis(20),
            compression: Compression::Lz4,
            idempotence: false,
            ..Producer::default()
        };
        let connector = DebeziumConnector::seed(ConnectorFlavour::MariaDb).with_producer(&producer);
        let source = MariaDbEndpoint {
            port: 3306,
            database: "openmrs".into(),
        };
        let config = connector.config(&source, "127.0.0.1:9092");
        let get = |key: &str| config.get(key).and_then(Value::as_str).map(str::to_owned);
        assert_eq!(get("producer.override.acks").as_deref(), Some("1"));
        assert_eq!(get("producer.override.linger.ms").as_deref(), Some("20"));
        assert_eq!(
            get("producer.override.compression.type").as_deref(),
            Some("lz4")
        );
        assert_eq!(
            get("producer.override.enable.idempotence").as_deref(),
            Some("false")
        );
        assert_eq!(
            get("producer.override.max.in.flight.requests.per.connection").as_deref(),
            Some("5")
        );
        assert_eq!(
            get("producer.override.batch.size").as_deref(),
            Some("16384")
        );
        assert!(get("producer.override.retries").is_some());
        assert_eq!(
            get("producer.override.delivery.timeout.ms").as_deref(),
            Some("2147483647")
        );
        assert_eq!(get("topic.prefix").as_deref(), Some("dbserver1"));
    }
}
