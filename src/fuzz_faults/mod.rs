//! What `etl-harness fuzz-faults` runs: property tests over fault schedules, shrunk to a scenario file.
//!
//! The property is the one the harness exists for: whatever faults a schedule throws at a safely configured
//! pipeline (acks=all, replication factor 3, min ISR 2, clean election, idempotence), no change is lost, none is
//! reordered, the sink equals the batch recomputation, and the pipeline catches up. A campaign draws schedules
//! from a seed, runs each as a whole scenario through [`crate::run::run`], stops at the first one that breaks the
//! property, shrinks it (fewer faults, earlier, shorter, simpler ones) and writes the smallest failing schedule as
//! a scenario file that `etl-harness run <file> --seed N` reproduces. `etl-harness fuzz-faults` runs long
//! campaigns; `tests/fault_properties.rs` runs short ones in CI.
//!
//! ## How a schedule is drawn
//!
//! A schedule is drawn as *episodes* — "bounce broker 2", "pause the leader of obs/0 for a while", "stall
//! consumer 1" — with start and length as fractions of the run, so one draw fits any base scenario and
//! shrinking moves toward "earlier" and "shorter" without knowing the run's length. [`proptest`] does the drawing
//! and the shrinking (dropping episodes, lowering numbers, choosing earlier alternatives: the alternatives are
//! listed simplest first). Each draw is then laid out into `[[faults]]` by rules that keep it within what the
//! safe settings promise to survive:
//! - episodes on brokers never overlap: at most one broker is away at any time (RF 3 with min ISR 2 tolerates
//!   one);
//! - a broker taken down by id is restarted by the same id before the run ends;
//! - a role target ("leader of …", "a follower of …", "the controller") is resolved when its fault fires, so a
//!   later fault could not name the broker it hit: roles are paused, isolated or slowed with a `duration` (undone
//!   on the broker they hit), or taken down for good as the last broker episode of the run;
//! - the connector and each consumer are their own lanes: one episode at a time, each undone before the end.
//!
//! An episode that no longer fits before the end of the run is dropped. Every laid-out schedule is rendered as
//! TOML and parsed back with [`Scenario::parse`]: a schedule the scenario language rejects is a bug of this
//! module and stops the campaign.
//!
//! This module is not the nemesis: it writes schedules, [`crate::run::run`] executes them.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};

use crate::run::{RunError, RunOptions};
use crate::scenario::{Expect, Fault, FaultAction, FaultTarget, Millis, Scenario, ScenarioErrors};

/// Episodes a drawn schedule holds at most (before layout drops those that do not fit).
pub const MAX_EPISODES: usize = 4;

/// The base scenario of a campaign when the user gives none: small (30 patients, 500 operations in half a
/// second) so a case takes about a second, with the settings that promise no loss.
pub const SAFE_BASE: &str = r#"name = "fault-campaign"
description = "fault-schedule property: safe settings, every schedule must lose nothing"
seed = 1

[topology]
brokers = 3

[topics]
partitions = 2
replication_factor = 3
min_insync_replicas = 2
unclean_leader_election = false

[producer]
acks = "all"
linger = "2ms"
idempotence = true

[workload]
patients = 30
operations = 500
rate = 1000

[pipeline]
consumers = 2
quiesce_timeout = "45s"
"#;

/// Which kinds of episode a campaign draws.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultMix {
    /// Every kind: broker stop/kill/crash/restart/isolate/pause/latency by id or role, connector and consumer
    /// restarts, pauses and stalls.
    Any,
    /// Only broker outages that take leaders away (leader kills while the partition's followers are paused,
    /// bounces by id, leader kills): the faults that lose acknowledged writes under unsafe settings.
    LeaderKills,
}

