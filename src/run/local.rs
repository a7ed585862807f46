//! A scenario on the `local` backend: the real services as processes (MariaDB, ZooKeeper or a KRaft controller
//! as the scenario's `coordination` says, N Kafka 3.9 brokers, Kafka Connect with Debezium's MariaDB connector),
//! the same workload, pipeline, checkers and report as the embedded run.
//!
//! What differs from the embedded run, and why:
//! - The source is MariaDB ([`MySqlSource`]): each operation one SQL transaction, its GTID read back, so the
//!   history links each commit to the Debezium records that carry that GTID.
//! - The capture is Debezium itself. The harness cannot see its produce requests; a [`LogObserver`] (a consumer of
//!   its own, never faulted) reads every change topic from the start, and where it found each change stands in
//!   for the acknowledgement, so a change the ETL never got is explained as the embedded backend explains it
//!   (retention took its offset, …) rather than counted "never produced".
//! - Quiesced means: the consumers have read a change of the last commit (its GTID) and stand at every
//!   partition's end.
//! - The connector is Debezium's MariaDB connector whatever `[capture] connector` says: this machine's registries
//!   serve MariaDB, not MySQL. The verdicts do not depend on the flavour (the decoder reads both).
//! - `[pipeline] sink = "mysql"` keeps the ETL's output in MariaDB's `etl_sink` schema (row images, flat table,
//!   offsets in one transaction per batch); the final-state check reads the flat table back from there.
//! - Faults act on the processes (signals to brokers and to the Connect worker, Connect's REST API; see
//!   [`crate::nemesis`]) and run on the real clock alongside the stream; what the nemesis left in place is undone
//!   before quiesce, and a Debezium task that failed on its own is restarted, as on the embedded backend.
//!
//! The initial snapshot is recorded from the database as the connector starts on it: every row of every modeled
//! table after the baseline load, read in one pass before the connector is registered (the harness is the only
//! writer, and it writes nothing until the connector runs).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use super::{judge, progress_bar, stream_real, RunError, RunOptions, RunOutcome};
use crate::check::{FinalStates, Liveness};
use crate::clock::Clock;
use crate::history::{
    BinlogPosition, ChangeOp, ChangeRecord, Commit, Consumed, History, ProduceOutcome, Produced,
    Recorder,
};
use crate::nemesis::{LocalTargets, Nemesis};
use crate::pipeline::flat;
use crate::pipeline::sink::{MemorySink, MySqlSink, Sink as _, DEFAULT_SINK_SCHEMA};
use crate::pipeline::Pipeline;
use crate::scenario::{Coordination, Scenario, Sink as SinkKind};
use crate::source::MySqlSource;
use crate::topology::local::{
    ClusterWatch, ConnectorFlavour, DebeziumConnector, LocalTopology, LocalTopologyOptions,
};
use crate::workload::{reference, Generator, Phase};

/// How long the Debezium connector may take to report RUNNING.
const CONNECTOR_READY: Duration = Duration::from_secs(120);
/// How long creating the scenario's topics may take (every partition with a leader).
const TOPICS_READY: Duration = Duration::from_secs(60);
/// How long Debezium's initial snapshot may take to reach the consumers.
const SNAPSHOT_READ: Duration = Duration::from_secs(120);
/// How long the log observer may take, after the consumers quiesced, to read up to the same end offsets.
const OBSERVER_CATCH_UP: Duration = Duration::from_secs(20);
/// How often quiesce looks at the consumers.
const POLL: Duration = Duration::from_millis(100);

/// Runs `scenario` on a local topology started for it, and stops the topology afterwards (also on error).
pub(super) async fn run(
    scenario: &Scenario,
    options: &RunOptions,
    wall: Instant,
) -> Result<RunOutcome, RunError> {
    // Before anything starts: a fault this backend cannot perform is an error, not a no-op.
    Nemesis::check(scenario)?;
    let mut session =
        LocalSession::start(scenario.topology.brokers, scenario.topology.coordination).await?;
    let result = session.run_from(scenario, options, wall).await;
    session.shutdown().await;
    result
}

