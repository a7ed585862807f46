//! Quiesce: after the stream and the faults, wait until everything committed reached the sink, or say what did
//! not (a liveness failure), bounded by the scenario's `quiesce_timeout`.

use std::time::Instant;

use tokio::sync::Mutex;

use crate::check::Liveness;
use crate::clock::Clock;
use crate::history::Recorder;
use crate::pipeline::Pipeline;
use crate::scenario::Scenario;
use crate::topology::capture::Capture;

/// Waits until the capture has delivered every commit (its [`Delivery`](crate::topology::capture::Delivery))
/// and the consumers stand at every partition's end read after that, or the scenario's `quiesce_timeout`
/// passes; past it, a liveness failure saying what was pending. Returns the verdict and the end offsets last
/// seen. On a virtual clock, time advances with real time meanwhile, so clock-driven work (heartbeats, ISR
/// checks, retention) goes on while the pipeline catches up.
pub(crate) async fn quiesce(
    scenario: &Scenario,
    capture: &impl Capture,
    pipeline: &Mutex<Pipeline>,
    recorder: &Recorder,
    clock: &Clock,
) -> (Liveness, Vec<(String, i32, i64)>) {
    let bound = scenario.pipeline.quiesce_timeout.as_duration();
    let poll = capture.poll_interval();
    let began = Instant::now();
    let mut ends = Vec::new();
    let mut pipeline = pipeline.lock().await;
    loop {
        pipeline.refresh_progress().await;
        let delivery = capture.delivery(recorder).await;
        if delivery.in_kafka {
            match pipeline.end_offsets().await {
                Ok(now) => ends = now,
                Err(e) => tracing::debug!(error = %e, "quiesce: end offsets not read"),
            }
        }
        if delivery.complete && !ends.is_empty() && pipeline.caught_up(&ends) {
            tracing::debug!(ends = ?ends, "quiesced");
            let liveness = match delivery.failed {
                Some(why) => Liveness::TimedOut {
                    waited_ms: began.elapsed().as_millis() as u64,
                    pending: vec![format!("capture failed and stopped: {why}")],
                },
                None => Liveness::Quiesced,
            };
            return (liveness, ends);
        }
        // A team's ETL whose every process has exited will not catch up: say so now, not after the bound.
        let gone = pipeline.command_gone();
        if began.elapsed() >= bound || gone {
            // The processes that exited first: the likeliest reason, with their logs' last lines.
            let mut pending = pipeline.exited();
            if gone {
                pending.insert(
                    0,
                    "every process of the ETL has exited, so it cannot catch up: quiesce stopped waiting"
                        .into(),
                );
            }
            pending.extend(delivery.pending);
            if ends.is_empty() {
                // Not read yet while the capture was pending: read them now, so the report says where the
                // consumers stood rather than that nothing could be read.
                if let Ok(now) = pipeline.end_offsets().await {
                    ends = now;
                }
            }
            pending.extend(consumers_pending(&pipeline.positions(), &ends));
            return (
                Liveness::TimedOut {
                    waited_ms: began.elapsed().as_millis() as u64,
                    pending,
                },
                ends,
            );
        }
        tokio::time::sleep(poll).await;
        if clock.is_virtual() {
            // A virtual clock cannot fail to advance.
            let _ = clock.advance(poll);
        }
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
