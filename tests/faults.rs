//! Every shipped scenario that lists `embedded` (the files in `scenarios/`, not a list here), end to end on the
//! embedded backend: each passes with a stable report for its own seed (an insta snapshot), and passes for two
//! other seeds — its expectations must hold for any seed. Beyond the
//! verdicts, each test checks from the history that the fault did what the scenario says it answers (the leader
//! really moved, the ISR really shrank and recovered, every loss really is a truncated or deleted record).

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use openmrs_etl_harness::history::{
    BrokerId, ChangeId, ClusterEventKind, ElectionKind, FaultPhase, FenceReason, History,
    ProduceOutcome,
};
use openmrs_etl_harness::model::flat::FlatEncounter;
use openmrs_etl_harness::run::{run, RunOptions, RunOutcome};
use openmrs_etl_harness::scenario::{Backend, Scenario};

mod common;
#[path = "faults/group.rs"]
mod group;

const OBS: &str = "dbserver1.openmrs.obs";

/// Seeds other than the files' own (none of the shipped scenarios uses them).
const OTHER_SEEDS: [u64; 2] = [1001, 2002];

async fn run_scenario(name: &str, seed: Option<u64>) -> RunOutcome {
    let path = format!("scenarios/{name}.toml");
    let mut scenario = Scenario::load(Path::new(&path)).unwrap_or_else(|e| panic!("{path}: {e}"));
    if let Some(seed) = seed {
        scenario.seed = seed;
    }
    let options = RunOptions {
        scenario_path: path.clone(),
        progress: false,
    };
    let outcome = run(&scenario, &options)
        .await
        .unwrap_or_else(|e| panic!("{path} (seed {}): {e}", scenario.seed));
    assert!(
        outcome.report.passed(),
        "{name} failed with seed {}; reproduce with: etl-harness run {path} --seed {}\n{}",
        scenario.seed,
        scenario.seed,
        outcome.report.terminal()
    );
    // Every scheduled step was applied (a role that resolved to nothing would be recorded with an error).
    for f in &outcome.history.faults {
        assert!(
            f.error.is_none(),
            "{name} seed {}: {} {} was not applied: {:?}\n{}",
            scenario.seed,
            f.action,
            f.target,
            f.error,
            outcome.report.terminal()
        );
    }
    outcome
}

/// The broker a scheduled fault entry resolved to.
fn resolved_broker(history: &History, fault: usize) -> BrokerId {
    let f = history
        .faults
        .iter()
        .find(|f| f.fault == Some(fault) && f.phase == FaultPhase::Scheduled)
        .unwrap_or_else(|| panic!("fault {fault} never fired: {:?}", history.faults));
    let id = f
        .resolved
        .strip_prefix("broker ")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("fault {fault} resolved to {:?}, not a broker", f.resolved));
    BrokerId(id)
}

/// The checks beyond the verdicts that a shipped scenario's own question asks for (did the fault do what the
/// file says it answers); `None` for a scenario whose verdicts say it all.
fn extra_checks(name: &str) -> Option<fn(&RunOutcome)> {
    Some(match name {
        "broker-kill" => broker_kill_checks,
        "acks1-leader-kill" => acks1_checks,
        "connector-restart" => connector_checks,
        "consumer-restart" => consumer_checks,
        "isolate-follower" => isolate_checks,
        "isolate-follower-realtime" => isolate_realtime_checks,
        "kraft-leader-isolated" => kraft_isolated_leader_checks,
        "controlled-shutdown" => shutdown_checks,
        "retention" | "retention-realtime" => retention_checks,
        "group-commit-before-write" => group::commit_before_write_checks,
        "group-slow-consumer" => group::slow_consumer_checks,
        "group-static-member" => group::static_member_checks,
        "group-coordinator-kill" => group::coordinator_kill_checks,
        _ => return None,
    })
}

/// The file stem of a shipped scenario's path: its snapshot's name and its [`extra_checks`] key.
fn stem(path: &str) -> &str {
    path.trim_start_matches("scenarios/")
        .trim_end_matches(".toml")
}

/// Every file in `scenarios/` that lists `embedded` passes there on its own seed, with its scenario's own checks
/// and a stable report (an insta snapshot per file). The list is the directory, not a list in this file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shipped_scenario_passes_on_embedded_with_a_stable_report() {
    for (path, _) in common::shipped_scenarios(Backend::Embedded) {
        let name = stem(&path);
        let outcome = run_scenario(name, None).await;
        if let Some(extra) = extra_checks(name) {
            extra(&outcome);
        }
        insta::assert_snapshot!(name, outcome.report.stable_text());
    }
}

