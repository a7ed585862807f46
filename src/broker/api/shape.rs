//! A walk over a request body that checks its shape before `kafka-protocol` decodes it.
//!
//! Why: the crate sizes a `Vec` from an array's declared length before reading any element, so a 20-byte frame
//! claiming two billion topics makes it ask for hundreds of gigabytes, which aborts the process (an allocation
//! failure is not a panic that could be caught). This walk follows the same schema (Kafka's request JSON files,
//! for the versions advertised), never allocates, and refuses an array whose elements are not actually there.
//! Once it passes, the crate's allocations are bounded by the bytes really received.
//!
//! It checks structure only; the crate still decodes and validates content (UTF-8 and so on).

use kafka_protocol::messages::ApiKey;

/// Where the body stopped making sense.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {api:?} v{version} body at byte {at}: {what}")]
pub(crate) struct ShapeError {
    pub api: ApiKey,
    pub version: i16,
    pub at: usize,
    pub what: &'static str,
}

struct Walk<'a> {
    buf: &'a [u8],
    pos: usize,
    flexible: bool,
}

type Step = Result<(), &'static str>;

impl Walk<'_> {
    fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    fn skip(&mut self, n: usize) -> Step {
        if n > self.remaining() {
            return Err("field runs past the end of the frame");
        }
        self.pos += n;
        Ok(())
    }

    fn fixed(&mut self, n: usize) -> Step {
        self.skip(n)
    }

    fn int(&mut self, n: usize) -> Result<i64, &'static str> {
        let bytes = self
            .buf
            .get(self.pos..self.pos + n)
            .ok_or("field runs past the end of the frame")?;
        self.pos += n;
        Ok(bytes.iter().fold(0i64, |acc, b| (acc << 8) | i64::from(*b)))
    }

    fn uvarint(&mut self) -> Result<u64, &'static str> {
        let mut value = 0u64;
        for shift in (0..35).step_by(7) {
            let byte = *self
                .buf
                .get(self.pos)
                .ok_or("varint runs past the end of the frame")?;
            self.pos += 1;
            value |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 5 bytes")
    }

    /// A (nullable) string: compact (varint length + 1) in flexible versions, i16 length otherwise.
    fn string(&mut self) -> Step {
        if self.flexible {
            let n = self.uvarint()?;
            self.skip(n.saturating_sub(1) as usize)
        } else {
            let n = self.int(2)? as i16;
            self.skip(n.max(0) as usize)
        }
    }

    /// (Nullable) bytes: compact in flexible versions, i32 length otherwise.
    fn bytes(&mut self) -> Step {
        if self.flexible {
            let n = self.uvarint()?;
            self.skip(n.saturating_sub(1) as usize)
        } else {
            let n = self.int(4)? as i32;
            self.skip(n.max(0) as usize)
        }
    }

    /// A (nullable) array whose every element must really be there.
    fn array(&mut self, mut element: impl FnMut(&mut Self) -> Step) -> Step {
        let count = if self.flexible {
            self.uvarint()?.saturating_sub(1)
        } else {
            (self.int(4)? as i32).max(0) as u64
        };
        // Every element takes at least one byte: a larger count is a lie, whatever the element type.
        if count > self.remaining() as u64 {
            return Err("array length larger than the bytes left in the frame");
        }
        for _ in 0..count {
            element(self)?;
        }
        Ok(())
    }

    /// The tagged-field section of flexible versions (each field skipped by its declared size).
    fn tags(&mut self) -> Step {
        if !self.flexible {
            return Ok(());
        }
        let count = self.uvarint()?;
        if count > self.remaining() as u64 {
            return Err("more tagged fields than bytes left");
        }
        for _ in 0..count {
            self.uvarint()?;
            let size = self.uvarint()?;
            self.skip(size as usize)?;
        }
        Ok(())
    }
}

