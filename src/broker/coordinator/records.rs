//! The records of `__consumer_offsets`, in Kafka 3.9's formats (`OffsetCommitKey`/`OffsetCommitValue`,
//! `GroupMetadataKey`/`GroupMetadataValue` of the group coordinator's message definitions), and which partition a
//! group lives in. A tool that reads the topic with Kafka's own formatter sees what a real broker writes.
//!
//! - Offset commit: key v1 `(group, topic, partition)`, value v3 `(offset, leader epoch, metadata, commit time)`.
//! - Group metadata: key v2 `(group)`, value v3 `(protocol type, generation, protocol, leader, state time,
//!   members (id, instance id, client id, client host, rebalance timeout, session timeout, subscription,
//!   assignment))`.
//! - A null value is a tombstone: the offset, or the whole group, is gone.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::broker::group::{CommittedOffset, GroupSnapshot, SnapshotMember};

/// The internal topic offsets and group metadata live in.
pub(crate) const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Java's `String.hashCode` over UTF-16 code units.
pub(crate) fn java_hash(s: &str) -> i32 {
    s.encode_utf16().fold(0i32, |h, unit| {
        h.wrapping_mul(31).wrapping_add(i32::from(unit))
    })
}

/// The `__consumer_offsets` partition of `group`: Kafka's `Utils.abs(groupId.hashCode()) % partitions`, where
/// `Utils.abs` maps `Integer.MIN_VALUE` to 0.
pub(crate) fn partition_for(group: &str, partitions: i32) -> i32 {
    let hash = java_hash(group);
    let abs = if hash == i32::MIN { 0 } else { hash.abs() };
    abs % partitions.max(1)
}

/// A decoded `__consumer_offsets` record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OffsetsRecord {
    /// A committed offset (`None`: deleted).
    Offset {
        group: String,
        topic: String,
        partition: i32,
        value: Option<CommittedOffset>,
    },
    /// A group's metadata (`None`: the group was deleted).
    Group {
        group: String,
        value: Option<GroupSnapshot>,
    },
}

