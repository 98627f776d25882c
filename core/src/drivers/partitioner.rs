//! Java-compatible murmur2 key partitioning.
//!
//! Kafka's Java client (and Faust) place a keyed record on
//! `toPositive(murmur2(key)) % partitions`. Every Faustus transport uses this,
//! so a key lands on the same partition number as with those clients.

/// Kafka's murmur2 hash of `data` (seed `0x9747b28c`).
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// The partition of `key` among `partitions` (Java's `toPositive(murmur2) % n`).
///
/// ```
/// use faustus_core::partitioner::partition_for_key;
/// assert_eq!(partition_for_key(b"foobar", 8), partition_for_key(b"foobar", 8));
/// assert!(partition_for_key(b"anything", 8) < 8);
/// ```
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    let n = partitions.max(1);
    ((murmur2(key) & 0x7fff_ffff) as u32) % n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_java_client_vectors() {
        // The vectors of Kafka's UtilsTest.testMurmur2.
        assert_eq!(murmur2(b"21"), -973_932_308);
        assert_eq!(murmur2(b"foobar"), -790_332_482);
        assert_eq!(murmur2(b"a-little-bit-long-string"), -985_981_536);
        assert_eq!(murmur2(b"a-little-bit-longer-string"), -1_486_304_829);
        assert_eq!(
            murmur2(b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8"),
            -58_897_971
        );
        assert_eq!(murmur2(b"abc"), 479_470_107);
    }

    #[test]
    fn partitions_are_in_range() {
        for i in 0..1000u32 {
            let k = i.to_string();
            assert!(partition_for_key(k.as_bytes(), 7) < 7);
        }
        assert_eq!(partition_for_key(b"x", 0), 0);
    }
}
