//! Where workload operations are committed: the source database the capture reads.
//!
//! [`Source`] is the contract every backend's source honours: commit one operation as one transaction, record it
//! in history, and say where in the binlog it landed. [`MemorySource`] (here) is the embedded backend's;
//! [`MySqlSource`] (in `mysql`) commits to a real MariaDB on the local backend and records the GTID and binlog
//! position the server gave each commit.
//!
//! [`MemorySource`] is the embedded backend's OpenMRS database. It holds every table's rows (starting from the
//! reference rows the schema fixture seeds), applies an operation atomically after checking its before images
//! against the stored rows, and appends the transaction with its row images to an in-memory binlog: positions in
//! a rotating `*-bin.NNNNNN` file, GTIDs in the flavour's spelling, server id 1. The capture reads that binlog
//! with a cursor and waits for it to grow; it starts from a consistent snapshot ([`MemorySource::snapshot`]).
//!
//! Not for: SQL. Operations arrive as row images, exactly what a ROW-format binlog carries.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

mod mysql;
pub use mysql::MySqlSource;

use crate::clock::Clock;
use crate::history::{BinlogPosition, ChangeOp, ChangeRecord, Commit, Recorder};
use crate::model::flat::RowImages;
use crate::model::schema::{self, SqlType, TableDef};
use crate::model::{OpKind, Row, Value};
use crate::scenario::Connector;
use crate::workload::operation::{ChangeKind, Operation, Phase, RowChange};
use crate::workload::reference;

/// MySQL's and MariaDB's default `max_binlog_size` (1 GiB): the file rotates once a transaction ends past it.
pub const DEFAULT_MAX_BINLOG_SIZE: u64 = 1 << 30;
/// The source's `server_id`, as the local backend configures MariaDB.
pub const SERVER_ID: u32 = 1;

/// Where the first transaction of a binlog file starts: after the magic number, the format description event and
/// the previous-GTIDs / GTID-list event.
const FIRST_EVENT_POS: u64 = 256;
/// Bytes of the events framing every transaction: GTID, `BEGIN` query, XID commit.
const TXN_OVERHEAD: u64 = 42 + 77 + 31;
/// Bytes of a table-map event plus a rows-event header.
const ROWS_EVENT_OVERHEAD: u64 = 60 + 30;

/// Why an operation was refused. Nothing of a refused operation is applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    #[error("txn {txn}: {table} row {key}: the before image differs from the stored row (change {index})")]
    BeforeImageMismatch {
        txn: u64,
        index: usize,
        table: &'static str,
        key: i64,
    },
    #[error("txn {txn}: {table} row {key} does not exist (change {index} updates or deletes it)")]
    RowMissing {
        txn: u64,
        index: usize,
        table: &'static str,
        key: i64,
    },
    #[error("txn {txn}: {table} row {key} already exists (change {index} inserts it)")]
    KeyExists {
        txn: u64,
        index: usize,
        table: &'static str,
        key: i64,
    },
    #[error("txn {txn}: change {index} on {table}: {problem}")]
    MalformedChange {
        txn: u64,
        index: usize,
        table: &'static str,
        problem: String,
    },
    #[error("txn {txn}: a {found:?} operation was given to {method}; use {expected}")]
    WrongPhase {
        txn: u64,
        found: Phase,
        method: &'static str,
        expected: &'static str,
    },
    #[error("txn {txn}: baseline operations must be loaded before the capture's snapshot")]
    LoadAfterSnapshot { txn: u64 },
    #[error("txn {txn} does not follow txn {head}: operations are committed in seq order")]
    OutOfOrder { txn: u64, head: u64 },
    /// The database refused a statement or could not be reached; a refused transaction was rolled back.
    #[error("{}MySQL error while {doing}: {message}", txn.map(|t| format!("txn {t}: ")).unwrap_or_default())]
    Mysql {
        /// The operation being committed or loaded, if any.
        txn: Option<u64>,
        /// What the source was doing (`running change 2 on obs: UPDATE …`).
        doing: String,
        /// The server's or the driver's error text.
        message: String,
    },
}

/// A source database the harness commits operations to.
pub trait Source: Send + Sync {
    /// Commits `op` as one transaction, records it in history and returns the commit as recorded.
    fn commit(&self, op: &Operation) -> impl Future<Output = Result<Commit, SourceError>> + Send;
}