/// What a campaign does.
#[derive(Debug, Clone)]
pub struct CampaignConfig {
    /// Passing cases wanted before the campaign ends.
    pub cases: u32,
    /// Seed of every schedule and case seed the campaign draws.
    pub seed: u64,
    pub mix: FaultMix,
    /// Runs the shrinker may spend on a failure (each is a whole scenario run).
    pub max_shrink_runs: u32,
    /// Where the shrunk failing scenario is written.
    pub out_dir: PathBuf,
}

impl CampaignConfig {
    pub fn new(cases: u32, seed: u64, out_dir: impl Into<PathBuf>) -> CampaignConfig {
        CampaignConfig {
            cases,
            seed,
            mix: FaultMix::Any,
            max_shrink_runs: 48,
            out_dir: out_dir.into(),
        }
    }
}

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
}

impl FoundFailure {
    /// `etl-harness run <file> --seed N`
    pub fn reproduce(&self) -> String {
        format!(
            "etl-harness run {} --seed {}",
            self.path.display(),
            self.scenario.seed
        )
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
    /// Wall time of the search (shrinking and the rerun not included).
    pub search_time: Duration,
    pub failure: Option<FoundFailure>,
}

impl CampaignReport {
    pub fn cases_per_second(&self) -> f64 {
        self.cases as f64 / self.search_time.as_secs_f64().max(1e-9)
    }
}

/// Why a campaign could not be carried out (distinct from a failure it found).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CampaignError {
    #[error("base scenario `{name}`: the run lasts {run}, too short to place faults in (give at least 100ms: more operations or a lower rate)")]
    RunTooShort { name: String, run: Millis },
    #[error("a generated fault schedule does not parse (a bug of the campaign generator); scenario:\n{toml}\nerrors:\n{errors}")]
    InvalidSchedule {
        toml: String,
        errors: ScenarioErrors,
    },
    #[error("case seed {seed}: the run could not be carried out: {error}")]
    Run { seed: u64, error: Box<RunError> },
    #[error("nemesis not wired: case seed {seed} scheduled {scheduled} faults but the run's history records none, so the property would hold vacuously; faults are parsed but not executed by this build")]
    NemesisNotWired { seed: u64, scheduled: usize },
    #[error("{path}: cannot write the shrunk scenario: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: the written scenario does not load back: {errors}")]
    Reload {
        path: PathBuf,
        errors: ScenarioErrors,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("the property runner stopped: {0}")]
    Aborted(String),
}

/// Parses a base scenario for a campaign (its own `[[faults]]` and `[expect]` are replaced by each case's).
pub fn base_scenario(text: &str, file: &str) -> Result<Scenario, ScenarioErrors> {
    Scenario::parse(text, file)
}

/// Runs a campaign over `base` with the real runner: each case is a whole run on the embedded cluster.
pub fn search(
    base: &Scenario,
    config: &CampaignConfig,
    progress: &mut dyn FnMut(&Progress),
) -> Result<CampaignReport, CampaignError> {
    // Deterministic mode needs one thread, as `etl-harness run` gives it: a case and its rerun from the written
    // file must be the same run.
    let runtime = if base.topology.deterministic {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    }
    .map_err(CampaignError::Runtime)?;
    let execute = |scenario: &Scenario| -> Result<CaseVerdict, CampaignError> {
        let options = RunOptions {
            scenario_path: format!("<fault case seed {}>", scenario.seed),
            progress: false,
        };
        let outcome = runtime
            .block_on(crate::run::run(scenario, &options))
            .map_err(|error| CampaignError::Run {
                seed: scenario.seed,
                error: Box::new(error),
            })?;
        let failed = outcome
            .report
            .verdicts
            .iter()
            .filter(|v| !v.holds)
            .map(|v| v.invariant.to_string())
            .collect();
        Ok(CaseVerdict {
            failed,
            faults_injected: outcome.history.faults.len(),
        })
    };
    search_with(base, config, progress, &execute)
}

