//! The Debezium connector configuration the harness registers: the seed project's names (connector
//! `openmrs-connector`, topic prefix `dbserver1`, history topic `schema-changes.openmrs`) on the MariaDB or the
//! MySQL connector class.

use serde_json::{Map, Value};

use super::mariadb::{MariaDbEndpoint, DEBEZIUM_PASSWORD, DEBEZIUM_USER};

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
        }
    }

    /// The topic that carries changes of `table`.
    pub fn table_topic(&self, database: &str, table: &str) -> String {
        format!("{}.{database}.{table}", self.topic_prefix)
    }

    /// The `config` object for Connect's REST API.
    pub fn config(&self, source: &MariaDbEndpoint, bootstrap_servers: &str) -> Map<String, Value> {
        let entries: [(&str, String); 14] = [
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
            // Plain TCP to the loopback MariaDB; the TLS default would probe for certificates.
            ("database.ssl.mode", "disable".into()),
        ];
        entries
            .into_iter()
            .map(|(key, value)| (key.to_owned(), Value::String(value)))
            .collect()
    }
}