/// Checks the shape of a request body of an advertised API and version (anything else passes through, the
/// dispatcher refuses it anyway).
pub(crate) fn check(api: ApiKey, version: i16, body: &[u8]) -> Result<(), ShapeError> {
    let v = version;
    let flexible = match api {
        ApiKey::Produce => v >= 9,
        ApiKey::Fetch => v >= 12,
        ApiKey::ListOffsets => v >= 6,
        ApiKey::Metadata => v >= 9,
        ApiKey::ApiVersions => v >= 3,
        ApiKey::CreateTopics => v >= 5,
        ApiKey::DeleteTopics => v >= 4,
        ApiKey::DeleteRecords => v >= 2,
        ApiKey::DescribeConfigs => v >= 4,
        ApiKey::InitProducerId => v >= 2,
        ApiKey::FindCoordinator => v >= 3,
        ApiKey::JoinGroup => v >= 6,
        ApiKey::SyncGroup => v >= 4,
        ApiKey::Heartbeat => v >= 4,
        ApiKey::LeaveGroup => v >= 4,
        ApiKey::OffsetCommit => v >= 8,
        ApiKey::OffsetFetch => v >= 6,
        ApiKey::OffsetDelete => false,
        ApiKey::ListGroups => v >= 3,
        ApiKey::DescribeGroups => v >= 5,
        ApiKey::DeleteGroups => v >= 2,
        ApiKey::OffsetForLeaderEpoch => v >= 4,
        _ => return Ok(()),
    };
    let mut w = Walk {
        buf: body,
        pos: 0,
        flexible,
    };
    let result = match api {
        ApiKey::Produce => produce(&mut w, v),
        ApiKey::Fetch => fetch(&mut w, v),
        ApiKey::ListOffsets => list_offsets(&mut w, v),
        ApiKey::Metadata => metadata(&mut w, v),
        ApiKey::ApiVersions => api_versions(&mut w, v),
        ApiKey::CreateTopics => create_topics(&mut w, v),
        ApiKey::DeleteTopics => delete_topics(&mut w, v),
        ApiKey::DeleteRecords => delete_records(&mut w),
        ApiKey::DescribeConfigs => describe_configs(&mut w, v),
        ApiKey::InitProducerId => init_producer_id(&mut w, v),
        ApiKey::FindCoordinator => find_coordinator(&mut w, v),
        ApiKey::JoinGroup => join_group(&mut w, v),
        ApiKey::SyncGroup => sync_group(&mut w, v),
        ApiKey::Heartbeat => heartbeat(&mut w, v),
        ApiKey::LeaveGroup => leave_group(&mut w, v),
        ApiKey::OffsetCommit => offset_commit(&mut w, v),
        ApiKey::OffsetFetch => offset_fetch(&mut w, v),
        ApiKey::OffsetDelete => offset_delete(&mut w),
        ApiKey::ListGroups => list_groups(&mut w, v),
        ApiKey::DescribeGroups => describe_groups(&mut w, v),
        ApiKey::DeleteGroups => delete_groups(&mut w),
        ApiKey::OffsetForLeaderEpoch => offset_for_leader_epoch(&mut w, v),
        _ => Ok(()),
    };
    result.map_err(|what| ShapeError {
        api,
        version,
        at: w.pos,
        what,
    })
}

const INT8: usize = 1;
const INT16: usize = 2;
const INT32: usize = 4;
const INT64: usize = 8;
const UUID: usize = 16;
const BOOL: usize = 1;

fn produce(w: &mut Walk, v: i16) -> Step {
    w.string()?; // transactional_id (v3+)
    w.fixed(INT16 + INT32)?; // acks, timeout_ms
    w.array(|w| {
        if v >= 13 {
            w.fixed(UUID)?;
        } else {
            w.string()?;
        }
        w.array(|w| {
            w.fixed(INT32)?; // index
            w.bytes()?; // records
            w.tags()
        })?;
        w.tags()
    })?;
    w.tags()
}

