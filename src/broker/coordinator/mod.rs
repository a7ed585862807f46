//! The group coordinator: where each consumer group lives, and the glue between the wire handlers, the
//! [`Group`] state machines and `__consumer_offsets`.
//!
//! - **Placement.** A group belongs to partition `Utils.abs(groupId.hashCode()) % offsets.topic.num.partitions` of
//!   `__consumer_offsets`; its coordinator is that partition's leader. Any other broker answers NOT_COORDINATOR.
//!   The topic is created by the first group FindCoordinator (answered COORDINATOR_NOT_AVAILABLE, as Kafka does),
//!   compacted, with `offsets.topic.replication.factor` replicas — capped at the number of brokers, where a real
//!   cluster would refuse (the harness's override, so 1- and 2-broker clusters still have groups).
//! - **State is a cache of the log.** Each partition's groups are a [`Shard`] tagged with the leader and leader epoch
//!   it was loaded under. When the partition's leadership has moved (kill, isolation, controlled shutdown, unclean
//!   election), the next request or tick drops the shard — held JoinGroup/SyncGroup answers get NOT_COORDINATOR —
//!   and the new leader rebuilds it from its own replica of the log (Kafka's `loadGroupsAndOffsets`): groups come
//!   back Stable with their members and assignments, offsets as last written. What an unclean election truncated is
//!   gone, as in Kafka.
//! - **Writes.** An OffsetCommit appends its records on the leader and is answered once the high watermark passes
//!   them (acks=all, `offsets.commit.timeout.ms` 5 s), mapping failures as Kafka's `GroupMetadataManager` does
//!   (NOT_ENOUGH_REPLICAS and timeouts → COORDINATOR_NOT_AVAILABLE, leadership lost → NOT_COORDINATOR). Group
//!   metadata is appended when a generation becomes Stable, when a group becomes Empty, and as tombstones on delete.
//! - **Time.** A timer on the cluster clock ticks every group (sessions, join deadlines, initial delays) every
//!   100 ms of clock time.
//!
//! Every membership change, rebalance, commit and coordinator load goes into the cluster event log.

mod admin;
mod records;
mod summary;
mod write;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use tokio::sync::oneshot;

use super::group::{
    CommittedOffset, Completion, Group, GroupConfig, GroupState, JoinError, JoinOutcome,
    JoinRequest, JoinResponse, MemberDescription, SyncOutcome,
};
use super::state::{BrokerInfo, ClusterCore, NewTopic};
use super::BrokerId;
use crate::history::{ClusterEventKind, MemberRemoval};

pub(crate) use records::{partition_for, OFFSETS_TOPIC};
pub use summary::{GroupSummary, MemberSummary, OffsetSummary};
pub(crate) use write::Written;

use records::OffsetsRecord;

/// A topic and a partition of it.
pub(crate) type TopicPartition = (String, i32);

/// How often groups are ticked, in clock time.
pub(crate) const TICK: std::time::Duration = std::time::Duration::from_millis(100);

/// A JoinGroup answer, now or later.
pub(crate) enum JoinWait {
    Done(Result<JoinResponse, JoinError>),
    Later(oneshot::Receiver<Result<JoinResponse, JoinError>>),
}

/// A SyncGroup answer, now or later.
pub(crate) enum SyncWait {
    Done(Result<Bytes, ResponseError>),
    Later(oneshot::Receiver<Result<Bytes, ResponseError>>),
}

/// A group as DescribeGroups and ListGroups report it.
#[derive(Debug, Clone)]
pub(crate) struct GroupView {
    pub group: String,
    pub state: GroupState,
    pub protocol_type: String,
    pub protocol: String,
    pub members: Vec<MemberDescription>,
}

/// The groups of one `__consumer_offsets` partition, as loaded by one leader in one leader epoch.
struct Shard {
    /// Its `__consumer_offsets` partition.
    index: i32,
    broker: BrokerId,
    leader_epoch: i32,
    groups: BTreeMap<String, Group>,
    joins: HashMap<(String, String), oneshot::Sender<Result<JoinResponse, JoinError>>>,
    syncs: HashMap<(String, String), oneshot::Sender<Result<Bytes, ResponseError>>>,
}

