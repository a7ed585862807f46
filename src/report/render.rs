//! The report's text renderings. `stable_text` must not change between two runs of the same seed and commit;
//! `terminal` may say everything.

use std::fmt::Write;

use super::{FaultEntry, Report, RunMode, Verdict};
use crate::check::{
    Analysis, ChangeRef, Delivery, Liveness, LossCause, RowDiffKind, SourceCounts, EXAMPLES,
};

pub(super) fn stable_text(r: &Report) -> String {
    let mut out = String::new();
    let exact = r.info.mode == RunMode::Deterministic;
    let _ = writeln!(out, "scenario: {}", r.info.scenario);
    let _ = writeln!(out, "seed: {}", r.info.seed);
    let _ = writeln!(out, "backend: {}", r.info.backend);
    let _ = writeln!(out, "mode: {}", r.info.mode.name());
    let _ = writeln!(out, "result: {}", result_word(r));
    out.push_str("source:\n");
    source_lines(&mut out, &r.analysis.source);
    // The schedule as the scenario wrote it; what a role resolved to depends on timing unless exact, and so does
    // how many brokers "followers of" reached, hence one line per step.
    let mut scheduled: Vec<&FaultEntry> = r.faults.iter().filter(|f| f.scheduled).collect();
    if !exact {
        scheduled.dedup_by(|b, a| (a.due_ms, a.phase, a.fault) == (b.due_ms, b.phase, b.fault));
    }
    if !scheduled.is_empty() {
        out.push_str("faults:\n");
        for f in scheduled {
            // A live fault's time is when the test asked for it: timing, unless the run is exact.
            let at = if f.live && !exact {
                "(timing)".to_string()
            } else {
                seconds(f.due_ms)
            };
            let _ = write!(out, "  {}  {:<9} {} {}", at, f.phase, f.action, f.target);
            if exact {
                let _ = write!(out, " -> {}", f.resolved);
            }
            out.push('\n');
        }
    }
    out.push_str("verdicts:\n");
    for v in &r.verdicts {
        let _ = write!(
            out,
            "  {:<4}  {:<14}  expected {}",
            mark(v),
            v.invariant,
            v.expected
        );
        if exact {
            let _ = write!(out, ", observed {}", v.observed);
            if let Some(rel) = &v.relative_to {
                let _ = write!(out, " ({rel})");
            }
        }
        out.push('\n');
    }
    if !r.passed {
        let _ = writeln!(out, "reproduce: {}", r.reproduce);
    }
    out
}

pub(super) fn terminal(r: &Report) -> String {
    let a = &r.analysis;
    let mut out = String::new();
    let _ = writeln!(out, "{} — {}", r.info.scenario, result_word(r));
    let _ = writeln!(
        out,
        "  scenario {} · seed {} · backend {} · {} · harness {} · {:.3} s wall",
        r.info.path,
        r.info.seed,
        r.info.backend,
        r.info.mode.name(),
        r.info.harness_version,
        r.info.wall_ms as f64 / 1000.0
    );
    out.push('\n');
    let _ = writeln!(
        out,
        "source    {} commits, {} snapshot reads, {} changes",
        a.source.commits, a.source.snapshot_reads, a.source.changes
    );
    match a.final_state.tables.first() {
        Some(t) => {
            let names: Vec<&str> = a
                .final_state
                .tables
                .iter()
                .map(|t| t.table.as_str())
                .collect();
            let _ = writeln!(
                out,
                "consumed  not seen: a team's ETL, judged by its {} {} against {} over the source's final state",
                if names.len() == 1 { "table" } else { "tables" },
                names.join(", "),
                t.oracle
            );
        }
        None => {
            let _ = writeln!(
                out,
                "consumed  {} records ({} tombstones), {} distinct changes",
                a.consumed.records, a.consumed.tombstones, a.consumed.changes_delivered
            );
        }
    }
    let c = &a.cluster;
    let _ = writeln!(
        out,
        "cluster   {} truncations ({} offsets), {} unclean elections, {} segments deleted, {} DeleteRecords, \
         {} compactions",
        c.truncations,
        c.truncated_offsets,
        c.unclean_elections,
        c.segments_deleted,
        c.records_deleted,
        c.compactions
    );
    if let Some(g) = &a.group {
        let _ = writeln!(
            out,
            "group     generations {}..{}, assignments {}, revocations {}, lost {}, commits {} (refused {}), members left {}",
            g.first_generation,
            g.last_generation,
            g.assignments,
            g.revocations,
            g.lost_assignments,
            g.commits,
            g.commits_refused,
            g.departures
        );
    }
    out.push('\n');
    for v in &r.verdicts {
        let _ = write!(
            out,
            "  {:<4}  {:<14}  {:<22}  expected {}",
            mark(v),
            v.invariant,
            v.observed,
            v.expected
        );
        if let Some(rel) = &v.relative_to {
            let _ = write!(out, " ({rel})");
        }
        out.push('\n');
    }
    out.push('\n');
    if !r.faults.is_empty() {
        out.push_str("faults\n");
        for f in &r.faults {
            fault_line(&mut out, f);
        }
        out.push('\n');
    }
    metrics_lines(&mut out, r);
    let failed: Vec<&Verdict> = r.verdicts.iter().filter(|v| !v.holds).collect();
    if !failed.is_empty() {
        out.push_str("\nfailures\n");
        for v in failed {
            failure_lines(&mut out, v, a);
        }
        let _ = writeln!(
            out,
            "\nFAILED with seed {}; reproduce with:\n  {}",
            r.info.seed, r.reproduce
        );
    }
    out
}

