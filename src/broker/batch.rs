//! Record batches (magic v2) as bytes: header parsing, the checks Kafka makes on a produced batch, the in-place
//! rewrite of base offset and partition leader epoch (both outside the CRC), and a record reader for the few places
//! that need keys and timestamps (compaction, ListOffsets by timestamp).
//!
//! Everything here reads untrusted bytes and returns errors; nothing indexes past a checked length.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{Decompressor, Gzip, Lz4, Snappy, Zstd};

/// Bytes before the records: base offset (8) length (4) leader epoch (4) magic (1) crc (4) attributes (2)
/// last offset delta (4) base timestamp (8) max timestamp (8) producer id (8) epoch (2) base sequence (4) count (4).
pub(crate) const HEADER_LEN: usize = 61;
/// Bytes counted by the batch length field start after base offset and length.
const LENGTH_OFFSET: usize = 12;
const CRC_POS: usize = 17;
const CRC_START: usize = 21;
const MAGIC_POS: usize = 16;
const EPOCH_POS: usize = 12;

/// A malformed record batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BatchError {
    #[error("record batch shorter than its {HEADER_LEN}-byte header ({0} bytes)")]
    Short(usize),
    #[error("record batch length field {declared} does not match the {actual} bytes sent")]
    Length { declared: i64, actual: usize },
    #[error("record batch magic {0} is not 2 (only v2 batches are accepted)")]
    Magic(i8),
    #[error("record batch CRC mismatch (header {expected:#010x}, computed {actual:#010x})")]
    Crc { expected: u32, actual: u32 },
    #[error("record batch header is inconsistent: {0}")]
    Header(&'static str),
    #[error("records inside the batch are malformed: {0}")]
    Records(&'static str),
    #[error("cannot decompress records: {0}")]
    Decompress(String),
}

/// The header fields the broker uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchHeader {
    pub base_offset: i64,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub records_count: i32,
}

impl BatchHeader {
    pub(crate) fn compression(&self) -> i16 {
        self.attributes & 0x07
    }
    pub(crate) fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }
}

/// Reads the header of one batch that starts at `data[0]` (the slice may hold more batches after it).
pub(crate) fn parse_header(data: &[u8]) -> Result<(BatchHeader, usize), BatchError> {
    if data.len() < HEADER_LEN {
        return Err(BatchError::Short(data.len()));
    }
    let mut b = data;
    let base_offset = b.get_i64();
    let length = b.get_i32();
    let total = LENGTH_OFFSET as i64 + length as i64;
    if length < (HEADER_LEN - LENGTH_OFFSET) as i32 || total > data.len() as i64 {
        return Err(BatchError::Length {
            declared: length as i64,
            actual: data.len().saturating_sub(LENGTH_OFFSET),
        });
    }
    let _leader_epoch = b.get_i32();
    let magic = b.get_i8();
    if magic != 2 {
        return Err(BatchError::Magic(magic));
    }
    let _crc = b.get_u32();
    let attributes = b.get_i16();
    let last_offset_delta = b.get_i32();
    let base_timestamp = b.get_i64();
    let max_timestamp = b.get_i64();
    let producer_id = b.get_i64();
    let _producer_epoch = b.get_i16();
    let _base_sequence = b.get_i32();
    let records_count = b.get_i32();
    Ok((
        BatchHeader {
            base_offset,
            attributes,
            last_offset_delta,
            base_timestamp,
            max_timestamp,
            producer_id,
            records_count,
        },
        total as usize,
    ))
}

/// What a producer may send in one partition's `records` field: exactly one v2 batch, CRC intact.
/// Size is checked against `max_message_bytes` before the CRC, as Kafka does.
pub(crate) fn validate_produced(
    data: &[u8],
    max_message_bytes: i64,
) -> Result<BatchHeader, ProducedBatchError> {
    let (header, len) = parse_header(data).map_err(ProducedBatchError::Corrupt)?;
    if len != data.len() {
        return Err(ProducedBatchError::Invalid(
            "a produce request must carry exactly one record batch per partition",
        ));
    }
    if len as i64 > max_message_bytes {
        return Err(ProducedBatchError::TooLarge {
            size: len,
            limit: max_message_bytes,
        });
    }
    check_crc(data).map_err(ProducedBatchError::Corrupt)?;
    if header.last_offset_delta < 0 || header.records_count < 0 {
        return Err(ProducedBatchError::Corrupt(BatchError::Header(
            "negative record count or offset delta",
        )));
    }
    if header.records_count == 0 || header.last_offset_delta + 1 != header.records_count {
        return Err(ProducedBatchError::Invalid(
            "record count does not match the last offset delta",
        ));
    }
    if header.compression() > 4 {
        return Err(ProducedBatchError::Corrupt(BatchError::Header(
            "unknown compression codec",
        )));
    }
    if header.is_control() {
        return Err(ProducedBatchError::Invalid(
            "clients may not produce control batches",
        ));
    }
    Ok(header)
}

