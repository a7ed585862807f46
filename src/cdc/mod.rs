//! Change capture: the embedded Debezium-compatible capture of the embedded backend.
//!
//! [`Capture`] does what a Debezium 3.2 MySQL or MariaDB connector task does (`snapshot.mode=initial`,
//! JsonConverter with schemas, `tombstones.on.delete=true`): it takes a consistent snapshot of the
//! [`MemorySource`] — the DDL to the schema-history topic and, with
//! `include_schema_changes`, to the `<prefix>` topic, then every row of the captured tables as `r` events — and
//! streams the binlog from the snapshot's position as `c`/`u`/`d` events, a tombstone after each delete. The bytes
//! are Debezium's: keys byte-identical (they decide the partition), values with the same schemas, field order and
//! type mapping, the three `__debezium.context.*` headers (checked against real connector output in
//! `tests/capture.rs`).
//!
//! Every record goes through the harness [`Producer`] (keyed, murmur2 like Java), and every send's outcome is
//! recorded as [`Produced`]. A failed send fails the capture as it fails a Debezium task: it stops producing,
//! says why in [`CaptureProgress::failed`], and a [`Capture::restart`] resumes it. A restart resumes after the
//! last transaction whose records were all acknowledged (before: redoes the snapshot), so it produces
//! duplicates, never gaps — like Kafka Connect resuming from committed source offsets.
//!
//! The capture never creates topics: the runner creates the change topics and [`schema_topics`].

mod ddl;
mod encode;
mod json;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::client::{Delivery, ProduceError, Producer, ProducerConfig, Record};
use crate::clock::Clock;
use crate::history::{
    ChangeId, ChangeOp, ChangeRecord, Commit, ProduceOutcome, Produced, Recorder,
};
use crate::scenario::Connector;
use crate::source::{BinlogTxn, MemorySource, SourceSnapshot};
use crate::workload::schema::{self, TableDef};

pub use encode::DEBEZIUM_VERSION;

/// The capture's encoder on its own: a streamed row change as Debezium's key and value bytes. For measuring
/// and for comparing other captures' output; [`Capture`] uses the same codecs.
#[derive(Debug, Clone)]
pub struct ChangeEncoder {
    flavour: Flavour,
    codecs: HashMap<&'static str, TableCodec>,
}

impl ChangeEncoder {
    /// Renders every captured table's schemas once.
    pub fn new(connector: Connector, prefix: &str, database: &str) -> ChangeEncoder {
        let flavour = Flavour::new(connector, prefix, database);
        let codecs = schema::MODELED_TABLES
            .iter()
            .map(|t| (t.name, TableCodec::new(&flavour, t)))
            .collect();
        ChangeEncoder { flavour, codecs }
    }

    /// The topic, key and value of row `index` of `txn` (`None` for a table that is not captured).
    pub fn encode(
        &self,
        txn: &BinlogTxn,
        index: usize,
        now_ms: i64,
    ) -> Option<(&str, Bytes, Bytes)> {
        let r = txn.rows.get(index)?;
        let codec = self.codecs.get(r.table.name)?;
        let value = self.streamed_value(codec, txn, index, now_ms);
        Some((codec.topic.as_str(), codec.key(r.key), value))
    }

    /// The value of streamed row `index` of `txn` through its table's codec.
    fn streamed_value(
        &self,
        codec: &TableCodec,
        txn: &BinlogTxn,
        index: usize,
        now_ms: i64,
    ) -> Bytes {
        let r = &txn.rows[index];
        let ts_ms = match self.flavour.connector {
            Connector::Mysql => txn.committed_at_ms,
            // MariaDB's binlog event timestamps have whole seconds.
            Connector::Mariadb => txn.committed_at_ms.div_euclid(1000) * 1000,
        };
        let source = SourceInfo {
            ts_ms,
            snapshot: SnapshotMark::False,
            db: &self.flavour.database,
            table: Some(r.table.name),
            server_id: txn.server_id,
            gtid: Some(&txn.gtid),
            file: &txn.position.file,
            pos: txn.position.pos,
            row: r.row,
        };
        codec.value(
            &self.flavour,
            r.op,
            r.before.as_deref(),
            r.after.as_deref(),
            &source,
            now_ms,
        )
    }
}

