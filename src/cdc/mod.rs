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
mod sender;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::client::{Delivery, ProduceError, Producer, ProducerConfig};
use crate::clock::Clock;
use crate::history::{
    ChangeId, ChangeOp, ChangeRecord, Commit, ProduceOutcome, Produced, Recorder,
};
use crate::model::schema::{self, TableDef};
use crate::scenario::Connector;
use crate::source::{BinlogTxn, MemorySource, SourceSnapshot};

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

use ddl::{DdlEvent, SchemaChangeCodec};
use encode::{Flavour, SnapshotMark, SourceInfo, TableCodec};
use sender::produce;

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
    /// While true the task hands nothing new to its producer (Connect's pause); what it sent goes on.
    paused: watch::Sender<bool>,
}

/// Kafka Connect's `task.shutdown.graceful.timeout.ms`: how long a stop waits (real time) for the task to finish
/// cleanly before the worker abandons it. A stop that needs the cluster to make progress (a batch held up by a
/// dead leader) would otherwise wait for virtual time that only moves after the stop returns.
const TASK_SHUTDOWN_GRACEFUL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

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
    topic: Arc<str>,
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
        let (paused, paused_rx) = watch::channel(false);
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
            paused_rx,
            failed,
        ));
        self.running = Some(Running {
            main,
            tracker,
            stop,
            paused,
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

    /// Stops at a transaction boundary after every record handed to the producer has its outcome — or, when that
    /// takes longer than Connect's graceful shutdown timeout (5 s), abandons the task as a [`Capture::kill`] does.
    pub async fn stop(&mut self) {
        let Some(mut running) = self.running.take() else {
            return;
        };
        let _ = running.stop.send(true);
        let finished = tokio::time::timeout(TASK_SHUTDOWN_GRACEFUL_TIMEOUT, async {
            let _ = (&mut running.main).await;
            let _ = (&mut running.tracker).await;
        })
        .await;
        if finished.is_err() {
            self.running = Some(running);
            self.kill();
        }
    }

    /// Connect's pause: the task hands nothing new to its producer until [`Capture::resume`]; records already
    /// handed over are still sent and acknowledged, and nothing is replayed.
    pub fn pause(&mut self) {
        if let Some(running) = &self.running {
            let _ = running.paused.send(true);
        }
    }

    /// Ends a pause: the task goes on from where it stopped. A capture that is not running (killed, stopped or
    /// failed) is restarted instead, from its last acknowledged position.
    pub async fn resume(&mut self) -> Result<(), CdcError> {
        match &self.running {
            Some(running) if !running.main.is_finished() => {
                let _ = running.paused.send(false);
                Ok(())
            }
            _ => self.restart().await,
        }
    }

    /// Whether the task is paused (and still running).
    pub fn is_paused(&self) -> bool {
        self.running
            .as_ref()
            .is_some_and(|r| *r.paused.borrow() && !r.main.is_finished())
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
