//! The run's report: each invariant's verdict against the scenario's `[expect]`, the metrics, and the
//! checkers' findings, rendered three ways — [`Report::terminal`] for people, [`Report::to_json`] with
//! everything for tools, and [`Report::stable_text`] with only what the seed decides, for snapshot tests.
//!
//! The checkers ([`crate::check`]) find anomalies; this module alone decides whether they are acceptable. That
//! split is Jepsen's: a scenario that provokes losses on purpose says so in `[expect]` and still passes.
//!
//! What is stable: over real sockets and threads, batch boundaries, retries and acks=1 losses depend on timing,
//! so in real-time mode the stable text holds the scenario, the seed, whether each expectation held, and the
//! source-side counts (decided by the seed). In deterministic mode the exact observed counts are repeatable
//! too and the stable text includes them.

mod metrics;
mod render;

use serde::Serialize;

use crate::check::{Analysis, Liveness};
use crate::history::{FaultPhase, History};
use crate::scenario::{Count, Expect, FinalState};

pub use metrics::{Latency, LogSpill, Metrics};

/// How the run was driven, which decides what in it is repeatable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RunMode {
    /// Real clock and real scheduling: only the seed's source side and the verdicts repeat.
    #[serde(rename = "real-time")]
    RealTime,
    /// Virtual clock, one thread, faults at quiet points (embedded only): every count repeats.
    #[serde(rename = "deterministic")]
    Deterministic,
}

impl RunMode {
    pub fn name(self) -> &'static str {
        match self {
            RunMode::RealTime => "real-time",
            RunMode::Deterministic => "deterministic",
        }
    }
}

/// What ran: enough to reproduce it (scenario path, seed, harness version) and to read its timings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunInfo {
    pub scenario: String,
    /// The scenario file as the user named it (it goes into the reproduce command).
    pub path: String,
    pub seed: u64,
    pub backend: String,
    pub mode: RunMode,
    pub harness_version: String,
    pub wall_ms: u64,
}

/// One invariant judged against its expectation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// `lost`, `duplicates`, `reordered`, `retention_lost`, `final_state`, `liveness`, `offset_gaps`,
    /// `phantoms`.
    pub invariant: &'static str,
    /// The expectation as the scenario spells it.
    pub expected: String,
    /// What the run showed, as a count or a state.
    pub observed: String,
    /// For a relation: the count it referred to, e.g. `truncated_acked = 3`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relative_to: Option<String>,
    pub holds: bool,
}

/// One step of the nemesis: what was due, on what, and what it resolved to when it fired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultEntry {
    /// When it was due, ms from the start of the stream.
    pub due_ms: u64,
    /// `scheduled`, `live`, `undone`, `after stream` or `recovery` (see [`FaultPhase`]).
    pub phase: &'static str,
    /// The `[[faults]]` entry (0-based), when it comes from one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<usize>,
    pub action: String,
    /// As the scenario wrote it.
    pub target: String,
    /// What it was when the fault fired.
    pub resolved: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Whether the seed and the schedule alone decide that this step exists (false for recoveries, which timing
    /// decides): only those go into the stable text.
    #[serde(skip)]
    pub(crate) scheduled: bool,
    /// Whether a live run's handle asked for it or a consumer event fired it (or it undoes one of those): its
    /// time is timing's, which the stable text leaves out.
    #[serde(skip)]
    pub(crate) live: bool,
}

/// The verdicts, metrics and findings of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub info: RunInfo,
    pub passed: bool,
    pub verdicts: Vec<Verdict>,
    /// What the nemesis did, in order.
    pub faults: Vec<FaultEntry>,
    pub metrics: Metrics,
    /// `etl-harness run <path> --seed N`
    pub reproduce: String,
    pub analysis: Analysis,
}

