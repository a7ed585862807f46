//! Partition choice exactly as the Java client (Kafka 3.x) makes it: murmur2 of the key bytes for keyed records,
//! the built-in sticky partitioner for records without a key.

use std::collections::HashMap;

/// Kafka's murmur2 (`Utils.murmur2` of the Java client): 32-bit wrapping arithmetic, logical shifts, seed
/// `0x9747b28c`. Returned as the signed value Java returns.
pub fn murmur2(data: &[u8]) -> i32 {
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let mut h: u32 = 0x9747_b28c ^ (data.len() as u32);
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = blocks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if !tail.is_empty() {
        h ^= u32::from(tail[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition the Java client's default partitioner picks for a keyed record:
/// `toPositive(murmur2(key)) % numPartitions`. `num_partitions` must be positive.
pub fn partition_for_key(key: &[u8], num_partitions: i32) -> i32 {
    (murmur2(key) & 0x7fff_ffff) % num_partitions.max(1)
}

/// Kafka 3.x's built-in partitioner for records without a key (KIP-794): all such records of a topic go to one
/// partition until `batch.size` bytes have been produced to it, then a new partition is drawn at random. Unlike
/// the pre-3.3 sticky partitioner it does not depend on when batches happen to be sent.
#[derive(Debug)]
pub(crate) struct StickyPartitioner {
    sticky_bytes: usize,
    topics: HashMap<String, Sticky>,
    rng: u64,
}

#[derive(Debug, Clone, Copy)]
struct Sticky {
    partition: i32,
    produced_bytes: usize,
}

impl StickyPartitioner {
    pub(crate) fn new(sticky_bytes: usize, seed: u64) -> StickyPartitioner {
        StickyPartitioner {
            sticky_bytes: sticky_bytes.max(1),
            topics: HashMap::new(),
            rng: seed | 1,
        }
    }

    /// The partition for the next null-key record of `topic`.
    pub(crate) fn partition(&mut self, topic: &str, num_partitions: i32) -> i32 {
        let num_partitions = num_partitions.max(1);
        if let Some(sticky) = self.topics.get(topic) {
            if sticky.partition < num_partitions {
                return sticky.partition;
            }
        }
        let partition = self.draw(num_partitions, None);
        self.topics.insert(
            topic.to_string(),
            Sticky {
                partition,
                produced_bytes: 0,
            },
        );
        partition
    }

    /// Counts `bytes` appended to the sticky partition of `topic`; once a batch worth has gone there, the next
    /// record draws another partition (a different one when there are several).
    pub(crate) fn record_appended(&mut self, topic: &str, num_partitions: i32, bytes: usize) {
        let Some(mut sticky) = self.topics.get(topic).copied() else {
            return;
        };
        sticky.produced_bytes += bytes;
        if sticky.produced_bytes >= self.sticky_bytes {
            sticky.partition = self.draw(num_partitions.max(1), Some(sticky.partition));
            sticky.produced_bytes = 0;
        }
        self.topics.insert(topic.to_string(), sticky);
    }

    fn draw(&mut self, num_partitions: i32, avoid: Option<i32>) -> i32 {
        // xorshift64*: statistical quality is all that matters here, as in Java's ThreadLocalRandom.
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let draw = (self.rng.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 33) as i32;
        match avoid {
            Some(current) if num_partitions > 1 => {
                (current + 1 + draw % (num_partitions - 1)) % num_partitions
            }
            _ => draw % num_partitions,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_the_java_vectors() {
        assert_eq!(murmur2(b"21"), -973_932_308);
        assert_eq!(murmur2(b"foobar"), -790_332_482);
        assert_eq!(murmur2(b"abc"), 479_470_107);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985_981_536);
    }

    #[test]
    fn keyed_partition_is_the_positive_hash_modulo() {
        // toPositive(-973932308) = 1173551340; 1173551340 % 6 = 0, % 7 = 6.
        assert_eq!(partition_for_key(b"21", 6), 1_173_551_340 % 6);
        assert_eq!(partition_for_key(b"21", 7), 1_173_551_340 % 7);
        assert_eq!(partition_for_key(b"abc", 1), 0);
        for n in 1..50 {
            let p = partition_for_key(b"foobar", n);
            assert!((0..n).contains(&p));
        }
        // A degenerate partition count never panics.
        assert_eq!(partition_for_key(b"x", 0), 0);
    }

    #[test]
    fn sticky_partitioner_switches_after_a_batch_worth_of_bytes() {
        let mut sticky = StickyPartitioner::new(1000, 7);
        let first = sticky.partition("t", 6);
        for _ in 0..9 {
            assert_eq!(sticky.partition("t", 6), first);
            sticky.record_appended("t", 6, 100);
        }
        assert_eq!(sticky.partition("t", 6), first);
        sticky.record_appended("t", 6, 100);
        let second = sticky.partition("t", 6);
        assert_ne!(second, first);
        assert!((0..6).contains(&second));
    }

    #[test]
    fn sticky_partitioner_with_one_partition_stays() {
        let mut sticky = StickyPartitioner::new(10, 1);
        for _ in 0..100 {
            assert_eq!(sticky.partition("t", 1), 0);
            sticky.record_appended("t", 1, 7);
        }
    }
}