/// `+1.500s`: a time from the start of the stream.
fn seconds(ms: u64) -> String {
    format!("+{}.{:03}s", ms / 1000, ms % 1000)
}

fn fault_line(out: &mut String, f: &FaultEntry) {
    let _ = write!(
        out,
        "  {:>9}  {:<12}  {} {}",
        seconds(f.due_ms),
        f.phase,
        f.action,
        f.target
    );
    if f.resolved != f.target {
        let _ = write!(out, " → {}", f.resolved);
    }
    if let Some(e) = &f.error {
        let _ = write!(out, "  (not applied: {e})");
    }
    out.push('\n');
}

fn result_word(r: &Report) -> &'static str {
    if r.passed {
        "passed"
    } else {
        "FAILED"
    }
}

fn mark(v: &Verdict) -> &'static str {
    if v.holds {
        "ok"
    } else {
        "FAIL"
    }
}

fn source_lines(out: &mut String, s: &SourceCounts) {
    let _ = writeln!(out, "  commits: {}", s.commits);
    let _ = writeln!(out, "  snapshot reads: {}", s.snapshot_reads);
    let _ = writeln!(out, "  changes: {}", s.changes);
    if !s.by_operation.is_empty() {
        let ops: Vec<String> = s
            .by_operation
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(out, "  operations: {}", ops.join(", "));
    }
    for (table, ops) in &s.by_table {
        let ops: Vec<String> = ops.iter().map(|(op, n)| format!("{op} {n}")).collect();
        let _ = writeln!(out, "  {table}: {}", ops.join(", "));
    }
}

fn metrics_lines(out: &mut String, r: &Report) {
    let m = &r.metrics;
    let per_s = |x: Option<f64>| x.map_or_else(|| "n/a".to_string(), |x| format!("{x:.1}"));
    let _ = writeln!(
        out,
        "throughput    {} source changes/s, {} consumed records/s",
        per_s(m.source_changes_per_s),
        per_s(m.consumed_records_per_s)
    );
    match &m.latency_ms {
        Some(l) => {
            let _ = writeln!(
                out,
                "latency       p50 {} ms, p90 {} ms, p99 {} ms, max {} ms (commit → first delivery, {} samples)",
                l.p50, l.p90, l.p99, l.max, l.samples
            );
        }
        None => out.push_str("latency       n/a (nothing delivered)\n"),
    }
    match m.max_consumer_lag {
        Some(lag) => {
            let _ = writeln!(out, "consumer lag  at most {lag} records");
        }
        None => out.push_str("consumer lag  n/a\n"),
    }
    if let Some(spill) = &m.log_spill {
        let mib = |b: u64| b as f64 / (1u64 << 20) as f64;
        let _ = writeln!(
            out,
            "log spill     {:.1} MiB of record batches on disk at most past the memory budget ({:.1} MiB written, {:.1} MiB read back)",
            mib(spill.peak_bytes),
            mib(spill.written_bytes),
            mib(spill.read_bytes)
        );
    }
}

fn change(c: &ChangeRef) -> String {
    format!("{} {} {}", c.table, c.key, position(c))
}

/// A change without its row: `txn 2#0 (u) at mysql-bin.000003:2154`.
fn position(c: &ChangeRef) -> String {
    let at = if c.binlog_file.is_empty() {
        "snapshot".to_string()
    } else {
        format!("{}:{}", c.binlog_file, c.binlog_pos)
    };
    format!("txn {}#{} ({}) at {at}", c.txn, c.index, c.op)
}

fn delivery(d: &Delivery) -> String {
    format!(
        "seq {} {}/{}@{} consumer {}",
        d.seq, d.topic, d.partition, d.offset, d.consumer
    )
}

