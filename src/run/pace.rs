//! Pacing a virtual clock: the stream loop owns time, so it decides when time moves.
//!
//! A virtual clock moves only when the driver moves it, so the driver paces it: before moving time past a
//! commit it waits (briefly, bounded) until the capture has handed everything committed so far to its producer.
//! Records then carry timestamps close to their commit times, which is what makes retention by time mean the
//! same as in real time.
//!
//! Deterministic mode also waits, after each commit, until the capture has it acknowledged (so batch boundaries
//! and record timestamps do not depend on the machine's speed) and the consumers that read have reached the high
//! watermarks (so what retention deletes before they read it does not depend on thread speed), and applies each
//! fault at a quiet point: everything committed acknowledged, replicas caught up, consumers at the partitions'
//! ends. A fault can make a wait unreachable (a paused broker answers nothing); every wait also ends once nothing
//! has moved for [`STALL_WINDOW`], and the per-commit waits then stay off until the next fault step.
//!
//! The probes come from the backend ([`Topology`]: high watermarks, replication) and the capture plug
//! ([`Capture`]: shipped and acknowledged transactions); only the embedded backend has a virtual clock.

use std::time::{Duration, Instant};

use super::host::Host;
use super::RunError;
use crate::nemesis::Nemesis;
use crate::source::Source;
use crate::topology::capture::{Capture, CaptureMark};
use crate::topology::Topology;

/// The longest the driver waits (real time) for the capture to ship what was committed before it moves time on
/// anyway (a killed or failed capture ships nothing).
const CAPTURE_PACING_BOUND: Duration = Duration::from_millis(500);
/// Deterministic mode: the longest the driver waits (real time) for a commit's acknowledgement; a capture held
/// up by a fault (brokers down under acks=all) lets the run go on after it.
const ACK_BOUND: Duration = Duration::from_secs(2);
/// Deterministic mode: the longest a fault waits for its quiet point.
const QUIET_POINT_BOUND: Duration = Duration::from_secs(6);
/// Deterministic mode: a quiet point also ends when nothing has moved for this long (a fault holds the rest up).
const STALL_WINDOW: Duration = Duration::from_millis(300);

/// Virtual clock: before each commit, applies the faults due by then, waits for the capture to ship what is
/// committed, and moves the clock to the commit's time. After the last commit, the faults still due.
pub(crate) async fn stream_virtual<T: Topology, C: Capture>(
    generator: impl Iterator<Item = crate::workload::Operation>,
    host: &Host<'_, T, C>,
    nemesis: &mut Nemesis,
    bar: &indicatif::ProgressBar,
    deterministic: bool,
) -> Result<(), RunError> {
    let clock = host.clock;
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
        if apply_due_faults(Some(offset), last_txn, host, nemesis, deterministic).await? {
            acks_flowing = true;
            reads_flowing = true;
        }
        if let Some(txn) = last_txn {
            if !deterministic {
                wait_for_capture(
                    host.capture,
                    txn,
                    CaptureMark::Shipped,
                    CAPTURE_PACING_BOUND,
                )
                .await;
            }
        }
        let at = host.stream_start_ms.saturating_add(offset as i64);
        let now = clock.now_ms();
        if at > now {
            clock
                .advance(Duration::from_millis((at - now) as u64))
                .map_err(|e| RunError::Clock(e.to_string()))?;
        }
        host.capture.source().commit(&op).await?;
        last_txn = Some(op.seq);
        if deterministic && acks_flowing {
            acks_flowing = wait_for_ack(host.capture, op.seq).await;
        }
        if deterministic && reads_flowing {
            reads_flowing = wait_for_reads(host).await;
        }
        bar.inc(1);
    }
    apply_due_faults(None, last_txn, host, nemesis, deterministic).await?;
    Ok(())
}

/// Applies the faults due by `until_ms` (all that remain for `None`); in deterministic mode one due time at a
/// time, each at a quiet point. Returns whether any step was applied.
async fn apply_due_faults<T: Topology, C: Capture>(
    until_ms: Option<u64>,
    last_txn: Option<u64>,
    host: &Host<'_, T, C>,
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
        nemesis.advance_to(until_ms, host).await?;
        return Ok(true);
    }
    while let Some(due) = due_now(nemesis) {
        quiet_point(last_txn, host).await;
        nemesis.advance_to(Some(due), host).await?;
    }
    Ok(true)
}

/// Waits until the run is quiet: every commit up to `last_txn` acknowledged, the followers caught up, the
/// consumers at every partition's end. A fault can make that unreachable (a paused broker answers nothing), so the
/// wait also ends when nothing has moved — capture progress, replica log ends, consumer offsets — for
/// [`STALL_WINDOW`], and in any case after [`QUIET_POINT_BOUND`]. Either way the state the next fault meets is
/// the one the stream's inputs lead to, not one the wait's timing picked.
async fn quiet_point<T: Topology, C: Capture>(last_txn: Option<u64>, host: &Host<'_, T, C>) {
    let mut watch = StallWatch::new(QUIET_POINT_BOUND);
    loop {
        let capture_done = match last_txn {
            None => true,
            Some(txn) => host.capture.reached(txn, CaptureMark::Acknowledged).await,
        };
        let progress = host.capture.progress_fingerprint().await;
        let replication_idle = host.topology.replication_idle();
        let (consumers_done, consumed) = {
            let pipeline = host.pipeline.lock().await;
            // A paused broker takes the request and never answers: bound the wait for the end offsets too.
            let ends = tokio::time::timeout(STALL_WINDOW, pipeline.end_offsets()).await;
            let done = matches!(&ends, Ok(Ok(ends)) if pipeline.caught_up(ends));
            (done, pipeline.consumed_fingerprint())
        };
        if capture_done && replication_idle && consumers_done {
            return;
        }
        let fingerprint = (
            progress.0,
            progress.1,
            host.topology.replication_fingerprint(),
            consumed,
        );
        if watch.gave_up(fingerprint) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Waits until the capture has reached `mark` for transaction `txn` and everything before it, or is not running,
/// or has failed (true) — or `bound` passed (false: the capture is held up).
async fn wait_for_capture(
    capture: &impl Capture,
    txn: u64,
    mark: CaptureMark,
    bound: Duration,
) -> bool {
    let deadline = Instant::now() + bound;
    loop {
        if capture.reached(txn, mark).await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
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
async fn wait_for_ack(capture: &impl Capture, txn: u64) -> bool {
    let mut watch = StallWatch::new(ACK_BOUND);
    loop {
        if capture.reached(txn, CaptureMark::Acknowledged).await {
            return true;
        }
        if watch.gave_up(capture.progress_fingerprint().await) {
            return false;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
}

/// Deterministic mode: waits until every consumer that reads (running, not stalled) has stored offsets at its
/// partitions' high watermarks; false when their offsets stood still for [`STALL_WINDOW`] or [`ACK_BOUND`]
/// passed (a fault holds a partition up).
async fn wait_for_reads<T: Topology, C: Capture>(host: &Host<'_, T, C>) -> bool {
    let mut watch = StallWatch::new(ACK_BOUND);
    loop {
        let (done, consumed) = {
            let pipeline = host.pipeline.lock().await;
            let ends: Vec<(String, i32, i64)> = pipeline
                .reading_partitions()
                .into_iter()
                .filter_map(|(topic, partition)| {
                    let hw = host.topology.high_watermark(&topic, partition)?;
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
