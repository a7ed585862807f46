//! What the generator yields: operations (one source transaction each) and their row changes with full before
//! and after images.

use std::sync::Arc;

use crate::model::schema::TableDef;
use crate::model::value::Row;
use crate::model::OpKind;

/// What a row change does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Insert,
    Update,
    Delete,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Insert => "insert",
            ChangeKind::Update => "update",
            ChangeKind::Delete => "delete",
        }
    }
}

/// One row changed by an operation, with the images before and after (as a ROW-format binlog has them).
#[derive(Debug, Clone, PartialEq)]
pub struct RowChange {
    pub table: &'static TableDef,
    pub kind: ChangeKind,
    /// Images are shared with the generator's own state, so emitting a change copies no row.
    pub before: Option<Arc<Row>>,
    pub after: Option<Arc<Row>>,
}

impl RowChange {
    /// The row image that identifies the row (after for inserts and updates, before for deletes).
    pub fn image(&self) -> &Row {
        self.after
            .as_ref()
            .or(self.before.as_ref())
            .expect("a change has an image")
    }
}

/// Whether an operation builds the population that exists before capture starts, or is part of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Baseline,
    Stream,
}

/// One source transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct Operation {
    /// 1-based position in the whole workload (baseline and stream).
    pub seq: u64,
    /// When it is committed, epoch milliseconds.
    pub at_ms: i64,
    pub phase: Phase,
    pub kind: OpKind,
    pub patient_id: i64,
    pub changes: Vec<RowChange>,
}
