//! The lz4 frame kafka-clients writes for `compression.type=lz4` (`Lz4BlockOutputStream`, Kafka 3.9 at the
//! default `compression.lz4.level`): lz4-java's fast compressor, 64 KiB independent blocks, no block checksum, no
//! content checksum, no content size; a block that does not shrink is stored as is with the high bit of its length
//! set. kafka-protocol's own lz4 writer uses LZ4HC at level 4 with a content checksum instead: other bytes, and
//! about a quarter of a large run's CPU (docs/benchmarks.md, "Where the time and the memory go").

use bytes::{BufMut, BytesMut};

/// The frame's magic number.
const MAGIC: u32 = 0x184D_2204;
/// FLG: version 1, independent blocks, no checksums, no content size.
const FLG: u8 = 0b0110_0000;
/// BD: 64 KiB blocks.
const BD: u8 = 0b0100_0000;
/// The descriptor's check byte: `(XXH32(FLG BD, seed 0) >> 8) & 0xFF`, fixed since FLG and BD are
/// (`tests::the_descriptor_check_byte_is_lz4s` recomputes it through the lz4 library's own frame writer).
const DESCRIPTOR_CHECK: u8 = 0x82;
const BLOCK: usize = 64 << 10;
/// A block's length word marks a block stored uncompressed.
const INCOMPRESSIBLE: u32 = 0x8000_0000;

/// Appends `records` to `out` as one lz4 frame.
pub(super) fn compress(records: &[u8], out: &mut BytesMut) -> anyhow::Result<()> {
    out.put_u32_le(MAGIC);
    out.put_slice(&[FLG, BD, DESCRIPTOR_CHECK]);
    let mut scratch = vec![0u8; lz4::block::compress_bound(BLOCK)?];
    for block in records.chunks(BLOCK) {
        let n = lz4::block::compress_to_buffer(block, None, false, &mut scratch)?;
        if n >= block.len() {
            out.put_u32_le(block.len() as u32 | INCOMPRESSIBLE);
            out.put_slice(block);
        } else {
            out.put_u32_le(n as u32);
            out.put_slice(&scratch[..n]);
        }
    }
    out.put_u32_le(0);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn decompress(frame: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        lz4::Decoder::new(frame)
            .expect("a valid frame header")
            .read_to_end(&mut out)
            .expect("a valid frame");
        out
    }

    #[test]
    fn the_descriptor_check_byte_is_lz4s() {
        let mut encoder = lz4::EncoderBuilder::new()
            .block_size(lz4::BlockSize::Max64KB)
            .block_mode(lz4::BlockMode::Independent)
            .block_checksum(lz4::liblz4::BlockChecksum::NoBlockChecksum)
            .checksum(lz4::ContentChecksum::NoChecksum)
            .build(Vec::new())
            .unwrap();
        encoder.write_all(b"x").unwrap();
        let (frame, result) = encoder.finish();
        result.unwrap();
        assert_eq!(frame[4..7], [FLG, BD, DESCRIPTOR_CHECK]);
    }

    #[test]
    fn frames_round_trip_through_lz4s_decoder_across_blocks_and_incompressible_data() {
        let text: Vec<u8> = (0..200_000u32)
            .flat_map(|i| format!("{{\"obs_id\":{i},\"voided\":false}}").into_bytes())
            .collect();
        // Bytes that do not compress: a xorshift stream.
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        let noise: Vec<u8> = (0..150_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        for input in [&b""[..], &b"a"[..], &text[..], &noise[..]] {
            let mut frame = BytesMut::new();
            compress(input, &mut frame).unwrap();
            assert_eq!(decompress(&frame), input);
            if input.len() == noise.len() {
                let first = u32::from_le_bytes(frame[7..11].try_into().unwrap());
                assert_eq!(first, BLOCK as u32 | INCOMPRESSIBLE, "stored, as Java does");
            }
        }
        let mut frame = BytesMut::new();
        compress(&text, &mut frame).unwrap();
        assert!(
            frame.len() < text.len() / 4,
            "{} of {}",
            frame.len(),
            text.len()
        );
    }
}
