//! `retention-loss`: the changes retention deleted before the pipeline read them (the lost changes of cause
//! retention, listed in full by `lost.rs`).

use serde::Serialize;

use super::ChangeRef;

/// `retention-loss`: exactly which changes retention deleted before the pipeline read them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetentionLoss {
    pub count: u64,
    /// Every one of them, in source order.
    pub changes: Vec<ChangeRef>,
    /// OFFSET_OUT_OF_RANGE answers the consumers recorded.
    pub consumer_gaps: u64,
}
