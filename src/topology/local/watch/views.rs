//! The cluster's shape from Metadata: several brokers' answers merged into one view, and the events between two
//! views (brokers fenced and unfenced, a new controller, leader changes and elections, ISR shrinks and expands).

use std::collections::BTreeSet;

use super::super::admin::{ClusterMetadata, PartitionMetadata};
use super::election::election_kind;
use crate::history::{BrokerId, ClusterEventKind, ElectionKind, FenceReason};

/// Sum of the leader epochs of an answer's partitions: a broker that missed updates reports lower ones.
fn epoch_total(view: &ClusterMetadata) -> i64 {
    view.topics
        .values()
        .flatten()
        .map(|p| i64::from(p.leader_epoch.max(0)))
        .sum()
}

/// One view from several brokers' answers (in bootstrap order): the primary answer (highest epoch total, the
/// earliest on ties) gives brokers, controller and partitions; a partition another answer reports with a higher
/// leader epoch is taken from that answer.
pub(super) fn merge_views<'a>(
    answers: impl IntoIterator<Item = &'a ClusterMetadata>,
) -> Option<ClusterMetadata> {
    let answers: Vec<&ClusterMetadata> = answers.into_iter().collect();
    let primary = answers
        .iter()
        .enumerate()
        .max_by_key(|(index, view)| (epoch_total(view), std::cmp::Reverse(*index)))
        .map(|(_, view)| *view)?;
    let mut merged = primary.clone();
    for other in &answers {
        for (topic, partitions) in &other.topics {
            let mine = merged
                .topics
                .entry(topic.clone())
                .or_insert_with(|| partitions.clone());
            for p in partitions {
                match mine.iter_mut().find(|m| m.partition == p.partition) {
                    Some(m) if p.leader_epoch > m.leader_epoch => *m = p.clone(),
                    Some(_) => {}
                    None => mine.push(p.clone()),
                }
            }
            mine.sort_by_key(|p| p.partition);
        }
    }
    Some(merged)
}

/// Topics the new view lacks (no broker answered for them) keep their previous state.
pub(super) fn carry_over(previous: &ClusterMetadata, mut next: ClusterMetadata) -> ClusterMetadata {
    for (topic, partitions) in &previous.topics {
        next.topics
            .entry(topic.clone())
            .or_insert_with(|| partitions.clone());
    }
    next
}

/// The events that turn `previous` into `next`. `controlled_shutdowns`: brokers that announced a controlled
/// shutdown; a broker leaves the set when it leaves or joins the live set.
pub(super) fn diff_views(
    previous: &ClusterMetadata,
    next: &ClusterMetadata,
    controlled_shutdowns: &mut BTreeSet<i32>,
) -> Vec<ClusterEventKind> {
    let mut events = Vec::new();
    if let Some(controller) = next.controller {
        if previous.controller != Some(controller) {
            events.push(ClusterEventKind::ControllerElected {
                broker: BrokerId(controller),
            });
        }
    }
    for broker in previous.brokers.keys() {
        if !next.brokers.contains_key(broker) {
            let reason = if controlled_shutdowns.contains(broker) {
                FenceReason::ControlledShutdown
            } else {
                FenceReason::SessionExpired
            };
            events.push(ClusterEventKind::BrokerFenced {
                broker: BrokerId(*broker),
                reason,
            });
        }
    }
    for broker in next.brokers.keys() {
        if !previous.brokers.contains_key(broker) {
            events.push(ClusterEventKind::BrokerUnfenced {
                broker: BrokerId(*broker),
            });
        }
    }
    for (topic, partitions) in &next.topics {
        for new in partitions {
            let old = previous
                .topics
                .get(topic)
                .and_then(|old| old.iter().find(|p| p.partition == new.partition));
            match old {
                Some(old) => {
                    diff_partition(topic, old, new, next, controlled_shutdowns, &mut events)
                }
                None => {
                    if let Some(leader) = new.leader {
                        events.push(ClusterEventKind::LeaderChanged {
                            topic: topic.clone(),
                            partition: new.partition,
                            leader: BrokerId(leader),
                            leader_epoch: new.leader_epoch,
                        });
                    }
                }
            }
        }
    }
    // A fenced broker's announcement is used up; one registered again starts afresh.
    for broker in previous.brokers.keys().chain(next.brokers.keys()) {
        if previous.brokers.contains_key(broker) != next.brokers.contains_key(broker) {
            controlled_shutdowns.remove(broker);
        }
    }
    events
}