/// A local topology kept for several runs: one start (15–20 s of JVMs and MariaDB) for a whole test binary or
/// `diff` campaign instead of one per scenario.
///
/// Each run after the first starts from a source and a Kafka namespace as fresh as a new topology's:
/// - the previous run's Debezium connector is deleted, and every service put back as started (network faults
///   healed, paused brokers resumed, exited brokers and Connect worker restarted);
/// - the OpenMRS database (and the MySQL sink's schema) is dropped and loaded again from the schema fixture;
/// - run `n` renames what Kafka and Connect keep: topic prefix `<prefix>_r<n>` (so the change topics, the
///   schema-change topic and Debezium's heartbeat topic are new, and fault targets naming a topic follow), connector `<name>-r<n>` (no committed offsets:
///   it takes the initial snapshot), schema history topic `<history>-r<n>` and Debezium's replica server id.
///   The previous run's topics stay (the harness never reads them again).
///
/// The first run keeps the scenario's names, so a session of one run is exactly a standalone run.
///
/// A scenario that asks for another broker count or coordination (ZooKeeper or KRaft) than the topology has gets
/// a new topology: the session starts it, stops the old one, and the run counts as the new topology's first.
pub struct LocalSession {
    topology: Mutex<LocalTopology>,
    brokers: u32,
    coordination: Coordination,
    runs: u32,
    /// The connector registered by the last run, deleted before the next one.
    last_connector: Option<String>,
}

impl LocalSession {
    /// Starts a local topology of `brokers` Kafka brokers (with MariaDB, ZooKeeper or a KRaft controller, and a
    /// Connect worker).
    pub async fn start(brokers: u32, coordination: Coordination) -> Result<LocalSession, RunError> {
        Ok(LocalSession {
            topology: Mutex::new(start_topology(brokers, coordination).await?),
            brokers,
            coordination,
            runs: 0,
            last_connector: None,
        })
    }

    /// The topology's coordination: ZooKeeper or KRaft.
    pub fn coordination(&self) -> Coordination {
        self.coordination
    }

    /// The topology's run directory (service logs under `logs/`).
    pub async fn run_dir(&self) -> std::path::PathBuf {
        self.topology.lock().await.run_dir().to_path_buf()
    }

    /// Runs `scenario` (whatever its `[topology] backend` says) on this topology and judges it; on a new
    /// topology first if it asks for another broker count or coordination.
    pub async fn run(
        &mut self,
        scenario: &Scenario,
        options: &RunOptions,
    ) -> Result<RunOutcome, RunError> {
        self.run_from(scenario, options, Instant::now()).await
    }

    async fn run_from(
        &mut self,
        scenario: &Scenario,
        options: &RunOptions,
        wall: Instant,
    ) -> Result<RunOutcome, RunError> {
        let wanted = (scenario.topology.brokers, scenario.topology.coordination);
        if wanted != (self.brokers, self.coordination) {
            eprintln!(
                "[etl-harness] scenario `{}` asks for {} brokers with {:?}; the local topology has {} with {:?}: \
                 starting another",
                scenario.name, wanted.0, wanted.1, self.brokers, self.coordination
            );
            let replacement = start_topology(wanted.0, wanted.1).await?;
            let old = std::mem::replace(self.topology.get_mut(), replacement);
            if let Err(e) = old.shutdown().await {
                tracing::warn!(error = %e, "stopping the previous local topology");
            }
            (self.brokers, self.coordination) = wanted;
            self.runs = 0;
            self.last_connector = None;
        }
        // Before anything changes: a fault this backend cannot perform is an error, not a no-op.
        Nemesis::check(scenario)?;
        self.runs += 1;
        let mut scenario = scenario.clone();
        let mut connector =
            DebeziumConnector::seed(ConnectorFlavour::MariaDb).with_producer(&scenario.producer);
        if self.runs > 1 {
            let n = self.runs;
            scenario = scenario.with_topic_prefix(&format!("{}_r{n}", scenario.topics.prefix));
            connector.name = format!("{}-r{n}", connector.name);
            connector.history_topic = format!("{}-r{n}", connector.history_topic);
            connector.replica_server_id += n;
            self.reset().await?;
            tracing::info!(scenario = %scenario.name, elapsed = ?wall.elapsed(), "local run: topology reset");
        }
        let recorder = Recorder::new(scenario.seed);
        // From the renamed scenario: its fault targets name this run's topics.
        let nemesis = Nemesis::new(&scenario, recorder.clone())?;
        connector.topic_prefix = scenario.topics.prefix.clone();
        self.last_connector = Some(connector.name.clone());
        let result = drive(
            &scenario,
            options,
            wall,
            &self.topology,
            recorder,
            nemesis,
            &connector,
        )
        .await;
        if result.is_err() {
            eprintln!(
                "[etl-harness] the local run failed; service logs are in {}",
                self.run_dir().await.display()
            );
        }
        result
    }