impl Report {
    pub fn new(info: RunInfo, expect: &Expect, analysis: &Analysis, history: &History) -> Report {
        let verdicts = verdicts(expect, analysis);
        let passed = verdicts.iter().all(|v| v.holds);
        let reproduce = format!(
            "etl-harness run {} --seed {}",
            shell_word(&info.path),
            info.seed
        );
        // Faults whose time timing decides (asked for live, or fired at a consumer event), undos included.
        let live: Vec<usize> = history
            .faults
            .iter()
            .filter(|f| matches!(f.phase, FaultPhase::Live | FaultPhase::Event))
            .filter_map(|f| f.fault)
            .collect();
        let faults = history
            .faults
            .iter()
            .map(|f| FaultEntry {
                live: f.fault.is_some_and(|i| live.contains(&i)),
                due_ms: f.due_ms,
                phase: f.phase.name(),
                fault: f.fault,
                action: f.action.clone(),
                target: f.target.clone(),
                resolved: f.resolved.clone(),
                error: f.error.clone(),
                scheduled: matches!(
                    f.phase,
                    FaultPhase::Scheduled
                        | FaultPhase::Live
                        | FaultPhase::Event
                        | FaultPhase::Undone
                ),
            })
            .collect();
        Report {
            faults,
            metrics: Metrics::new(analysis, history),
            info,
            passed,
            verdicts,
            reproduce,
            analysis: analysis.clone(),
        }
    }

    /// Every expectation held (and the pipeline was live, with no gap and no phantom).
    pub fn passed(&self) -> bool {
        self.passed
    }

    /// The process exit status: 0 when every expectation holds, 1 when any fails.
    pub fn exit_code(&self) -> i32 {
        if self.passed {
            0
        } else {
            1
        }
    }

    /// Everything, as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or_else(
            |e| serde_json::json!({ "error": format!("cannot render the report as JSON: {e}") }),
        )
    }

    /// The human summary: verdicts, metrics, the first examples of each failure, and how to reproduce it.
    pub fn terminal(&self) -> String {
        render::terminal(self)
    }

    /// Only what the seed decides (and, in deterministic mode, the exact counts): for snapshot tests.
    pub fn stable_text(&self) -> String {
        render::stable_text(self)
    }
}

fn verdicts(expect: &Expect, a: &Analysis) -> Vec<Verdict> {
    let count = |invariant: &'static str, expected: Count, n: u64| Verdict {
        invariant,
        expected: expected.to_string(),
        observed: n.to_string(),
        relative_to: match expected {
            Count::Relation(_, var) => Some(format!("{} = {}", var.name(), a.count_var(var))),
            _ => None,
        },
        holds: expected.admits(n, |v| a.count_var(v)),
    };
    let differing = a.final_state.count;
    let final_state = Verdict {
        invariant: "final_state",
        expected: match expect.final_state {
            FinalState::Equal => "equal",
            FinalState::Differs => "differs",
            FinalState::Any => "any",
        }
        .into(),
        observed: if differing == 0 {
            "equal".into()
        } else {
            format!("differs ({differing} rows)")
        },
        relative_to: None,
        holds: match expect.final_state {
            FinalState::Equal => differing == 0,
            FinalState::Differs => differing > 0,
            FinalState::Any => true,
        },
    };
    let liveness = Verdict {
        invariant: "liveness",
        expected: "quiesced".into(),
        observed: match &a.liveness {
            Liveness::Quiesced => "quiesced".into(),
            Liveness::TimedOut { waited_ms, .. } => format!("timed out after {waited_ms} ms"),
        },
        relative_to: None,
        holds: a.liveness == Liveness::Quiesced,
    };
    let rebalances = expect.rebalances.map(|expected| {
        let observed = a.group.as_ref().map_or(0, |g| g.rebalances);
        count("rebalances", expected, observed)
    });
    let mut verdicts = vec![
        count("lost", expect.lost, a.lost.count),
        count("duplicates", expect.duplicates, a.duplicates.count),
        count("reordered", expect.reordered, a.reordered.count),
        count(
            "retention_lost",
            expect.retention_lost,
            a.retention_loss.count,
        ),
        final_state,
        liveness,
        count("offset_gaps", Count::Exactly(0), a.offset_gaps.count),
        count("phantoms", Count::Exactly(0), a.phantoms.count),
    ];
    verdicts.extend(rebalances);
    if !a.final_state.tables.is_empty() {
        // A team's ETL: the harness does not see what it read, so the delivery checks have nothing to judge.
        verdicts.retain(|v| {
            !matches!(
                v.invariant,
                "duplicates" | "reordered" | "offset_gaps" | "phantoms" | "retention_lost"
            )
        });
    }
    verdicts
}

/// Quotes a path for the reproduce command when the shell would split or expand it.
pub(crate) fn shell_word(s: &str) -> String {
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/._-+:=,@".contains(c));
    if plain {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}