fn failure_lines(out: &mut String, v: &Verdict, a: &Analysis) {
    let _ = writeln!(
        out,
        "  {}: {} (expected {})",
        v.invariant, v.observed, v.expected
    );
    let mut line = |text: String| {
        let _ = writeln!(out, "    {text}");
    };
    match v.invariant {
        "lost" if !a.final_state.tables.is_empty() => {
            let l = &a.lost;
            line(format!(
                "{} rows of the batch result missing from the ETL's table or stale there: {}",
                l.count,
                if l.committed_before_written > 0 {
                    "committed before written (the ETL's progress had passed every record, so it acknowledged what it never wrote)"
                } else {
                    "unexplained (the ETL's progress never reached the end)"
                }
            ));
        }
        "lost" => {
            let l = &a.lost;
            let mut causes = format!(
                "never produced {}, truncated_acked {}, retention {}, compacted {}",
                l.never_produced, l.truncated_acked, l.retention, l.compacted
            );
            if l.committed_before_written > 0 {
                let _ = write!(
                    causes,
                    ", committed before written {}",
                    l.committed_before_written
                );
            }
            let _ = write!(causes, ", unexplained {}", l.unexplained);
            line(causes);
            for e in &l.examples {
                let cause = match e.cause {
                    LossCause::NeverProduced => "never produced",
                    LossCause::TruncatedAcked => "truncated after ack",
                    LossCause::Retention => "deleted by retention",
                    LossCause::Compacted => "compacted away",
                    LossCause::CommittedBeforeWritten => "committed before written",
                    LossCause::Unexplained => "unexplained",
                };
                let mut text = format!("{cause}: {}", change(&e.change));
                for o in &e.acked {
                    let _ = write!(text, "; acked {}/{}@{}", o.topic, o.partition, o.offset);
                }
                if let Some(err) = &e.produce_error {
                    let _ = write!(text, "; producer error: {err}");
                }
                line(text);
            }
        }
        "duplicates" => {
            let d = &a.duplicates;
            if d.after_rebalance + d.replayed > 0 {
                line(format!(
                    "after a rebalance {}, replayed without one {}",
                    d.after_rebalance, d.replayed
                ));
            }
            for e in &d.examples {
                let mut text = format!(
                    "{}: first {}, again {}",
                    change(&e.change),
                    delivery(&e.first),
                    delivery(&e.again)
                );
                if let Some(cause) = &e.cause {
                    let _ = write!(text, " ({cause})");
                }
                line(text);
            }
        }
        "reordered" => {
            for e in &a.reordered.examples {
                line(format!(
                    "{} {}: {} consumed ({}) after {} ({})",
                    e.table,
                    e.key,
                    position(&e.earlier),
                    delivery(&e.earlier_delivery),
                    position(&e.later),
                    delivery(&e.later_delivery)
                ));
            }
        }
        "retention_lost" => {
            for c in a.retention_loss.changes.iter().take(EXAMPLES) {
                line(change(c));
            }
        }
        "final_state" => {
            let f = &a.final_state;
            line(format!(
                "sink {} rows, oracle {} rows: {} missing, {} extra, {} different",
                f.sink_rows, f.oracle_rows, f.missing, f.extra, f.different
            ));
            for t in &f.tables {
                if f.tables.len() > 1 {
                    line(format!(
                        "{}: oracle {} rows, {} missing, {} extra, {} different",
                        t.table, t.oracle_rows, t.missing, t.extra, t.different
                    ));
                }
                if let Some(problem) = &t.problem {
                    line(format!("{}: {problem}", t.table));
                }
                for row in &t.missing_examples {
                    line(format!("missing from {}: {row}", t.table));
                }
                for row in &t.different_examples {
                    line(format!("differs in {}: {row}", t.table));
                }
                for row in &t.extra_examples {
                    line(format!("only in {}: {row}", t.table));
                }
            }
            for e in &f.examples {
                let kind = match e.kind {
                    RowDiffKind::Missing => "missing from the sink",
                    RowDiffKind::Extra => "only in the sink",
                    RowDiffKind::Different => "differs",
                };
                line(format!(
                    "patient {} encounter {}: {kind}",
                    e.patient_id, e.encounter_id
                ));
                for fd in &e.fields {
                    line(format!(
                        "  {}: sink {}, oracle {}",
                        fd.field, fd.sink, fd.oracle
                    ));
                }
            }
        }
        "liveness" => {
            if let Liveness::TimedOut { pending, .. } = &a.liveness {
                for p in pending.iter().take(EXAMPLES) {
                    line(format!("pending: {p}"));
                }
            }
        }
        "offset_gaps" => {
            for g in &a.offset_gaps.examples {
                line(format!(
                    "{}/{} offsets [{}, {}) never read",
                    g.topic, g.partition, g.start, g.end
                ));
            }
        }
        "phantoms" => {
            for p in &a.phantoms.examples {
                let claimed = p.claimed.as_ref().map_or_else(
                    || "an undecodable record".to_string(),
                    |c| {
                        let gtid = c
                            .gtid
                            .as_deref()
                            .map_or(String::new(), |g| format!(" gtid {g}"));
                        format!(
                            "{} {} ({}) at {}:{}{gtid}",
                            c.table, c.key, c.op, c.binlog_file, c.binlog_pos
                        )
                    },
                );
                line(format!("{}: {claimed}", delivery(&p.delivery)));
            }
        }
        _ => {}
    }
}