/// Every shard of the cluster.
#[derive(Default)]
pub(crate) struct Coordinator {
    shards: Mutex<BTreeMap<i32, Shard>>,
    /// Whether the virtual-clock warning was given.
    warned_virtual: std::sync::atomic::AtomicBool,
}

/// What a group looked like before an operation, to tell what the operation changed.
struct Before {
    state: GroupState,
    generation: i32,
    members: Vec<String>,
}

impl Before {
    fn of(group: Option<&Group>) -> Before {
        match group {
            Some(g) => Before {
                state: g.state(),
                generation: g.generation(),
                members: g.member_ids(),
            },
            None => Before {
                state: GroupState::Dead,
                generation: 0,
                members: Vec::new(),
            },
        }
    }
}

impl Coordinator {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<i32, Shard>> {
        self.shards.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// FindCoordinator for a group: the broker leading its offsets partition. Creates `__consumer_offsets` on
    /// first use (answering COORDINATOR_NOT_AVAILABLE that once, as Kafka does).
    pub(crate) fn find(core: &ClusterCore, group: &str) -> Result<BrokerInfo, ResponseError> {
        let Some(topic) = core.topic(OFFSETS_TOPIC) else {
            let rf = core
                .defaults
                .offsets_topic_replication_factor
                .min(i16::try_from(core.brokers.len()).unwrap_or(i16::MAX))
                .max(1);
            let spec = NewTopic::new(OFFSETS_TOPIC, core.defaults.offsets_topic_partitions)
                .replication_factor(rf)
                .config("cleanup.policy", "compact")
                .config("segment.bytes", "104857600");
            if let Err(error) = core.create_topic(&spec, true) {
                tracing::debug!(%error, "cannot create {OFFSETS_TOPIC}");
            }
            return Err(ResponseError::CoordinatorNotAvailable);
        };
        let index = partition_for(group, topic.partitions.len() as i32);
        let leader = topic.partitions[index as usize].lock().leader;
        leader
            .and_then(|id| core.brokers.iter().find(|b| b.id == id).cloned())
            .ok_or(ResponseError::CoordinatorNotAvailable)
    }

    /// Runs `op` on the shard of `group` on `broker` (see [`Coordinator::with_partition`]).
    fn with_shard<R>(
        &self,
        core: &ClusterCore,
        broker: BrokerId,
        group: &str,
        op: impl FnOnce(&mut Shard, &mut Vec<ClusterEventKind>) -> R,
    ) -> Result<R, ResponseError> {
        let topic = core
            .topic(OFFSETS_TOPIC)
            .ok_or(ResponseError::NotCoordinator)?;
        let index = partition_for(group, topic.partitions.len() as i32);
        self.with_partition(core, broker, index, op)
    }

    /// Runs `op` on the shard of `__consumer_offsets` partition `index` on `broker`, (re)loading it from the log
    /// when the partition's leadership moved since it was loaded; NOT_COORDINATOR when `broker` does not lead it.
    fn with_partition<R>(
        &self,
        core: &ClusterCore,
        broker: BrokerId,
        index: i32,
        op: impl FnOnce(&mut Shard, &mut Vec<ClusterEventKind>) -> R,
    ) -> Result<R, ResponseError> {
        let topic = core
            .topic(OFFSETS_TOPIC)
            .ok_or(ResponseError::NotCoordinator)?;
        let partition = topic
            .partitions
            .get(usize::try_from(index).map_err(|_| ResponseError::NotCoordinator)?)
            .ok_or(ResponseError::NotCoordinator)?;
        let mut shards = self.lock();
        let mut events = Vec::new();
        {
            let state = partition.lock();
            if state.leader != Some(broker) {
                return Err(ResponseError::NotCoordinator);
            }
            let fresh = shards
                .get(&index)
                .is_some_and(|s| s.broker == broker && s.leader_epoch == state.leader_epoch);
            if !fresh {
                let shard = write::load(core, broker, index, &state, &mut events);
                shards.insert(index, shard);
            }
        }
        let shard = shards.get_mut(&index).expect("loaded above");
        let result = op(shard, &mut events);
        drop(shards);
        core.record(events);
        Ok(result)
    }

