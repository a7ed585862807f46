//! Topologies: the services a run needs (source database, Kafka, change capture) and their endpoints.
//!
//! Each backend starts the services its own way. `local` runs the real programs as child processes on
//! 127.0.0.1 (MariaDB, ZooKeeper or a KRaft controller, Kafka, Kafka Connect with Debezium), provisioned on first
//! use.

pub mod local;
