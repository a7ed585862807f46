//! One run of a scenario, end to end: start the topology, load the baseline into the source, start capture
//! (snapshot, then the binlog) and the pipeline, commit the stream at the scenario's rate, quiesce, then check
//! the history and final states and judge them against `[expect]`.
//!
//! The runner is the only place that knows every part; the parts know only the history contract
//! ([`crate::history`]) and their own neighbours' wire formats (Debezium JSON over Kafka).
//!
//! Faults: the [`Nemesis`] runs the scenario's `[[faults]]` alongside the stream. With a real clock it is a
//! concurrent task that sleeps until each fault is due; with a virtual clock the stream loop owns time and lets
//! the nemesis move it to each due fault before the next commit. Once the schedule (which may run past the last
//! commit) is done, the nemesis undoes whatever is still in place, and only then does quiesce start.
//!
//! A virtual clock moves only when the runner moves it, so the runner paces it: before moving time past a
//! commit it waits (briefly, bounded) until the capture has handed everything committed so far to its producer.
//! Records then carry timestamps close to their commit times, which is what makes retention by time mean the
//! same as in real time. During quiesce the virtual clock advances with real time, so clock-driven work
//! (heartbeats, ISR checks, retention) goes on while the pipeline catches up.

mod configure;
pub mod diff;
mod local;

pub use local::LocalSession;

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Mutex;

use crate::broker::{Cluster, ClusterError, MetadataMode, NewTopic};
use crate::cdc::{self, Capture, CdcError};
use crate::check::{self, Analysis, FinalStates, Liveness};
use crate::clock::Clock;
use crate::history::{History, Recorder};
use crate::nemesis::{Nemesis, NemesisError, Targets};
use crate::pipeline::flat;
use crate::pipeline::sink::MemorySink;
use crate::pipeline::{Pipeline, PipelineError};
use crate::report::{Report, RunInfo, RunMode};
use crate::scenario::{Backend, ClockMode, Coordination, Scenario};
use crate::source::{MemorySource, Source, SourceError};
use crate::workload::{Generator, Phase};

/// `log.retention.check.interval.ms` of the embedded cluster on a real clock: the local backend's brokers' value.
const REAL_CLOCK_RETENTION_CHECK: Duration = Duration::from_secs(1);
/// How often quiesce looks at the capture's and consumers' progress.
const QUIESCE_POLL: Duration = Duration::from_millis(20);
/// On a virtual clock: the longest the runner waits (real time) for the capture to ship what was committed
/// before it moves time on anyway (a killed or failed capture ships nothing).
const CAPTURE_PACING_BOUND: Duration = Duration::from_millis(500);
/// Deterministic mode: the longest the runner waits (real time) for a commit's acknowledgement; a capture held
/// up by a fault (brokers down under acks=all) lets the run go on after it.
const ACK_BOUND: Duration = Duration::from_secs(2);
/// Deterministic mode: the longest a fault waits for its quiet point.
const QUIET_POINT_BOUND: Duration = Duration::from_secs(6);
/// Deterministic mode: a quiet point also ends when nothing has moved for this long (a fault holds the rest up).
const STALL_WINDOW: Duration = Duration::from_millis(300);

/// What the caller chooses beyond the scenario file.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The scenario file as the user named it (for the reproduce command).
    pub scenario_path: String,
    /// Show a progress bar on stderr (only drawn when stderr is a terminal).
    pub progress: bool,
}