/// The campaign over any executor of cases (the real runner, or a model in unit tests).
pub(crate) fn search_with(
    base: &Scenario,
    config: &CampaignConfig,
    progress: &mut dyn FnMut(&Progress),
    execute: &dyn Fn(&Scenario) -> Result<CaseVerdict, CampaignError>,
) -> Result<CampaignReport, CampaignError> {
    let space = FaultSpace::of(base)?;
    let strategy = case_strategy(config.mix);
    let proptest_config = Config {
        cases: config.cases,
        max_shrink_iters: config.max_shrink_runs,
        max_shrink_time: 0,
        failure_persistence: None,
        fork: false,
        timeout: 0,
        verbose: 0,
        rng_seed: RngSeed::Fixed(config.seed),
        ..Config::default()
    };
    let mut runner = TestRunner::new(proptest_config);

    // proptest calls the property through `Fn`: the campaign's state lives in cells.
    let progress = RefCell::new(progress);
    let error: RefCell<Option<CampaignError>> = RefCell::new(None);
    let started = Instant::now();
    let cases = Cell::new(0u32);
    let cases_without_faults = Cell::new(0u32);
    let search_time = Cell::new(None::<Duration>);
    let shrink_runs = Cell::new(0u32);
    let first_faults = Cell::new(0usize);
    let last_failed: RefCell<Vec<String>> = RefCell::new(Vec::new());

    let result = runner.run(&strategy, |draw: Draw| {
        if error.borrow().is_some() {
            // An infrastructure error ends the campaign; the runner is told every case holds so it stops
            // shrinking quickly and the error is returned below.
            return Ok(());
        }
        let scenario = match space.scenario(&draw) {
            Ok(s) => s,
            Err(e) => {
                *error.borrow_mut() = Some(e);
                return Ok(());
            }
        };
        let shrinking = search_time.get().is_some();
        let verdict = match execute(&scenario) {
            Ok(v) => v,
            // While shrinking, a candidate that cannot be run is simply not a smaller failure.
            Err(_) if shrinking => {
                shrink_runs.set(shrink_runs.get() + 1);
                return Ok(());
            }
            Err(e) => {
                *error.borrow_mut() = Some(e);
                return Ok(());
            }
        };
        if !scenario.faults.is_empty() && verdict.faults_injected == 0 {
            if !shrinking {
                *error.borrow_mut() = Some(CampaignError::NemesisNotWired {
                    seed: scenario.seed,
                    scheduled: scenario.faults.len(),
                });
            }
            return Ok(());
        }
        if shrinking {
            shrink_runs.set(shrink_runs.get() + 1);
            (progress.borrow_mut())(&Progress::Shrink {
                attempt: shrink_runs.get(),
                faults: scenario.faults.len(),
                still_fails: !verdict.held(),
            });
        } else {
            cases.set(cases.get() + 1);
            if scenario.faults.is_empty() {
                cases_without_faults.set(cases_without_faults.get() + 1);
            }
            (progress.borrow_mut())(&Progress::Case {
                number: cases.get(),
                seed: scenario.seed,
                faults: scenario.faults.len(),
                held: verdict.held(),
                elapsed: started.elapsed(),
            });
        }
        if verdict.held() {
            return Ok(());
        }
        if !shrinking {
            search_time.set(Some(started.elapsed()));
            first_faults.set(scenario.faults.len());
        }
        *last_failed.borrow_mut() = verdict.failed.clone();
        Err(TestCaseError::fail(format!(
            "seed {}: {} failed",
            scenario.seed,
            verdict.failed.join(", ")
        )))
    });
    if let Some(e) = error.into_inner() {
        return Err(e);
    }
    let search_time = search_time.get().unwrap_or_else(|| started.elapsed());
    let mut report = CampaignReport {
        cases: cases.get(),
        cases_without_faults: cases_without_faults.get(),
        search_time,
        failure: None,
    };
    let minimal = match result {
        Ok(()) => return Ok(report),
        Err(TestError::Abort(reason)) => return Err(CampaignError::Aborted(reason.to_string())),
        Err(TestError::Fail(_, draw)) => draw,
    };
    // The runner returns the last draw that failed; its verdict was recorded when it ran.
    let scenario = space.scenario(&minimal)?;
    let failed = last_failed.into_inner();
    let path = write_failure(&config.out_dir, &scenario, &failed, config.seed)?;
    let reloaded = Scenario::load(&path).map_err(|errors| CampaignError::Reload {
        path: path.clone(),
        errors,
    })?;
    let rerun_failed = execute(&reloaded)?.failed;
    report.failure = Some(FoundFailure {
        scenario: reloaded,
        path,
        failed,
        original_faults: first_faults.get(),
        shrink_runs: shrink_runs.get(),
        rerun_failed,
    });
    Ok(report)
}

