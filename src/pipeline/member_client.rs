//! librdkafka's side of a group member: its configuration, the callbacks that put rebalances and auto-commits
//! into the history, and the generation read from librdkafka's group metadata.

use std::ffi::CStr;
use std::sync::Arc;

use rdkafka::bindings as rd;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::KafkaResult;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::group::GroupShared;
use super::{lock, Shared};
use crate::history::{CommittedOffset, GroupEvent, GroupEventKind};
use crate::scenario::CommitPolicy;

/// librdkafka's callbacks for one member: rebalances and auto-commits go into the history.
pub(super) struct MemberContext {
    pub(super) consumer: u32,
    pub(super) shared: Arc<Shared>,
    pub(super) group: Arc<GroupShared>,
}

impl ClientContext for MemberContext {}

impl ConsumerContext for MemberContext {
    fn rebalance(
        &self,
        base: &BaseConsumer<MemberContext>,
        err: rd::rd_kafka_resp_err_t,
        tpl: &mut TopicPartitionList,
    ) {
        let partitions: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        let cooperative = matches!(base.rebalance_protocol(), RebalanceProtocol::Cooperative);
        let assigning = err == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
        if assigning && self.group.config.commit == CommitPolicy::WithSink {
            // The sink holds the offsets: the new owner starts where the data ends.
            let stored = self.shared.sink.offsets();
            for (topic, partition) in &partitions {
                let at = stored
                    .get(&(topic.clone(), *partition))
                    .copied()
                    .unwrap_or(0);
                let _ = tpl.set_partition_offset(topic, *partition, Offset::Offset(at));
            }
        }
        let kind = if assigning {
            GroupEventKind::Assigned {
                partitions: partitions.clone(),
            }
        } else if base.assignment_lost() {
            GroupEventKind::Lost {
                partitions: partitions.clone(),
            }
        } else {
            GroupEventKind::Revoked {
                partitions: partitions.clone(),
            }
        };
        // Recorded before the assignment takes effect, so it precedes every write from it.
        self.record(base, kind);
        {
            // A member is in the map from its first assignment on (even an empty one): it has joined.
            let mut assigned = lock(&self.group.assigned);
            if assigning {
                assigned
                    .entry(self.consumer)
                    .or_default()
                    .extend(partitions);
            } else if let Some(mine) = assigned.get_mut(&self.consumer) {
                if cooperative {
                    for p in &partitions {
                        mine.remove(p);
                    }
                } else {
                    mine.clear();
                }
            }
        }
        let result = match (assigning, cooperative) {
            (true, true) => base.incremental_assign(tpl),
            (true, false) => base.assign(tpl),
            (false, true) => base.incremental_unassign(tpl),
            (false, false) => base.unassign(),
        };
        if let Err(e) = result {
            tracing::warn!(consumer = self.consumer, error = %e, "applying a rebalance failed");
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        // Explicit commits are recorded where they are made; these are librdkafka's own.
        if self.group.config.commit != CommitPolicy::Auto {
            return;
        }
        let offsets = committed_offsets(offsets);
        if offsets.is_empty() {
            return;
        }
        let kind = match result {
            Ok(()) => {
                note_committed(&self.group, &offsets);
                GroupEventKind::Committed {
                    offsets,
                    auto: true,
                }
            }
            Err(e) => GroupEventKind::CommitFailed {
                offsets,
                auto: true,
                error: e.to_string(),
            },
        };
        self.shared.recorder.group(GroupEvent {
            at_ms: self.shared.clock.now_ms(),
            consumer: self.consumer,
            generation: -1,
            member_id: String::new(),
            kind,
        });
    }
}

impl MemberContext {
    pub(super) fn record(&self, base: &BaseConsumer<MemberContext>, kind: GroupEventKind) {
        let (generation, member_id) = identity(base);
        tracing::debug!(
            consumer = self.consumer,
            generation,
            member_id,
            ?kind,
            "group event"
        );
        self.shared.recorder.group(GroupEvent {
            at_ms: self.shared.clock.now_ms(),
            consumer: self.consumer,
            generation,
            member_id,
            kind,
        });
    }
}

/// The member's generation and id as librdkafka holds them now. librdkafka has no getter for the generation:
/// it is read from the group metadata's documented serialisation (`rd_kafka_consumer_group_metadata_write`:
/// the magic `CGMDv2:`, the generation as a native i32, then the NUL-terminated group and member ids).
fn identity<C: ConsumerContext>(base: &BaseConsumer<C>) -> (i32, String) {
    const MAGIC: &[u8] = b"CGMDv2:";
    // SAFETY: the handle is live for the call; the metadata and the buffer are freed with librdkafka's own
    // functions; the buffer is read only within the size librdkafka wrote.
    unsafe {
        let rk = base.client().native_ptr();
        let cgmd = rd::rd_kafka_consumer_group_metadata(rk);
        if cgmd.is_null() {
            return (-1, String::new());
        }
        let mut buffer: *mut std::ffi::c_void = std::ptr::null_mut();
        let mut size: usize = 0;
        let error = rd::rd_kafka_consumer_group_metadata_write(cgmd, &mut buffer, &mut size);
        rd::rd_kafka_consumer_group_metadata_destroy(cgmd);
        if !error.is_null() {
            rd::rd_kafka_error_destroy(error);
            return (-1, String::new());
        }
        let bytes = std::slice::from_raw_parts(buffer as *const u8, size).to_vec();
        rd::rd_kafka_mem_free(rk, buffer);
        parse_identity(&bytes, MAGIC).unwrap_or((-1, String::new()))
    }
}

fn parse_identity(bytes: &[u8], magic: &[u8]) -> Option<(i32, String)> {
    let rest = bytes.strip_prefix(magic)?;
    let generation = i32::from_ne_bytes(rest.get(..4)?.try_into().ok()?);
    let rest = &rest[4..];
    let group_end = rest.iter().position(|b| *b == 0)?;
    let member = CStr::from_bytes_until_nul(&rest[group_end + 1..]).ok()?;
    Some((generation, member.to_string_lossy().into_owned()))
}

fn committed_offsets(tpl: &TopicPartitionList) -> Vec<CommittedOffset> {
    tpl.elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(o) => Some(CommittedOffset {
                topic: e.topic().to_string(),
                partition: e.partition(),
                offset: o,
            }),
            _ => None,
        })
        .collect()
}

