//! Where the ETL writes: the latest image of every row, the flat encounter table derived from them, and the
//! consumers' offsets — all changed together, so what a consumer has read and what the sink holds never
//! disagree.
//!
//! Two sinks follow the same rules: [`MemorySink`] (the embedded backend's, and the reference) and [`MySqlSink`]
//! (the local backend's: the same state in a MariaDB schema, one transaction per batch). The rules live in one
//! place, `State::apply`, which both call.
//!
//! ## Why the result does not depend on delivery order
//!
//! Every change carries its source position (snapshot reads first, then binlog file, position, row). The sink
//! keeps, per (table, key), the position of the change it holds and ignores any change at or before it. A delete
//! leaves a marker with its position, so a replayed older create cannot bring the row back. Topics can then
//! interleave in any way across consumers, and segments can be replayed after a restart: each row ends at its
//! last change, and the flat table — a function of the row images — ends the same.
//!
//! A tombstone has no position. It follows its delete on the same partition (same key), so it removes a row
//! only when the image held came from that partition at a lower offset: the case where compaction removed the
//! delete but kept the tombstone. A tombstone replayed from before the held image changes nothing.
//!
//! ## Offsets
//!
//! A batch names the next offset to read of each partition it covers; they are stored under the same lock (or in
//! the same transaction) as the data. A partition has one reader at a time (static assignment; a killed consumer is gone before its
//! replacement starts), so the stored offset is simply replaced — which also lets a reader move back after the
//! log was truncated below it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use crate::history::{ChangeOp, SourceRef};
use crate::model::flat::{FlatIndex, FlatTable, RowImages};
use crate::model::Row;
use crate::pipeline::decode::Decoded;

mod mysql;
pub use mysql::{MySqlSink, DEFAULT_SINK_SCHEMA};

/// A decoded record and where it was read.
#[derive(Debug, Clone, PartialEq)]
pub struct SinkRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub decoded: Decoded,
}

/// What one consumer step writes: records, and the next offset to read of each partition they came from (a
/// partition may also advance with no records, e.g. past a retention gap or an undecodable record).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    pub records: Vec<SinkRecord>,
    pub next_offsets: Vec<(String, i32, i64)>,
}

/// A sink could not take a batch (none for the memory sink; a database sink can be unreachable).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkError {
    #[error("sink {sink} could not write a batch of {records} records: {reason}")]
    Write {
        sink: String,
        records: usize,
        reason: String,
    },
    #[error("sink {sink} could not be opened: {reason}")]
    Open { sink: String, reason: String },
}

pub type SinkFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, SinkError>> + Send + 'a>>;

/// What the consumers need from a sink. A database sink writes a batch's rows and offsets in one transaction
/// and keeps its committed offsets in memory for [`Sink::offsets`].
pub trait Sink: Send + Sync + 'static {
    /// Applies `batch` and stores its offsets, both or neither.
    fn apply(&self, consumer: u32, batch: Batch) -> SinkFuture<'_, ()>;
    /// The next offset to read of every partition the sink has written: `(topic, partition) → offset`.
    fn offsets(&self) -> BTreeMap<(String, i32), i64>;
}

/// A change's place in the source: snapshot reads before streamed changes, then binlog order.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Position {
    streamed: bool,
    file: Arc<str>,
    pos: u64,
    row: u32,
}

impl From<&SourceRef> for Position {
    fn from(s: &SourceRef) -> Position {
        Position {
            streamed: !s.snapshot,
            file: s.file.clone(),
            pos: s.pos,
            row: s.row,
        }
    }
}

/// What the sink holds for one (table, key).
#[derive(Debug, Clone)]
struct Held {
    position: Position,
    /// `false`: a delete marker.
    live: bool,
    /// Partition and offset of the record that set it (a table has one topic, so the partition suffices).
    origin: (i32, i64),
}