/// Why a record of `__consumer_offsets` could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed __consumer_offsets record: {0}")]
pub(crate) struct RecordError(&'static str);

fn put_string(buf: &mut BytesMut, s: &str) {
    buf.put_i16(i16::try_from(s.len()).unwrap_or(i16::MAX));
    buf.put_slice(&s.as_bytes()[..s.len().min(i16::MAX as usize)]);
}

fn put_nullable_string(buf: &mut BytesMut, s: Option<&str>) {
    match s {
        Some(s) => put_string(buf, s),
        None => buf.put_i16(-1),
    }
}

fn put_bytes(buf: &mut BytesMut, b: &[u8]) {
    buf.put_i32(i32::try_from(b.len()).unwrap_or(i32::MAX));
    buf.put_slice(b);
}

impl OffsetsRecord {
    /// The record's key and value (`None` for a tombstone).
    pub(crate) fn encode(&self) -> (Bytes, Option<Bytes>) {
        let mut key = BytesMut::new();
        match self {
            OffsetsRecord::Offset {
                group,
                topic,
                partition,
                value,
            } => {
                key.put_i16(1);
                put_string(&mut key, group);
                put_string(&mut key, topic);
                key.put_i32(*partition);
                let value = value.as_ref().map(|v| {
                    let mut buf = BytesMut::new();
                    buf.put_i16(3);
                    buf.put_i64(v.offset);
                    buf.put_i32(v.leader_epoch);
                    put_string(&mut buf, v.metadata.as_deref().unwrap_or(""));
                    buf.put_i64(v.commit_timestamp_ms);
                    buf.freeze()
                });
                (key.freeze(), value)
            }
            OffsetsRecord::Group { group, value } => {
                key.put_i16(2);
                put_string(&mut key, group);
                let value = value.as_ref().map(|g| {
                    let mut buf = BytesMut::new();
                    buf.put_i16(3);
                    put_string(&mut buf, &g.protocol_type);
                    buf.put_i32(g.generation);
                    put_nullable_string(&mut buf, g.protocol.as_deref());
                    put_nullable_string(&mut buf, g.leader.as_deref());
                    buf.put_i64(g.state_timestamp_ms);
                    buf.put_i32(i32::try_from(g.members.len()).unwrap_or(i32::MAX));
                    for m in &g.members {
                        put_string(&mut buf, &m.member_id);
                        put_nullable_string(&mut buf, m.instance_id.as_deref());
                        put_string(&mut buf, &m.client_id);
                        put_string(&mut buf, &m.client_host);
                        buf.put_i32(m.rebalance_timeout_ms);
                        buf.put_i32(m.session_timeout_ms);
                        put_bytes(&mut buf, &m.subscription);
                        put_bytes(&mut buf, &m.assignment);
                    }
                    buf.freeze()
                });
                (key.freeze(), value)
            }
        }
    }

    /// Reads a record back; `Ok(None)` for a key version this coordinator does not write (skipped, as Kafka skips
    /// records of other coordinators' types).
    pub(crate) fn decode(
        key: &[u8],
        value: Option<&[u8]>,
    ) -> Result<Option<OffsetsRecord>, RecordError> {
        let mut key = Reader(key);
        match key.i16()? {
            0 | 1 => {
                let group = key.string()?;
                let topic = key.string()?;
                let partition = key.i32()?;
                let value = match value {
                    None => None,
                    Some(v) => Some(decode_offset(v)?),
                };
                Ok(Some(OffsetsRecord::Offset {
                    group,
                    topic,
                    partition,
                    value,
                }))
            }
            2 => {
                let group = key.string()?;
                let value = match value {
                    None => None,
                    Some(v) => Some(decode_group(v)?),
                };
                Ok(Some(OffsetsRecord::Group { group, value }))
            }
            _ => Ok(None),
        }
    }
}

fn decode_offset(value: &[u8]) -> Result<CommittedOffset, RecordError> {
    let mut r = Reader(value);
    let version = r.i16()?;
    let offset = r.i64()?;
    let leader_epoch = if version >= 3 { r.i32()? } else { -1 };
    let metadata = r.string()?;
    let commit_timestamp_ms = r.i64()?;
    Ok(CommittedOffset {
        offset,
        leader_epoch,
        metadata: Some(metadata),
        commit_timestamp_ms,
    })
}

fn decode_group(value: &[u8]) -> Result<GroupSnapshot, RecordError> {
    let mut r = Reader(value);
    let version = r.i16()?;
    if !(0..=3).contains(&version) {
        return Err(RecordError("unknown GroupMetadataValue version"));
    }
    let protocol_type = r.string()?;
    let generation = r.i32()?;
    let protocol = r.nullable_string()?;
    let leader = r.nullable_string()?;
    let state_timestamp_ms = if version >= 2 { r.i64()? } else { -1 };
    let count = r.i32()?;
    let mut members = Vec::new();
    for _ in 0..count.max(0) {
        let member_id = r.string()?;
        let instance_id = if version >= 3 {
            r.nullable_string()?
        } else {
            None
        };
        let client_id = r.string()?;
        let client_host = r.string()?;
        let rebalance_timeout_ms = if version >= 1 { r.i32()? } else { 0 };
        let session_timeout_ms = r.i32()?;
        let subscription = r.bytes()?;
        let assignment = r.bytes()?;
        members.push(SnapshotMember {
            member_id,
            instance_id,
            client_id,
            client_host,
            rebalance_timeout_ms: if version >= 1 {
                rebalance_timeout_ms
            } else {
                session_timeout_ms
            },
            session_timeout_ms,
            subscription,
            assignment,
        });
    }
    Ok(GroupSnapshot {
        protocol_type,
        generation,
        protocol,
        leader,
        state_timestamp_ms,
        members,
    })
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn need(&self, n: usize) -> Result<(), RecordError> {
        if self.0.remaining() < n {
            Err(RecordError("cut short"))
        } else {
            Ok(())
        }
    }
    fn i16(&mut self) -> Result<i16, RecordError> {
        self.need(2)?;
        Ok(self.0.get_i16())
    }
    fn i32(&mut self) -> Result<i32, RecordError> {
        self.need(4)?;
        Ok(self.0.get_i32())
    }
    fn i64(&mut self) -> Result<i64, RecordError> {
        self.need(8)?;
        Ok(self.0.get_i64())
    }
    fn nullable_string(&mut self) -> Result<Option<String>, RecordError> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        let len = len as usize;
        self.need(len)?;
        let s = std::str::from_utf8(&self.0[..len])
            .map_err(|_| RecordError("string is not UTF-8"))?
            .to_string();
        self.0.advance(len);
        Ok(Some(s))
    }
    fn string(&mut self) -> Result<String, RecordError> {
        self.nullable_string()?
            .ok_or(RecordError("null where a string is required"))
    }
    fn bytes(&mut self) -> Result<Bytes, RecordError> {
        let len = self.i32()?;
        if len < 0 {
            return Ok(Bytes::new());
        }
        let len = len as usize;
        self.need(len)?;
        let b = Bytes::copy_from_slice(&self.0[..len]);
        self.0.advance(len);
        Ok(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values Java's `"...".hashCode()` gives (checked with JDK 17's `jshell`), and Kafka's partition for them.
    #[test]
    fn partitions_follow_java_string_hash_and_utils_abs() {
        assert_eq!(java_hash(""), 0);
        assert_eq!(java_hash("etl"), 100_765);
        assert_eq!(java_hash("connect-cluster"), 1_440_343_063);
        assert_eq!(partition_for("connect-cluster", 50), 13);
        // A negative hash: abs, then modulo.
        assert_eq!(java_hash("openmrs-etl"), -536_456_908);
        assert_eq!(partition_for("openmrs-etl", 50), 8);
        // "polygenelubricants".hashCode() == Integer.MIN_VALUE: Utils.abs gives 0, so partition 0.
        assert_eq!(java_hash("polygenelubricants"), i32::MIN);
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        // Non-ASCII counts UTF-16 units, as Java does.
        assert_eq!(java_hash("é"), 233);
    }

    #[test]
    fn records_round_trip() {
        let offset = OffsetsRecord::Offset {
            group: "g".into(),
            topic: "t".into(),
            partition: 3,
            value: Some(CommittedOffset {
                offset: 42,
                leader_epoch: 7,
                metadata: Some("m".into()),
                commit_timestamp_ms: 1_000,
            }),
        };
        let group = OffsetsRecord::Group {
            group: "g".into(),
            value: Some(GroupSnapshot {
                protocol_type: "consumer".into(),
                generation: 4,
                protocol: Some("range".into()),
                leader: Some("m-1".into()),
                state_timestamp_ms: 5,
                members: vec![SnapshotMember {
                    member_id: "m-1".into(),
                    instance_id: Some("i".into()),
                    client_id: "c".into(),
                    client_host: "/127.0.0.1".into(),
                    rebalance_timeout_ms: 300_000,
                    session_timeout_ms: 45_000,
                    subscription: Bytes::from_static(b"sub"),
                    assignment: Bytes::from_static(b"asg"),
                }],
            }),
        };
        for record in [offset, group] {
            let (key, value) = record.encode();
            assert_eq!(
                OffsetsRecord::decode(&key, value.as_deref()),
                Ok(Some(record.clone()))
            );
        }
        let tombstone = OffsetsRecord::Group {
            group: "g".into(),
            value: None,
        };
        let (key, value) = tombstone.encode();
        assert_eq!(OffsetsRecord::decode(&key, None), Ok(Some(tombstone)));
        assert!(value.is_none());
        assert!(OffsetsRecord::decode(&[0, 1, 0], None).is_err());
    }
}