fn init_producer_id(w: &mut Walk, v: i16) -> Step {
    w.string()?; // transactional_id
    w.fixed(INT32)?; // transaction_timeout_ms
    if v >= 3 {
        w.fixed(INT64 + INT16)?; // producer_id, producer_epoch
    }
    w.tags()
}

fn fetch(w: &mut Walk, v: i16) -> Step {
    if v <= 14 {
        w.fixed(INT32)?; // replica_id
    }
    w.fixed(INT32 + INT32)?; // max_wait_ms, min_bytes
    if v >= 3 {
        w.fixed(INT32)?; // max_bytes
    }
    if v >= 4 {
        w.fixed(INT8)?; // isolation_level
    }
    if v >= 7 {
        w.fixed(INT32 + INT32)?; // session_id, session_epoch
    }
    let topic = |w: &mut Walk| if v >= 13 { w.fixed(UUID) } else { w.string() };
    w.array(|w| {
        topic(w)?;
        w.array(|w| {
            w.fixed(INT32)?; // partition
            if v >= 9 {
                w.fixed(INT32)?; // current_leader_epoch
            }
            w.fixed(INT64)?; // fetch_offset
            if v >= 12 {
                w.fixed(INT32)?; // last_fetched_epoch
            }
            if v >= 5 {
                w.fixed(INT64)?; // log_start_offset
            }
            w.fixed(INT32)?; // partition_max_bytes
            w.tags()
        })?;
        w.tags()
    })?;
    if v >= 7 {
        w.array(|w| {
            topic(w)?;
            w.array(|w| w.fixed(INT32))?;
            w.tags()
        })?;
    }
    if v >= 11 {
        w.string()?; // rack_id
    }
    w.tags()
}

fn list_offsets(w: &mut Walk, v: i16) -> Step {
    w.fixed(INT32)?; // replica_id
    if v >= 2 {
        w.fixed(INT8)?; // isolation_level
    }
    w.array(|w| {
        w.string()?;
        w.array(|w| {
            w.fixed(INT32)?; // partition_index
            if v >= 4 {
                w.fixed(INT32)?; // current_leader_epoch
            }
            w.fixed(INT64)?; // timestamp
            if v == 0 {
                w.fixed(INT32)?; // max_num_offsets
            }
            w.tags()
        })?;
        w.tags()
    })?;
    if v >= 10 {
        w.fixed(INT32)?; // timeout_ms
    }
    w.tags()
}

fn metadata(w: &mut Walk, v: i16) -> Step {
    w.array(|w| {
        if v >= 10 {
            w.fixed(UUID)?;
        }
        w.string()?;
        w.tags()
    })?;
    if v >= 4 {
        w.fixed(BOOL)?; // allow_auto_topic_creation
    }
    if (8..=10).contains(&v) {
        w.fixed(BOOL)?; // include_cluster_authorized_operations
    }
    if v >= 8 {
        w.fixed(BOOL)?; // include_topic_authorized_operations
    }
    w.tags()
}

fn api_versions(w: &mut Walk, v: i16) -> Step {
    if v >= 3 {
        w.string()?;
        w.string()?;
    }
    w.tags()
}

fn create_topics(w: &mut Walk, v: i16) -> Step {
    w.array(|w| {
        w.string()?; // name
        w.fixed(INT32 + INT16)?; // num_partitions, replication_factor
        w.array(|w| {
            w.fixed(INT32)?;
            w.array(|w| w.fixed(INT32))?;
            w.tags()
        })?;
        w.array(|w| {
            w.string()?;
            w.string()?;
            w.tags()
        })?;
        w.tags()
    })?;
    w.fixed(INT32)?; // timeout_ms
    if v >= 1 {
        w.fixed(BOOL)?; // validate_only
    }
    w.tags()
}

fn delete_topics(w: &mut Walk, v: i16) -> Step {
    if v >= 6 {
        w.array(|w| {
            w.string()?;
            w.fixed(UUID)?;
            w.tags()
        })?;
    } else {
        w.array(|w| w.string())?;
    }
    w.fixed(INT32)?; // timeout_ms
    w.tags()
}

