//! The controller: which brokers are alive, who leads each partition, and which broker holds the controller role.
//! The quorum that stores this (ZooKeeper or the KRaft quorum) is modelled as outside the brokers: a broker that
//! cannot reach its peers cannot reach it either.
//!
//! - Failure detection: every broker that reaches the quorum heartbeats each `heartbeat_interval` of clock time;
//!   one silent for the session timeout (ZooKeeper 18 s, KRaft 9 s, configurable) is fenced: it leaves every ISR
//!   (the last member stays) and its leaderships move. A fenced broker that heartbeats again registers again.
//! - Elections: clean = the first live ISR replica in assignment order; with none, the first live replica when the
//!   topic allows unclean election (the ISR becomes that replica), otherwise the partition goes offline (leader
//!   -1) until an ISR replica returns. Every leader change bumps the leader epoch (also a change to no leader, as
//!   KRaft does; ZooKeeper mode's extra bump on an ISR shrink is not modelled).
//! - Controlled shutdown moves leaderships to other ISR replicas before the broker exits; a restart registers a
//!   new incarnation, which first fences the old one (its leaderships move, as in KRaft).
//! - Automatic preferred-leader rebalance (`auto.leader.rebalance.enable`): every
//!   `leader.imbalance.check.interval.seconds` (300 s), and in ZooKeeper mode also 5 s after a controller takes
//!   over (Kafka 3.9.1 `KafkaController.onControllerFailover` schedules its first check then; KRaft's controller
//!   waits a whole interval). A check looks at each broker's preferred partitions (those whose assignment it
//!   heads): when more than `leader.imbalance.per.broker.percentage` (10 %) of them have another leader (or
//!   none), each of those whose preferred replica is alive and in the ISR gets it back as leader. Seen on the
//!   local backend: a broker killed while it was ZooKeeper-mode controller took its leaderships back about 6 s
//!   after the new controller's election, and a Debezium task with `retries = 0` failed on the move.
//! - When the controller's broker is fenced, the first live broker in id order becomes controller.

use super::replication::{advance_high_watermark, BrokerLiveness, MetadataMode};
use super::state::{ClusterCore, PartitionState, Topic};
use super::BrokerId;
use crate::history::{ClusterEventKind, ElectionKind, FenceReason};

fn alive(live: &[BrokerLiveness], broker: BrokerId) -> bool {
    live.iter().any(|l| l.id == broker && !l.fenced)
}

/// Makes `leader` the partition's leader (or takes it offline), bumping the leader epoch.
pub(crate) fn set_leader(
    state: &mut PartitionState,
    topic: &Topic,
    partition: i32,
    leader: Option<BrokerId>,
    kind: ElectionKind,
    now_ms: i64,
    events: &mut Vec<ClusterEventKind>,
) {
    if state.leader == leader {
        return;
    }
    state.leader = leader;
    state.leader_epoch = state.leader_epoch.saturating_add(1);
    let epoch = state.leader_epoch;
    for replica in &mut state.replicas {
        // A new leader knows nothing of its followers yet; they count as caught up from now (Kafka resets them).
        replica.fetched_leo = None;
        replica.last_caught_up_ms = now_ms;
    }
    if let Some(new) = leader {
        if let Some(replica) = state.replica_mut(new) {
            replica.begin_epoch(epoch);
        }
        events.push(ClusterEventKind::LeaderChanged {
            topic: topic.name.clone(),
            partition,
            leader: new,
            leader_epoch: epoch,
        });
        advance_high_watermark(state, topic.config.min_insync_replicas);
    }
    events.push(ClusterEventKind::Election {
        topic: topic.name.clone(),
        partition,
        leader,
        leader_epoch: epoch,
        kind,
    });
}

/// Chooses a leader among live replicas: clean first, unclean if the topic allows it.
fn elect(
    state: &mut PartitionState,
    topic: &Topic,
    partition: i32,
    live: &[BrokerLiveness],
    clean_kind: ElectionKind,
    now_ms: i64,
    events: &mut Vec<ClusterEventKind>,
) {
    let clean = state
        .assignment
        .iter()
        .copied()
        .find(|b| alive(live, *b) && state.isr.contains(b));
    if let Some(leader) = clean {
        set_leader(
            state,
            topic,
            partition,
            Some(leader),
            clean_kind,
            now_ms,
            events,
        );
        return;
    }
    if topic.config.unclean_leader_election {
        if let Some(leader) = state.assignment.iter().copied().find(|b| alive(live, *b)) {
            state.isr = vec![leader];
            set_leader(
                state,
                topic,
                partition,
                Some(leader),
                ElectionKind::Unclean,
                now_ms,
                events,
            );
            return;
        }
    }
    set_leader(state, topic, partition, None, clean_kind, now_ms, events);
}

