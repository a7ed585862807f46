//! How a case is drawn: a seed and episodes (what happens, when, for how long), the proptest strategies that draw
//! and shrink them, simplest alternatives first.

use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestRunner};

use super::layout::FaultSpace;
use super::{CampaignError, FaultMix};
use crate::scenario::{FaultAction, Scenario};

/// Episodes a drawn schedule holds at most (before layout drops those that do not fit).
pub const MAX_EPISODES: usize = 4;

/// One drawn case: the scenario seed and the episodes, before layout.
#[derive(Debug, Clone)]
pub(crate) struct Draw {
    pub(super) seed: u64,
    pub(super) episodes: Vec<Episode>,
}

/// One episode: what happens, when it starts and how long it lasts, as per mille of the run.
#[derive(Debug, Clone)]
pub(super) struct Episode {
    pub(super) act: Act,
    pub(super) start: u16,
    pub(super) length: u16,
}

/// What an episode does. Alternatives are drawn by `prop_oneof!`, which shrinks toward the first ones, so the
/// strategies list them simplest first.
#[derive(Debug, Clone)]
pub(super) enum Act {
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
pub(super) enum Down {
    Stop,
    Kill,
    Crash,
}

impl Down {
    pub(super) fn action(self) -> FaultAction {
        match self {
            Down::Stop => FaultAction::Stop,
            Down::Kill => FaultAction::Kill,
            Down::Crash => FaultAction::Crash,
        }
    }
}

/// A broker by id or by role.
#[derive(Debug, Clone, Copy)]
pub(super) enum Who {
    Id(u32),
    Role(Role),
}

/// A role resolved when the fault fires; `topic` indexes [`FaultSpace::topics`].
#[derive(Debug, Clone, Copy)]
pub(super) enum Role {
    Leader { topic: u32, partition: u32 },
    Follower { topic: u32, partition: u32 },
    Controller,
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

pub(super) fn case_strategy(mix: FaultMix) -> BoxedStrategy<Draw> {
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
    let space = FaultSpace::of(base, &base.backends)?;
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
    use super::super::{base_scenario, SAFE_BASE};
    use super::*;

    fn base() -> Scenario {
        base_scenario(SAFE_BASE, "SAFE_BASE").expect("the safe base parses")
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
    fn schedules_keep_to_what_every_listed_backend_performs() {
        use super::super::DIFFERENTIAL_BASE;
        use crate::scenario::FaultAction;
        let safe = sample_schedules(&base(), FaultMix::Any, 3, 60).unwrap();
        let crash = |s: &Scenario| s.faults.iter().any(|f| f.action == FaultAction::Crash);
        assert!(
            safe.iter().any(crash),
            "the embedded-only base draws crashes"
        );
        let both = base_scenario(DIFFERENTIAL_BASE, "DIFFERENTIAL_BASE").unwrap();
        assert_eq!(both.backends.len(), 2);
        let schedules = sample_schedules(&both, FaultMix::Any, 3, 60).unwrap();
        // The local backend cannot crash a machine: a drawn crash became a kill, and each schedule parsed for
        // a scenario listing local (which refuses `crash`).
        assert!(!schedules.iter().any(crash));
        assert!(schedules
            .iter()
            .any(|s| s.faults.iter().any(|f| f.action == FaultAction::Kill)));
    }

    #[test]
    fn a_base_too_short_for_faults_is_an_error() {
        let text = SAFE_BASE.replace("operations = 500", "operations = 50");
        let error = sample_schedules(&base_scenario(&text, "short").unwrap(), FaultMix::Any, 1, 1)
            .unwrap_err();
        assert!(error.to_string().contains("too short"), "{error}");
    }
}