    /// Ticks every shard still led by the broker that loaded it; drops the others (their held answers get
    /// NOT_COORDINATOR).
    pub(crate) fn tick(&self, core: &ClusterCore, now: i64) {
        let mut shards = self.lock();
        if shards.is_empty() {
            return;
        }
        let Some(topic) = core.topic(OFFSETS_TOPIC) else {
            shards.clear();
            return;
        };
        let mut events = Vec::new();
        shards.retain(|index, shard| {
            let Some(partition) = topic.partitions.get(*index as usize) else {
                return false;
            };
            let state = partition.lock();
            state.leader == Some(shard.broker) && state.leader_epoch == shard.leader_epoch
        });
        for shard in shards.values_mut() {
            let ids: Vec<String> = shard.groups.keys().cloned().collect();
            for id in ids {
                let Some(group) = shard.groups.get_mut(&id) else {
                    continue;
                };
                if group.next_deadline_ms().is_none_or(|at| at > now) {
                    continue;
                }
                let before = Before::of(Some(group));
                let done = group.tick(now);
                let reason = if group.generation() != before.generation {
                    MemberRemoval::NotRejoined
                } else {
                    MemberRemoval::SessionExpired
                };
                shard.after(core, &id, before, done, reason, now, &mut events);
            }
        }
        drop(shards);
        core.record(events);
    }

    pub(crate) fn join(
        &self,
        core: &ClusterCore,
        broker: BrokerId,
        group_id: &str,
        request: JoinRequest,
    ) -> Result<JoinWait, ResponseError> {
        let now = core.clock.now_ms();
        if core.clock.is_virtual()
            && !self
                .warned_virtual
                .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(
                group = group_id,
                "a consumer joined a cluster on a virtual clock: sessions and rebalance timeouts run on virtual time, \
                 so a client heartbeating in real time is expired as soon as the clock is advanced past its session"
            );
        }
        self.with_shard(core, broker, group_id, |shard, events| {
            let config = core.defaults.group;
            let group = shard
                .groups
                .entry(group_id.to_string())
                .or_insert_with(|| Group::new(group_id, config));
            let before = Before::of(Some(group));
            let member_id = request.member_id.clone();
            let (outcome, done) = group.join(now, request);
            let wait = match outcome {
                JoinOutcome::Done(result) => JoinWait::Done(result),
                JoinOutcome::Waiting => {
                    // A dynamic member's first join that is held has the id it was just given.
                    let id = if member_id.is_empty() {
                        group
                            .member_ids()
                            .into_iter()
                            .find(|m| !before.members.contains(m))
                    } else {
                        Some(member_id)
                    };
                    let (tx, rx) = oneshot::channel();
                    if let Some(id) = id {
                        shard.joins.insert((group_id.to_string(), id), tx);
                    }
                    JoinWait::Later(rx)
                }
            };
            shard.after(
                core,
                group_id,
                before,
                done,
                MemberRemoval::Replaced,
                now,
                events,
            );
            wait
        })
    }

