//! The nemesis's schedule, backend checks and bookkeeping, without a run.
use super::*;

/// What the scenario's backend can perform, as the run driver asks it.
fn can(s: &Scenario) -> fn(&Fault) -> bool {
    crate::topology::fault_support(s.topology.backend).unwrap_or(|_| false)
}

fn scenario(faults: &str) -> Scenario {
    let text = format!(
        "name = \"n\"\nbackends = [\"embedded\", \"local\"]\n[topology]\nbrokers = 3\n[topics]\nreplication_factor = 3\n\
         [workload]\noperations = 1000\nrate = 100\n{faults}"
    );
    Scenario::parse(&text, "n.toml").unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn schedule_is_ordered_by_time_then_by_entry() {
    let s = scenario(
        "[[faults]]\nat = \"3s\"\naction = \"kill\"\ntarget = \"broker 1\"\n\
         [[faults]]\nat = \"1s\"\naction = \"pause\"\ntarget = \"broker 2\"\n\
         [[faults]]\nat = \"1s\"\naction = \"stall\"\ntarget = \"consumer 1\"\nduration = \"1s\"\n",
    );
    let n = Nemesis::new(&s, can(&s), Recorder::new(1)).unwrap();
    let order: Vec<(u64, usize)> = n
        .steps
        .iter()
        .map(|s| match s.kind {
            StepKind::Fire(i) => (s.due_ms, i),
            StepKind::Undo { .. } => unreachable!("no undo before anything fired"),
        })
        .collect();
    assert_eq!(order, vec![(1000, 1), (1000, 2), (3000, 0)]);
    assert_eq!(n.next_due(), Some(1000));
}

#[test]
fn a_backend_that_cannot_inject_faults_is_refused_at_start() {
    let mut s = scenario("[[faults]]\nat = \"1s\"\naction = \"kill\"\ntarget = \"leader of dbserver1.openmrs.obs partition 0\"\n");
    assert!(Nemesis::new(&s, can(&s), Recorder::new(1)).is_ok());
    // The local backend kills and isolates processes, but has no machine crash.
    s.topology.backend = Backend::Local;
    assert!(Nemesis::new(&s, can(&s), Recorder::new(1)).is_ok());
    s.faults[0].action = FaultAction::Isolate;
    assert!(Nemesis::new(&s, can(&s), Recorder::new(1)).is_ok());
    s.faults[0].action = FaultAction::Crash;
    let err = Nemesis::new(&s, can(&s), Recorder::new(1))
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(
        text.contains("faults[0]") && text.contains("local") && text.contains("crash"),
        "{text}"
    );
    // The containers backend takes the local backend's faults: a kill, but no crash.
    s.topology.backend = Backend::Containers;
    assert!(Nemesis::new(&s, can(&s), Recorder::new(1)).is_err());
    s.faults[0].action = FaultAction::Kill;
    assert!(Nemesis::new(&s, can(&s), Recorder::new(1)).is_ok());
    // The external backend runs no scenario yet: every fault is refused.
    s.topology.backend = Backend::External;
    assert!(Nemesis::new(&s, can(&s), Recorder::new(1)).is_err());
    // Without faults there is nothing to refuse.
    s.faults.clear();
    assert!(Nemesis::new(&s, can(&s), Recorder::new(1)).is_ok());
}

#[test]
fn tracking_schedules_undos_and_explicit_restarts_settle_them() {
    let s = scenario(
        "[[faults]]\nat = \"1s\"\naction = \"kill\"\ntarget = \"broker 2\"\nduration = \"2s\"\n\
         [[faults]]\nat = \"2s\"\naction = \"pause\"\ntarget = \"consumer 1\"\n",
    );
    let mut n = Nemesis::new(&s, can(&s), Recorder::new(1)).unwrap();
    n.steps.clear();
    n.track(
        FaultAction::Kill,
        Resolved::Broker(BrokerId(2)),
        0,
        Some(3000),
    );
    n.track(FaultAction::Pause, Resolved::Consumer(1), 1, None);
    assert_eq!(
        n.outstanding,
        vec![
            (Undo::RestartBroker(BrokerId(2)), 0),
            (Undo::RestartConsumer(1), 1)
        ]
    );
    assert!(matches!(
        n.steps.as_slice(),
        [Step {
            due_ms: 3000,
            kind: StepKind::Undo {
                fault: 0,
                undo: Undo::RestartBroker(BrokerId(2))
            },
            ..
        }]
    ));
    // A resume of the consumer settles its pause; the broker stays outstanding.
    n.track(FaultAction::Resume, Resolved::Consumer(1), 1, None);
    assert_eq!(n.outstanding, vec![(Undo::RestartBroker(BrokerId(2)), 0)]);
    // A stall is settled by a restart too.
    n.track(FaultAction::Stall, Resolved::Consumer(2), 1, None);
    n.track(FaultAction::Restart, Resolved::Consumer(2), 1, None);
    assert_eq!(n.outstanding, vec![(Undo::RestartBroker(BrokerId(2)), 0)]);
}