use ddl::{DdlEvent, HistoryPosition, SchemaChangeCodec};
use encode::{Flavour, SnapshotMark, SourceInfo, TableCodec};

/// Binlog transactions read per source lock.
const READ_BATCH: usize = 256;
/// Records handed to the producer and not yet answered, at most: the capture's backpressure.
const IN_FLIGHT_RECORDS: usize = 32 * 1024;

/// How the capture is set up: Debezium's connector settings that matter here, and the producer's.
#[derive(Debug, Clone)]
pub struct CaptureConfig {
    pub connector: Connector,
    /// `topic.prefix`.
    pub prefix: String,
    /// The captured database (`database.include.list`).
    pub database: String,
    /// `include.schema.changes`: the snapshot's DDL also goes to the `<prefix>` topic.
    pub include_schema_changes: bool,
    /// Bootstrap servers (`host:port,…`).
    pub bootstrap: String,
    /// The Connect worker's producer settings (`producer.override.*`).
    pub producer: ProducerConfig,
}

/// The two topics the capture writes besides the change topics, which the runner creates with 1 partition
/// each: the schema-change topic (`<prefix>`) and the schema-history topic (`schema-changes.<database>`).
pub fn schema_topics(prefix: &str, database: &str) -> Vec<String> {
    vec![prefix.to_string(), history_topic(database)]
}

fn history_topic(database: &str) -> String {
    format!("schema-changes.{database}")
}

/// Where the capture stands, for the runner's quiesce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CaptureProgress {
    /// Every snapshot record was acknowledged.
    pub snapshot_done: bool,
    /// The highest txn whose records were all handed to the producer.
    pub shipped_txn: u64,
    /// The highest txn such that every record of it and of all earlier txns has a final outcome.
    pub acked_txn: u64,
    /// Why the capture failed (a send was not acknowledged); cleared by a restart.
    pub failed: Option<String>,
}

/// Why the capture could not start or restart.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CdcError {
    #[error("the capture cannot connect its producer to {bootstrap}: {source}")]
    Connect {
        bootstrap: String,
        #[source]
        source: ProduceError,
    },
    #[error(
        "the capture's prefix or database is empty (prefix {prefix:?}, database {database:?})"
    )]
    Config { prefix: String, database: String },
}

/// What does not change across restarts: the source, the encoders, the snapshot.
struct Context {
    source: Arc<MemorySource>,
    config: CaptureConfig,
    recorder: Recorder,
    clock: Clock,
    /// The tables' codecs and the connector flavour, shared with [`ChangeEncoder`] users.
    encoder: ChangeEncoder,
    schema_change: SchemaChangeCodec,
    history_topic: String,
    snapshot: SourceSnapshot,
    /// The snapshot's DDL statements.
    ddl: Vec<DdlEvent>,
    /// The captured tables in snapshot order (by name) with their rows' indexes into the snapshot commit.
    reads: Vec<(&'static TableDef, usize)>,
    progress: Mutex<Progress>,
}

#[derive(Debug, Default)]
struct Progress {
    generation: u64,
    public: CaptureProgress,
    /// Binlog cursor a restart resumes from: after the last txn whose records were all acknowledged. `None`
    /// until the snapshot was acknowledged (a restart then redoes it).
    resume_cursor: Option<usize>,
}

impl Context {
    fn progress(&self) -> MutexGuard<'_, Progress> {
        self.progress.lock().unwrap_or_else(|e| e.into_inner())
    }
}

struct Running {
    main: JoinHandle<()>,
    tracker: JoinHandle<()>,
    stop: watch::Sender<bool>,
}

/// The running capture. See the module docs.
pub struct Capture {
    ctx: Arc<Context>,
    running: Option<Running>,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("running", &self.running.is_some())
            .field("progress", &self.progress())
            .finish()
    }
}

