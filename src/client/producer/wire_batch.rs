//! A producer batch as the v2 record batch kafka-clients' `MemoryRecordsBuilder` writes: the 61-byte header, then
//! the records — compressed as one stream for a codec —, the CRC-32C over everything after the CRC field. The
//! records are written once into a buffer sized for them and compressed from there; kafka-protocol's encoder
//! grows a fresh buffer from empty for every batch, which at large volumes was a tenth of the run's CPU (page
//! faults and copies, docs/benchmarks.md).

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::compression::{Compressor, Gzip, Snappy, Zstd};
use kafka_protocol::records::Record;

use super::Compression;

/// Bytes before the records: base offset, length, leader epoch, magic, CRC, attributes, last offset delta, base
/// and max timestamp, producer id and epoch, base sequence, record count.
const HEADER: usize = 61;
/// Where the CRC'd part begins (the attributes).
const CRC_FROM: usize = 21;

/// One batch of `records` (offsets and sequences already set: offset `i`, sequence `base_sequence + i`). They
/// share one producer identity: the accumulator stamps the one the producer got when it connected.
pub(super) fn encode(
    records: &[Record],
    compression: Compression,
    base_sequence: i32,
) -> Result<Bytes, String> {
    let Some(first) = records.first() else {
        return Err("an empty batch".into());
    };
    if records
        .iter()
        .any(|r| (r.producer_id, r.producer_epoch) != (first.producer_id, first.producer_epoch))
    {
        return Err("records of more than one producer identity in one batch".into());
    }
    // kafka-clients takes the first record's timestamp as the base (deltas may be negative).
    let base_timestamp = first.timestamp;
    let max_timestamp = records
        .iter()
        .map(|r| r.timestamp)
        .max()
        .unwrap_or(base_timestamp);
    let sizes: Vec<usize> = records
        .iter()
        .enumerate()
        .map(|(i, r)| body_size(r, i as i32, r.timestamp - base_timestamp))
        .collect();
    let raw_len: usize = sizes
        .iter()
        .map(|&n| n + varint_len(zigzag32(n as i32)))
        .sum();
    let mut raw = BytesMut::with_capacity(raw_len);
    for (i, (record, &size)) in records.iter().zip(&sizes).enumerate() {
        put_record(
            &mut raw,
            record,
            size,
            i as i32,
            record.timestamp - base_timestamp,
        );
    }
    debug_assert_eq!(raw.len(), raw_len);

    let mut out = BytesMut::with_capacity(HEADER + raw_len + raw_len / 255 + 64);
    out.put_i64(0); // base offset: the broker assigns it
    out.put_i32(0); // batch length, filled below
    out.put_i32(first.partition_leader_epoch);
    out.put_i8(2); // magic
    out.put_u32(0); // CRC, filled below
    out.put_i16(codec(compression)); // attributes: CreateTime, not transactional, not control
    out.put_i32(records.len() as i32 - 1);
    out.put_i64(base_timestamp);
    out.put_i64(max_timestamp);
    out.put_i64(first.producer_id);
    out.put_i16(first.producer_epoch);
    out.put_i32(base_sequence);
    out.put_i32(records.len() as i32);
    let with = |out: &mut BytesMut| -> anyhow::Result<()> {
        out.put_slice(&raw);
        Ok(())
    };
    match compression {
        Compression::None => out.put_slice(&raw),
        Compression::Lz4 => {
            super::lz4_frame::compress(&raw, &mut out).map_err(|e| e.to_string())?
        }
        Compression::Gzip => Gzip::compress(&mut out, |o| with(o)).map_err(|e| e.to_string())?,
        Compression::Snappy => {
            Snappy::compress(&mut out, |o| with(o)).map_err(|e| e.to_string())?
        }
        Compression::Zstd => Zstd::compress(&mut out, |o| with(o)).map_err(|e| e.to_string())?,
    }
    let length = out.len() - 12;
    out[8..12].copy_from_slice(&(length as i32).to_be_bytes());
    let crc = crc32c::crc32c(&out[CRC_FROM..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(out.freeze())
}

/// The codec bits of the attributes, as `CompressionType.id` numbers them.
fn codec(compression: Compression) -> i16 {
    match compression {
        Compression::None => 0,
        Compression::Gzip => 1,
        Compression::Snappy => 2,
        Compression::Lz4 => 3,
        Compression::Zstd => 4,
    }
}

/// A record's length, not counting the length varint itself.
fn body_size(r: &Record, offset_delta: i32, timestamp_delta: i64) -> usize {
    1 + varint_len(zigzag64(timestamp_delta))
        + varint_len(zigzag32(offset_delta))
        + bytes_len(r.key.as_deref())
        + bytes_len(r.value.as_deref())
        + varint_len(zigzag32(r.headers.len() as i32))
        + r.headers
            .iter()
            .map(|(k, v)| bytes_len(Some(k.as_bytes())) + bytes_len(v.as_deref()))
            .sum::<usize>()
}

fn put_record(
    out: &mut BytesMut,
    r: &Record,
    size: usize,
    offset_delta: i32,
    timestamp_delta: i64,
) {
    put_varint(out, zigzag32(size as i32));
    out.put_i8(0); // record attributes: unused
    put_varint(out, zigzag64(timestamp_delta));
    put_varint(out, zigzag32(offset_delta));
    put_bytes(out, r.key.as_deref());
    put_bytes(out, r.value.as_deref());
    put_varint(out, zigzag32(r.headers.len() as i32));
    for (k, v) in &r.headers {
        put_bytes(out, Some(k.as_bytes()));
        put_bytes(out, v.as_deref());
    }
}

fn bytes_len(b: Option<&[u8]>) -> usize {
    match b {
        Some(b) => varint_len(zigzag32(b.len() as i32)) + b.len(),
        None => varint_len(zigzag32(-1)),
    }
}

fn put_bytes(out: &mut BytesMut, b: Option<&[u8]>) {
    match b {
        Some(b) => {
            put_varint(out, zigzag32(b.len() as i32));
            out.put_slice(b);
        }
        None => put_varint(out, zigzag32(-1)),
    }
}

fn zigzag32(n: i32) -> u64 {
    ((n << 1) ^ (n >> 31)) as u32 as u64
}

fn zigzag64(n: i64) -> u64 {
    ((n << 1) ^ (n >> 63)) as u64
}

fn varint_len(mut v: u64) -> usize {
    let mut n = 1;
    while v >= 0x80 {
        v >>= 7;
        n += 1;
    }
    n
}

fn put_varint(out: &mut BytesMut, mut v: u64) {
    while v >= 0x80 {
        out.put_u8((v as u8) | 0x80);
        v >>= 7;
    }
    out.put_u8(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::protocol::StrBytes;
    use kafka_protocol::records::{
        Compression as WireCompression, RecordBatchDecoder, RecordBatchEncoder,
        RecordEncodeOptions, TimestampType,
    };

    fn records(n: usize, producer_id: i64) -> Vec<Record> {
        (0..n)
            .map(|i| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: -1,
                producer_id,
                producer_epoch: 3,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                sequence: 17 + i as i32,
                timestamp: 1_700_000_000_000 + (i as i64 * 7) % 50,
                key: (i % 5 != 0).then(|| Bytes::from(format!("{{\"obs_id\":{i}}}"))),
                value: (i % 7 != 3).then(|| Bytes::from("x".repeat(i * 13 % 400))),
                headers: [(
                    StrBytes::from_static_str("h"),
                    (i % 2 == 0).then(|| Bytes::from("v")),
                )]
                .into_iter()
                .take(i % 3)
                .collect(),
            })
            .collect()
    }

    /// Uncompressed, the bytes are kafka-protocol's when the first record has the smallest timestamp (its base is
    /// the minimum, kafka-clients' the first record's); every codec decodes back to the records.
    #[test]
    fn batches_are_kafka_protocols_bytes_and_decode_with_every_codec() {
        let mut recs = records(300, 9);
        recs[0].timestamp = 1_600_000_000_000;
        let ours = encode(&recs, Compression::None, 17).unwrap();
        let mut theirs = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut theirs,
            recs.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression: WireCompression::None,
            },
        )
        .unwrap();
        assert_eq!(ours, theirs.freeze());
        let recs = records(300, 9);
        for c in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let bytes = encode(&recs, c, 17).unwrap();
            // kafka-protocol's decoder checks the length and the CRC.
            let set = RecordBatchDecoder::decode(&mut bytes.clone()).expect("decodes");
            assert_eq!(set.records, recs, "{c:?}");
        }
        let mut mixed = records(3, 9);
        mixed[2].producer_id = 10;
        assert!(encode(&mixed, Compression::None, 17).is_err());
    }
}