/// Everything a sink holds, and the one rule for changing it (shared by the memory and the MySQL sink).
#[derive(Default)]
struct State {
    images: RowImages,
    held: HashMap<(&'static str, i64), Held>,
    index: FlatIndex,
    flat: FlatTable,
    offsets: BTreeMap<(String, i32), i64>,
    applied: BTreeMap<u32, u64>,
    /// Flat rows whose inputs changed since they were last built (deferred refresh, see [`State::apply`]).
    stale: BTreeSet<(i64, i64)>,
    /// Build the flat rows a batch touched in the batch itself (a database sink writes them there) instead of
    /// when the table is read.
    eager: bool,
}

/// What one batch changed: the (table, key)s whose held entry moved and the flat rows it touched. A database
/// sink writes exactly these.
#[derive(Debug, Default)]
struct Applied {
    rows: BTreeSet<(&'static str, i64)>,
    flat: BTreeSet<(i64, i64)>,
}

impl State {
    /// A state holding `held` and `images` (as a database sink stores them) and `offsets`.
    fn restore(
        held: HashMap<(&'static str, i64), Held>,
        images: RowImages,
        offsets: BTreeMap<(String, i32), i64>,
    ) -> State {
        State {
            index: FlatIndex::from_images(&images),
            flat: crate::model::flat::build(&images),
            images,
            held,
            offsets,
            applied: BTreeMap::new(),
            stale: BTreeSet::new(),
            eager: true,
        }
    }

    /// Applies a batch: each record only when newer than what is held, the flat rows it affects, then the
    /// batch's offsets. An eager state (the database sink's) rebuilds the affected flat rows now; a deferred one
    /// (the memory sink's) marks them stale and rebuilds each once when the table is read ([`State::refresh`]):
    /// an encounter whose 30 obs arrive over 30 batches is built once instead of 30 times, and the table takes
    /// no memory while the run goes on. Which rows are affected is decided by the same index either way.
    fn apply(&mut self, consumer: u32, batch: &Batch) -> Applied {
        let State {
            images,
            held,
            index,
            flat,
            offsets,
            applied,
            stale,
            eager,
        } = self;
        let mut changed = Applied::default();
        for record in &batch.records {
            let origin = (record.partition, record.offset);
            let Some((table, old, new)) = apply_one(images, held, &record.decoded, origin) else {
                continue;
            };
            changed.rows.insert((table, record.decoded.key()));
            if let Some(old) = &old {
                index.update(table, old, false);
            }
            if let Some(new) = &new {
                index.update(table, new, true);
            }
            for image in old.iter().chain(new.iter()) {
                index.affected(images, table, image, &mut changed.flat);
            }
        }
        if *eager {
            rebuild(index, images, flat, &changed.flat);
        } else {
            stale.extend(changed.flat.iter().copied());
        }
        for (topic, partition, next) in &batch.next_offsets {
            offsets.insert((topic.clone(), *partition), *next);
        }
        *applied.entry(consumer).or_default() += batch.records.len() as u64;
        changed
    }

    /// Builds the stale flat rows: afterwards `flat` equals `flat::build(&images)`.
    fn refresh(&mut self) {
        let stale = std::mem::take(&mut self.stale);
        rebuild(&self.index, &self.images, &mut self.flat, &stale);
    }
}

/// Builds the flat rows at `keys` from the images, removing those that have no row any more.
fn rebuild(
    index: &FlatIndex,
    images: &RowImages,
    flat: &mut FlatTable,
    keys: &BTreeSet<(i64, i64)>,
) {
    for &key in keys {
        match index.row(images, key) {
            Some(row) => flat.insert(key, row),
            None => flat.remove(&key),
        };
    }
}

/// The in-memory sink: the run's ETL output, compared with the oracle at the end. Its flat table is refreshed
/// when read: a batch marks the rows it touched stale, and [`MemorySink::flat_table`] builds each once.
#[derive(Default)]
pub struct MemorySink {
    state: Mutex<State>,
}

impl MemorySink {
    pub fn new() -> MemorySink {
        MemorySink::default()
    }

    /// A memory sink that builds the flat rows a batch touches in that batch, as the database sink does: for
    /// tests of the incremental table, which the deferred refresh exercises less (a row marked stale by one
    /// batch hides another batch's omission).
    pub fn eager() -> MemorySink {
        let sink = MemorySink::default();
        sink.state().eager = true;
        sink
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // Applying is a sequence of map updates that cannot panic halfway on valid input; a poisoned lock still
        // holds a consistent state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies a batch and stores its offsets under one lock.
    pub fn apply_batch(&self, consumer: u32, batch: Batch) {
        self.state().apply(consumer, &batch);
    }

    /// The next offset to read per (topic, partition).
    pub fn offsets(&self) -> BTreeMap<(String, i32), i64> {
        self.state().offsets.clone()
    }

    /// The latest image of every live row.
    pub fn images(&self) -> RowImages {
        self.state().images.clone()
    }

    /// The flat encounter table as the sink maintains it (equal to `flat::build(&self.images())`).
    pub fn flat_table(&self) -> FlatTable {
        let mut state = self.state();
        state.refresh();
        state.flat.clone()
    }

    /// Records applied per consumer (1-based), replays included.
    pub fn applied_per_consumer(&self) -> BTreeMap<u32, u64> {
        self.state().applied.clone()
    }
}

type Change = (&'static str, Option<Arc<Row>>, Option<Arc<Row>>);

/// Applies one record to the images; returns the table and the old and new image when something changed.
fn apply_one(
    images: &mut RowImages,
    held: &mut HashMap<(&'static str, i64), Held>,
    decoded: &Decoded,
    origin: (i32, i64),
) -> Option<Change> {
    let (table, key) = (decoded.table(), decoded.key());
    match decoded {
        Decoded::Change { change, image } => {
            let position = Position::from(&change.source);
            if let Some(h) = held.get(&(table, key)) {
                if h.position >= position {
                    return None;
                }
            }
            let live = change.op != ChangeOp::Delete;
            held.insert(
                (table, key),
                Held {
                    position,
                    live,
                    origin,
                },
            );
            let rows = images.entry(table).or_default();
            let old = if live {
                rows.insert(key, image.clone())
            } else {
                rows.remove(&key)
            };
            if rows.is_empty() {
                images.remove(table);
            }
            Some((table, old, live.then(|| image.clone())))
        }
        Decoded::Tombstone { .. } => {
            let h = held.get_mut(&(table, key))?;
            if !h.live || h.origin.0 != origin.0 || h.origin.1 >= origin.1 {
                return None;
            }
            h.live = false;
            h.origin = origin;
            let rows = images.get_mut(table)?;
            let old = rows.remove(&key);
            if rows.is_empty() {
                images.remove(table);
            }
            Some((table, old, None))
        }
    }
}

impl Sink for MemorySink {
    fn apply(&self, consumer: u32, batch: Batch) -> SinkFuture<'_, ()> {
        self.apply_batch(consumer, batch);
        Box::pin(std::future::ready(Ok(())))
    }

    fn offsets(&self) -> BTreeMap<(String, i32), i64> {
        MemorySink::offsets(self)
    }
}
