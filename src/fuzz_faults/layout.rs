//! How a draw becomes `[[faults]]`: what the base scenario offers faults (brokers, consumers, topics, the run's
//! length), and the layout rules that keep a schedule within what the safe settings promise to survive.

use super::draw::{Act, Down, Draw, Episode, Role, Who};
use super::CampaignError;
use crate::scenario::{Backend, Expect, Fault, FaultAction, FaultTarget, Millis, Scenario};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lane {
    Brokers,
    Connector,
    Consumer(u32),
}

/// What a base scenario offers faults: brokers, consumers, topics with partitions, the run's length.
#[derive(Debug, Clone)]
pub(super) struct FaultSpace {
    base: Scenario,
    brokers: u32,
    consumers: u32,
    /// Change topics with (partitions, replication factor), the hot `obs` topic first.
    topics: Vec<(String, u32, u32)>,
    run: Millis,
    /// What each backend of the campaign can perform: a schedule keeps to what all of them can.
    can: Vec<fn(&Fault) -> bool>,
}

/// Least time between two episodes on one lane, and least length of an episode.
const GAP_MS: u64 = 20;

impl FaultSpace {
    pub(super) fn of(base: &Scenario, backends: &[Backend]) -> Result<FaultSpace, CampaignError> {
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
            can: backends
                .iter()
                .map(|b| crate::topology::fault_support(*b).unwrap_or(|_| false))
                .collect(),
        })
    }

    /// The fault as every backend of the campaign can perform it: a machine crash becomes a kill (the same
    /// outage without the lost page cache) where one cannot crash; `None` when some backend cannot perform it
    /// at all.
    fn performable(&self, mut fault: Fault) -> Option<Fault> {
        let all = |f: &Fault| self.can.iter().all(|can| can(f));
        if fault.action == FaultAction::Crash && !all(&fault) {
            fault.action = FaultAction::Kill;
        }
        all(&fault).then_some(fault)
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
    pub(super) fn scenario(&self, draw: &Draw) -> Result<Scenario, CampaignError> {
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
                after: None,
            };
            let mut lane_end = Some(end);
            if let Act::UnreplicatedLeaderKill { .. } = e.act {
                // Its connector restart comes after the episode: it must fall inside the run too.
                if end + GAP_MS >= run {
                    continue;
                }
            }
            let mut episode = Vec::new();
            match e.act {
                Act::ConsumerStall { consumer } => episode.push(Fault {
                    duration: Some(Millis(length)),
                    ..fault(
                        start,
                        FaultAction::Stall,
                        FaultTarget::Consumer(consumer % self.consumers + 1),
                    )
                }),
                Act::ConsumerRestart { consumer } => {
                    let target = FaultTarget::Consumer(consumer % self.consumers + 1);
                    episode.push(fault(start, FaultAction::Kill, target.clone()));
                    episode.push(fault(end, FaultAction::Restart, target));
                }
                Act::ConnectorPause => {
                    episode.push(fault(start, FaultAction::Pause, FaultTarget::Connector));
                    episode.push(fault(end, FaultAction::Resume, FaultTarget::Connector));
                }
                Act::ConnectorRestart { how } => {
                    // A machine crash of the capture means nothing: it holds no log of its own.
                    let action = match how {
                        Down::Stop => FaultAction::Stop,
                        Down::Kill | Down::Crash => FaultAction::Kill,
                    };
                    episode.push(fault(start, action, FaultTarget::Connector));
                    episode.push(fault(end, FaultAction::Restart, FaultTarget::Connector));
                }
                Act::BrokerLatency { who, latency_ms } => episode.push(Fault {
                    duration: Some(Millis(length)),
                    latency: Some(Millis(u64::from(latency_ms.clamp(1, 500)))),
                    ..fault(start, FaultAction::Latency, self.who(who))
                }),
                Act::BrokerPause { who } => episode.push(Fault {
                    duration: Some(Millis(length)),
                    ..fault(start, FaultAction::Pause, self.who(who))
                }),
                Act::BrokerIsolate { who } => episode.push(Fault {
                    duration: Some(Millis(length)),
                    ..fault(start, FaultAction::Isolate, self.who(who))
                }),
                Act::BrokerBounce { broker, how } => {
                    let target = self.broker(broker);
                    episode.push(fault(start, how.action(), target.clone()));
                    episode.push(fault(end, FaultAction::Restart, target));
                }
                Act::BrokerDown { role, how } => {
                    episode.push(fault(start, how.action(), self.role_target(role)));
                    lane_end = None;
                }
                Act::UnreplicatedLeaderKill { partition, how } => {
                    let (topic, partitions, _) = &self.topics[0];
                    let partition = partition % (*partitions).max(1);
                    episode.push(Fault {
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
                    episode.push(Fault {
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
                    episode.push(fault(
                        end + GAP_MS,
                        FaultAction::Restart,
                        FaultTarget::Connector,
                    ));
                }
            }
            // An episode some backend of the campaign cannot perform is dropped whole (its undo alone would mean
            // nothing), and leaves its lane free.
            let Some(episode) = episode
                .into_iter()
                .map(|f| self.performable(f))
                .collect::<Option<Vec<Fault>>>()
            else {
                continue;
            };
            faults.extend(episode);
            match slot {
                Some(i) => free[i].1 = lane_end,
                None => free.push((lane, lane_end)),
            }
        }
        faults.sort_by_key(|f| f.at);
        faults
    }
}

#[cfg(test)]
mod tests {
    use super::super::draw::case_strategy;
    use super::super::{base_scenario, FaultMix, SAFE_BASE};
    use super::*;
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::{Config, RngSeed, TestRunner};

    /// Laid-out schedules of `n` draws on `space`.
    fn schedules(space: &FaultSpace, n: usize) -> Vec<Scenario> {
        let strategy = case_strategy(FaultMix::Any);
        let mut runner = TestRunner::new(Config {
            rng_seed: RngSeed::Fixed(5),
            failure_persistence: None,
            ..Config::default()
        });
        (0..n)
            .map(|_| {
                let draw = strategy.new_tree(&mut runner).unwrap().current();
                space.scenario(&draw).unwrap()
            })
            .collect()
    }

    fn no_latency(f: &Fault) -> bool {
        f.action != FaultAction::Latency
    }

    fn no_crash(f: &Fault) -> bool {
        f.action != FaultAction::Crash
    }

    #[test]
    fn a_fault_one_backend_cannot_perform_is_left_out_and_a_crash_becomes_a_kill() {
        let base = base_scenario(SAFE_BASE, "SAFE_BASE").unwrap();
        let mut space = FaultSpace::of(&base, &base.backends).unwrap();
        let has = |schedules: &[Scenario], action: FaultAction| {
            schedules
                .iter()
                .any(|s| s.faults.iter().any(|f| f.action == action))
        };
        let every = schedules(&space, 200);
        assert!(has(&every, FaultAction::Latency) && has(&every, FaultAction::Crash));

        // Two backends: one cannot add latency, the other cannot crash a machine.
        space.can = vec![no_latency, no_crash];
        let both = schedules(&space, 200);
        assert!(!has(&both, FaultAction::Latency), "{both:#?}");
        assert!(!has(&both, FaultAction::Crash), "{both:#?}");
        assert!(has(&both, FaultAction::Kill) && has(&both, FaultAction::Pause));
        // A latency episode is dropped whole; a draw without one is laid out as before, a crash being the same
        // outage as a kill.
        let mut compared = 0;
        for (one, other) in every.iter().zip(&both) {
            if has(std::slice::from_ref(one), FaultAction::Latency) {
                continue;
            }
            let as_kill: Vec<Fault> = one
                .faults
                .iter()
                .map(|f| Fault {
                    action: if f.action == FaultAction::Crash {
                        FaultAction::Kill
                    } else {
                        f.action
                    },
                    ..f.clone()
                })
                .collect();
            assert_eq!(as_kill, other.faults);
            compared += 1;
        }
        assert!(compared > 50, "{compared}");
    }
}