/// Checks the CRC of one whole batch (`batch` is exactly the batch, at least [`HEADER_LEN`] bytes long).
pub(crate) fn check_crc(batch: &[u8]) -> Result<(), BatchError> {
    if batch.len() < HEADER_LEN {
        return Err(BatchError::Short(batch.len()));
    }
    let expected = u32::from_be_bytes([
        batch[CRC_POS],
        batch[CRC_POS + 1],
        batch[CRC_POS + 2],
        batch[CRC_POS + 3],
    ]);
    let actual = crc32c::crc32c(&batch[CRC_START..]);
    if expected != actual {
        return Err(BatchError::Crc { expected, actual });
    }
    Ok(())
}

/// Why a produced batch is refused; each maps to the error code Kafka answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProducedBatchError {
    #[error("corrupt record batch: {0}")]
    Corrupt(BatchError),
    #[error("record batch of {size} bytes exceeds max.message.bytes {limit}")]
    TooLarge { size: usize, limit: i64 },
    #[error("invalid record batch: {0}")]
    Invalid(&'static str),
}

/// `data` with base offset and partition leader epoch set; the CRC does not cover them. When `data` is the only
/// handle on its buffer (a produced batch whose request frame is otherwise gone) the two fields are written in
/// place and the buffer becomes the stored batch; otherwise the batch is copied.
pub(crate) fn with_offset_and_epoch(data: Bytes, base_offset: i64, leader_epoch: i32) -> Bytes {
    match data.try_into_mut() {
        Ok(mut own) => {
            own[..8].copy_from_slice(&base_offset.to_be_bytes());
            own[EPOCH_POS..MAGIC_POS].copy_from_slice(&leader_epoch.to_be_bytes());
            own.freeze()
        }
        Err(shared) => {
            let mut out = BytesMut::with_capacity(shared.len());
            out.put_i64(base_offset);
            out.extend_from_slice(&shared[8..EPOCH_POS]);
            out.put_i32(leader_epoch);
            out.extend_from_slice(&shared[MAGIC_POS..]);
            out.freeze()
        }
    }
}

/// One record of a batch, as the broker needs it.
#[derive(Debug, Clone)]
pub(crate) struct RecordView {
    pub offset: i64,
    pub timestamp: i64,
    pub key: Option<Bytes>,
    pub is_tombstone: bool,
    /// The record's bytes including its length prefix, valid as long as base offset and base timestamp stay.
    pub raw: Bytes,
}

/// Reads every record of a stored batch (decompressing it if needed).
pub(crate) fn records(batch: &Bytes) -> Result<(BatchHeader, Vec<RecordView>), BatchError> {
    let (header, len) = parse_header(batch)?;
    let mut body = batch.slice(HEADER_LEN..len);
    let body = match header.compression() {
        0 => body,
        1 => decompress::<Gzip>(&mut body)?,
        2 => decompress::<Snappy>(&mut body)?,
        3 => decompress::<Lz4>(&mut body)?,
        4 => decompress::<Zstd>(&mut body)?,
        _ => return Err(BatchError::Header("unknown compression codec")),
    };
    let count = usize::try_from(header.records_count)
        .map_err(|_| BatchError::Header("negative record count"))?;
    // Each record takes at least 7 bytes, so a count above that bound is a lie; don't let it size an allocation.
    let mut out = Vec::with_capacity(count.min(body.len() / 7 + 1));
    let mut rest = body;
    for _ in 0..count {
        out.push(read_record(&mut rest, &header)?);
    }
    Ok((header, out))
}

fn decompress<D: Decompressor<Bytes>>(body: &mut Bytes) -> Result<Bytes, BatchError> {
    D::decompress(body, |buf| Ok(buf.copy_to_bytes(buf.remaining())))
        .map_err(|e| BatchError::Decompress(e.to_string()))
}

fn read_record(rest: &mut Bytes, header: &BatchHeader) -> Result<RecordView, BatchError> {
    let all = rest.clone();
    let length = varint(rest)?;
    let length =
        usize::try_from(length).map_err(|_| BatchError::Records("negative record length"))?;
    if rest.remaining() < length {
        return Err(BatchError::Records("record longer than its batch"));
    }
    let prefix = all.len() - rest.len();
    let raw = all.slice(..prefix + length);
    let mut r = rest.split_to(length);
    if !r.has_remaining() {
        return Err(BatchError::Records("empty record"));
    }
    let _attributes = r.get_i8();
    let timestamp_delta = varlong(&mut r)?;
    let offset_delta = varint(&mut r)?;
    let key = nullable_bytes(&mut r)?;
    let value = nullable_bytes(&mut r)?;
    Ok(RecordView {
        offset: header.base_offset.wrapping_add(offset_delta as i64),
        timestamp: header.base_timestamp.wrapping_add(timestamp_delta),
        key,
        is_tombstone: value.is_none(),
        raw,
    })
}

fn nullable_bytes(r: &mut Bytes) -> Result<Option<Bytes>, BatchError> {
    let len = varint(r)?;
    if len < 0 {
        return Ok(None);
    }
    let len = len as usize;
    if r.remaining() < len {
        return Err(BatchError::Records("key or value longer than its record"));
    }
    Ok(Some(r.split_to(len)))
}