/// Removes fenced brokers from ISRs and moves their leaderships; elects leaders for offline partitions.
fn reconcile(core: &ClusterCore, kind: ElectionKind, events: &mut Vec<ClusterEventKind>) {
    let live = core.liveness();
    let now = core.clock.now_ms();
    for topic in core.topics() {
        for partition in &topic.partitions {
            let mut state = partition.lock();
            let dead: Vec<BrokerId> = state
                .isr
                .iter()
                .copied()
                .filter(|b| !alive(&live, *b))
                .collect();
            for removed in dead {
                // The ISR never becomes empty: its last member stays, so it can lead again cleanly.
                if state.isr.len() > 1 {
                    state.isr.retain(|b| *b != removed);
                    events.push(ClusterEventKind::IsrShrunk {
                        topic: topic.name.clone(),
                        partition: partition.index,
                        removed,
                        isr: state.isr.clone(),
                    });
                }
            }
            let needs_leader = match state.leader {
                Some(leader) => !alive(&live, leader),
                None => true,
            };
            if needs_leader {
                elect(
                    &mut state,
                    &topic,
                    partition.index,
                    &live,
                    kind,
                    now,
                    events,
                );
            } else {
                advance_high_watermark(&mut state, topic.config.min_insync_replicas);
            }
        }
    }
}

/// Gives the controller role to the first live broker when its holder is fenced.
fn ensure_controller(core: &ClusterCore, events: &mut Vec<ClusterEventKind>) {
    let live = core.liveness();
    if alive(&live, core.controller()) {
        return;
    }
    if let Some(next) = live.iter().find(|l| !l.fenced && l.reaches_peers()) {
        core.set_controller(next.id);
        events.push(ClusterEventKind::ControllerElected { broker: next.id });
        let settings = &core.defaults.replication;
        if settings.auto_leader_rebalance && settings.metadata_mode == MetadataMode::Zookeeper {
            core.schedule_failover_rebalance(FAILOVER_REBALANCE_DELAY, rebalance_imbalanced);
        }
    }
}

/// ZooKeeper mode: how long after taking over a controller runs its first leader-imbalance check.
const FAILOVER_REBALANCE_DELAY: std::time::Duration = std::time::Duration::from_secs(5);

/// `leader.imbalance.per.broker.percentage` (Kafka's default).
const LEADER_IMBALANCE_PER_BROKER_PERCENTAGE: u64 = 10;

/// The automatic leader-imbalance check: for every broker with more than 10 % of its preferred partitions led by
/// another broker (or by none), those partitions whose preferred replica is alive and in the ISR get it back.
pub(crate) fn rebalance_imbalanced(core: &ClusterCore) {
    // Per preferred broker: (its preferred partitions, those led by another broker or by none).
    let mut count: std::collections::HashMap<BrokerId, (u64, u64)> = Default::default();
    for topic in core.topics() {
        for partition in &topic.partitions {
            let state = partition.lock();
            if let Some(&preferred) = state.assignment.first() {
                let entry = count.entry(preferred).or_default();
                entry.0 += 1;
                if state.leader != Some(preferred) {
                    entry.1 += 1;
                }
            }
        }
    }
    let imbalanced = |broker: BrokerId| {
        count.get(&broker).is_some_and(|&(total, elsewhere)| {
            elsewhere * 100 > total * LEADER_IMBALANCE_PER_BROKER_PERCENTAGE
        })
    };
    elect_preferred_where(core, imbalanced);
}

/// Fences `broker` now and acts on it (ISR removal, elections, controller).
pub(crate) fn fence(core: &ClusterCore, broker: BrokerId, reason: FenceReason) {
    let newly = core.update_liveness(broker, |l| !std::mem::replace(&mut l.fenced, true));
    let mut events = Vec::new();
    if newly == Some(true) {
        events.push(ClusterEventKind::BrokerFenced { broker, reason });
    }
    ensure_controller(core, &mut events);
    reconcile(core, ElectionKind::Clean, &mut events);
    finish(core, events);
}

