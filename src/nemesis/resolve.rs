//! Resolving a fault's target when it fires: roles ("leader of", "a follower of", "the controller") name
//! whichever brokers hold them then.

use super::{FaultHost, Nemesis, Undo};
use crate::broker::BrokerId;
use crate::scenario::FaultTarget;

/// What a target named when its fault fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Resolved {
    Broker(BrokerId),
    Connector,
    Consumer(u32),
}

impl Resolved {
    pub(super) fn name(self) -> String {
        match self {
            Resolved::Broker(b) => format!("broker {}", b.0),
            Resolved::Connector => "the connector".into(),
            Resolved::Consumer(n) => format!("consumer {n}"),
        }
    }
}

impl Nemesis {
    /// The targets a fault lands on now.
    pub(super) async fn resolve(
        &mut self,
        target: &FaultTarget,
        t: &impl FaultHost,
    ) -> Result<Vec<Resolved>, String> {
        let broker = Resolved::Broker;
        match target {
            FaultTarget::Broker(id) => Ok(vec![broker(BrokerId(*id as i32))]),
            FaultTarget::Controller => Ok(vec![broker(t.controller().await?)]),
            FaultTarget::Coordinator => {
                let group = t
                    .pipeline()
                    .lock()
                    .await
                    .group_id()
                    .ok_or("the pipeline has no consumer group")?;
                Ok(vec![broker(t.group_coordinator(&group).await?)])
            }
            FaultTarget::Connector => Ok(vec![Resolved::Connector]),
            FaultTarget::Consumer(n) => Ok(vec![Resolved::Consumer(*n)]),
            FaultTarget::LeaderOf { topic, partition }
            | FaultTarget::FollowerOf { topic, partition }
            | FaultTarget::FollowersOf { topic, partition } => {
                let (leader, isr) = t.partition_roles(topic, *partition as i32).await?;
                let followers: Vec<BrokerId> = {
                    let mut f: Vec<BrokerId> =
                        isr.iter().copied().filter(|b| Some(*b) != leader).collect();
                    f.sort();
                    f
                };
                match target {
                    FaultTarget::LeaderOf { .. } => match leader {
                        Some(l) => Ok(vec![broker(l)]),
                        None => Err(format!("{topic} partition {partition} has no leader")),
                    },
                    FaultTarget::FollowersOf { .. } if followers.is_empty() => Err(format!(
                        "{topic} partition {partition} has no in-sync follower"
                    )),
                    FaultTarget::FollowersOf { .. } => {
                        Ok(followers.into_iter().map(broker).collect())
                    }
                    _ => {
                        if followers.is_empty() {
                            return Err(format!(
                                "{topic} partition {partition} has no in-sync follower"
                            ));
                        }
                        // Prefer a follower the nemesis has not disturbed yet, so "a follower" twice means two.
                        let disturbed = |b: &BrokerId| {
                            self.outstanding.iter().any(|(u, _)| {
                                matches!(u, Undo::RestartBroker(x) | Undo::Heal(x) | Undo::ResumeBroker(x) | Undo::ClearLatency(x) if x == b)
                            })
                        };
                        let fresh: Vec<BrokerId> = followers
                            .iter()
                            .copied()
                            .filter(|b| !disturbed(b))
                            .collect();
                        let pool = if fresh.is_empty() { followers } else { fresh };
                        Ok(vec![broker(*self.rng.pick(&pool))])
                    }
                }
            }
        }
    }
}
