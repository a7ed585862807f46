//! Which kind of election gave a partition its new leader: unclean, controlled shutdown, preferred or clean, from
//! the old leader, the old and new ISRs and the brokers that announced a controlled shutdown.

use std::collections::BTreeSet;

use super::super::admin::{ClusterMetadata, PartitionMetadata};
use crate::history::ElectionKind;

pub(super) fn election_kind(
    old: &PartitionMetadata,
    leader: i32,
    next_isr: &[i32],
    next: &ClusterMetadata,
    controlled_shutdowns: &BTreeSet<i32>,
) -> ElectionKind {
    // An unclean election leaves the ISR as the new leader alone: none of the last ISR is in it. A leader
    // that joined the ISR and was elected between two polls (a restarted broker caught up, then the
    // preferred-leader election moved the partition back to it) is outside the last ISR too, but the new
    // ISR still holds the replicas that were in it.
    if !old.isr.is_empty()
        && !old.isr.contains(&leader)
        && !old.isr.iter().any(|b| next_isr.contains(b))
    {
        return ElectionKind::Unclean;
    }
    match old.leader {
        Some(previous) if controlled_shutdowns.contains(&previous) => {
            ElectionKind::ControlledShutdown
        }
        Some(previous) if next.brokers.contains_key(&previous) => {
            if old.replicas.first() == Some(&leader) {
                ElectionKind::Preferred
            } else {
                ElectionKind::ControlledShutdown
            }
        }
        _ => ElectionKind::Clean,
    }
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::*;
    use super::super::views::diff_views;
    use super::*;
    use crate::history::{BrokerId, ClusterEventKind, FenceReason};

    /// The kinds of the elections between two views, in order.
    fn election_kinds(
        previous: &ClusterMetadata,
        next: &ClusterMetadata,
        controlled: &mut BTreeSet<i32>,
    ) -> Vec<ElectionKind> {
        diff_views(previous, next, controlled)
            .into_iter()
            .filter_map(|e| match e {
                ClusterEventKind::Election { kind, .. } => Some(kind),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn election_kinds_follow_the_old_leader_and_the_isr() {
        let mut controlled = BTreeSet::new();
        // The old leader is still registered and the preferred replica takes over: preferred.
        let before = view(&[1, 2, 3], 1, vec![partition(0, Some(2), 3, &[1, 2, 3])]);
        let after = view(&[1, 2, 3], 1, vec![partition(0, Some(1), 4, &[1, 2, 3])]);
        let kinds = election_kinds(&before, &after, &mut controlled);
        assert_eq!(kinds, [ElectionKind::Preferred]);
        // Announced controlled shutdown: the leader moves, then the broker leaves.
        controlled.insert(1);
        let moved = view(&[1, 2, 3], 1, vec![partition(0, Some(2), 5, &[2, 3])]);
        let events = diff_views(&after, &moved, &mut controlled);
        assert!(events.contains(&ClusterEventKind::Election {
            topic: "t".into(),
            partition: 0,
            leader: Some(BrokerId(2)),
            leader_epoch: 5,
            kind: ElectionKind::ControlledShutdown
        }));
        assert!(
            controlled.contains(&1),
            "still registered: the announcement holds"
        );
        let gone = view(&[2, 3], 2, vec![partition(0, Some(2), 5, &[2, 3])]);
        assert!(diff_views(&moved, &gone, &mut controlled).contains(
            &ClusterEventKind::BrokerFenced {
                broker: BrokerId(1),
                reason: FenceReason::ControlledShutdown
            }
        ));
        assert!(controlled.is_empty(), "the fence used the announcement up");
        // A leader outside the last ISR: unclean; no leader: offline.
        let offline = view(&[3], 3, vec![partition(0, None, 6, &[2])]);
        assert!(diff_views(&gone, &offline, &mut controlled).contains(
            &ClusterEventKind::Election {
                topic: "t".into(),
                partition: 0,
                leader: None,
                leader_epoch: 6,
                kind: ElectionKind::Clean
            }
        ));
        let unclean = view(&[3], 3, vec![partition(0, Some(3), 7, &[3])]);
        assert!(diff_views(&offline, &unclean, &mut controlled).contains(
            &ClusterEventKind::Election {
                topic: "t".into(),
                partition: 0,
                leader: Some(BrokerId(3)),
                leader_epoch: 7,
                kind: ElectionKind::Unclean
            }
        ));
        // A restarted preferred replica rejoins the ISR and is elected back between two polls: it was not in
        // the last ISR, but the ISR it joined still holds the replica that led: a preferred election.
        let failed_over = view(&[2, 3], 2, vec![partition(0, Some(2), 8, &[2])]);
        let back = view(&[1, 2, 3], 2, vec![partition(0, Some(1), 9, &[1, 2])]);
        let kinds = election_kinds(&failed_over, &back, &mut controlled);
        assert_eq!(kinds, [ElectionKind::Preferred]);
    }
}