/// One row change as the binlog carries it.
#[derive(Debug, Clone)]
pub struct BinlogRow {
    pub table: &'static TableDef,
    pub key: i64,
    pub op: ChangeOp,
    pub before: Option<Arc<Row>>,
    pub after: Option<Arc<Row>>,
    /// The row's index inside its rows event (consecutive changes of one table and kind share an event).
    pub row: u32,
}

/// One committed transaction in the binlog.
#[derive(Debug, Clone)]
pub struct BinlogTxn {
    pub txn: u64,
    pub kind: OpKind,
    pub position: BinlogPosition,
    pub gtid: String,
    pub server_id: u32,
    pub committed_at_ms: i64,
    pub rows: Vec<BinlogRow>,
}

/// A consistent read of every table and the binlog position it corresponds to.
#[derive(Debug, Clone)]
pub struct SourceSnapshot {
    pub position: BinlogPosition,
    /// The GTID set executed up to the snapshot (`0-1-50`, `uuid:1-50`).
    pub gtid_set: String,
    /// Binlog cursor of the first transaction after the snapshot.
    pub cursor: usize,
    /// Every table (schema order) with its rows in key order.
    pub tables: Vec<(&'static TableDef, Vec<Arc<Row>>)>,
    /// `AUTO_INCREMENT` of each table with an auto-increment key, as `SHOW CREATE TABLE` would print it.
    pub auto_increment: BTreeMap<&'static str, i64>,
    pub taken_at_ms: i64,
}

struct Tables {
    rows: BTreeMap<&'static str, BTreeMap<i64, Arc<Row>>>,
    /// Next auto-increment value per table (InnoDB's counter: the highest key ever inserted + 1).
    next_auto: BTreeMap<&'static str, i64>,
}

struct State {
    tables: Tables,
    binlog: Vec<Arc<BinlogTxn>>,
    file_number: u32,
    pos: u64,
    /// GTID sequence numbers used so far (baseline loads included).
    gtid_seq: u64,
    head_txn: u64,
    snapshot_taken: bool,
}

/// The embedded backend's OpenMRS database. See the module docs.
pub struct MemorySource {
    connector: Connector,
    recorder: Recorder,
    clock: Clock,
    max_binlog_size: u64,
    server_uuid: String,
    state: Mutex<State>,
    /// The binlog's length; the capture waits on it.
    appended: watch::Sender<usize>,
}

impl std::fmt::Debug for MemorySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("MemorySource")
            .field("connector", &self.connector)
            .field("binlog_len", &state.binlog.len())
            .field("head_txn", &state.head_txn)
            .finish()
    }
}

impl MemorySource {
    /// A database holding the reference rows the schema fixture seeds, with an empty binlog.
    pub fn new(connector: Connector, recorder: Recorder, clock: Clock) -> MemorySource {
        let mut rows: BTreeMap<&'static str, BTreeMap<i64, Arc<Row>>> = schema::ALL_TABLES
            .iter()
            .map(|t| (t.name, BTreeMap::new()))
            .collect();
        let mut next_auto = BTreeMap::new();
        for (table, table_rows) in reference::reference_rows() {
            let stored = rows.entry(table.name).or_default();
            for row in table_rows {
                if let Some(Value::Int(key)) = row.first() {
                    stored.insert(*key, Arc::new(row));
                }
            }
        }
        for table in schema::ALL_TABLES {
            if table.columns.first().is_some_and(|c| c.auto_increment) {
                let max = rows[table.name].keys().next_back().copied().unwrap_or(0);
                next_auto.insert(table.name, max + 1);
            }
        }
        let server_uuid = crate::rng::stable_uuid("server_uuid", SERVER_ID as i64).to_string();
        MemorySource {
            connector,
            recorder,
            clock,
            max_binlog_size: DEFAULT_MAX_BINLOG_SIZE,
            server_uuid,
            state: Mutex::new(State {
                tables: Tables { rows, next_auto },
                binlog: Vec::new(),
                file_number: 1,
                pos: FIRST_EVENT_POS,
                gtid_seq: 0,
                head_txn: 0,
                snapshot_taken: false,
            }),
            appended: watch::channel(0).0,
        }
    }