/// A broker that reaches the quorum again registers: offline partitions may get a leader.
pub(crate) fn register(core: &ClusterCore, broker: BrokerId) {
    let now = core.clock.now_ms();
    let newly = core.update_liveness(broker, |l| {
        l.last_heartbeat_ms = now;
        std::mem::replace(&mut l.fenced, false)
    });
    let mut events = Vec::new();
    if newly == Some(true) {
        events.push(ClusterEventKind::BrokerUnfenced { broker });
    }
    ensure_controller(core, &mut events);
    reconcile(core, ElectionKind::Clean, &mut events);
    finish(core, events);
}

/// Controlled shutdown: every leadership of `broker` moves to another live ISR replica, then it is fenced.
pub(crate) fn controlled_shutdown(core: &ClusterCore, broker: BrokerId) {
    let live: Vec<BrokerLiveness> = core
        .liveness()
        .into_iter()
        .map(|mut l| {
            if l.id == broker {
                l.fenced = true;
            }
            l
        })
        .collect();
    let now = core.clock.now_ms();
    let mut events = Vec::new();
    for topic in core.topics() {
        for partition in &topic.partitions {
            let mut state = partition.lock();
            if state.leader != Some(broker) {
                continue;
            }
            let next = state
                .assignment
                .iter()
                .copied()
                .find(|b| alive(&live, *b) && state.isr.contains(b));
            // With no other ISR replica Kafka's controlled shutdown gives up and the broker stops anyway; the
            // fencing below then takes the partition offline (or elects uncleanly).
            if let Some(next) = next {
                set_leader(
                    &mut state,
                    &topic,
                    partition.index,
                    Some(next),
                    ElectionKind::ControlledShutdown,
                    now,
                    &mut events,
                );
            }
        }
    }
    finish(core, events);
    fence(core, broker, FenceReason::ControlledShutdown);
}

/// The heartbeat timer: brokers that reach the quorum heartbeat (and register again if fenced); sessions that
/// expired are fenced.
pub(crate) fn heartbeat_tick(core: &ClusterCore, now_ms: i64) {
    let session = core.defaults.replication.session_timeout_ms();
    let live = core.liveness();
    let mut returning = Vec::new();
    let mut expired = Vec::new();
    for l in &live {
        if l.reaches_peers() {
            if l.fenced {
                returning.push(l.id);
            } else {
                core.update_liveness(l.id, |l| l.last_heartbeat_ms = now_ms);
            }
        } else if !l.fenced && now_ms.saturating_sub(l.last_heartbeat_ms) > session {
            expired.push(l.id);
        }
    }
    if !expired.is_empty() {
        let mut events = Vec::new();
        for broker in &expired {
            core.update_liveness(*broker, |l| l.fenced = true);
            events.push(ClusterEventKind::BrokerFenced {
                broker: *broker,
                reason: FenceReason::SessionExpired,
            });
        }
        ensure_controller(core, &mut events);
        reconcile(core, ElectionKind::Clean, &mut events);
        finish(core, events);
    }
    for broker in returning {
        register(core, broker);
    }
}

/// Preferred-leader election: leadership returns to the head of the assignment where it is alive and in the ISR.
pub(crate) fn elect_preferred(core: &ClusterCore) {
    elect_preferred_where(core, |_| true);
}

/// Preferred-leader election for the partitions whose preferred replica `eligible` accepts.
fn elect_preferred_where(core: &ClusterCore, eligible: impl Fn(BrokerId) -> bool) {
    let live = core.liveness();
    let now = core.clock.now_ms();
    let mut events = Vec::new();
    for topic in core.topics() {
        for partition in &topic.partitions {
            let mut state = partition.lock();
            let Some(&preferred) = state.assignment.first() else {
                continue;
            };
            if state.leader != Some(preferred)
                && eligible(preferred)
                && alive(&live, preferred)
                && state.isr.contains(&preferred)
            {
                set_leader(
                    &mut state,
                    &topic,
                    partition.index,
                    Some(preferred),
                    ElectionKind::Preferred,
                    now,
                    &mut events,
                );
            }
        }
    }
    finish(core, events);
}

fn finish(core: &ClusterCore, events: Vec<ClusterEventKind>) {
    if !events.is_empty() {
        core.record(events);
        core.notify_appended();
    }
}