    /// Between runs: the last connector deleted, every service as started, the source database fresh.
    async fn reset(&mut self) -> Result<(), RunError> {
        let mut topology = self.topology.lock().await;
        topology.recover().await?;
        if let Some(name) = self.last_connector.take() {
            topology.connect().delete_connector(&name).await?;
        }
        topology.reset_source(&[DEFAULT_SINK_SCHEMA]).await?;
        Ok(())
    }

    /// Stops every service (see [`LocalTopology::shutdown`]); a failure to stop is logged, not returned.
    pub async fn shutdown(self) {
        if let Err(e) = self.topology.into_inner().shutdown().await {
            tracing::warn!(error = %e, "stopping the local topology");
        }
    }
}

async fn start_topology(
    brokers: u32,
    coordination: Coordination,
) -> Result<LocalTopology, RunError> {
    let mut options = LocalTopologyOptions::new(reference::schema_fixture_sql());
    options.brokers = brokers;
    options.coordination = coordination;
    Ok(LocalTopology::start(&options).await?)
}

async fn drive(
    scenario: &Scenario,
    options: &RunOptions,
    wall: Instant,
    topology_lock: &Mutex<LocalTopology>,
    recorder: Recorder,
    mut nemesis: Nemesis,
    connector: &DebeziumConnector,
) -> Result<RunOutcome, RunError> {
    let clock = Clock::real();
    // The nemesis takes the lock to act on a process; everything else here only reads endpoints.
    let topology = topology_lock.lock().await;
    let plans = topology
        .create_scenario_topics(scenario, TOPICS_READY)
        .await?;
    // What the cluster does from here on (leaders, ISRs, truncations, retention), for the checkers.
    let watch = ClusterWatch::start(topology.watch_options(
        plans.into_iter().map(|plan| plan.name).collect(),
        clock.clone(),
    ));
    let phase = |name: &str| tracing::info!(scenario = %scenario.name, elapsed = ?wall.elapsed(), "local run: {name}");
    phase("topics created");

    let source =
        MySqlSource::connect(&topology.mariadb().url(), recorder.clone(), clock.clone()).await?;
    let mut generator = Generator::new(&scenario.workload_spec(), scenario.seed).peekable();
    while let Some(op) = generator.next_if(|op| op.phase == Phase::Baseline) {
        source.load(&op).await?;
    }
    let snapshot_rows = record_snapshot(&source, &recorder, &clock).await?;
    phase("baseline loaded");

    topology.start_connector(connector, CONNECTOR_READY).await?;
    phase("connector running");

    let config = super::configure::pipeline(scenario, topology.bootstrap_servers());
    let (pipeline, sink) = match scenario.pipeline.sink {
        SinkKind::Memory => {
            let sink = Arc::new(MemorySink::new());
            let pipeline =
                Pipeline::start(config, sink.clone(), recorder.clone(), clock.clone()).await?;
            (pipeline, LocalSink::Memory(sink))
        }
        SinkKind::Mysql => {
            let sink = Arc::new(
                MySqlSink::open(&topology.mariadb().url(), DEFAULT_SINK_SCHEMA)
                    .await
                    .map_err(|e| RunError::LocalRun(format!("opening the MySQL sink: {e}")))?,
            );
            let pipeline =
                Pipeline::start(config, sink.clone(), recorder.clone(), clock.clone()).await?;
            (pipeline, LocalSink::Mysql(sink))
        }
    };

    let observer = LogObserver::start(scenario, &topology.bootstrap_servers(), &clock).await?;
    drop(topology);
    // Debezium reports RUNNING before its snapshot has read anything: a commit made now could be read by the
    // snapshot as a row (`r`) instead of streamed as a change. Stream only once every row was delivered.
    wait_for_snapshot(&recorder, snapshot_rows).await?;
    phase("snapshot read by the consumers");
    // A connector restarted before Connect committed an offset past the snapshot takes the snapshot again: the
    // stream (and the faults) start once one is committed.
    topology_lock
        .lock()
        .await
        .connect()
        .wait_until_past_snapshot(&connector.name, SNAPSHOT_READ)
        .await?;
    phase("connector offsets past the snapshot");

    let pipeline = Mutex::new(pipeline);
    let targets = LocalTargets {
        topology: topology_lock,
        pipeline: &pipeline,
        clock: &clock,
        stream_start_ms: clock.now_ms(),
        connector: &connector.name,
    };
    let bar = progress_bar(options.progress, scenario.workload.operation_count());
    let started = tokio::time::Instant::now();
    let (streamed, ()) = tokio::join!(
        stream_real(generator, &source, started, &bar),
        nemesis.run(started, &targets)
    );
    bar.finish_and_clear();
    if let Err(e) = streamed {
        pipeline.into_inner().shutdown().await;
        observer.finish(&[]).await;
        watch.stop().await;
        return Err(e);
    }
    phase("stream and faults done");
    nemesis.restore(&targets).await;
    let pipeline = pipeline.into_inner();
    let last_gtid = recorder
        .snapshot()
        .commits
        .iter()
        .rev()
        .find(|c| !c.snapshot)
        .and_then(|c| c.gtid.clone());
    let (liveness, ends) = quiesce(
        scenario,
        &pipeline,
        &sink,
        &recorder,
        (topology_lock, &connector.name),
        last_gtid,
    )
    .await;
    phase("quiesced");
    pipeline.shutdown().await;
    let observed = observer.finish(&ends).await;
    let cluster_events = watch.stop().await;
    phase("observer and watch done");

    let finals = FinalStates {
        sink: sink.flat_table().await?,
        oracle: flat::build(&source.final_images().await?),
    };
    let mut history = recorder.finish(cluster_events, ends);
    history.produced = placements(&history, &observed);
    Ok(judge(scenario, options, wall, history, finals, &liveness))
}