    /// Sets `max_binlog_size` (bytes; at least 4 KiB): the file rotates once a transaction ends past it.
    pub fn with_max_binlog_size(mut self, bytes: u64) -> MemorySource {
        self.max_binlog_size = bytes.max(4096);
        self
    }

    pub fn connector(&self) -> Connector {
        self.connector
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every mutation checks first and applies after, so a panic cannot leave half a transaction.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies a baseline operation without recording it in history: baseline rows reach the pipeline through
    /// the capture's snapshot. It still takes binlog space and a GTID, as it would on a real server.
    pub fn load(&self, op: &Operation) -> Result<(), SourceError> {
        if op.phase != Phase::Baseline {
            return Err(SourceError::WrongPhase {
                txn: op.seq,
                found: op.phase,
                method: "load",
                expected: "commit",
            });
        }
        let mut state = self.lock();
        if state.snapshot_taken {
            return Err(SourceError::LoadAfterSnapshot { txn: op.seq });
        }
        let rows = check(&state.tables, op)?;
        let size = txn_size(&rows);
        apply(&mut state.tables, &rows);
        state.gtid_seq += 1;
        self.advance(&mut state, size);
        Ok(())
    }

    /// Commits a stream operation: checks it against the stored rows, applies it, records the commit in history
    /// and appends the transaction to the binlog.
    pub fn commit_now(&self, op: &Operation) -> Result<Commit, SourceError> {
        if op.phase != Phase::Stream {
            return Err(SourceError::WrongPhase {
                txn: op.seq,
                found: op.phase,
                method: "commit",
                expected: "load",
            });
        }
        let mut state = self.lock();
        if op.seq <= state.head_txn {
            return Err(SourceError::OutOfOrder {
                txn: op.seq,
                head: state.head_txn,
            });
        }
        let rows = check(&state.tables, op)?;
        let size = txn_size(&rows);
        apply(&mut state.tables, &rows);
        state.gtid_seq += 1;
        let position = BinlogPosition {
            file: self.file_name(state.file_number),
            pos: state.pos,
        };
        let gtid = self.gtid(state.gtid_seq);
        let committed_at_ms = self.clock.now_ms();
        let commit = Commit {
            txn: op.seq,
            snapshot: false,
            kind: Some(op.kind),
            patient_id: Some(op.patient_id),
            position: position.clone(),
            gtid: Some(gtid.clone()),
            server_id: SERVER_ID,
            committed_at_ms,
            changes: rows
                .iter()
                .map(|r| ChangeRecord {
                    table: r.table.name,
                    key: r.key,
                    op: r.op,
                })
                .collect(),
        };
        // Recorded under the source lock so history's commit order is the binlog's order.
        self.recorder.commit(commit.clone());
        state.binlog.push(Arc::new(BinlogTxn {
            txn: op.seq,
            kind: op.kind,
            position,
            gtid,
            server_id: SERVER_ID,
            committed_at_ms,
            rows,
        }));
        state.head_txn = op.seq;
        self.advance(&mut state, size);
        let len = state.binlog.len();
        drop(state);
        self.appended.send_replace(len);
        Ok(commit)
    }

    fn advance(&self, state: &mut State, size: u64) {
        state.pos += size;
        if state.pos > self.max_binlog_size {
            state.file_number += 1;
            state.pos = FIRST_EVENT_POS;
        }
    }

    fn file_name(&self, number: u32) -> String {
        match self.connector {
            Connector::Mysql => format!("mysql-bin.{number:06}"),
            Connector::Mariadb => format!("mariadb-bin.{number:06}"),
        }
    }

    fn gtid(&self, seq: u64) -> String {
        match self.connector {
            Connector::Mysql => format!("{}:{seq}", self.server_uuid),
            Connector::Mariadb => format!("0-{SERVER_ID}-{seq}"),
        }
    }

    fn gtid_set(&self, seq: u64) -> String {
        match self.connector {
            Connector::Mysql if seq == 0 => String::new(),
            Connector::Mysql => format!("{}:1-{seq}", self.server_uuid),
            Connector::Mariadb => format!("0-{SERVER_ID}-{seq}"),
        }
    }

    /// The highest txn committed so far (0 before the first stream commit).
    pub fn head_txn(&self) -> u64 {
        self.lock().head_txn
    }

    /// Transactions in the binlog.
    pub fn binlog_len(&self) -> usize {
        self.lock().binlog.len()
    }

    /// The binlog transactions from `cursor` on, at most `max` of them.
    pub fn read_binlog(&self, cursor: usize, max: usize) -> Vec<Arc<BinlogTxn>> {
        let state = self.lock();
        let start = cursor.min(state.binlog.len());
        let end = start.saturating_add(max).min(state.binlog.len());
        state.binlog[start..end].to_vec()
    }

    /// Waits until the binlog holds more than `cursor` transactions.
    pub async fn wait_beyond(&self, cursor: usize) {
        let mut rx = self.appended.subscribe();
        // The sender lives as long as `self`, so `wait_for` only ends when the condition holds.
        let _ = rx.wait_for(|len| *len > cursor).await;
    }

    /// The binlog cursor just after the transaction `txn` (0 when `txn` precedes the binlog).
    pub fn cursor_after(&self, txn: u64) -> usize {
        self.lock().binlog.partition_point(|t| t.txn <= txn)
    }

    /// A consistent read of every table and the position it corresponds to. Later `load`s are refused.
    pub fn snapshot(&self) -> SourceSnapshot {
        let mut state = self.lock();
        state.snapshot_taken = true;
        let tables = schema::ALL_TABLES
            .iter()
            .map(|t| {
                let rows = state.tables.rows[t.name].values().cloned().collect();
                (*t, rows)
            })
            .collect();
        SourceSnapshot {
            position: BinlogPosition {
                file: self.file_name(state.file_number),
                pos: state.pos,
            },
            gtid_set: self.gtid_set(state.gtid_seq),
            cursor: state.binlog.len(),
            tables,
            auto_increment: state.tables.next_auto.clone(),
            taken_at_ms: self.clock.now_ms(),
        }
    }

    /// The current state of every modeled table: the oracle's input.
    pub fn final_images(&self) -> RowImages {
        let state = self.lock();
        schema::MODELED_TABLES
            .iter()
            .map(|t| (t.name, state.tables.rows[t.name].clone()))
            .collect()
    }

    /// The stored row of `table` with primary key `key`.
    pub fn row(&self, table: &str, key: i64) -> Option<Arc<Row>> {
        self.lock().tables.rows.get(table)?.get(&key).cloned()
    }
}

impl Source for MemorySource {
    async fn commit(&self, op: &Operation) -> Result<Commit, SourceError> {
        self.commit_now(op)
    }
}

/// Checks every change of `op` against the tables as the earlier changes of the same operation leave them, and
/// returns the binlog rows. Nothing is applied.
fn check(tables: &Tables, op: &Operation) -> Result<Vec<BinlogRow>, SourceError> {
    // Changes of this operation already checked: (table, key) → the row as they leave it (None: deleted).
    let mut pending: BTreeMap<(&'static str, i64), Option<Arc<Row>>> = BTreeMap::new();
    let mut out = Vec::with_capacity(op.changes.len());
    let mut last: Option<(&'static str, ChangeOp)> = None;
    let mut row_in_event = 0u32;
    for (index, change) in op.changes.iter().enumerate() {
        let table = change.table;
        let malformed = |problem: String| SourceError::MalformedChange {
            txn: op.seq,
            index,
            table: table.name,
            problem,
        };
        let key = row_key(op, index, change)?;
        let stored = match pending.get(&(table.name, key)) {
            Some(r) => r.clone(),
            None => tables
                .rows
                .get(table.name)
                .and_then(|t| t.get(&key))
                .cloned(),
        };
        let (txn, name) = (op.seq, table.name);
        let op_kind = match change.kind {
            ChangeKind::Insert => {
                if stored.is_some() {
                    return Err(SourceError::KeyExists {
                        txn,
                        index,
                        table: name,
                        key,
                    });
                }
                if change.after.is_none() || change.before.is_some() {
                    return Err(malformed(
                        "an insert needs an after image and no before image".into(),
                    ));
                }
                ChangeOp::Create
            }
            ChangeKind::Update | ChangeKind::Delete => {
                let Some(stored) = stored else {
                    return Err(SourceError::RowMissing {
                        txn,
                        index,
                        table: name,
                        key,
                    });
                };
                let Some(before) = &change.before else {
                    return Err(malformed("an update or delete needs a before image".into()));
                };
                if !same_row(before, &stored) {
                    return Err(SourceError::BeforeImageMismatch {
                        txn,
                        index,
                        table: name,
                        key,
                    });
                }
                if change.kind == ChangeKind::Update {
                    let after = change
                        .after
                        .as_ref()
                        .ok_or_else(|| malformed("an update needs an after image".into()))?;
                    if after.first() != before.first() {
                        return Err(malformed(
                            "an update changes the primary key; model it as delete + insert".into(),
                        ));
                    }
                    ChangeOp::Update
                } else {
                    ChangeOp::Delete
                }
            }
        };
        if last == Some((table.name, op_kind)) {
            row_in_event += 1;
        } else {
            row_in_event = 0;
        }
        last = Some((table.name, op_kind));
        pending.insert((table.name, key), change.after.clone());
        out.push(BinlogRow {
            table,
            key,
            op: op_kind,
            before: change.before.clone(),
            after: change.after.clone(),
            row: row_in_event,
        });
    }
    Ok(out)
}

/// The primary key of change `index` of `op`, after checking that it has a row image, that its images have the
/// table's columns, and that the key is an integer. Every source records changes by this key.
pub(crate) fn row_key(
    op: &Operation,
    index: usize,
    change: &RowChange,
) -> Result<i64, SourceError> {
    let table = change.table;
    let malformed = |problem: String| SourceError::MalformedChange {
        txn: op.seq,
        index,
        table: table.name,
        problem,
    };
    let image = change
        .after
        .as_ref()
        .or(change.before.as_ref())
        .ok_or_else(|| malformed("the change has no row image".into()))?;
    for (name, img) in [("before", &change.before), ("after", &change.after)] {
        if let Some(img) = img {
            if img.len() != table.columns.len() {
                return Err(malformed(format!(
                    "the {name} image has {} values, the table {} columns",
                    img.len(),
                    table.columns.len()
                )));
            }
        }
    }
    match image.first() {
        Some(Value::Int(k)) => Ok(*k),
        other => Err(malformed(format!(
            "the primary key is {other:?}, not an integer"
        ))),
    }
}

/// Rows compare by value; doubles by bits, so a NaN image still matches itself.
fn same_row(a: &Row, b: &Row) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (Value::Double(x), Value::Double(y)) => x.to_bits() == y.to_bits() || x == y,
            _ => x == y,
        })
}