    pub(crate) fn sync(
        &self,
        core: &ClusterCore,
        broker: BrokerId,
        group_id: &str,
        member: (&str, Option<&str>),
        generation: i32,
        assignments: Vec<(String, Bytes)>,
    ) -> Result<SyncWait, ResponseError> {
        let now = core.clock.now_ms();
        self.with_shard(core, broker, group_id, |shard, events| {
            let Some(group) = shard.groups.get_mut(group_id) else {
                return SyncWait::Done(Err(ResponseError::UnknownMemberId));
            };
            let before = Before::of(Some(group));
            let (outcome, done) = group.sync(now, member.0, member.1, generation, assignments);
            let wait = match outcome {
                SyncOutcome::Done(result) => SyncWait::Done(result),
                SyncOutcome::Waiting => {
                    let (tx, rx) = oneshot::channel();
                    shard
                        .syncs
                        .insert((group_id.to_string(), member.0.to_string()), tx);
                    SyncWait::Later(rx)
                }
            };
            shard.after(
                core,
                group_id,
                before,
                done,
                MemberRemoval::Left,
                now,
                events,
            );
            wait
        })
    }

    pub(crate) fn heartbeat(
        &self,
        core: &ClusterCore,
        broker: BrokerId,
        group_id: &str,
        member: (&str, Option<&str>),
        generation: i32,
    ) -> Result<(), ResponseError> {
        let now = core.clock.now_ms();
        self.with_shard(core, broker, group_id, |shard, _| {
            match shard.groups.get_mut(group_id) {
                Some(group) => group.heartbeat(now, member.0, member.1, generation),
                None => Err(ResponseError::UnknownMemberId),
            }
        })?
    }

    /// LeaveGroup: one result per leaving (member id, instance id).
    pub(crate) fn leave(
        &self,
        core: &ClusterCore,
        broker: BrokerId,
        group_id: &str,
        leaving: &[(String, Option<String>)],
    ) -> Result<Vec<Result<(), ResponseError>>, ResponseError> {
        let now = core.clock.now_ms();
        self.with_shard(core, broker, group_id, |shard, events| {
            let Some(group) = shard.groups.get_mut(group_id) else {
                return leaving
                    .iter()
                    .map(|_| Err(ResponseError::UnknownMemberId))
                    .collect();
            };
            let before = Before::of(Some(group));
            let (results, done) = group.leave(now, leaving);
            shard.after(
                core,
                group_id,
                before,
                done,
                MemberRemoval::Left,
                now,
                events,
            );
            results
        })
    }

    /// OffsetCommit: validates and applies the commit, appends its records; the caller awaits [`Written::wait`].
    /// Per-partition refusals are the caller's (unknown topics, metadata too large); `offsets` are the rest.
    pub(crate) fn commit(
        &self,
        core: &ClusterCore,
        broker: BrokerId,
        group_id: &str,
        member: (&str, Option<&str>),
        generation: i32,
        offsets: Vec<((String, i32), CommittedOffset)>,
    ) -> Result<Written, ResponseError> {
        let now = core.clock.now_ms();
        self.with_shard(core, broker, group_id, |shard, _| {
            let config = core.defaults.group;
            let group = match shard.groups.get_mut(group_id) {
                Some(group) => group,
                // Kafka creates the group for a commit that does not rely on group management, and refuses any
                // other commit for a group it does not know.
                None if generation < 0 => shard
                    .groups
                    .entry(group_id.to_string())
                    .or_insert_with(|| Group::new(group_id, config)),
                None => return Err(ResponseError::IllegalGeneration),
            };
            group.commit(now, member.0, member.1, generation, offsets.clone())?;
            let records = offsets
                .into_iter()
                .map(|((topic, partition), value)| OffsetsRecord::Offset {
                    group: group_id.to_string(),
                    topic,
                    partition,
                    value: Some(value),
                })
                .collect::<Vec<_>>();
            write::append(core, broker, shard.index, &records)
        })?
    }

