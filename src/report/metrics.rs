//! Run metrics: throughput, end-to-end latency, consumer lag. All of them depend on timing, so they appear in
//! the terminal and JSON renderings, never in the stable text.

use std::collections::HashMap;

use serde::Serialize;

use crate::check::Analysis;
use crate::history::{History, ProduceOutcome};

/// Latency percentiles, ms.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Latency {
    /// First deliveries measured.
    pub samples: u64,
    pub p50: u64,
    pub p90: u64,
    pub p99: u64,
    pub max: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metrics {
    /// Source changes per second between the first and the last commit (run clock).
    pub source_changes_per_s: Option<f64>,
    /// Consumed records per second between the first and the last delivery (run clock).
    pub consumed_records_per_s: Option<f64>,
    /// Commit at the source → first delivery to a consumer.
    pub latency_ms: Option<Latency>,
    /// The most records a consumer was behind in one partition: the highest offset acknowledged for records
    /// sent before a delivery, minus the delivery's offset. Send time stands in for append time, so this
    /// slightly over-counts under load; it is a gauge for sweeps, not an invariant.
    pub max_consumer_lag: Option<u64>,
    /// Embedded only, when record batches went past the cluster's memory budget (`[topology] log_memory`): how
    /// much of them the spill file held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_spill: Option<LogSpill>,
}

/// What the embedded cluster's spill file held over a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LogSpill {
    /// The most record batch bytes in the file at once (the disk it needed).
    pub peak_bytes: u64,
    /// Bytes ever written to it.
    pub written_bytes: u64,
    /// Bytes read back from it: fetches and replication of what had left memory.
    pub read_bytes: u64,
}

impl Metrics {
    pub(crate) fn new(analysis: &Analysis, history: &History) -> Metrics {
        let latency_ms = analysis
            .latency_ms
            .as_ref()
            .filter(|h| !h.is_empty())
            .map(|h| Latency {
                samples: h.len(),
                p50: h.value_at_quantile(0.50),
                p90: h.value_at_quantile(0.90),
                p99: h.value_at_quantile(0.99),
                max: h.max(),
            });
        let commit_times = history.commits.iter().map(|c| c.committed_at_ms);
        let consumed_times = history.consumed.iter().map(|c| c.at_ms);
        Metrics {
            source_changes_per_s: rate(analysis.source.changes, commit_times),
            consumed_records_per_s: rate(history.consumed.len() as u64, consumed_times),
            latency_ms,
            max_consumer_lag: max_lag(history),
            log_spill: None,
        }
    }
}

/// `n` events over the span of `times`; `None` when the span is empty.
fn rate(n: u64, times: impl Iterator<Item = i64>) -> Option<f64> {
    let (lo, hi) = times.fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(t), hi.max(t)));
    let span_ms = hi.checked_sub(lo).filter(|&s| s > 0)?;
    Some(n as f64 * 1000.0 / span_ms as f64)
}

fn max_lag(history: &History) -> Option<u64> {
    // Per partition: (sent_at, offset) of acknowledged records, and (at, offset) of deliveries, each by time.
    let mut acked: HashMap<(&str, i32), Vec<(i64, i64)>> = HashMap::new();
    for p in &history.produced {
        if let ProduceOutcome::Acked { partition, offset } = p.outcome {
            if offset >= 0 {
                acked
                    .entry((&*p.topic, partition))
                    .or_default()
                    .push((p.sent_at_ms, offset));
            }
        }
    }
    let mut read: HashMap<(&str, i32), Vec<(i64, i64)>> = HashMap::new();
    for c in &history.consumed {
        read.entry((&*c.topic, c.partition))
            .or_default()
            .push((c.at_ms, c.offset));
    }
    let mut max: Option<u64> = None;
    for (tp, mut deliveries) in read {
        let Some(mut sends) = acked.remove(&tp) else {
            continue;
        };
        sends.sort_unstable();
        deliveries.sort_unstable();
        let mut next = 0;
        let mut highest = i64::MIN;
        for (at, offset) in deliveries {
            while next < sends.len() && sends[next].0 <= at {
                highest = highest.max(sends[next].1);
                next += 1;
            }
            if highest != i64::MIN {
                let lag = highest.saturating_sub(offset).max(0) as u64;
                max = Some(max.map_or(lag, |m| m.max(lag)));
            }
        }
    }
    max
}