pub(super) fn note_committed(group: &GroupShared, offsets: &[CommittedOffset]) {
    let mut committed = lock(&group.committed);
    for o in offsets {
        let at = committed
            .entry((o.topic.clone(), o.partition))
            .or_insert(o.offset);
        *at = (*at).max(o.offset);
    }
}

pub(super) fn client_config(consumer: u32, group: &GroupShared) -> ClientConfig {
    let c = &group.config;
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", &group.bootstrap)
        .set("group.id", &c.group_id)
        .set("client.id", format!("etl-harness-consumer-{}", consumer))
        .set("partition.assignment.strategy", c.assignor.client_name())
        .set(
            "session.timeout.ms",
            c.session_timeout.as_millis().to_string(),
        )
        .set(
            "max.poll.interval.ms",
            c.max_poll_interval.as_millis().to_string(),
        )
        .set("auto.offset.reset", "earliest")
        .set(
            "enable.auto.commit",
            (c.commit == CommitPolicy::Auto).to_string(),
        )
        .set(
            "auto.commit.interval.ms",
            c.auto_commit_interval.as_millis().to_string(),
        )
        // Heartbeats every third of the session, as the Java client defaults to.
        .set(
            "heartbeat.interval.ms",
            (c.session_timeout.as_millis() / 3).max(100).to_string(),
        )
        .set("topic.metadata.refresh.interval.ms", "1000");
    if let Some(prefix) = &c.group_instance_id {
        config.set("group.instance.id", format!("{prefix}-{}", consumer));
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_identity_is_read_from_librdkafkas_serialisation() {
        let mut bytes = b"CGMDv2:".to_vec();
        bytes.extend_from_slice(&7i32.to_ne_bytes());
        bytes.extend_from_slice(b"etl-group\0rdkafka-1234\0\x01");
        assert_eq!(
            parse_identity(&bytes, b"CGMDv2:"),
            Some((7, "rdkafka-1234".to_string()))
        );
        assert_eq!(parse_identity(b"CGMDv1:", b"CGMDv2:"), None);
    }
}
