//! What a campaign tells its caller: progress as it goes, each case's verdict, the failure it found and the
//! finished campaign.

use std::path::PathBuf;
use std::time::Duration;

use crate::scenario::Scenario;

/// What a campaign tells its caller as it goes (for cases/second and shrinking progress).
#[derive(Debug, Clone)]
pub enum Progress {
    /// A drawn case finished.
    Case {
        /// 1-based number of the case.
        number: u32,
        seed: u64,
        faults: usize,
        held: bool,
        /// Faults a backend could not apply (the case then counts as incomplete, neither held nor failed).
        unapplied: Vec<String>,
        /// Since the campaign started.
        elapsed: Duration,
    },
    /// One shrink attempt finished.
    Shrink {
        attempt: u32,
        faults: usize,
        still_fails: bool,
    },
}

/// The outcome of one case: which property invariants failed (empty when it held).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CaseVerdict {
    /// Report invariants that did not hold (`lost`, `reordered`, `final_state`, `liveness`, …), in report order.
    pub failed: Vec<String>,
    /// Faults the history says were injected.
    pub faults_injected: usize,
    /// Faults a backend could not apply, as `<action> <target> on <backend>: <error>`. A case with any did not
    /// run the schedule it drew, so its verdicts prove nothing either way.
    pub unapplied: Vec<String>,
}

impl CaseVerdict {
    pub fn held(&self) -> bool {
        self.failed.is_empty()
    }
}

/// A failure found, shrunk and written out.
#[derive(Debug, Clone)]
pub struct FoundFailure {
    /// The smallest failing scenario found (its seed is the case's).
    pub scenario: Scenario,
    /// Where it was written.
    pub path: PathBuf,
    /// Invariants the shrunk case broke.
    pub failed: Vec<String>,
    /// Faults of the case as first drawn, before shrinking.
    pub original_faults: usize,
    /// Shrink runs spent.
    pub shrink_runs: u32,
    /// The written file run once more: the invariants it broke (empty if it passed that time).
    pub rerun_failed: Vec<String>,
    /// The backends the campaign ran each case on.
    pub backends: Vec<crate::scenario::Backend>,
}

impl FoundFailure {
    /// `etl-harness run <file> --seed N`, or `etl-harness diff <file> --backends a,b --seed N` for a campaign
    /// over several backends.
    pub fn reproduce(&self) -> String {
        reproduce(&self.path, &self.backends, self.scenario.seed)
    }

    /// The rerun of the written file broke the first invariant the shrunk case broke.
    pub fn reproduced(&self) -> bool {
        self.failed
            .first()
            .is_some_and(|first| self.rerun_failed.contains(first))
    }
}

/// A finished campaign.
#[derive(Debug, Clone)]
pub struct CampaignReport {
    /// Cases run before the campaign ended (the failing one included; shrink runs not).
    pub cases: u32,
    /// Cases that injected no fault (every episode was dropped by the layout).
    pub cases_without_faults: u32,
    /// Cases in which a backend could not apply a fault (counted in `cases`, judged neither way), with the first
    /// few reasons.
    pub cases_incomplete: u32,
    pub incomplete_examples: Vec<String>,
    /// Wall time of the search (shrinking and the rerun not included).
    pub search_time: Duration,
    pub failure: Option<FoundFailure>,
}

impl CampaignReport {
    pub fn cases_per_second(&self) -> f64 {
        self.cases as f64 / self.search_time.as_secs_f64().max(1e-9)
    }

    pub fn cases_per_minute(&self) -> f64 {
        60.0 * self.cases_per_second()
    }
}

/// The command that runs a written case again.
pub(super) fn reproduce(
    path: &std::path::Path,
    backends: &[crate::scenario::Backend],
    seed: u64,
) -> String {
    if backends.len() > 1 {
        let names: Vec<&str> = backends.iter().map(|b| b.name()).collect();
        format!(
            "etl-harness diff {} --backends {} --seed {seed}",
            path.display(),
            names.join(",")
        )
    } else {
        format!("etl-harness run {} --seed {seed}", path.display())
    }
}