fn diff_partition(
    topic: &str,
    old: &PartitionMetadata,
    new: &PartitionMetadata,
    next: &ClusterMetadata,
    controlled_shutdowns: &BTreeSet<i32>,
    events: &mut Vec<ClusterEventKind>,
) {
    // A stale answer (lower epoch) never moves the view back.
    if new.leader_epoch < old.leader_epoch {
        return;
    }
    if new.leader != old.leader {
        match new.leader {
            Some(leader) => {
                let kind = election_kind(old, leader, &new.isr, next, controlled_shutdowns);
                events.push(ClusterEventKind::LeaderChanged {
                    topic: topic.to_owned(),
                    partition: new.partition,
                    leader: BrokerId(leader),
                    leader_epoch: new.leader_epoch,
                });
                events.push(ClusterEventKind::Election {
                    topic: topic.to_owned(),
                    partition: new.partition,
                    leader: Some(BrokerId(leader)),
                    leader_epoch: new.leader_epoch,
                    kind,
                });
            }
            None => events.push(ClusterEventKind::Election {
                topic: topic.to_owned(),
                partition: new.partition,
                leader: None,
                leader_epoch: new.leader_epoch,
                kind: ElectionKind::Clean,
            }),
        }
    }
    let isr: Vec<BrokerId> = new.isr.iter().copied().map(BrokerId).collect();
    for removed in old.isr.iter().filter(|b| !new.isr.contains(b)) {
        events.push(ClusterEventKind::IsrShrunk {
            topic: topic.to_owned(),
            partition: new.partition,
            removed: BrokerId(*removed),
            isr: isr.clone(),
        });
    }
    for added in new.isr.iter().filter(|b| !old.isr.contains(b)) {
        events.push(ClusterEventKind::IsrExpanded {
            topic: topic.to_owned(),
            partition: new.partition,
            added: BrokerId(*added),
            isr: isr.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::*;

    fn ids(brokers: &[i32]) -> Vec<BrokerId> {
        brokers.iter().copied().map(BrokerId).collect()
    }

    #[test]
    fn a_killed_leader_is_fenced_replaced_and_rejoins() {
        let mut controlled = BTreeSet::new();
        let before = view(&[1, 2, 3], 1, vec![partition(0, Some(1), 0, &[1, 2, 3])]);
        let failed = view(&[2, 3], 2, vec![partition(0, Some(2), 1, &[2, 3])]);
        assert_eq!(
            diff_views(&before, &failed, &mut controlled),
            vec![
                ClusterEventKind::ControllerElected {
                    broker: BrokerId(2)
                },
                ClusterEventKind::BrokerFenced {
                    broker: BrokerId(1),
                    reason: FenceReason::SessionExpired
                },
                ClusterEventKind::LeaderChanged {
                    topic: "t".into(),
                    partition: 0,
                    leader: BrokerId(2),
                    leader_epoch: 1
                },
                ClusterEventKind::Election {
                    topic: "t".into(),
                    partition: 0,
                    leader: Some(BrokerId(2)),
                    leader_epoch: 1,
                    kind: ElectionKind::Clean
                },
                ClusterEventKind::IsrShrunk {
                    topic: "t".into(),
                    partition: 0,
                    removed: BrokerId(1),
                    isr: ids(&[2, 3])
                },
            ]
        );
        let back = view(&[1, 2, 3], 2, vec![partition(0, Some(2), 1, &[2, 3, 1])]);
        assert_eq!(
            diff_views(&failed, &back, &mut controlled),
            vec![
                ClusterEventKind::BrokerUnfenced {
                    broker: BrokerId(1)
                },
                ClusterEventKind::IsrExpanded {
                    topic: "t".into(),
                    partition: 0,
                    added: BrokerId(1),
                    isr: ids(&[2, 3, 1])
                },
            ]
        );
    }

    #[test]
    fn a_stale_answer_loses_to_higher_epochs() {
        // Broker 1, cut off from its peers, still thinks it leads at epoch 0 and is asked first.
        let stale = view(&[1, 2, 3], 1, vec![partition(0, Some(1), 0, &[1, 2, 3])]);
        let fresh = view(&[2, 3], 2, vec![partition(0, Some(2), 1, &[2, 3])]);
        let merged = merge_views([&stale, &fresh]).expect("answers");
        assert_eq!(merged, fresh);
        // The primary answer (highest epoch total) gives partitions of equal epochs; a partition with a higher
        // epoch elsewhere is taken from there.
        let mut other = fresh.clone();
        other.topics.get_mut("t").unwrap()[0].isr = vec![2];
        other
            .topics
            .insert("u".into(), vec![partition(0, Some(3), 2, &[3])]);
        let mut first = fresh.clone();
        first
            .topics
            .insert("u".into(), vec![partition(0, Some(2), 1, &[2])]);
        first
            .topics
            .insert("v".into(), vec![partition(0, Some(1), 5, &[1])]);
        let merged = merge_views([&first, &other]).expect("answers");
        assert_eq!(merged.topics["t"], fresh.topics["t"]);
        assert_eq!(merged.topics["u"], vec![partition(0, Some(3), 2, &[3])]);
        // A stale view never moves a partition back.
        let mut controlled = BTreeSet::new();
        assert!(diff_views(&fresh, &stale, &mut controlled)
            .iter()
            .all(|e| !matches!(e, ClusterEventKind::LeaderChanged { .. })));
    }
}
