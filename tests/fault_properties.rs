//! Property tests over fault schedules (issue 8, item 4).
//!
//! - Every drawn schedule is a valid scenario and keeps to the layout rules that the safe settings promise to
//!   survive (fast: nothing runs).
//! - With safe settings (acks=all, RF 3, min ISR 2, clean election, idempotence) every schedule keeps the
//!   property: lost 0, reordered 0, final state equal, liveness.
//! - With broken settings (acks=1, min ISR 1, idempotence off, retries 0, unclean election; deterministic mode)
//!   leader kills (the followers paused first) break it; the failure shrinks and the written scenario fails the same way when run again.
//!
//! The last two run whole scenarios (about a second each, longer when a leader is killed for good), so their
//! case count is `FAULT_CASES`, or else `PROPTEST_CASES / 16` (CI's 64 gives 4), or else 4. `FAULT_SEED` picks
//! the campaign (default 1). Longer campaigns: `etl-harness fuzz-faults --cases N`. Both fail with "nemesis not
//! wired" while the runner parses faults without executing them: a property over faults that never happened
//! would hold vacuously.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

use openmrs_etl_harness::fuzz_faults::{
    self, base_scenario, sample_schedules, CampaignConfig, FaultMix, SAFE_BASE,
};
use openmrs_etl_harness::scenario::{Acks, FaultAction, FaultTarget, Scenario};

/// One campaign at a time: each case is a whole run with real-time timeouts, and on two cores the two campaigns
/// would mostly measure each other. (A safe case that once missed its quiesce bound in CI, seed 603549, was not
/// starvation but a client bug the load made likelier: requests written on a producer connection that was then
/// dropped waited out their 60 s timeout; see `client::wire`.)
static CAMPAIGN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_campaign_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    CAMPAIGN
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn fault_cases() -> u32 {
    let env = |name| std::env::var(name).ok().and_then(|v| v.parse::<u32>().ok());
    env("FAULT_CASES")
        .or_else(|| env("PROPTEST_CASES").map(|n| (n / 16).max(1)))
        .unwrap_or(4)
}

