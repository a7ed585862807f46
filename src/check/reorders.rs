//! `reordered`: a row's changes first delivered out of source order (found by the deliveries pass,
//! `deliveries.rs`).

use serde::Serialize;

use super::{ChangeRef, Delivery};

/// A change first delivered after a later change of the same row.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reorder {
    pub table: String,
    pub key: i64,
    /// The later source change, consumed first.
    pub later: ChangeRef,
    pub later_delivery: Delivery,
    /// The earlier source change, consumed after it.
    pub earlier: ChangeRef,
    pub earlier_delivery: Delivery,
}

/// `reordered`: per-row order violations among first deliveries.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Reorders {
    pub count: u64,
    pub examples: Vec<Reorder>,
}