/// Why a run could not be carried out (exit 2): distinct from a run whose expectations failed (exit 1).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    #[error("backend `{0}` cannot run scenarios yet: the embedded and local backends run them today; set [topology] backend = \"embedded\" or \"local\"")]
    BackendUnavailable(&'static str),
    #[error("embedded cluster: {0}")]
    Cluster(#[from] ClusterError),
    #[error("creating topic {topic}: {error}")]
    Topic { topic: String, error: ClusterError },
    #[error("source: {0}")]
    Source(#[from] SourceError),
    #[error("capture: {0}")]
    Capture(#[from] CdcError),
    #[error("pipeline: {0}")]
    Pipeline(#[from] PipelineError),
    #[error("clock: {0}")]
    Clock(String),
    #[error("faults: {0}")]
    Nemesis(#[from] NemesisError),
    #[error("local topology: {0}")]
    Local(#[from] crate::topology::local::LocalError),
    #[error("local run: {0}")]
    LocalRun(String),
    #[error("scenario `{scenario}` does not list `{backend}` in its `backends`: its expectations are not claimed to hold there")]
    NotListed {
        scenario: String,
        backend: &'static str,
    },
}

/// A finished run: its report, and the history it was judged on.
pub struct RunOutcome {
    pub report: Report,
    pub history: History,
    pub analysis: Analysis,
    /// The sink's flat table and the batch recomputation it was compared with.
    pub finals: FinalStates,
}

/// Runs `scenario` on its backend and judges it.
pub async fn run(scenario: &Scenario, options: &RunOptions) -> Result<RunOutcome, RunError> {
    let wall = Instant::now();
    match scenario.topology.backend {
        Backend::Embedded => {}
        Backend::Local => return local::run(scenario, options, wall).await,
        other => return Err(RunError::BackendUnavailable(other.name())),
    }
    let recorder = Recorder::new(scenario.seed);
    // Before anything starts: a fault the backend cannot perform is an error, not a no-op.
    let nemesis = Nemesis::new(scenario, recorder.clone())?;
    let clock = match scenario.topology.clock {
        ClockMode::Real => Clock::real(),
        ClockMode::Virtual => Clock::virtual_at(crate::workload::value::datetime_ms(2026, 1, 1)),
    };
    let cluster = start_cluster(scenario, &clock).await?;
    let result = drive(scenario, options, &cluster, &clock, wall, recorder, nemesis).await;
    cluster.shutdown().await;
    result
}

async fn start_cluster(scenario: &Scenario, clock: &Clock) -> Result<Cluster, RunError> {
    let mut builder = Cluster::builder();
    builder
        .brokers(scenario.topology.brokers as usize)
        .clock(clock.clone())
        .metadata_mode(match scenario.topology.coordination {
            Coordination::Zookeeper => MetadataMode::Zookeeper,
            Coordination::Kraft => MetadataMode::Kraft,
        })
        .auto_create_topics(false);
    if scenario.topology.clock == ClockMode::Real {
        // The local backend's brokers check retention every second (tuned down from Kafka's 5 minutes so a
        // scenario finishes in minutes); on a real clock the embedded cluster does the same, so a retention
        // scenario means the same on both. A virtual clock keeps Kafka's default: time is cheap there.
        builder.retention_check_interval(REAL_CLOCK_RETENTION_CHECK);
    }
    let cluster = builder.start().await?;
    for plan in scenario.topic_plans() {
        let mut topic = NewTopic::new(&plan.name, plan.settings.partitions as i32)
            .replication_factor(plan.settings.replication_factor as i16);
        for (name, value) in plan.settings.kafka_configs() {
            topic = topic.config(name, value);
        }
        cluster
            .create_topic(topic)
            .map_err(|error| RunError::Topic {
                topic: plan.name.clone(),
                error,
            })?;
    }
    // Debezium's schema topics: one partition, kept forever, replicated like the change topics.
    let rf = scenario.topics.replication_factor as i16;
    for name in cdc::schema_topics(&scenario.topics.prefix, &scenario.topics.database) {
        let topic = NewTopic::new(&name, 1)
            .replication_factor(rf)
            .config("retention.ms", "-1")
            .config("retention.bytes", "-1");
        cluster
            .create_topic(topic)
            .map_err(|error| RunError::Topic { topic: name, error })?;
    }
    Ok(cluster)
}

async fn drive(
    scenario: &Scenario,
    options: &RunOptions,
    cluster: &Cluster,
    clock: &Clock,
    wall: Instant,
    recorder: Recorder,
    mut nemesis: Nemesis,
) -> Result<RunOutcome, RunError> {
    let source = Arc::new(MemorySource::new(
        scenario.capture.connector,
        recorder.clone(),
        clock.clone(),
    ));
    let bootstrap = cluster.bootstrap_servers();
    let mut generator = Generator::new(&scenario.workload_spec(), scenario.seed).peekable();

    // The population that exists before capture starts: the snapshot will read it.
    while let Some(op) = generator.next_if(|op| op.phase == Phase::Baseline) {
        source.load(&op)?;
    }

    let mut capture_config = configure::capture(scenario, bootstrap.clone());
    if scenario.topology.deterministic {
        // One request in flight and no linger: a batch holds what one transaction put on a partition, whatever
        // the machine's speed, and retries cannot reorder.
        capture_config.producer.max_in_flight = 1;
        capture_config.producer.linger = Duration::ZERO;
    }
    let capture = Capture::start(
        source.clone(),
        capture_config,
        recorder.clone(),
        clock.clone(),
    )
    .await?;
    let sink = Arc::new(MemorySink::new());
    let pipeline = Pipeline::start(
        configure::pipeline(scenario, bootstrap.clone()),
        sink.clone(),
        recorder.clone(),
        clock.clone(),
    )
    .await?;
    // The nemesis and the runner share the capture and the consumers (each holds a lock only while acting).
    let capture = Mutex::new(capture);
    let pipeline = Mutex::new(pipeline);

    let stream_ops = scenario.workload.operation_count();
    let bar = progress_bar(options.progress, stream_ops);
    let targets = Targets {
        cluster,
        capture: &capture,
        pipeline: &pipeline,
        clock,
        stream_start_ms: clock.now_ms(),
    };
    let streamed = if clock.is_virtual() {
        let deterministic = scenario.topology.deterministic;
        stream_virtual(
            generator,
            &source,
            &targets,
            &mut nemesis,
            &bar,
            deterministic,
        )
        .await
    } else {
        let started = tokio::time::Instant::now();
        let (streamed, ()) = tokio::join!(
            stream_real(generator, source.as_ref(), started, &bar),
            nemesis.run(started, &targets)
        );
        streamed
    };
    bar.finish_and_clear();

    let (liveness, ends) = match streamed {
        Err(e) => {
            pipeline.into_inner().shutdown().await;
            capture.into_inner().shutdown().await;
            return Err(e);
        }
        Ok(()) => {
            nemesis.restore(&targets).await;
            quiesce(scenario, &source, &capture, &pipeline, &sink, clock).await
        }
    };

    pipeline.into_inner().shutdown().await;
    capture.into_inner().shutdown().await;
    let finals = FinalStates {
        sink: sink.flat_table(),
        oracle: flat::build(&source.final_images()),
    };
    let history = recorder.finish(cluster.events(), ends);
    Ok(judge(scenario, options, wall, history, finals, &liveness))
}

/// Checks a finished run's history and final states against the scenario's expectations.
fn judge(
    scenario: &Scenario,
    options: &RunOptions,
    wall: Instant,
    history: History,
    finals: FinalStates,
    liveness: &Liveness,
) -> RunOutcome {
    let analysis = check::all(&history, &finals, liveness);
    // A virtual clock alone does not make exact counts repeatable (threads and sockets still decide batch
    // boundaries); deterministic mode does, and only it reports `Deterministic`.
    let info = RunInfo {
        scenario: scenario.name.clone(),
        path: options.scenario_path.clone(),
        seed: scenario.seed,
        backend: scenario.topology.backend.name().to_string(),
        mode: if scenario.topology.deterministic {
            RunMode::Deterministic
        } else {
            RunMode::RealTime
        },
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
        wall_ms: wall.elapsed().as_millis() as u64,
    };
    let report = Report::new(info, &scenario.expectations(), &analysis, &history);
    RunOutcome {
        report,
        history,
        analysis,
        finals,
    }
}

/// Real clock: commits each operation at its time (the generator's commit times, `rate` per second).
async fn stream_real(
    generator: impl Iterator<Item = crate::workload::Operation>,
    source: &impl Source,
    started: tokio::time::Instant,
    bar: &indicatif::ProgressBar,
) -> Result<(), RunError> {
    let mut first_at: Option<i64> = None;
    for op in generator {
        let t0 = *first_at.get_or_insert(op.at_ms);
        let due = started + Duration::from_millis((op.at_ms - t0).max(0) as u64);
        tokio::time::sleep_until(due).await;
        source.commit(&op).await?;
        bar.inc(1);
    }
    Ok(())
}

/// Virtual clock: before each commit, applies the faults due by then, waits for the capture to ship what is
/// committed, and moves the clock to the commit's time. After the last commit, the faults still due.
///
/// Deterministic mode also waits, after each commit, until the capture has it acknowledged (so batch
/// boundaries and record timestamps do not depend on the machine's speed) and the consumers that read have
/// reached the high watermarks (so what retention deletes before they read it does not depend on thread speed),
/// and applies each fault at a quiet point: everything committed acknowledged, replicas caught up, consumers at
/// the partitions' ends. A fault can make a wait unreachable (a paused broker answers nothing); every wait also
/// ends once nothing has moved for [`STALL_WINDOW`], and the per-commit waits then stay off until the next
/// fault step.
async fn stream_virtual(
    generator: impl Iterator<Item = crate::workload::Operation>,
    source: &MemorySource,
    targets: &Targets<'_>,
    nemesis: &mut Nemesis,
    bar: &indicatif::ProgressBar,
    deterministic: bool,
) -> Result<(), RunError> {
    let clock = targets.clock;
    let mut first_at: Option<i64> = None;
    let mut last_txn: Option<u64> = None;
    // Deterministic mode: whether acknowledgements come at all. A fault (a paused or dead broker) can hold them
    // up; after one bounded wait the stream goes on without waiting, until the next fault step changes things.
    let mut acks_flowing = true;
    // Deterministic mode: likewise for the consumers that read (not killed, not stalled). Time moves only once
    // they have read everything acknowledged, so what retention deletes before they read it is decided by the
    // stream, not by how fast a consumer thread ran.
    let mut reads_flowing = true;
    for op in generator {
        let offset = (op.at_ms - *first_at.get_or_insert(op.at_ms)).max(0) as u64;
        if apply_due_faults(Some(offset), last_txn, targets, nemesis, deterministic).await? {
            acks_flowing = true;
            reads_flowing = true;
        }
        if let Some(txn) = last_txn {
            if !deterministic {
                wait_for_capture(
                    targets.capture,
                    txn,
                    CaptureMark::Shipped,
                    CAPTURE_PACING_BOUND,
                )
                .await;
            }
        }
        let at = targets.stream_start_ms.saturating_add(offset as i64);
        let now = clock.now_ms();
        if at > now {
            clock
                .advance(Duration::from_millis((at - now) as u64))
                .map_err(|e| RunError::Clock(e.to_string()))?;
        }
        source.commit(&op).await?;
        last_txn = Some(op.seq);
        if deterministic && acks_flowing {
            acks_flowing = wait_for_ack(targets.capture, op.seq).await;
        }
        if deterministic && reads_flowing {
            reads_flowing = wait_for_reads(targets).await;
        }
        bar.inc(1);
    }
    apply_due_faults(None, last_txn, targets, nemesis, deterministic).await?;
    Ok(())
}

/// Applies the faults due by `until_ms` (all that remain for `None`); in deterministic mode one due time at a
/// time, each at a quiet point. Returns whether any step was applied.
async fn apply_due_faults(
    until_ms: Option<u64>,
    last_txn: Option<u64>,
    targets: &Targets<'_>,
    nemesis: &mut Nemesis,
    deterministic: bool,
) -> Result<bool, RunError> {
    let due_now = |n: &Nemesis| {
        n.next_due()
            .filter(|due| until_ms.is_none_or(|u| *due <= u))
    };
    if due_now(nemesis).is_none() {
        return Ok(false);
    }
    if !deterministic {
        nemesis.advance_to(until_ms, targets).await?;
        return Ok(true);
    }
    while let Some(due) = due_now(nemesis) {
        quiet_point(last_txn, targets).await;
        nemesis.advance_to(Some(due), targets).await?;
    }
    Ok(true)
}

/// Waits until the run is quiet: every commit up to `last_txn` acknowledged, the followers caught up, the
/// consumers at every partition's end. A fault can make that unreachable (a paused broker answers nothing), so the
/// wait also ends when nothing has moved — capture progress, replica log ends, consumer offsets — for
/// [`STALL_WINDOW`], and in any case after [`QUIET_POINT_BOUND`]. Either way the state the next fault meets is
/// the one the stream's inputs lead to, not one the wait's timing picked.
async fn quiet_point(last_txn: Option<u64>, targets: &Targets<'_>) {
    let mut watch = StallWatch::new(QUIET_POINT_BOUND);
    loop {
        let capture_done = match last_txn {
            None => true,
            Some(txn) => capture_reached(targets.capture, txn, CaptureMark::Acknowledged).await,
        };
        let progress = targets.capture.lock().await.progress();
        let replication_idle = targets.cluster.replication_idle();
        let (consumers_done, consumed) = {
            let pipeline = targets.pipeline.lock().await;
            // A paused broker takes the request and never answers: bound the wait for the end offsets too.
            let ends = tokio::time::timeout(STALL_WINDOW, pipeline.end_offsets()).await;
            let done = matches!(&ends, Ok(Ok(ends)) if pipeline.caught_up(ends));
            (done, pipeline.consumed_fingerprint())
        };
        if capture_done && replication_idle && consumers_done {
            return;
        }
        let fingerprint = (
            progress.shipped_txn,
            progress.acked_txn,
            targets.cluster.replication_fingerprint(),
            consumed,
        );
        if watch.gave_up(fingerprint) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// How far the capture must have got with a transaction before a wait ends.
#[derive(Clone, Copy)]
enum CaptureMark {
    /// Handed to the producer.
    Shipped,
    /// Every record of it has its final outcome (acknowledged or failed).
    Acknowledged,
}

/// Waits until the capture has reached `mark` for transaction `txn` and everything before it, or is not running,
/// or has failed (true) — or `bound` passed (false: the capture is held up).
async fn wait_for_capture(
    capture: &Mutex<Capture>,
    txn: u64,
    mark: CaptureMark,
    bound: Duration,
) -> bool {
    let deadline = Instant::now() + bound;
    loop {
        if capture_reached(capture, txn, mark).await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// What the consumers had not read when quiesce gave up: one line per partition behind its end.
fn consumers_pending(
    offsets: &std::collections::BTreeMap<(String, i32), i64>,
    ends: &[(String, i32, i64)],
) -> Vec<String> {
    if ends.is_empty() {
        return vec!["consumers: end offsets could not be read from the cluster".into()];
    }
    ends.iter()
        .filter_map(|(topic, partition, end)| {
            let at = offsets
                .get(&(topic.clone(), *partition))
                .copied()
                .unwrap_or(0);
            (at < *end).then(|| format!("consumers: {topic}-{partition} at offset {at} of {end}"))
        })
        .collect()
}

/// Watches a fingerprint of progress: says when it stood still for [`STALL_WINDOW`] or `bound` passed.
struct StallWatch<T> {
    started: Instant,
    bound: Duration,
    seen: Option<T>,
    since: Instant,
}

impl<T: PartialEq> StallWatch<T> {
    fn new(bound: Duration) -> StallWatch<T> {
        let now = Instant::now();
        StallWatch {
            started: now,
            bound,
            seen: None,
            since: now,
        }
    }

    /// Records `fingerprint`; true when nothing has moved for [`STALL_WINDOW`] or the bound passed.
    fn gave_up(&mut self, fingerprint: T) -> bool {
        let now = Instant::now();
        if self.seen.as_ref() != Some(&fingerprint) {
            self.seen = Some(fingerprint);
            self.since = now;
        } else if now.duration_since(self.since) >= STALL_WINDOW {
            return true;
        }
        now.duration_since(self.started) >= self.bound
    }
}

/// Deterministic mode: waits until `txn` is acknowledged; false when the capture's progress (shipped and
/// acknowledged transactions) stood still for [`STALL_WINDOW`] or [`ACK_BOUND`] passed — a fault holds the
/// acknowledgements up.
async fn wait_for_ack(capture: &Mutex<Capture>, txn: u64) -> bool {
    let mut watch = StallWatch::new(ACK_BOUND);
    loop {
        if capture_reached(capture, txn, CaptureMark::Acknowledged).await {
            return true;
        }
        let p = capture.lock().await.progress();
        if watch.gave_up((p.shipped_txn, p.acked_txn)) {
            return false;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// Deterministic mode: waits until every consumer that reads (running, not stalled) has stored offsets at its
/// partitions' high watermarks; false when their offsets stood still for [`STALL_WINDOW`] or [`ACK_BOUND`]
/// passed (a fault holds a partition up).
async fn wait_for_reads(targets: &Targets<'_>) -> bool {
    let mut watch = StallWatch::new(ACK_BOUND);
    loop {
        let (done, consumed) = {
            let pipeline = targets.pipeline.lock().await;
            let ends: Vec<(String, i32, i64)> = pipeline
                .reading_partitions()
                .into_iter()
                .filter_map(|(topic, partition)| {
                    let hw = targets.cluster.partition(&topic, partition)?.high_watermark;
                    Some((topic, partition, hw))
                })
                .collect();
            (pipeline.caught_up(&ends), pipeline.consumed_fingerprint())
        };
        if done {
            return true;
        }
        if watch.gave_up(consumed) {
            return false;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// The capture has reached `mark` for `txn` and everything before it, or is not running, or has failed.
async fn capture_reached(capture: &Mutex<Capture>, txn: u64, mark: CaptureMark) -> bool {
    let capture = capture.lock().await;
    let p = capture.progress();
    let reached = match mark {
        CaptureMark::Shipped => p.shipped_txn,
        CaptureMark::Acknowledged => p.acked_txn,
    };
    reached >= txn || p.failed.is_some() || !capture.is_running()
}

/// Waits until capture has shipped every commit and the consumers have reached every partition's end, or the
/// scenario's `quiesce_timeout` passes. Returns the verdict and the end offsets last seen.
async fn quiesce(
    scenario: &Scenario,
    source: &MemorySource,
    capture: &Mutex<Capture>,
    pipeline: &Mutex<Pipeline>,
    sink: &MemorySink,
    clock: &Clock,
) -> (Liveness, Vec<(String, i32, i64)>) {
    let bound = scenario.pipeline.quiesce_timeout.as_duration();
    let began = Instant::now();
    let mut ends = Vec::new();
    let pipeline = pipeline.lock().await;
    loop {
        let head = source.head_txn();
        let progress = capture.lock().await.progress();
        let capture_done =
            progress.failed.is_some() || (progress.snapshot_done && progress.acked_txn >= head);
        if capture_done {
            if let Ok(now) = pipeline.end_offsets().await {
                ends = now;
            }
            if !ends.is_empty() && pipeline.caught_up(&ends) {
                let liveness = match progress.failed {
                    Some(why) => Liveness::TimedOut {
                        waited_ms: began.elapsed().as_millis() as u64,
                        pending: vec![format!("capture failed and stopped: {why}")],
                    },
                    None => Liveness::Quiesced,
                };
                return (liveness, ends);
            }
        }
        if began.elapsed() >= bound {
            let mut pending = Vec::new();
            if !progress.snapshot_done {
                pending.push("capture: the initial snapshot has not finished".to_string());
            } else if progress.acked_txn < head {
                pending.push(format!(
                    "capture: acknowledged up to transaction {} of {head} (shipped {})",
                    progress.acked_txn, progress.shipped_txn
                ));
            }
            if let Some(why) = &progress.failed {
                pending.push(format!("capture failed and stopped: {why}"));
            }
            if ends.is_empty() {
                // Not read yet while the capture was pending: read them now, so the report says where the
                // consumers stood rather than that nothing could be read.
                if let Ok(now) = pipeline.end_offsets().await {
                    ends = now;
                }
            }
            pending.extend(consumers_pending(&sink.offsets(), &ends));
            return (
                Liveness::TimedOut {
                    waited_ms: began.elapsed().as_millis() as u64,
                    pending,
                },
                ends,
            );
        }
        tokio::time::sleep(QUIESCE_POLL).await;
        if clock.is_virtual() {
            // Time goes on while the pipeline catches up; a virtual clock cannot fail to advance.
            let _ = clock.advance(QUIESCE_POLL);
        }
    }
}

fn progress_bar(wanted: bool, len: u64) -> indicatif::ProgressBar {
    if !wanted || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{elapsed_precise} [{bar:40}] {pos}/{len} operations ({per_sec}, eta {eta})",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}