fn delete_records(w: &mut Walk) -> Step {
    w.array(|w| {
        w.string()?;
        w.array(|w| {
            w.fixed(INT32 + INT64)?;
            w.tags()
        })?;
        w.tags()
    })?;
    w.fixed(INT32)?; // timeout_ms
    w.tags()
}

fn describe_configs(w: &mut Walk, v: i16) -> Step {
    w.array(|w| {
        w.fixed(INT8)?; // resource_type
        w.string()?; // resource_name
        w.array(|w| w.string())?; // configuration_keys
        w.tags()
    })?;
    if v >= 1 {
        w.fixed(BOOL)?; // include_synonyms
    }
    if v >= 3 {
        w.fixed(BOOL)?; // include_documentation
    }
    w.tags()
}

fn find_coordinator(w: &mut Walk, v: i16) -> Step {
    if v <= 3 {
        w.string()?; // key
    }
    if v >= 1 {
        w.fixed(INT8)?; // key_type
    }
    if v >= 4 {
        w.array(|w| w.string())?; // coordinator_keys
    }
    w.tags()
}

fn join_group(w: &mut Walk, v: i16) -> Step {
    w.string()?; // group_id
    w.fixed(INT32)?; // session_timeout_ms
    if v >= 1 {
        w.fixed(INT32)?; // rebalance_timeout_ms
    }
    w.string()?; // member_id
    if v >= 5 {
        w.string()?; // group_instance_id
    }
    w.string()?; // protocol_type
    w.array(|w| {
        w.string()?; // name
        w.bytes()?; // metadata
        w.tags()
    })?;
    if v >= 8 {
        w.string()?; // reason
    }
    w.tags()
}

fn sync_group(w: &mut Walk, v: i16) -> Step {
    w.string()?; // group_id
    w.fixed(INT32)?; // generation_id
    w.string()?; // member_id
    if v >= 3 {
        w.string()?; // group_instance_id
    }
    if v >= 5 {
        w.string()?; // protocol_type
        w.string()?; // protocol_name
    }
    w.array(|w| {
        w.string()?; // member_id
        w.bytes()?; // assignment
        w.tags()
    })?;
    w.tags()
}

fn heartbeat(w: &mut Walk, v: i16) -> Step {
    w.string()?; // group_id
    w.fixed(INT32)?; // generation_id
    w.string()?; // member_id
    if v >= 3 {
        w.string()?; // group_instance_id
    }
    w.tags()
}

fn leave_group(w: &mut Walk, v: i16) -> Step {
    w.string()?; // group_id
    if v <= 2 {
        w.string()?; // member_id
    } else {
        w.array(|w| {
            w.string()?; // member_id
            w.string()?; // group_instance_id
            if v >= 5 {
                w.string()?; // reason
            }
            w.tags()
        })?;
    }
    w.tags()
}

fn offset_commit(w: &mut Walk, v: i16) -> Step {
    w.string()?; // group_id
    w.fixed(INT32)?; // generation_id_or_member_epoch (v1+)
    w.string()?; // member_id (v1+)
    if v >= 7 {
        w.string()?; // group_instance_id
    }
    if (2..=4).contains(&v) {
        w.fixed(INT64)?; // retention_time_ms
    }
    w.array(|w| {
        w.string()?; // name
        w.array(|w| {
            w.fixed(INT32 + INT64)?; // partition_index, committed_offset
            if v >= 6 {
                w.fixed(INT32)?; // committed_leader_epoch
            }
            w.string()?; // committed_metadata
            w.tags()
        })?;
        w.tags()
    })?;
    w.tags()
}