/// Writes the shrunk scenario as `<out_dir>/<name>-seed<N>.toml` with a header saying how to reproduce it.
fn write_failure(
    out_dir: &Path,
    scenario: &Scenario,
    failed: &[String],
    campaign_seed: u64,
) -> Result<PathBuf, CampaignError> {
    let path = out_dir.join(format!("{}-seed{}.toml", scenario.name, scenario.seed));
    let write = |source| CampaignError::Write {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(out_dir).map_err(write)?;
    let text = format!(
        "# Shrunk by a fault campaign (campaign seed {campaign_seed}): {} broke with {} fault(s).\n\
         # Reproduce: etl-harness run {} --seed {}\n{}",
        failed.join(", "),
        scenario.faults.len(),
        path.display(),
        scenario.seed,
        scenario.to_toml()
    );
    std::fs::write(&path, text).map_err(write)?;
    Ok(path)
}

/// One drawn case: the scenario seed and the episodes, before layout.
#[derive(Debug, Clone)]
pub(crate) struct Draw {
    seed: u64,
    episodes: Vec<Episode>,
}

/// One episode: what happens, when it starts and how long it lasts, as per mille of the run.
#[derive(Debug, Clone)]
struct Episode {
    act: Act,
    start: u16,
    length: u16,
}

/// What an episode does. Alternatives are drawn by `prop_oneof!`, which shrinks toward the first ones, so the
/// strategies list them simplest first.
#[derive(Debug, Clone)]
enum Act {
    /// Consumer stops reading for the episode (`stall` with `duration`).
    ConsumerStall { consumer: u32 },
    /// Consumer killed, restarted at the episode's end.
    ConsumerRestart { consumer: u32 },
    /// Capture paused, resumed at the end.
    ConnectorPause,
    /// Capture stopped or killed, restarted at the end.
    ConnectorRestart { how: Down },
    /// Added latency on a broker for the episode.
    BrokerLatency { who: Who, latency_ms: u16 },
    /// Broker paused (SIGSTOP) for the episode.
    BrokerPause { who: Who },
    /// Broker isolated for the episode.
    BrokerIsolate { who: Who },
    /// Broker stopped, killed or crashed by id and restarted at the end.
    BrokerBounce { broker: u32, how: Down },
    /// A role's broker stopped, killed or crashed and left down: the last broker episode of the run.
    BrokerDown { role: Role, how: Down },
    /// The followers of a hot-topic partition paused for the whole episode; a third of the way in its leader is
    /// killed or crashed (restarted a sixth later, before the followers return), and a connector restart follows
    /// the episode (a capture without retries fails on the dead leader, as a Debezium task does). Whatever the
    /// leader acknowledged alone is what acks=1 can lose.
    UnreplicatedLeaderKill { partition: u32, how: Down },
}

#[derive(Debug, Clone, Copy)]
enum Down {
    Stop,
    Kill,
    Crash,
}

impl Down {
    fn action(self) -> FaultAction {
        match self {
            Down::Stop => FaultAction::Stop,
            Down::Kill => FaultAction::Kill,
            Down::Crash => FaultAction::Crash,
        }
    }
}

/// A broker by id or by role.
#[derive(Debug, Clone, Copy)]
enum Who {
    Id(u32),
    Role(Role),
}

/// A role resolved when the fault fires; `topic` indexes [`FaultSpace::topics`].
#[derive(Debug, Clone, Copy)]
enum Role {
    Leader { topic: u32, partition: u32 },
    Follower { topic: u32, partition: u32 },
    Controller,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    Brokers,
    Connector,
    Consumer(u32),
}

/// What a base scenario offers faults: brokers, consumers, topics with partitions, the run's length.
#[derive(Debug, Clone)]
struct FaultSpace {
    base: Scenario,
    brokers: u32,
    consumers: u32,
    /// Change topics with (partitions, replication factor), the hot `obs` topic first.
    topics: Vec<(String, u32, u32)>,
    run: Millis,
}

/// Least time between two episodes on one lane, and least length of an episode.
const GAP_MS: u64 = 20;

impl FaultSpace {
    fn of(base: &Scenario) -> Result<FaultSpace, CampaignError> {
        let run = base.workload.run_length();
        if run.0 < 100 {
            return Err(CampaignError::RunTooShort {
                name: base.name.clone(),
                run,
            });
        }
        let mut topics: Vec<(String, u32, u32)> = base
            .topic_plans()
            .into_iter()
            .map(|t| (t.name, t.settings.partitions, t.settings.replication_factor))
            .collect();
        let obs = base.topic_name("obs");
        topics.sort_by_key(|(name, _, _)| *name != obs);
        Ok(FaultSpace {
            base: base.clone(),
            brokers: base.topology.brokers.max(1),
            consumers: base.pipeline.consumers.max(1),
            topics,
            run,
        })
    }

    fn role_target(&self, role: Role) -> FaultTarget {
        let pick = |topic: u32, partition: u32| {
            let (name, partitions, rf) = &self.topics[topic as usize % self.topics.len()];
            (name.clone(), partition % (*partitions).max(1), *rf)
        };
        match role {
            Role::Leader { topic, partition } => {
                let (topic, partition, _) = pick(topic, partition);
                FaultTarget::LeaderOf { topic, partition }
            }
            Role::Follower { topic, partition } => {
                let (topic, partition, rf) = pick(topic, partition);
                if rf < 2 {
                    FaultTarget::LeaderOf { topic, partition }
                } else {
                    FaultTarget::FollowerOf { topic, partition }
                }
            }
            Role::Controller => FaultTarget::Controller,
        }
    }

    fn broker(&self, id: u32) -> FaultTarget {
        FaultTarget::Broker(id % self.brokers + 1)
    }

    fn who(&self, who: Who) -> FaultTarget {
        match who {
            Who::Id(id) => self.broker(id),
            Who::Role(role) => self.role_target(role),
        }
    }

    /// Lays the draw out as `[[faults]]` by the module's rules, then round-trips the scenario through its TOML
    /// so the result is exactly what a file would give.
    fn scenario(&self, draw: &Draw) -> Result<Scenario, CampaignError> {
        let mut scenario = self.base.clone();
        scenario.seed = draw.seed;
        scenario.expect = Some(Expect::default());
        scenario.faults = self.layout(&draw.episodes);
        let toml = scenario.to_toml();
        Scenario::parse(&toml, "<generated fault schedule>")
            .map_err(|errors| CampaignError::InvalidSchedule { toml, errors })
    }

    fn layout(&self, episodes: &[Episode]) -> Vec<Fault> {
        let run = self.run.0;
        let at_permille = |p: u16| run * u64::from(p.min(1000)) / 1000;
        let mut order: Vec<&Episode> = episodes.iter().collect();
        order.sort_by_key(|e| e.start);
        let mut free: Vec<(Lane, Option<u64>)> = Vec::new();
        let mut faults = Vec::new();
        for e in order {
            let lane = match e.act {
                Act::ConsumerStall { consumer } | Act::ConsumerRestart { consumer } => {
                    Lane::Consumer(consumer % self.consumers + 1)
                }
                Act::ConnectorPause | Act::ConnectorRestart { .. } => Lane::Connector,
                _ => Lane::Brokers,
            };
            let slot = free.iter().position(|(l, _)| *l == lane);
            let lane_free = match slot {
                Some(i) => match free[i].1 {
                    Some(t) => t + GAP_MS,
                    // The lane ended with a broker left down.
                    None => continue,
                },
                None => 0,
            };
            let start = at_permille(e.start).max(lane_free);
            let length = GAP_MS + at_permille(e.length);
            let end = start + length;
            // Both the fault and its undo must fall inside the run.
            if end >= run {
                continue;
            }
            let fault = |at: u64, action: FaultAction, target: FaultTarget| Fault {
                at: Millis(at),
                action,
                target,
                duration: None,
                latency: None,
            };
            let mut lane_end = Some(end);
            if let Act::UnreplicatedLeaderKill { .. } = e.act {
                // Its connector restart comes after the episode: it must fall inside the run too.
                if end + GAP_MS >= run {
                    continue;
                }
            }
            match e.act {
                Act::ConsumerStall { consumer } => faults.push(Fault {
                    duration: Some(Millis(length)),
                    ..fault(
                        start,
                        FaultAction::Stall,
                        FaultTarget::Consumer(consumer % self.consumers + 1),
                    )
                }),
                Act::ConsumerRestart { consumer } => {
                    let target = FaultTarget::Consumer(consumer % self.consumers + 1);
                    faults.push(fault(start, FaultAction::Kill, target.clone()));
                    faults.push(fault(end, FaultAction::Restart, target));
                }
                Act::ConnectorPause => {
                    faults.push(fault(start, FaultAction::Pause, FaultTarget::Connector));
                    faults.push(fault(end, FaultAction::Resume, FaultTarget::Connector));
                }
                Act::ConnectorRestart { how } => {
                    // A machine crash of the capture means nothing: it holds no log of its own.
                    let action = match how {
                        Down::Stop => FaultAction::Stop,
                        Down::Kill | Down::Crash => FaultAction::Kill,
                    };
                    faults.push(fault(start, action, FaultTarget::Connector));
                    faults.push(fault(end, FaultAction::Restart, FaultTarget::Connector));
                }
                Act::BrokerLatency { who, latency_ms } => faults.push(Fault {
                    duration: Some(Millis(length)),
                    latency: Some(Millis(u64::from(latency_ms.clamp(1, 500)))),
                    ..fault(start, FaultAction::Latency, self.who(who))
                }),
                Act::BrokerPause { who } => faults.push(Fault {
                    duration: Some(Millis(length)),
                    ..fault(start, FaultAction::Pause, self.who(who))
                }),
                Act::BrokerIsolate { who } => faults.push(Fault {
                    duration: Some(Millis(length)),
                    ..fault(start, FaultAction::Isolate, self.who(who))
                }),
                Act::BrokerBounce { broker, how } => {
                    let target = self.broker(broker);
                    faults.push(fault(start, how.action(), target.clone()));
                    faults.push(fault(end, FaultAction::Restart, target));
                }
                Act::BrokerDown { role, how } => {
                    faults.push(fault(start, how.action(), self.role_target(role)));
                    lane_end = None;
                }
                Act::UnreplicatedLeaderKill { partition, how } => {
                    let (topic, partitions, _) = &self.topics[0];
                    let partition = partition % (*partitions).max(1);
                    faults.push(Fault {
                        duration: Some(Millis(length)),
                        ..fault(
                            start,
                            FaultAction::Pause,
                            FaultTarget::FollowersOf {
                                topic: topic.clone(),
                                partition,
                            },
                        )
                    });
                    faults.push(Fault {
                        duration: Some(Millis((length / 6).max(1))),
                        ..fault(
                            start + length / 3,
                            how.action(),
                            FaultTarget::LeaderOf {
                                topic: topic.clone(),
                                partition,
                            },
                        )
                    });
                    faults.push(fault(
                        end + GAP_MS,
                        FaultAction::Restart,
                        FaultTarget::Connector,
                    ));
                }
            }
            match slot {
                Some(i) => free[i].1 = lane_end,
                None => free.push((lane, lane_end)),
            }
        }
        faults.sort_by_key(|f| f.at);
        faults
    }
}

fn down() -> impl Strategy<Value = Down> {
    prop_oneof![Just(Down::Stop), Just(Down::Kill), Just(Down::Crash)]
}

fn role() -> impl Strategy<Value = Role> {
    prop_oneof![
        (0u32..4, 0u32..64).prop_map(|(topic, partition)| Role::Leader { topic, partition }),
        (0u32..4, 0u32..64).prop_map(|(topic, partition)| Role::Follower { topic, partition }),
        Just(Role::Controller),
    ]
}

fn who() -> impl Strategy<Value = Who> {
    prop_oneof![(0u32..64).prop_map(Who::Id), role().prop_map(Who::Role)]
}

fn act(mix: FaultMix) -> BoxedStrategy<Act> {
    match mix {
        FaultMix::Any => prop_oneof![
            (0u32..64).prop_map(|consumer| Act::ConsumerStall { consumer }),
            (0u32..64).prop_map(|consumer| Act::ConsumerRestart { consumer }),
            Just(Act::ConnectorPause),
            down().prop_map(|how| Act::ConnectorRestart { how }),
            (who(), 1u16..300).prop_map(|(who, latency_ms)| Act::BrokerLatency { who, latency_ms }),
            who().prop_map(|who| Act::BrokerPause { who }),
            who().prop_map(|who| Act::BrokerIsolate { who }),
            (0u32..64, down()).prop_map(|(broker, how)| Act::BrokerBounce { broker, how }),
            (role(), down()).prop_map(|(role, how)| Act::BrokerDown { role, how }),
        ]
        .boxed(),
        FaultMix::LeaderKills => {
            let kill = prop_oneof![Just(Down::Kill), Just(Down::Crash)];
            prop_oneof![
                (0u32..64, kill.clone())
                    .prop_map(|(partition, how)| Act::UnreplicatedLeaderKill { partition, how }),
                (0u32..64, kill.clone())
                    .prop_map(|(broker, how)| Act::BrokerBounce { broker, how }),
                (0u32..64, kill).prop_map(|(partition, how)| Act::BrokerDown {
                    role: Role::Leader {
                        topic: 0,
                        partition
                    },
                    how
                }),
            ]
            .boxed()
        }
    }
}

fn case_strategy(mix: FaultMix) -> BoxedStrategy<Draw> {
    let episode = (act(mix), 0u16..900, 0u16..300).prop_map(|(act, start, length)| Episode {
        act,
        start,
        length,
    });
    // Case seeds do not shrink: a different seed is a different workload, not a simpler one.
    (
        (1u64..1_000_000).no_shrink(),
        vec(episode, 1..=MAX_EPISODES),
    )
        .prop_map(|(seed, episodes)| Draw { seed, episodes })
        .boxed()
}

/// Draws `n` laid-out schedules for `base` from `seed` without running them (to inspect or test the generator).
pub fn sample_schedules(
    base: &Scenario,
    mix: FaultMix,
    seed: u64,
    n: usize,
) -> Result<Vec<Scenario>, CampaignError> {
    let space = FaultSpace::of(base)?;
    let strategy = case_strategy(mix);
    let mut runner = TestRunner::new(Config {
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    });
    (0..n)
        .map(|_| {
            let draw = strategy
                .new_tree(&mut runner)
                .map_err(|reason| CampaignError::Aborted(reason.to_string()))?
                .current();
            space.scenario(&draw)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Scenario {
        base_scenario(SAFE_BASE, "SAFE_BASE").expect("the safe base parses")
    }

    /// A model of the pipeline: the property breaks exactly when a broker is killed (by id or by role).
    fn breaks_on_kill(scenario: &Scenario) -> Result<CaseVerdict, CampaignError> {
        let killed = scenario
            .faults
            .iter()
            .any(|f| f.action == FaultAction::Kill && f.target.is_broker());
        Ok(CaseVerdict {
            failed: if killed { vec!["lost".into()] } else { vec![] },
            faults_injected: scenario.faults.len(),
        })
    }

    #[test]
    fn a_failure_shrinks_to_one_early_kill_and_is_written_as_a_scenario() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = CampaignConfig::new(200, 11, dir.path());
        config.max_shrink_runs = 500;
        let report = search_with(&base(), &config, &mut |_| {}, &breaks_on_kill).unwrap();
        let failure = report.failure.expect("a kill is drawn within 200 cases");
        let faults = &failure.scenario.faults;
        // One episode is left: a kill and, when it was by id, its restart; shrunk to the start of the run.
        assert!((1..=2).contains(&faults.len()), "not minimal: {faults:#?}");
        assert_eq!(faults[0].action, FaultAction::Kill, "{faults:#?}");
        assert_eq!(
            faults[0].at,
            Millis(0),
            "not shrunk to the earliest time: {faults:#?}"
        );
        assert!(failure.original_faults >= faults.len());
        assert_eq!(failure.failed, vec!["lost".to_string()]);
        assert!(failure.reproduced(), "{failure:#?}");
        // The file on disk is the scenario, with its seed, and says how to reproduce it.
        let text = std::fs::read_to_string(&failure.path).unwrap();
        assert!(text.contains(&failure.reproduce()), "{text}");
        let again = Scenario::load(&failure.path).unwrap();
        assert_eq!(again.faults, *faults);
        assert_eq!(again.seed, failure.scenario.seed);
        assert_eq!(again.expectations(), Expect::default());
    }

    #[test]
    fn a_campaign_where_every_case_holds_runs_every_case() {
        let dir = tempfile::tempdir().unwrap();
        let config = CampaignConfig::new(25, 3, dir.path());
        let mut seen = 0;
        let holds = |s: &Scenario| -> Result<CaseVerdict, CampaignError> {
            Ok(CaseVerdict {
                failed: vec![],
                faults_injected: s.faults.len(),
            })
        };
        let report = search_with(
            &base(),
            &config,
            &mut |p| {
                if let Progress::Case { held, .. } = p {
                    assert!(held);
                    seen += 1;
                }
            },
            &holds,
        )
        .unwrap();
        assert_eq!(report.cases, 25);
        assert_eq!(seen, 25);
        assert!(report.failure.is_none());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn faults_the_run_did_not_inject_stop_the_campaign() {
        let dir = tempfile::tempdir().unwrap();
        let config = CampaignConfig::new(5, 3, dir.path());
        let not_injected = |_: &Scenario| -> Result<CaseVerdict, CampaignError> {
            Ok(CaseVerdict {
                failed: vec![],
                faults_injected: 0,
            })
        };
        let error = search_with(&base(), &config, &mut |_| {}, &not_injected).unwrap_err();
        assert!(
            error.to_string().starts_with("nemesis not wired"),
            "{error}"
        );
    }

    #[test]
    fn the_same_campaign_seed_draws_the_same_schedules() {
        let a = sample_schedules(&base(), FaultMix::Any, 9, 20).unwrap();
        let b = sample_schedules(&base(), FaultMix::Any, 9, 20).unwrap();
        let c = sample_schedules(&base(), FaultMix::Any, 10, 20).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn a_base_too_short_for_faults_is_an_error() {
        let text = SAFE_BASE.replace("operations = 500", "operations = 50");
        let error = sample_schedules(&base_scenario(&text, "short").unwrap(), FaultMix::Any, 1, 1)
            .unwrap_err();
        assert!(error.to_string().contains("too short"), "{error}");
    }
}