/// The harness's own reader of what Debezium wrote: one consumer, never stalled or restarted by a fault, reading
/// every change topic from its start into a recorder of its own. Where it read each change is where Kafka held
/// it: the local backend's stand-in for the produce acknowledgements the embedded capture records (Debezium's are
/// not visible to the harness), so the checkers can say why an ETL consumer never got a change — retention
/// deleted its offset, or a truncation removed it — instead of "never produced".
///
/// Limits: it reads up to the high watermark, so a record truncated before it was read is never seen (counted
/// never produced, as an unacknowledged write would be); a record retention deletes before it reads it is missed
/// the same way (it is never stalled, so only under a retention shorter than its own lag); its "sent at" is when
/// it read the record, not when Debezium wrote it.
struct LogObserver {
    pipeline: Pipeline,
    recorder: Recorder,
}

impl LogObserver {
    async fn start(
        scenario: &Scenario,
        bootstrap: &str,
        clock: &Clock,
    ) -> Result<LogObserver, RunError> {
        let mut config = super::configure::pipeline(scenario, bootstrap);
        config.consumers = 1;
        let recorder = Recorder::new(scenario.seed);
        let pipeline = Pipeline::start(
            config,
            Arc::new(MemorySink::new()),
            recorder.clone(),
            clock.clone(),
        )
        .await?;
        Ok(LogObserver { pipeline, recorder })
    }

    /// Lets it read up to `ends` (bounded by [`OBSERVER_CATCH_UP`]; what it has not read by then stays
    /// unplaced), stops it, and returns what it read.
    async fn finish(self, ends: &[(String, i32, i64)]) -> Vec<Consumed> {
        let began = Instant::now();
        while !ends.is_empty()
            && !self.pipeline.caught_up(ends)
            && began.elapsed() < OBSERVER_CATCH_UP
        {
            tokio::time::sleep(POLL).await;
        }
        self.pipeline.shutdown().await;
        self.recorder.snapshot().consumed
    }
}