fn offset_fetch(w: &mut Walk, v: i16) -> Step {
    let topics = |w: &mut Walk| {
        w.array(|w| {
            w.string()?; // name
            w.array(|w| w.fixed(INT32))?; // partition_indexes
            w.tags()
        })
    };
    if v <= 7 {
        w.string()?; // group_id
        topics(w)?;
    } else {
        w.array(|w| {
            w.string()?; // group_id
            if v >= 9 {
                w.string()?; // member_id
                w.fixed(INT32)?; // member_epoch
            }
            topics(w)?;
            w.tags()
        })?;
    }
    if v >= 7 {
        w.fixed(BOOL)?; // require_stable
    }
    w.tags()
}

fn offset_delete(w: &mut Walk) -> Step {
    w.string()?; // group_id
    w.array(|w| {
        w.string()?; // name
        w.array(|w| w.fixed(INT32)) // partition_index
    })
}

fn list_groups(w: &mut Walk, v: i16) -> Step {
    if v >= 4 {
        w.array(|w| w.string())?; // states_filter
    }
    if v >= 5 {
        w.array(|w| w.string())?; // types_filter
    }
    w.tags()
}

fn describe_groups(w: &mut Walk, v: i16) -> Step {
    w.array(|w| w.string())?; // groups
    if v >= 3 {
        w.fixed(BOOL)?; // include_authorized_operations
    }
    w.tags()
}

fn offset_for_leader_epoch(w: &mut Walk, v: i16) -> Step {
    if v >= 3 {
        w.fixed(INT32)?; // replica_id
    }
    w.array(|w| {
        w.string()?; // topic
        w.array(|w| {
            w.fixed(INT32 + INT32 + INT32)?; // partition, current_leader_epoch, leader_epoch
            w.tags()
        })?;
        w.tags()
    })?;
    w.tags()
}

fn delete_groups(w: &mut Walk) -> Step {
    w.array(|w| w.string())?; // groups_names
    w.tags()
}

#[cfg(test)]
mod tests {
    //! The walk must accept exactly what the crate encodes, for every advertised version.
    use super::*;

    fn assert_walks(api: ApiKey, body: &[u8], version: i16) {
        check(api, version, body).unwrap_or_else(|e| panic!("{e}"));
        // The walk ends exactly where the crate's encoding ends: it is in step with the crate's layout.
        let end = consumed(api, version, body);
        assert_eq!(
            end,
            body.len(),
            "{api:?} v{version}: walk stopped at {end} of {}",
            body.len()
        );
        if !body.is_empty() {
            assert!(
                check(api, version, &body[..body.len() - 1]).is_err(),
                "{api:?} v{version} truncated"
            );
        }
    }

    fn consumed(api: ApiKey, version: i16, body: &[u8]) -> usize {
        // Append a marker byte: the walk must stop before it (check() ignores trailing bytes).
        let mut longer = body.to_vec();
        longer.push(0xAA);
        let mut ok_len = body.len();
        for cut in (0..=longer.len()).rev() {
            if check(api, version, &longer[..cut]).is_ok() {
                ok_len = cut;
            } else {
                break;
            }
        }
        ok_len
    }

    #[test]
    fn the_walk_follows_the_crate_for_every_advertised_version() {
        for &(api, _, _) in &super::super::SUPPORTED_APIS {
            let (min, max) = super::super::supported_versions(api).unwrap();
            for v in min..=max {
                let body = super::super::samples::body(api, v, &Default::default());
                assert_walks(api, &body, v);
            }
        }
    }

    #[test]
    fn a_lying_array_length_is_refused_before_anything_is_allocated() {
        // Metadata v1: topics array claiming i32::MAX entries, then nothing.
        let body = [0x7f, 0xff, 0xff, 0xff];
        assert!(check(ApiKey::Metadata, 1, &body).is_err());
        // Produce v9 (flexible): null transactional id, acks, timeout, then a compact array of 2^32-2 topics.
        let body = [
            0, 0xff, 0xff, 0, 0, 0x75, 0x30, 0xff, 0xff, 0xff, 0xff, 0x0f,
        ];
        assert!(check(ApiKey::Produce, 9, &body).is_err());
    }
}