    /// OffsetFetch: the committed offsets of `partitions` (every committed one when `None`).
    pub(crate) fn fetch(
        &self,
        core: &ClusterCore,
        broker: BrokerId,
        group_id: &str,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Result<Vec<(TopicPartition, Option<CommittedOffset>)>, ResponseError> {
        self.with_shard(core, broker, group_id, |shard, _| {
            let group = shard.groups.get(group_id);
            match partitions {
                Some(wanted) => wanted
                    .into_iter()
                    .map(|(topic, partition)| {
                        let committed = group.and_then(|g| g.committed(&topic, partition)).cloned();
                        ((topic, partition), committed)
                    })
                    .collect(),
                None => group
                    .map(|g| {
                        g.offsets()
                            .iter()
                            .map(|(k, v)| (k.clone(), Some(v.clone())))
                            .collect()
                    })
                    .unwrap_or_default(),
            }
        })
    }
}

impl Shard {
    /// After an operation on group `id`: deliver the held answers it completed, record what changed, and store
    /// the group's metadata when it became Stable or Empty.
    #[allow(clippy::too_many_arguments)]
    fn after(
        &mut self,
        core: &ClusterCore,
        id: &str,
        before: Before,
        done: Vec<Completion>,
        removal: MemberRemoval,
        now: i64,
        events: &mut Vec<ClusterEventKind>,
    ) {
        for completion in done {
            match completion {
                Completion::Join { member_id, result } => {
                    if let Some(tx) = self.joins.remove(&(id.to_string(), member_id)) {
                        let _ = tx.send(result);
                    }
                }
                Completion::Sync { member_id, result } => {
                    if let Some(tx) = self.syncs.remove(&(id.to_string(), member_id)) {
                        let _ = tx.send(result);
                    }
                }
            }
        }
        let Some(group) = self.groups.get(id) else {
            return;
        };
        let members = group.member_ids();
        for m in members.iter().filter(|m| !before.members.contains(m)) {
            let client_id = group
                .describe()
                .into_iter()
                .find(|d| &d.member_id == m)
                .map(|d| d.client_id)
                .unwrap_or_default();
            events.push(ClusterEventKind::GroupMemberJoined {
                group: id.to_string(),
                member: m.clone(),
                client_id,
            });
        }
        for m in before.members.iter().filter(|m| !members.contains(m)) {
            // Held answers of a removed member can never come.
            self.joins.remove(&(id.to_string(), m.clone()));
            self.syncs.remove(&(id.to_string(), m.clone()));
            events.push(ClusterEventKind::GroupMemberRemoved {
                group: id.to_string(),
                member: m.clone(),
                reason: removal,
            });
        }
        let (state, generation) = (group.state(), group.generation());
        if state == GroupState::PreparingRebalance && before.state != GroupState::PreparingRebalance
        {
            events.push(ClusterEventKind::GroupRebalanceStarted {
                group: id.to_string(),
                generation: before.generation,
            });
        }
        if generation != before.generation && state != GroupState::Empty {
            events.push(ClusterEventKind::GroupGenerationFormed {
                group: id.to_string(),
                generation,
                protocol: group.protocol().map(str::to_string),
                leader: group.leader().map(str::to_string),
                members: group.describe().into_iter().map(|d| d.member_id).collect(),
            });
        }
        let became_stable = state == GroupState::Stable
            && (before.state != GroupState::Stable || generation != before.generation);
        let became_empty = state == GroupState::Empty && generation != before.generation;
        if became_stable {
            events.push(ClusterEventKind::GroupStable {
                group: id.to_string(),
                generation,
            });
        }
        if became_stable || became_empty {
            let record = OffsetsRecord::Group {
                group: id.to_string(),
                value: Some(group.snapshot(now)),
            };
            if let Err(error) = write::append(core, self.broker, self.index, &[record]) {
                tracing::debug!(%error, group = id, "group metadata not written");
            }
        }
    }
}

/// The group settings of the broker config, by Kafka's names.
pub(crate) fn set_group_config(config: &mut GroupConfig, name: &str, value: i32) -> Option<()> {
    match name {
        "group.min.session.timeout.ms" => config.min_session_timeout_ms = value,
        "group.max.session.timeout.ms" => config.max_session_timeout_ms = value,
        "group.initial.rebalance.delay.ms" => config.initial_rebalance_delay_ms = value,
        _ => return None,
    }
    Some(())
}
