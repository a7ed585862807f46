//! Helpers shared by integration tests.

pub mod debezium_fixture;