/// Where a generation starts.
#[derive(Debug, Clone, Copy)]
enum Start {
    Snapshot,
    Resume(usize),
}

/// One send whose outcome the tracker waits for, or the end of a transaction.
struct Tracked {
    change: Option<ChangeId>,
    tombstone: bool,
    topic: String,
    sent_at_ms: i64,
    delivery: Option<Delivery>,
    /// Set on the last record of a transaction: its txn and the binlog cursor after it.
    end_of: Option<TxnEnd>,
}

#[derive(Debug, Clone, Copy)]
struct TxnEnd {
    txn: u64,
    cursor_after: usize,
    snapshot: bool,
}

impl Capture {
    /// Takes the initial snapshot of `source` (recorded in history as the pseudo-commit txn 0), connects the
    /// producer and starts producing: the snapshot, then the binlog from the snapshot's position.
    pub async fn start(
        source: Arc<MemorySource>,
        config: CaptureConfig,
        recorder: Recorder,
        clock: Clock,
    ) -> Result<Capture, CdcError> {
        if config.prefix.is_empty() || config.database.is_empty() {
            return Err(CdcError::Config {
                prefix: config.prefix.clone(),
                database: config.database.clone(),
            });
        }
        let encoder = ChangeEncoder::new(config.connector, &config.prefix, &config.database);
        let schema_change = SchemaChangeCodec::new(&encoder.flavour);
        // Connect first: a capture that cannot reach the cluster takes no snapshot.
        let producer = connect(&config).await?;
        let snapshot = source.snapshot();
        let ddl = ddl::snapshot_ddl(
            &encoder.flavour,
            schema::ALL_TABLES,
            &snapshot.auto_increment,
        );
        let mut captured: Vec<&'static TableDef> = schema::MODELED_TABLES.to_vec();
        captured.sort_by_key(|t| t.name);
        let mut changes = Vec::new();
        let mut reads = Vec::new();
        for t in captured {
            reads.push((t, changes.len()));
            let rows = snapshot
                .tables
                .iter()
                .find(|(s, _)| s.name == t.name)
                .map(|(_, rows)| rows.as_slice())
                .unwrap_or_default();
            for row in rows {
                if let Some(key) = row.first().and_then(|v| v.as_int()) {
                    changes.push(ChangeRecord {
                        table: t.name,
                        key,
                        op: ChangeOp::Read,
                    });
                }
            }
        }
        recorder.commit(Commit {
            txn: 0,
            snapshot: true,
            kind: None,
            patient_id: None,
            position: snapshot.position.clone(),
            gtid: None,
            server_id: 0,
            committed_at_ms: snapshot.taken_at_ms,
            changes,
        });
        let ctx = Arc::new(Context {
            history_topic: history_topic(&config.database),
            source,
            config,
            recorder,
            clock,
            encoder,
            schema_change,
            snapshot,
            ddl,
            reads,
            progress: Mutex::new(Progress::default()),
        });
        let mut capture = Capture { ctx, running: None };
        capture.spawn(producer, Start::Snapshot);
        Ok(capture)
    }

    /// Where the capture stands.
    pub fn progress(&self) -> CaptureProgress {
        self.ctx.progress().public.clone()
    }

    /// Whether the capture's tasks run (false after kill/stop, and once a failed capture stopped producing).
    pub fn is_running(&self) -> bool {
        self.running.as_ref().is_some_and(|r| !r.main.is_finished())
    }

    fn spawn(&mut self, producer: Producer, start: Start) {
        let generation = {
            let mut p = self.ctx.progress();
            p.generation += 1;
            p.public.failed = None;
            p.generation
        };
        let (tx, rx) = mpsc::channel(IN_FLIGHT_RECORDS);
        let (stop, stop_rx) = watch::channel(false);
        let failed = Arc::new(AtomicBool::new(false));
        let tracker = tokio::spawn(track(
            Arc::clone(&self.ctx),
            generation,
            rx,
            Arc::clone(&failed),
        ));
        let main = tokio::spawn(produce(
            Arc::clone(&self.ctx),
            producer,
            start,
            tx,
            stop_rx,
            failed,
        ));
        self.running = Some(Running {
            main,
            tracker,
            stop,
        });
    }