/// What the observer read, as acknowledgements: each record at its partition and offset, with the change it
/// carries (resolved like an ETL consumer's read).
fn placements(history: &History, observed: &[Consumed]) -> Vec<Produced> {
    let resolver = history.resolver();
    observed
        .iter()
        .map(|c| Produced {
            change: c.change.as_ref().and_then(|ch| resolver.resolve(ch)),
            tombstone: c.change.is_none(),
            topic: c.topic.clone(),
            outcome: ProduceOutcome::Acked {
                partition: c.partition,
                offset: c.offset,
            },
            sent_at_ms: c.at_ms,
        })
        .collect()
}

/// Waits until the consumers have read every row of the initial snapshot (`snapshot_rows` distinct rows), bounded
/// by [`SNAPSHOT_READ`].
async fn wait_for_snapshot(recorder: &Recorder, snapshot_rows: usize) -> Result<(), RunError> {
    let began = Instant::now();
    loop {
        let read: HashSet<(&'static str, i64)> = recorder
            .snapshot()
            .consumed
            .iter()
            .filter_map(|c| c.change.as_ref())
            .filter(|ch| ch.source.snapshot)
            .map(|ch| (ch.table, ch.key))
            .collect();
        if read.len() >= snapshot_rows {
            return Ok(());
        }
        if began.elapsed() >= SNAPSHOT_READ {
            return Err(RunError::LocalRun(format!(
                "Debezium's initial snapshot: {} of {snapshot_rows} rows reached the consumers within {:?}",
                read.len(),
                SNAPSHOT_READ
            )));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Records the snapshot pseudo-commit: a read of every row the database holds before the connector starts.
/// Returns how many rows that is.
async fn record_snapshot(
    source: &MySqlSource,
    recorder: &Recorder,
    clock: &Clock,
) -> Result<usize, RunError> {
    let images = source.final_images().await?;
    let changes: Vec<ChangeRecord> = images
        .iter()
        .flat_map(|(table, rows)| {
            rows.keys().map(|key| ChangeRecord {
                table,
                key: *key,
                op: ChangeOp::Read,
            })
        })
        .collect();
    let rows = changes.len();
    recorder.commit(Commit {
        txn: 0,
        snapshot: true,
        kind: None,
        patient_id: None,
        position: BinlogPosition {
            file: String::new(),
            pos: 0,
        },
        gtid: None,
        server_id: 0,
        committed_at_ms: clock.now_ms(),
        changes,
    });
    Ok(rows)
}

/// Waits until Connect has committed a source offset of the last commit (it commits only what Kafka
/// acknowledged: every change before it is in the topics), the consumers have read a change of that
/// commit, and then stand at every partition's end read after that — bounded by the scenario's quiesce timeout;
/// past it, a liveness failure saying what was pending. (A change of the last commit read is not enough alone:
/// after a connector restart Debezium replays, and the last commit's record can reach its partition before
/// replayed records reach theirs.)
async fn quiesce(
    scenario: &Scenario,
    pipeline: &Pipeline,
    sink: &LocalSink,
    recorder: &Recorder,
    connect: (&Mutex<LocalTopology>, &str),
    last_gtid: Option<String>,
) -> (Liveness, Vec<(String, i32, i64)>) {
    let bound = scenario.pipeline.quiesce_timeout.as_duration();
    let began = Instant::now();
    let mut ends = Vec::new();
    let mut committed_gtids = String::new();
    loop {
        let committed = match last_gtid.as_deref() {
            None => true,
            Some(last) => {
                let offsets = connect
                    .0
                    .lock()
                    .await
                    .connect()
                    .committed_offsets(connect.1)
                    .await;
                if let Some(gtids) = offsets.ok().and_then(|o| {
                    o.first()
                        .and_then(|offset| offset.get("gtids"))
                        .and_then(|g| g.as_str())
                        .map(str::to_owned)
                }) {
                    committed_gtids = gtids;
                }
                // Debezium's offset inside transaction N is the set of transactions before it: an offset past
                // N - 1 is the commit of a record of the last transaction (the set reaches N itself only with the
                // next binlog event, which may be a heartbeat tens of seconds later).
                gtid_set_covers(&committed_gtids, last, 1)
            }
        };
        let seen_last = last_gtid.as_deref().is_none_or(|gtid| {
            recorder.snapshot().consumed.iter().any(|c| {
                c.change
                    .as_ref()
                    .is_some_and(|ch| ch.source.gtid.as_deref() == Some(gtid))
            })
        });
        if committed {
            if let Ok(now) = pipeline.end_offsets().await {
                ends = now;
            }
        }
        if committed && seen_last && !ends.is_empty() && pipeline.caught_up(&ends) {
            tracing::debug!(last_gtid = ?last_gtid, committed = %committed_gtids, ends = ?ends, "quiesced");
            return (Liveness::Quiesced, ends);
        }
        if began.elapsed() >= bound {
            let mut pending = Vec::new();
            if !committed {
                pending.push(format!(
                    "capture: Connect's committed source offset is at GTID set `{committed_gtids}`, not yet at the last commit's {}",
                    last_gtid.as_deref().unwrap_or("-")
                ));
            }
            if !seen_last {
                pending.push(format!(
                    "consumers: no change of the last commit (GTID {}) read yet",
                    last_gtid.as_deref().unwrap_or("-")
                ));
            }
            if ends.is_empty() {
                if let Ok(now) = pipeline.end_offsets().await {
                    ends = now;
                }
            }
            pending.extend(super::consumers_pending(&sink.offsets(), &ends));
            return (
                Liveness::TimedOut {
                    waited_ms: began.elapsed().as_millis() as u64,
                    pending,
                },
                ends,
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether the MariaDB GTID set `set` (`domain-server-seq`, comma-separated) reaches within `slack` transactions of
/// `gtid`: an entry of the same domain and server with a sequence number at least `gtid`'s minus `slack`.
fn gtid_set_covers(set: &str, gtid: &str, slack: u64) -> bool {
    fn parts(g: &str) -> Option<(&str, &str, u64)> {
        let mut it = g.trim().splitn(3, '-');
        Some((it.next()?, it.next()?, it.next()?.parse().ok()?))
    }
    let Some((domain, server, seq)) = parts(gtid) else {
        return false;
    };
    set.split(',')
        .filter_map(parts)
        .any(|(d, s, n)| d == domain && s == server && n.saturating_add(slack) >= seq)
}

/// The sink the scenario asked for: in memory, or the MySQL sink in MariaDB's `etl_sink` schema.
enum LocalSink {
    Memory(Arc<MemorySink>),
    Mysql(Arc<MySqlSink>),
}

impl LocalSink {
    fn offsets(&self) -> std::collections::BTreeMap<(String, i32), i64> {
        match self {
            LocalSink::Memory(s) => s.offsets(),
            LocalSink::Mysql(s) => s.offsets(),
        }
    }

    /// The flat encounter table as the sink holds it (read back from MariaDB for the MySQL sink).
    async fn flat_table(&self) -> Result<flat::FlatTable, RunError> {
        match self {
            LocalSink::Memory(s) => Ok(s.flat_table()),
            LocalSink::Mysql(s) => s
                .flat_table()
                .await
                .map_err(|e| RunError::LocalRun(format!("reading the MySQL sink back: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::gtid_set_covers;

    #[test]
    fn gtid_sets_cover_by_domain_server_and_sequence() {
        assert!(gtid_set_covers("0-1-1308", "0-1-1308", 0));
        assert!(gtid_set_covers("0-1-1310", "0-1-1308", 0));
        assert!(!gtid_set_covers("0-1-1307", "0-1-1308", 0));
        assert!(gtid_set_covers("0-1-1307", "0-1-1308", 1));
        assert!(!gtid_set_covers("0-1-121", "0-1-1308", 1));
        assert!(!gtid_set_covers("0-2-5000", "0-1-1308", 1));
        assert!(gtid_set_covers("1-1-3, 0-1-2000", "0-1-1308", 0));
        assert!(!gtid_set_covers("", "0-1-1", 1));
        assert!(!gtid_set_covers("0-1-5", "garbage", 1));
    }
}