fn varlong(r: &mut Bytes) -> Result<i64, BatchError> {
    let mut value: u64 = 0;
    for shift in (0..64).step_by(7) {
        if !r.has_remaining() {
            return Err(BatchError::Records("truncated varint"));
        }
        let byte = r.get_u8();
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(((value >> 1) as i64) ^ -((value & 1) as i64));
        }
    }
    Err(BatchError::Records("varint longer than 10 bytes"))
}

fn varint(r: &mut Bytes) -> Result<i32, BatchError> {
    let v = varlong(r)?;
    i32::try_from(v).map_err(|_| BatchError::Records("varint out of i32 range"))
}

/// A new uncompressed batch holding `kept` records of `original` (which keeps its base offset, base timestamp,
/// last offset delta, producer fields and leader epoch, so the kept records' deltas stay valid). Used by compaction.
pub(crate) fn rebuild_with(original: &Bytes, kept: &[RecordView]) -> Bytes {
    let records_len: usize = kept.iter().map(|r| r.raw.len()).sum();
    let mut out = BytesMut::with_capacity(HEADER_LEN + records_len);
    out.extend_from_slice(&original[..8]);
    out.put_i32((HEADER_LEN - LENGTH_OFFSET + records_len) as i32);
    out.extend_from_slice(&original[EPOCH_POS..CRC_POS]);
    out.put_u32(0);
    let attributes = i16::from_be_bytes([original[21], original[22]]) & !0x07;
    out.put_i16(attributes);
    out.extend_from_slice(&original[23..57]);
    out.put_i32(kept.len() as i32);
    for record in kept {
        out.extend_from_slice(&record.raw);
    }
    let crc = crc32c::crc32c(&out[CRC_START..]);
    out[CRC_POS..CRC_START].copy_from_slice(&crc.to_be_bytes());
    out.freeze()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use kafka_protocol::records::{
        Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions,
        TimestampType,
    };

    pub(crate) fn encode(
        records: &[(Option<&str>, Option<&str>, i64)],
        compression: Compression,
    ) -> Bytes {
        let records: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, (k, v, ts))| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: i as i32,
                timestamp: *ts,
                key: k.map(|k| Bytes::copy_from_slice(k.as_bytes())),
                value: v.map(|v| Bytes::copy_from_slice(v.as_bytes())),
                headers: Default::default(),
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .unwrap();
        buf.freeze()
    }

    #[test]
    fn a_rewritten_batch_keeps_its_crc_and_a_rebuilt_one_decodes() {
        for compression in [Compression::None, Compression::Gzip, Compression::Zstd] {
            let batch = encode(
                &[
                    (Some("a"), Some("1"), 10),
                    (Some("b"), None, 20),
                    (Some("a"), Some("3"), 30),
                ],
                compression,
            );
            let header = validate_produced(&batch, 1 << 20).unwrap();
            assert_eq!(header.records_count, 3);
            // A shared buffer is copied (the original stays as it was); a unique one is rewritten in place.
            let stored = with_offset_and_epoch(batch.clone(), 100, 7);
            assert_eq!(&batch[..8], &0i64.to_be_bytes());
            assert_ne!(stored.as_ptr(), batch.as_ptr());
            let unique = Bytes::from(batch.to_vec());
            let unique_at = unique.as_ptr();
            let in_place = with_offset_and_epoch(unique, 100, 7);
            assert_eq!(in_place.as_ptr(), unique_at);
            assert_eq!(in_place, stored);
            validate_produced(&stored, 1 << 20).unwrap();
            let (h, recs) = records(&stored).unwrap();
            assert_eq!(h.base_offset, 100);
            assert_eq!(
                recs.iter().map(|r| r.offset).collect::<Vec<_>>(),
                vec![100, 101, 102]
            );
            assert_eq!(
                recs.iter().map(|r| r.timestamp).collect::<Vec<_>>(),
                vec![10, 20, 30]
            );
            assert!(recs[1].is_tombstone);
            let rebuilt = rebuild_with(&stored, &recs[1..]);
            let decoded = RecordBatchDecoder::decode(&mut rebuilt.clone()).unwrap();
            let offsets: Vec<i64> = decoded.records.iter().map(|r| r.offset).collect();
            assert_eq!(offsets, vec![101, 102]);
            assert_eq!(decoded.records[1].value.as_deref(), Some(&b"3"[..]));
        }
    }

    #[test]
    fn damaged_batches_are_refused() {
        let batch = encode(&[(Some("k"), Some("v"), 1)], Compression::None);
        let mut bad = BytesMut::from(&batch[..]);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(matches!(
            validate_produced(&bad, 1 << 20),
            Err(ProducedBatchError::Corrupt(BatchError::Crc { .. }))
        ));
        assert!(matches!(
            validate_produced(&batch, 10),
            Err(ProducedBatchError::TooLarge { .. })
        ));
        assert!(validate_produced(&batch[..30], 1 << 20).is_err());
    }
}
