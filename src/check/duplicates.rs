//! `duplicate`: changes consumed more than once (found by the deliveries pass, `deliveries.rs`).

use serde::Serialize;

use super::{ChangeRef, Delivery};

/// One extra delivery of a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Duplicate {
    pub change: ChangeRef,
    pub first: Delivery,
    pub again: Delivery,
}

/// `duplicate`: changes consumed more than once.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Duplicates {
    /// Extra deliveries (a change read three times counts 2).
    pub count: u64,
    /// Distinct changes delivered more than once.
    pub changes: u64,
    pub examples: Vec<Duplicate>,
}