fn campaign_seed() -> u64 {
    std::env::var("FAULT_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// `target/fault-failures`: where a shrunk failure is left for a person to rerun.
fn out_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .map(|target| target.join("fault-failures"))
        .unwrap_or_else(|| PathBuf::from("target/fault-failures"))
}

fn safe_base() -> Scenario {
    base_scenario(SAFE_BASE, "SAFE_BASE").expect("the safe base parses")
}

/// `fixtures/campaigns/broken-settings.toml`: the safe base with every setting that protects acknowledged
/// writes turned off, in deterministic mode (whether a leader kill loses anything must not depend on timing, or
/// a failing case could pass when its shrunk file is run again).
fn broken_base() -> Scenario {
    let path = "fixtures/campaigns/broken-settings.toml";
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let base = base_scenario(&text, path).unwrap_or_else(|e| panic!("{e}"));
    // The same base as the safe one but for the protections.
    let safe = safe_base();
    assert_eq!(
        (
            base.workload.operations,
            base.topology.brokers,
            base.pipeline.consumers
        ),
        (
            safe.workload.operations,
            safe.topology.brokers,
            safe.pipeline.consumers
        )
    );
    assert_eq!(base.producer.acks, Acks::Leader);
    assert_eq!(base.producer.retries, 0);
    assert!(!base.producer.idempotence && base.topology.deterministic);
    let obs = base.topic_settings("obs");
    assert!(obs.min_insync_replicas == 1 && obs.unclean_leader_election);
    base
}

/// What one broker-lane episode occupies: `[from, to)`, `to = None` for a broker left down.
fn broker_intervals(s: &Scenario) -> Vec<(u64, Option<u64>, String)> {
    let mut out = Vec::new();
    for (i, f) in s.faults.iter().enumerate() {
        if !f.target.is_broker() || f.action == FaultAction::Restart {
            continue;
        }
        let from = f.at.0;
        let to = match (f.duration, &f.target) {
            (Some(d), _) => Some(from + d.0),
            (None, FaultTarget::Broker(_)) => {
                let restart = s.faults[i + 1..]
                    .iter()
                    .find(|r| r.action == FaultAction::Restart && r.target == f.target);
                Some(
                    restart
                        .unwrap_or_else(|| {
                            panic!("{} is never restarted: {:#?}", f.target, s.faults)
                        })
                        .at
                        .0,
                )
            }
            (None, _) => None,
        };
        out.push((from, to, format!("{} {}", f.action.name(), f.target)));
    }
    out
}

/// Every undo (restart, resume) follows its fault on the same target.
fn assert_undone(s: &Scenario, down: &[FaultAction], undo: FaultAction, target: &FaultTarget) {
    let mut away = false;
    for f in s.faults.iter().filter(|f| &f.target == target) {
        if down.contains(&f.action) {
            assert!(!away, "{target} taken down twice: {:#?}", s.faults);
            away = true;
        } else if f.action == undo {
            assert!(
                away,
                "{target}: {} without a fault before it: {:#?}",
                undo.name(),
                s.faults
            );
            away = false;
        }
    }
    assert!(!away, "{target} is left down at the end: {:#?}", s.faults);
}

#[test]
fn drawn_schedules_are_valid_scenarios_within_the_safe_rules() {
    let base = safe_base();
    assert_eq!(base.producer.acks, Acks::All);
    assert!(base.producer.idempotence);
    let obs = base.topic_settings("obs");
    assert_eq!((obs.replication_factor, obs.min_insync_replicas), (3, 2));
    assert!(!obs.unclean_leader_election);

    let schedules = sample_schedules(&base, FaultMix::Any, 2026, 400).unwrap();
    let mut actions = BTreeSet::new();
    let mut targets = BTreeSet::new();
    let run = base.workload.run_length().0;
    for s in &schedules {
        // Valid: what the file gives back is what was drawn.
        let again = Scenario::parse(&s.to_toml(), "again").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(&again, s);
        assert_eq!(s.expectations(), Default::default());
        assert!(s.faults.windows(2).all(|w| w[0].at <= w[1].at));
        // At most one broker away at a time; only a role may stay down, and only as the last broker episode.
        let intervals = broker_intervals(s);
        for pair in intervals.windows(2) {
            let (_, to, what) = &pair[0];
            let to = to.unwrap_or_else(|| {
                panic!(
                    "{what} stays down yet a broker fault follows: {:#?}",
                    s.faults
                )
            });
            assert!(
                to <= pair[1].0,
                "{what} overlaps {}: {:#?}",
                pair[1].2,
                s.faults
            );
        }
        for (_, to, _) in &intervals {
            assert!(to.is_none_or(|t| t < run), "{:#?}", s.faults);
        }
        assert_undone(
            s,
            &[FaultAction::Stop, FaultAction::Kill],
            FaultAction::Restart,
            &FaultTarget::Connector,
        );
        assert_undone(
            s,
            &[FaultAction::Pause],
            FaultAction::Resume,
            &FaultTarget::Connector,
        );
        for n in 1..=base.pipeline.consumers {
            assert_undone(
                s,
                &[FaultAction::Kill],
                FaultAction::Restart,
                &FaultTarget::Consumer(n),
            );
        }
        for f in &s.faults {
            actions.insert(f.action.name());
            targets.insert(match &f.target {
                FaultTarget::Broker(_) => "broker",
                FaultTarget::LeaderOf { .. } => "leader",
                FaultTarget::FollowerOf { .. } => "follower",
                FaultTarget::FollowersOf { .. } => "followers",
                FaultTarget::Controller => "controller",
                FaultTarget::Coordinator => "coordinator",
                FaultTarget::Connector => "connector",
                FaultTarget::Consumer(_) => "consumer",
            });
        }
    }
    // The generator reaches every action and every kind of target.
    let all_actions: BTreeSet<&str> = [
        "stop", "kill", "crash", "restart", "isolate", "pause", "resume", "latency", "stall",
    ]
    .into();
    assert_eq!(actions, all_actions);
    assert_eq!(targets.len(), 6, "{targets:?}");

    // The leader-kill mix only takes leaders away (by id, restarted, or by role), pausing a partition's
    // followers first in its own episode, which a connector restart follows.
    let mut paused_then_killed = 0;
    for s in sample_schedules(&broken_base(), FaultMix::LeaderKills, 7, 100).unwrap() {
        for (i, f) in s.faults.iter().enumerate() {
            let ok = match (&f.action, &f.target) {
                (FaultAction::Kill | FaultAction::Crash, FaultTarget::Broker(_))
                | (FaultAction::Kill | FaultAction::Crash, FaultTarget::LeaderOf { .. })
                | (FaultAction::Restart, FaultTarget::Broker(_)) => true,
                (FaultAction::Pause, FaultTarget::FollowersOf { topic, partition }) => {
                    // The leader of the same partition dies while they are paused.
                    let until = f.at.0 + f.duration.expect("a paused role resumes").0;
                    let kill = s.faults[i + 1..].iter().find(|k| {
                        k.target
                            == FaultTarget::LeaderOf {
                                topic: topic.clone(),
                                partition: *partition,
                            }
                    });
                    let kill = kill.unwrap_or_else(|| panic!("no leader kill: {:#?}", s.faults));
                    assert!(kill.at.0 < until && kill.at.0 + kill.duration.unwrap().0 <= until);
                    assert!(s.faults.iter().any(|r| r.action == FaultAction::Restart
                        && r.target == FaultTarget::Connector
                        && r.at.0 > until));
                    paused_then_killed += 1;
                    true
                }
                (FaultAction::Restart, FaultTarget::Connector) => true,
                _ => false,
            };
            assert!(ok, "{f:?}");
        }
    }
    assert!(paused_then_killed > 0);
}

#[test]
fn safe_settings_keep_the_property_under_every_fault_schedule() {
    let _alone = one_campaign_at_a_time();
    let config = CampaignConfig::new(fault_cases(), campaign_seed(), out_dir());
    let report = fuzz_faults::search(&safe_base(), &config, &mut |p| eprintln!("{p:?}"))
        .unwrap_or_else(|e| panic!("campaign seed {}: {e}", config.seed));
    eprintln!(
        "{} cases, {:.2} cases/s",
        report.cases,
        report.cases_per_second()
    );
    if let Some(f) = report.failure {
        panic!(
            "safe settings broke the property ({}) with {} fault(s) after shrinking (from {}); \
             the scenario is {}\nreproduce with: {}",
            f.failed.join(", "),
            f.scenario.faults.len(),
            f.original_faults,
            f.path.display(),
            f.reproduce()
        );
    }
    assert_eq!(report.cases, config.cases);
}

/// The broken base runs in deterministic mode (virtual clock, one in-flight request, faults at quiet points), so
/// whether a leader kill loses acknowledged writes follows from the seed and the schedule alone: the shrunk case
/// fails again when its file is run. The leader-kill mix pauses a partition's followers before killing its leader,
/// which is what makes acks=1 lose data rather than merely risk it.
#[test]
fn broken_settings_fail_shrink_and_the_written_scenario_fails_the_same_way() {
    let _alone = one_campaign_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let mut config = CampaignConfig::new(fault_cases().max(8), campaign_seed(), dir.path());
    config.mix = FaultMix::LeaderKills;
    config.max_shrink_runs = 16;
    let report = fuzz_faults::search(&broken_base(), &config, &mut |p| eprintln!("{p:?}"))
        .unwrap_or_else(|e| panic!("campaign seed {}: {e}", config.seed));
    let f = report.failure.unwrap_or_else(|| {
        panic!(
            "acks=1, min ISR 1, retries 0, no idempotence, unclean election: {} cases of leader kills lost nothing",
            report.cases
        )
    });
    assert!(
        ["lost", "final_state", "liveness"].contains(&f.failed[0].as_str()),
        "{f:#?}"
    );
    assert!(!f.scenario.faults.is_empty() && f.scenario.faults.len() <= f.original_faults);
    assert!(
        f.reproduced(),
        "the shrunk scenario {} broke {:?} when found but {:?} when run again",
        f.path.display(),
        f.failed,
        f.rerun_failed
    );
    // The file keeps the broken settings and the seed, and the command it prints reproduces it: exit 1.
    let written = Scenario::load(&f.path).unwrap();
    assert_eq!(written.producer.acks, Acks::Leader);
    assert_eq!(written.producer.retries, 0);
    assert!(written.topic_settings("obs").unclean_leader_election);
    let out = Command::new(env!("CARGO_BIN_EXE_etl-harness"))
        .args(["run", &f.path.display().to_string(), "--seed"])
        .arg(f.scenario.seed.to_string())
        .arg("--no-progress")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}\nstdout:\n{stdout}\nstderr:\n{}",
        f.reproduce(),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn fuzz_faults_reports_a_base_it_cannot_read_with_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_etl-harness"))
        .args([
            "fuzz-faults",
            "--cases",
            "1",
            "--scenario",
            "no-such-base.toml",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no-such-base.toml:1:1"), "{stderr}");
}