    /// Aborts the capture now, as a crashed Connect worker: records queued in its producer are not sent, and
    /// outcomes that arrive later no longer move its progress (they are still recorded in history).
    pub fn kill(&mut self) {
        if let Some(running) = self.running.take() {
            self.ctx.progress().generation += 1;
            running.main.abort();
            // The tracker drains what the aborted producer answers and ends when its channel closes.
            drop(running.tracker);
        }
    }

    /// Stops at a transaction boundary after every record handed to the producer has its outcome.
    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            let _ = running.stop.send(true);
            let _ = running.main.await;
            let _ = running.tracker.await;
        }
    }

    /// Starts again from the last fully acknowledged position (stopping cleanly first if still running): the
    /// snapshot again if it was not acknowledged, else the binlog after the last acknowledged transaction.
    pub async fn restart(&mut self) -> Result<(), CdcError> {
        self.stop().await;
        let producer = connect(&self.ctx.config).await?;
        let start = match self.ctx.progress().resume_cursor {
            Some(cursor) => Start::Resume(cursor),
            None => Start::Snapshot,
        };
        self.spawn(producer, start);
        Ok(())
    }

    /// Stops cleanly and ends the capture.
    pub async fn shutdown(mut self) {
        self.stop().await;
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.main.abort();
        }
    }
}

async fn connect(config: &CaptureConfig) -> Result<Producer, CdcError> {
    Producer::connect(&config.bootstrap, config.producer.clone())
        .await
        .map_err(|source| CdcError::Connect {
            bootstrap: config.bootstrap.clone(),
            source,
        })
}

