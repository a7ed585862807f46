//! Phantoms: consumed records that resolve to no source change (found by the deliveries pass,
//! `deliveries.rs`).

use serde::Serialize;

use super::Delivery;

/// What a consumed record claimed to carry: its table, key, op and Debezium `source` position.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClaimedChange {
    pub table: String,
    pub key: i64,
    pub op: &'static str,
    pub snapshot: bool,
    pub binlog_file: String,
    pub binlog_pos: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gtid: Option<String>,
}

/// A consumed record that resolves to no source change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Phantom {
    pub delivery: Delivery,
    /// What the record claimed (none for a record that is neither a change nor a tombstone).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimed: Option<ClaimedChange>,
}

/// Records that resolve to no source change: the pipeline read something the source never committed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Phantoms {
    pub count: u64,
    pub examples: Vec<Phantom>,
}