fn apply(tables: &mut Tables, rows: &[BinlogRow]) {
    for r in rows {
        let table = tables.rows.entry(r.table.name).or_default();
        match &r.after {
            Some(after) => {
                table.insert(r.key, Arc::clone(after));
            }
            None => {
                table.remove(&r.key);
            }
        }
        if r.op == ChangeOp::Create {
            if let Some(next) = tables.next_auto.get_mut(r.table.name) {
                *next = (*next).max(r.key + 1);
            }
        }
    }
}

/// A plausible size in bytes of the transaction's binlog events (ROW format, FULL images).
fn txn_size(rows: &[BinlogRow]) -> u64 {
    let mut size = TXN_OVERHEAD;
    let mut last: Option<(&str, ChangeOp)> = None;
    for r in rows {
        if last != Some((r.table.name, r.op)) {
            size += ROWS_EVENT_OVERHEAD + r.table.columns.len() as u64;
        }
        last = Some((r.table.name, r.op));
        for img in [&r.before, &r.after].into_iter().flatten() {
            size += image_size(r.table, img);
        }
    }
    size
}

fn image_size(table: &TableDef, row: &Row) -> u64 {
    let null_bitmap = table.columns.len().div_ceil(8) as u64;
    null_bitmap
        + table
            .columns
            .iter()
            .zip(row.iter())
            .map(|(c, v)| match (c.ty, v) {
                (_, Value::Null) => 0,
                (SqlType::Int, _) => 4,
                (SqlType::Boolean, _) => 1,
                (SqlType::Double, _) => 8,
                (SqlType::Date, _) | (SqlType::Time, _) => 3,
                (SqlType::Datetime, _) => 5,
                (_, Value::Text(t)) => t.len() as u64 + if t.len() > 255 { 2 } else { 1 },
                _ => 4,
            })
            .sum::<u64>()
}

#[cfg(test)]
mod tests;