/// The producing half of one generation: snapshot (when asked), then the binlog until stopped or failed.
async fn produce(
    ctx: Arc<Context>,
    producer: Producer,
    start: Start,
    tx: mpsc::Sender<Tracked>,
    mut stop: watch::Receiver<bool>,
    failed: Arc<AtomicBool>,
) {
    let headers = ctx.encoder.flavour.headers();
    let mut sender = Sender {
        ctx: &ctx,
        producer: &producer,
        tx: &tx,
        headers: &headers,
    };
    let mut cursor = match start {
        Start::Snapshot => {
            if sender.snapshot(&failed).await.is_err() {
                return;
            }
            ctx.snapshot.cursor
        }
        Start::Resume(cursor) => cursor,
    };
    loop {
        if *stop.borrow() || failed.load(Ordering::Relaxed) {
            break;
        }
        let batch = ctx.source.read_binlog(cursor, READ_BATCH);
        if batch.is_empty() {
            tokio::select! {
                _ = ctx.source.wait_beyond(cursor) => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        for txn in batch {
            cursor += 1;
            if sender.stream(&txn, cursor).await.is_err() {
                return;
            }
            let mut p = ctx.progress();
            p.public.shipped_txn = p.public.shipped_txn.max(txn.txn);
            drop(p);
            if failed.load(Ordering::Relaxed) {
                break;
            }
        }
    }
    // Flush so every record handed over has its outcome before the tracker's channel closes.
    producer.close().await;
}

/// The tracker is gone (its generation was killed): nothing more to send.
struct TrackerGone;

struct Sender<'a> {
    ctx: &'a Context,
    producer: &'a Producer,
    tx: &'a mpsc::Sender<Tracked>,
    headers: &'a [(String, Option<Bytes>)],
}

impl Sender<'_> {
    async fn send(
        &mut self,
        topic: &str,
        key: Option<Bytes>,
        value: Option<Bytes>,
        headers: bool,
        change: Option<ChangeId>,
        end_of: Option<TxnEnd>,
    ) -> Result<(), TrackerGone> {
        let now = self.ctx.clock.now_ms();
        let record = Record {
            topic: topic.to_string(),
            key,
            value,
            headers: if headers {
                self.headers.to_vec()
            } else {
                Vec::new()
            },
            timestamp: Some(now),
        };
        let tombstone = record.value.is_none();
        let delivery = self.producer.send(record).await;
        self.tx
            .send(Tracked {
                change,
                tombstone,
                topic: topic.to_string(),
                sent_at_ms: now,
                delivery: Some(delivery),
                end_of,
            })
            .await
            .map_err(|_| TrackerGone)
    }

    async fn snapshot(&mut self, failed: &AtomicBool) -> Result<(), TrackerGone> {
        let ctx = self.ctx;
        let snap = &ctx.snapshot;
        let file = snap.position.file.as_str();
        let pos = snap.position.pos;
        let history_position = HistoryPosition {
            ts_sec: snap.taken_at_ms.div_euclid(1000),
            file,
            pos,
            gtids: &snap.gtid_set,
        };
        let prefix = ctx.config.prefix.clone();
        for event in &ctx.ddl {
            let now = ctx.clock.now_ms();
            let history = ddl::history_value(&ctx.encoder.flavour, event, &history_position, now);
            self.send(
                &ctx.history_topic,
                None,
                Some(Bytes::from(history)),
                false,
                None,
                None,
            )
            .await?;
            if ctx.config.include_schema_changes {
                let source = ddl::ddl_source(event, file, pos, now);
                let key = ctx.schema_change.key(&event.database);
                let value = ctx
                    .schema_change
                    .value(&ctx.encoder.flavour, event, &source, now);
                self.send(
                    &prefix,
                    Some(Bytes::from(key)),
                    Some(Bytes::from(value)),
                    true,
                    None,
                    None,
                )
                .await?;
            }
        }
        // Reads: `first` on the snapshot's first row, `last_in_data_collection` on each table's last row,
        // `last` on the snapshot's last row, `first_in_data_collection` on other tables' first rows.
        let tables: Vec<(&'static TableDef, usize, &[Arc<crate::workload::Row>])> = ctx
            .reads
            .iter()
            .map(|(t, first_index)| {
                let rows = snap
                    .tables
                    .iter()
                    .find(|(s, _)| s.name == t.name)
                    .map(|(_, rows)| rows.as_slice())
                    .unwrap_or_default();
                (*t, *first_index, rows)
            })
            .filter(|(_, _, rows)| !rows.is_empty())
            .collect();
        let total: usize = tables.iter().map(|(_, _, rows)| rows.len()).sum();
        let end = TxnEnd {
            txn: 0,
            cursor_after: snap.cursor,
            snapshot: true,
        };
        if total == 0 {
            return self.marker(end).await;
        }
        let mut sent = 0usize;
        for (ti, (table, first_index, rows)) in tables.iter().enumerate() {
            let codec = &ctx.encoder.codecs[table.name];
            let last_table = ti + 1 == tables.len();
            for (ri, row) in rows.iter().enumerate() {
                if failed.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let last_row = ri + 1 == rows.len();
                let mark = if sent == 0 {
                    SnapshotMark::First
                } else if last_row && last_table {
                    SnapshotMark::Last
                } else if last_row {
                    SnapshotMark::LastInDataCollection
                } else if ri == 0 {
                    SnapshotMark::FirstInDataCollection
                } else {
                    SnapshotMark::True
                };
                let Some(key) = row.first().and_then(|v| v.as_int()) else {
                    continue;
                };
                let source = SourceInfo {
                    ts_ms: snap.taken_at_ms,
                    snapshot: mark,
                    db: &ctx.config.database,
                    table: Some(table.name),
                    server_id: 0,
                    gtid: None,
                    file,
                    pos,
                    row: 0,
                };
                let now = ctx.clock.now_ms();
                let value = codec.value(
                    &ctx.encoder.flavour,
                    ChangeOp::Read,
                    None,
                    Some(row),
                    &source,
                    now,
                );
                sent += 1;
                let change = ChangeId {
                    txn: 0,
                    index: (first_index + ri) as u32,
                };
                self.send(
                    &codec.topic,
                    Some(codec.key(key)),
                    Some(value),
                    true,
                    Some(change),
                    (sent == total).then_some(end),
                )
                .await?;
            }
        }
        if sent < total {
            // Rows without an integer key were skipped; the snapshot still ends.
            self.marker(end).await?;
        }
        Ok(())
    }

    /// A transaction end without a record of its own.
    async fn marker(&mut self, end: TxnEnd) -> Result<(), TrackerGone> {
        self.tx
            .send(Tracked {
                change: None,
                tombstone: false,
                topic: String::new(),
                sent_at_ms: self.ctx.clock.now_ms(),
                delivery: None,
                end_of: Some(end),
            })
            .await
            .map_err(|_| TrackerGone)
    }

    async fn stream(&mut self, txn: &BinlogTxn, cursor_after: usize) -> Result<(), TrackerGone> {
        let ctx = self.ctx;
        let end = TxnEnd {
            txn: txn.txn,
            cursor_after,
            snapshot: false,
        };
        // The last row that yields records carries the transaction's end.
        let last_captured = txn
            .rows
            .iter()
            .rposition(|r| ctx.encoder.codecs.contains_key(r.table.name));
        let Some(last_captured) = last_captured else {
            return self.marker(end).await;
        };
        for (i, r) in txn.rows.iter().enumerate() {
            let Some(codec) = ctx.encoder.codecs.get(r.table.name) else {
                continue;
            };
            let value = ctx
                .encoder
                .streamed_value(codec, txn, i, ctx.clock.now_ms());
            let change = ChangeId {
                txn: txn.txn,
                index: i as u32,
            };
            let key = codec.key(r.key);
            let is_last = i == last_captured;
            let delete = r.op == ChangeOp::Delete;
            self.send(
                &codec.topic,
                Some(key.clone()),
                Some(value),
                true,
                Some(change),
                (is_last && !delete).then_some(end),
            )
            .await?;
            if delete {
                self.send(
                    &codec.topic,
                    Some(key),
                    None,
                    true,
                    Some(change),
                    is_last.then_some(end),
                )
                .await?;
            }
        }
        Ok(())
    }
}

/// The outcome half of one generation: waits for each send's answer in order, records it, and moves the
/// progress while the generation is current.
async fn track(
    ctx: Arc<Context>,
    generation: u64,
    mut rx: mpsc::Receiver<Tracked>,
    failed: Arc<AtomicBool>,
) {
    let mut clean = true;
    while let Some(t) = rx.recv().await {
        if let Some(delivery) = t.delivery {
            let outcome = match delivery.await {
                Ok(ack) => ProduceOutcome::Acked {
                    partition: ack.partition,
                    offset: ack.offset,
                },
                Err(e) => ProduceOutcome::Failed {
                    error: e.to_string(),
                },
            };
            if let ProduceOutcome::Failed { error } = &outcome {
                if clean {
                    clean = false;
                    failed.store(true, Ordering::Relaxed);
                    let mut p = ctx.progress();
                    if p.generation == generation {
                        p.public.failed = Some(format!("producing to {}: {error}", t.topic));
                    }
                }
            }
            ctx.recorder.produced(Produced {
                change: t.change,
                tombstone: t.tombstone,
                topic: t.topic,
                outcome,
                sent_at_ms: t.sent_at_ms,
            });
        }
        if let Some(end) = t.end_of {
            let mut p = ctx.progress();
            if p.generation != generation {
                continue;
            }
            p.public.acked_txn = p.public.acked_txn.max(end.txn);
            if clean {
                p.resume_cursor = Some(end.cursor_after);
                if end.snapshot {
                    p.public.snapshot_done = true;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_topics_name_the_prefix_and_history() {
        assert_eq!(
            schema_topics("dbserver1", "openmrs"),
            vec![
                "dbserver1".to_string(),
                "schema-changes.openmrs".to_string()
            ]
        );
    }
}
