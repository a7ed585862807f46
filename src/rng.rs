//! Seeded randomness that is identical on every machine.
//!
//! Everything is drawn from ChaCha8's 64-bit outputs with integer arithmetic or IEEE `+ - * /` only — no
//! platform math library (`ln`, `exp`) — so the same seed yields the same bytes everywhere.

use rand_chacha::rand_core::{Rng as _, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The generator's random source.
#[derive(Clone)]
pub struct SeededRng(ChaCha8Rng);

impl SeededRng {
    /// A stream derived from the scenario seed and a purpose label, so adding draws for one purpose never
    /// shifts another's.
    pub fn new(seed: u64, purpose: &str) -> SeededRng {
        let mut key = [0u8; 32];
        key[..8].copy_from_slice(&seed.to_le_bytes());
        let label = fnv1a(purpose.as_bytes());
        key[8..16].copy_from_slice(&label.to_le_bytes());
        key[16..24].copy_from_slice(&splitmix(seed ^ label).to_le_bytes());
        SeededRng(ChaCha8Rng::from_seed(key))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in `0..n` (n > 0), without modulo bias (Lemire's method).
    pub fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        loop {
            let m = (self.next_u64() as u128) * (n as u128);
            let low = m as u64;
            if low >= n.wrapping_neg() % n {
                return (m >> 64) as u64;
            }
        }
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + self.below((hi - lo) as u64 + 1) as i64
    }

    /// Uniform in `[0, 1)` with 53 bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// A bell-shaped value in `[lo, hi]` (mean of three uniforms), rounded to `decimals`.
    pub fn bell(&mut self, lo: f64, hi: f64, decimals: u32) -> f64 {
        let u = (self.unit() + self.unit() + self.unit()) / 3.0;
        let scale = 10f64.powi(decimals as i32);
        ((lo + (hi - lo) * u) * scale).round() / scale
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    /// Index chosen by weight; weights need not sum to one. Returns `None` if all are zero.
    pub fn weighted(&mut self, weights: &[f64]) -> Option<usize> {
        let total: f64 = weights.iter().sum();
        if total <= 0.0 {
            return None;
        }
        let mut x = self.unit() * total;
        for (i, w) in weights.iter().enumerate() {
            if x < *w {
                return Some(i);
            }
            x -= w;
        }
        weights.iter().rposition(|w| *w > 0.0)
    }

    /// A random version-4 UUID in its 36-character form.
    pub fn uuid(&mut self) -> arcstr::ArcStr {
        format_uuid(self.next_u64(), self.next_u64())
    }
}

/// A version-4 style UUID spelled from two 64-bit halves.
pub fn format_uuid(hi: u64, lo: u64) -> arcstr::ArcStr {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hi = (hi & 0xffff_ffff_ffff_0fff) | 0x4000;
    let lo = (lo & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    let bits = ((hi as u128) << 64) | lo as u128;
    let mut out = [0u8; 36];
    let mut nibble = 0;
    for (i, slot) in out.iter_mut().enumerate() {
        if matches!(i, 8 | 13 | 18 | 23) {
            *slot = b'-';
        } else {
            *slot = HEX[((bits >> (124 - 4 * nibble)) & 0xf) as usize];
            nibble += 1;
        }
    }
    // Only ASCII hex digits and dashes were written.
    std::str::from_utf8(&out).unwrap_or_default().into()
}

/// A fixed UUID for a reference row, stable across releases (the schema fixture depends on it).
pub fn stable_uuid(table: &str, id: i64) -> arcstr::ArcStr {
    let h = fnv1a(table.as_bytes()) ^ (id as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    format_uuid(splitmix(h), splitmix(h ^ 0xa5a5_a5a5))
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ *b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_known_first_value() {
        let mut a = SeededRng::new(42, "workload");
        let mut b = SeededRng::new(42, "workload");
        let mut c = SeededRng::new(42, "faults");
        let xs: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs[0], c.next_u64());
    }

    #[test]
    fn below_stays_in_range_and_uuid_is_v4() {
        let mut r = SeededRng::new(1, "t");
        for n in [1u64, 2, 3, 7, 1000] {
            for _ in 0..200 {
                assert!(r.below(n) < n);
            }
        }
        let u = r.uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert!(matches!(&u[19..20], "8" | "9" | "a" | "b"));
    }
}