/// Every file in `scenarios/` that lists `embedded` passes there for two seeds other than its own: a shipped
/// scenario's expectations must hold for any seed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shipped_scenario_passes_on_embedded_for_other_seeds() {
    for (path, _) in common::shipped_scenarios(Backend::Embedded) {
        let name = stem(&path);
        for seed in OTHER_SEEDS {
            let outcome = run_scenario(name, Some(seed)).await;
            if let Some(extra) = extra_checks(name) {
                extra(&outcome);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------- broker-kill

/// The killed leader lost its leadership, and the same broker was restarted — only once its session had
/// expired: as on real Kafka, a killed broker's registration outlives its process, so its restart (due 1 s after
/// the kill) waits, and the controller fenced it for the expired session, not for a new incarnation.
fn broker_kill_checks(o: &RunOutcome) {
    let h = &o.history;
    let killed = resolved_broker(h, 0);
    let moved = h.cluster_events.iter().any(|e| {
        matches!(&e.kind, ClusterEventKind::Election { topic, partition: 0, leader: Some(l), .. } if topic == OBS && *l != killed)
    });
    assert!(
        moved,
        "leadership of {OBS}-0 never moved away from broker {}",
        killed.0
    );
    let restart = h
        .faults
        .iter()
        .find(|f| {
            f.phase == FaultPhase::Undone
                && f.action == "restart"
                && f.resolved.split(" (").next() == Some(format!("broker {}", killed.0).as_str())
        })
        .unwrap_or_else(|| panic!("broker {} was not restarted: {:?}", killed.0, h.faults));
    let fenced_at = h
        .cluster_events
        .iter()
        .find(|e| matches!(&e.kind, ClusterEventKind::BrokerFenced { broker, .. } if *broker == killed))
        .unwrap_or_else(|| panic!("broker {} was never fenced", killed.0));
    assert!(
        matches!(
            fenced_at.kind,
            ClusterEventKind::BrokerFenced {
                reason: FenceReason::SessionExpired,
                ..
            }
        ),
        "broker {} was fenced for {:?}, not its expired session",
        killed.0,
        fenced_at.kind
    );
    assert!(
        restart.at_ms >= fenced_at.at_ms,
        "broker {} restarted at {} before its session expired at {}",
        killed.0,
        restart.at_ms,
        fenced_at.at_ms
    );
}

// ---------------------------------------------------------------------------------------- acks1-leader-kill

/// Recomputed from the history alone, without the checker: the changes no consumer delivered are exactly the
/// changes acknowledged at an offset a `Truncated` event covers — none lost for another reason, and no change
/// whose acknowledged record the log kept counted lost.
fn acks1_checks(o: &RunOutcome) {
    let h = &o.history;
    let resolver = h.resolver();
    let delivered: HashSet<ChangeId> = h
        .consumed
        .iter()
        .filter_map(|c| c.change.as_ref().and_then(|ch| resolver.resolve(ch)))
        .collect();
    let truncated: Vec<(&str, i32, i64, i64)> = h
        .cluster_events
        .iter()
        .filter_map(|e| match &e.kind {
            ClusterEventKind::Truncated {
                topic,
                partition,
                start_offset,
                end_offset,
                ..
            } => Some((topic.as_str(), *partition, *start_offset, *end_offset)),
            _ => None,
        })
        .collect();
    let in_truncated = |topic: &str, partition: i32, offset: i64| {
        truncated
            .iter()
            .any(|(t, p, s, e)| *t == topic && *p == partition && (*s..*e).contains(&offset))
    };
    let mut acked_truncated: HashSet<ChangeId> = HashSet::new();
    for p in &h.produced {
        if let (Some(change), ProduceOutcome::Acked { partition, offset }) = (p.change, &p.outcome)
        {
            if in_truncated(&p.topic, *partition, *offset) {
                acked_truncated.insert(change);
            }
        }
    }
    let lost: Vec<ChangeId> = h
        .changes()
        .map(|(id, _, _)| id)
        .filter(|id| !delivered.contains(id))
        .collect();
    assert!(
        !truncated.is_empty(),
        "the leader kill truncated nothing: the scenario tested nothing\n{}",
        o.report.terminal()
    );
    for id in &lost {
        assert!(
            acked_truncated.contains(id),
            "lost change {id:?} was not acknowledged at a truncated offset\n{}",
            o.report.terminal()
        );
    }
    assert_eq!(lost.len() as u64, o.analysis.lost.count);
    assert_eq!(o.analysis.lost.count, o.analysis.lost.truncated_acked);
    assert_eq!(
        o.analysis.lost.unexplained + o.analysis.lost.never_produced,
        0
    );
}

// ---------------------------------------------------------------------------------------- connector-restart

fn connector_checks(o: &RunOutcome) {
    let actions: Vec<(&str, FaultPhase)> = o
        .history
        .faults
        .iter()
        .map(|f| (f.action.as_str(), f.phase))
        .collect();
    assert_eq!(
        &actions[..2],
        &[
            ("kill", FaultPhase::Scheduled),
            ("restart", FaultPhase::Undone)
        ],
        "{:?}",
        o.history.faults
    );
}

// ----------------------------------------------------------------------------------------- consumer-restart

/// Consumer 1 read again after its restart.
fn consumer_checks(o: &RunOutcome) {
    let h = &o.history;
    let restarted_at = h
        .faults
        .iter()
        .find(|f| f.phase == FaultPhase::Undone && f.action == "restart")
        .map(|f| f.at_ms)
        .expect("consumer 1 was restarted");
    assert!(
        h.consumed
            .iter()
            .any(|c| c.consumer == 1 && c.at_ms >= restarted_at),
        "consumer 1 read nothing after its restart"
    );
}

// ----------------------------------------------------------------------------------------- isolate-follower

/// The isolated follower left the ISR of obs partition 0 and joined it again after the heal.
fn isolate_checks(o: &RunOutcome) {
    let h = &o.history;
    let isolated = resolved_broker(h, 0);
    let shrunk = h.cluster_events.iter().position(|e| {
        matches!(&e.kind, ClusterEventKind::IsrShrunk { topic, partition: 0, removed, .. } if topic == OBS && *removed == isolated)
    });
    let shrunk =
        shrunk.unwrap_or_else(|| panic!("broker {} never left the ISR of {OBS}-0", isolated.0));
    let expanded = h.cluster_events[shrunk..].iter().any(|e| {
        matches!(&e.kind, ClusterEventKind::IsrExpanded { topic, partition: 0, added, .. } if topic == OBS && *added == isolated)
    });
    assert!(
        expanded,
        "broker {} never rejoined the ISR of {OBS}-0",
        isolated.0
    );
}

// -------------------------------------------------------------------------------- isolate-follower-realtime

/// The same question on a real clock (the variant the local backend runs too): the follower resolved when the
/// fault fired is the one healed 10 s later.
fn isolate_realtime_checks(o: &RunOutcome) {
    let h = &o.history;
    let isolated = resolved_broker(h, 0);
    let healed = h.faults.iter().any(|f| {
        f.phase == FaultPhase::Undone
            && f.action == "heal"
            && f.resolved == format!("broker {}", isolated.0)
    });
    assert!(
        healed,
        "broker {} was not healed: {:?}",
        isolated.0, h.faults
    );
}

// ------------------------------------------------------------------------------------ kraft-leader-isolated

/// On KRaft the isolated leader of obs-0 was fenced (its heartbeats stopped reaching the controller) and the
/// partition got another leader by a clean election; healed, it registered again and rejoined the ISR.
fn kraft_isolated_leader_checks(o: &RunOutcome) {
    let events = &o.history.cluster_events;
    let isolated = resolved_broker(&o.history, 0);
    let fenced = events
        .iter()
        .position(|e| matches!(&e.kind, ClusterEventKind::BrokerFenced { broker, .. } if *broker == isolated))
        .unwrap_or_else(|| panic!("broker {} was never fenced: {events:?}", isolated.0));
    let replaced = events.iter().any(|e| {
        matches!(&e.kind, ClusterEventKind::Election { topic, partition: 0, leader: Some(l), kind: ElectionKind::Clean, .. } if topic == OBS && *l != isolated)
    });
    assert!(
        replaced,
        "no clean election moved {OBS}-0 off broker {}",
        isolated.0
    );
    let back = events[fenced..]
        .iter()
        .position(|e| matches!(&e.kind, ClusterEventKind::BrokerUnfenced { broker } if *broker == isolated))
        .unwrap_or_else(|| panic!("broker {} never registered again: {:#?}", isolated.0, &events[fenced..]));
    let rejoined = events[fenced + back..].iter().any(|e| {
        matches!(&e.kind, ClusterEventKind::IsrExpanded { topic, partition: 0, added, .. } if topic == OBS && *added == isolated)
    });
    assert!(
        rejoined,
        "broker {} never rejoined the ISR of {OBS}-0",
        isolated.0
    );
}

// -------------------------------------------------------------------------------------- controlled-shutdown

/// The stopped broker handed its leadership over by controlled shutdown, and rejoined the ISR after restarting.
fn shutdown_checks(o: &RunOutcome) {
    let h = &o.history;
    let stopped = resolved_broker(h, 0);
    let handed = h.cluster_events.iter().position(|e| {
        matches!(&e.kind, ClusterEventKind::Election { topic, partition: 0, leader: Some(l), kind: ElectionKind::ControlledShutdown, .. } if topic == OBS && *l != stopped)
    });
    let handed = handed.unwrap_or_else(|| {
        panic!(
            "no controlled-shutdown election moved {OBS}-0 off broker {}",
            stopped.0
        )
    });
    let rejoined = h.cluster_events[handed..].iter().any(|e| {
        matches!(&e.kind, ClusterEventKind::IsrExpanded { topic, partition: 0, added, .. } if topic == OBS && *added == stopped)
    });
    assert!(
        rejoined,
        "broker {} never rejoined the ISR of {OBS}-0",
        stopped.0
    );
}

// ------------------------------------------------------------------------------------------------ retention

/// The stalled consumer met deleted offsets, and every lost change was acknowledged at an offset a
/// `SegmentDeleted` event removed; the flat table differs.
fn retention_checks(o: &RunOutcome) {
    let h = &o.history;
    assert!(
        h.retention_gaps.iter().any(|g| g.consumer == 1),
        "the stalled consumer met no deleted offsets: {:?}",
        h.retention_gaps
    );
    let deleted: Vec<(&str, i32, i64, i64)> = h
        .cluster_events
        .iter()
        .filter_map(|e| match &e.kind {
            ClusterEventKind::SegmentDeleted {
                topic,
                partition,
                start_offset,
                end_offset,
                ..
            } => Some((topic.as_str(), *partition, *start_offset, *end_offset)),
            _ => None,
        })
        .collect();
    let resolver = h.resolver();
    let delivered: HashSet<ChangeId> = h
        .consumed
        .iter()
        .filter_map(|c| c.change.as_ref().and_then(|ch| resolver.resolve(ch)))
        .collect();
    let mut lost = 0u64;
    for (id, _, _) in h.changes() {
        if delivered.contains(&id) {
            continue;
        }
        lost += 1;
        let deleted_before_read = h.produced.iter().any(|p| {
            p.change == Some(id)
                && matches!(p.outcome, ProduceOutcome::Acked { partition, offset }
                    if deleted.iter().any(|(t, dp, s, e)| *t == &*p.topic && *dp == partition && (*s..*e).contains(&offset)))
        });
        assert!(
            deleted_before_read,
            "lost change {id:?} was not in a deleted segment"
        );
    }
    assert!(lost > 0);
    assert_eq!(lost, o.analysis.retention_loss.count);
    assert!(o.analysis.final_state.count > 0);
    assert_differences_touched_by_lost_changes(o, &delivered);
}

/// Every flat row where the sink and the batch recomputation differ holds a row a lost change touched: the
/// encounter itself, its patient (person, patient), its visit, one of its obs or orders. A row no lost change
/// touched that still differs would be a sink bug hiding behind the retention loss.
fn assert_differences_touched_by_lost_changes(o: &RunOutcome, delivered: &HashSet<ChangeId>) {
    let lost: Vec<(&str, i64)> = o
        .history
        .changes()
        .filter(|(id, _, _)| !delivered.contains(id))
        .map(|(_, _, ch)| (ch.table, ch.key))
        .collect();
    let touched = |row: &FlatEncounter| {
        lost.iter().any(|(table, key)| match *table {
            "encounter" => row.encounter_id == *key,
            "person" | "patient" => row.patient_id == *key,
            "visit" => row.visit_id == Some(*key),
            "obs" => row.obs.iter().any(|obs| obs.obs_id == *key),
            "orders" | "drug_order" | "test_order" => {
                row.orders.iter().any(|order| order.order_id == *key)
            }
            _ => false,
        })
    };
    let (sink, oracle) = (&o.finals.sink, &o.finals.oracle);
    let mut differing = 0;
    for key in sink.keys().chain(oracle.keys()).collect::<BTreeSet<_>>() {
        let (s, b) = (sink.get(key), oracle.get(key));
        if s == b {
            continue;
        }
        differing += 1;
        assert!(
            s.is_some_and(touched) || b.is_some_and(touched),
            "flat row (patient {}, encounter {}) differs but no lost change touched it\nsink:   {s:?}\noracle: {b:?}",
            key.0,
            key.1
        );
    }
    assert_eq!(differing, o.analysis.final_state.count);
}

// ---------------------------------------------------------------------------------- resolution and restore

/// A role that resolves to nothing is recorded with the reason and skipped; what the schedule leaves in place is
/// undone after the stream (and recorded), so the run still quiesces and loses nothing. One broker, virtual clock:
/// the broker is killed and never restarted by the schedule; once its session expires obs partition 0 has no
/// leader, so the second kill finds none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unresolvable_targets_are_recorded_and_leftovers_restored_after_the_stream() {
    let text = r#"name = "leaderless"
seed = 5

[topology]
brokers = 1
coordination = "kraft"
clock = "virtual"

[topics]
partitions = 2

[producer]
acks = "all"
linger = "2ms"

[workload]
patients = 20
operations = 300
rate = 10

[pipeline]
consumers = 2

[[faults]]
at = "2s"
action = "kill"
target = "broker 1"

[[faults]]
at = "20s"
action = "kill"
target = "leader of dbserver1.openmrs.obs partition 0"

[expect]
lost = 0
final_state = "equal"
"#;
    let scenario = Scenario::parse(text, "leaderless.toml").unwrap_or_else(|e| panic!("{e}"));
    let options = RunOptions {
        scenario_path: "leaderless.toml".into(),
        progress: false,
    };
    let outcome = run(&scenario, &options)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(outcome.report.passed(), "{}", outcome.report.terminal());
    let faults = &outcome.history.faults;
    let summary: Vec<(FaultPhase, Option<usize>, &str, &str, bool)> = faults
        .iter()
        .map(|f| {
            (
                f.phase,
                f.fault,
                f.action.as_str(),
                f.resolved.as_str(),
                f.error.is_some(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (FaultPhase::Scheduled, Some(0), "kill", "broker 1", false),
            (
                FaultPhase::Scheduled,
                Some(1),
                "kill",
                "dbserver1.openmrs.obs partition 0 has no leader",
                true
            ),
            (
                FaultPhase::AfterStream,
                Some(0),
                "restart",
                "broker 1",
                false
            ),
        ],
        "{}",
        outcome.report.terminal()
    );
    // Both are in the report's terminal rendering, with the reason the second did nothing.
    let terminal = outcome.report.terminal();
    assert!(
        terminal.contains("after stream  restart broker 1"),
        "{terminal}"
    );
    assert!(terminal.contains("has no leader"), "{terminal}");
}

/// Every action the embedded backend offers, on every kind of target, applies without error in one run (virtual
/// clock, safe settings), each undo comes from the schedule (nothing is left for after the stream), and nothing
/// is lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_applies_on_the_embedded_backend() {
    let text = r#"name = "every-action"
seed = 12

[topology]
brokers = 3
coordination = "kraft"
clock = "virtual"

[topics]
partitions = 2
replication_factor = 3
min_insync_replicas = 2

[producer]
acks = "all"
linger = "2ms"

[workload]
patients = 20
operations = 600
rate = 20

[pipeline]
consumers = 2

[[faults]]
at = "2s"
action = "crash"
target = "a follower of dbserver1.openmrs.obs partition 0"
duration = "3s"

[[faults]]
at = "6s"
action = "latency"
target = "broker 1"
latency = "20ms"
duration = "2s"

[[faults]]
at = "9s"
action = "pause"
target = "the connector"

[[faults]]
at = "10s"
action = "resume"
target = "the connector"

[[faults]]
at = "11s"
action = "stop"
target = "the controller"
duration = "2s"

[[faults]]
at = "14s"
action = "isolate"
target = "broker 2"
duration = "2s"

[[faults]]
at = "17s"
action = "pause"
target = "broker 3"

[[faults]]
at = "18s"
action = "resume"
target = "broker 3"

[[faults]]
at = "19s"
action = "pause"
target = "consumer 2"

[[faults]]
at = "20s"
action = "resume"
target = "consumer 2"

[[faults]]
at = "21s"
action = "stall"
target = "consumer 1"
duration = "2s"

[[faults]]
at = "24s"
action = "kill"
target = "the connector"

[[faults]]
at = "25s"
action = "restart"
target = "the connector"

[[faults]]
at = "26s"
action = "isolate"
target = "the leader of dbserver1.openmrs.obs partition 1"

[[faults]]
at = "27s"
action = "heal"
target = "broker 1"

[[faults]]
at = "27s"
action = "heal"
target = "broker 2"

[[faults]]
at = "27s"
action = "heal"
target = "broker 3"

[expect]
lost = 0
final_state = "equal"
"#;
    let scenario = Scenario::parse(text, "every-action.toml").unwrap_or_else(|e| panic!("{e}"));
    let options = RunOptions {
        scenario_path: "every-action.toml".into(),
        progress: false,
    };
    let outcome = run(&scenario, &options)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let terminal = outcome.report.terminal();
    assert!(outcome.report.passed(), "{terminal}");
    let faults = &outcome.history.faults;
    for f in faults {
        assert!(
            f.error.is_none(),
            "{} {}: {:?}\n{terminal}",
            f.action,
            f.target,
            f.error
        );
        assert!(
            matches!(f.phase, FaultPhase::Scheduled | FaultPhase::Undone),
            "left for after the stream: {} {}\n{terminal}",
            f.action,
            f.resolved
        );
    }
    for (i, _) in scenario.faults.iter().enumerate() {
        assert!(
            faults
                .iter()
                .any(|f| f.fault == Some(i) && f.phase == FaultPhase::Scheduled),
            "faults[{i}] never fired\n{terminal}"
        );
    }
    // Five faults carry a duration, and each was undone on the target it resolved to.
    let undone: Vec<(&str, &str)> = faults
        .iter()
        .filter(|f| f.phase == FaultPhase::Undone)
        .map(|f| (f.action.as_str(), f.resolved.as_str()))
        .collect();
    assert_eq!(undone.len(), 5, "{undone:?}");
    // The crashed broker's restart waited for its session to expire (its registration outlived the process), so
    // it is not necessarily the first undone.
    let crashed = resolved_broker(&outcome.history, 0);
    let restarted = format!("broker {}", crashed.0);
    assert!(
        undone.iter().any(|(action, resolved)| *action == "restart"
            && resolved.split(" (").next() == Some(restarted.as_str())),
        "{undone:?}"
    );
    let kinds: Vec<ClusterEventKind> = outcome
        .history
        .cluster_events
        .iter()
        .filter(|e| matches!(e.kind, ClusterEventKind::Fault { .. }))
        .map(|e| e.kind.clone())
        .collect();
    assert!(kinds.len() >= 10, "{kinds:?}");
}

/// A shipped scenario switched to deterministic mode (virtual clock, embedded only).
fn deterministic(name: &str, seed: u64) -> Scenario {
    let path = format!("scenarios/{name}.toml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    // Whatever backends the file lists, deterministic mode is embedded only.
    let text = common::with_backends(&text, &["embedded"]);
    let text = text.replace("clock = \"virtual\"\n", "").replacen(
        "[topology]\n",
        "[topology]\nclock = \"virtual\"\ndeterministic = true\n",
        1,
    );
    let mut scenario = Scenario::parse(&text, &path).unwrap_or_else(|e| panic!("{path}: {e}"));
    scenario.seed = seed;
    scenario
}

/// In deterministic mode two runs of the same seed give byte-identical stable reports, exact counts included
/// (the stable text shows observed counts and resolved targets only in this mode).
async fn deterministic_twice(name: &str, seed: u64) {
    let scenario = deterministic(name, seed);
    let options = RunOptions {
        scenario_path: format!("scenarios/{name}.toml"),
        progress: false,
    };
    let first = run(&scenario, &options).await.expect("first run");
    let second = run(&scenario, &options).await.expect("second run");
    assert!(
        first.report.stable_text().contains("mode: deterministic"),
        "{}",
        first.report.stable_text()
    );
    assert_eq!(
        first.report.stable_text(),
        second.report.stable_text(),
        "{name} seed {seed} in deterministic mode gave two different reports"
    );
    assert!(
        first.report.passed(),
        "{name} seed {seed} (deterministic): {}",
        first.report.terminal()
    );
}

#[tokio::test(flavor = "current_thread")]
async fn deterministic_mode_repeats_exact_counts_connector_restart() {
    deterministic_twice("connector-restart", 5).await;
}

#[tokio::test(flavor = "current_thread")]
async fn deterministic_mode_repeats_exact_counts_acks1_leader_kill() {
    deterministic_twice("acks1-leader-kill", 5).await;
}

#[tokio::test(flavor = "current_thread")]
async fn deterministic_mode_repeats_exact_counts_retention() {
    deterministic_twice("retention", 5).await;
}
