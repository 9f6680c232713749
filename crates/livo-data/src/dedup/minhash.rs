//! MinHash signatures over character n-grams.
//!
//! Each shingle (a window of `ngram` characters of the normalised text) is hashed once with xxh3;
//! the `k` "permutations" are multiply-add-shift hashes `(a·x + b) mod 2⁶⁴ >> 32` with random odd
//! `a`, a universal family that vectorises well. The family is seeded, so signatures are stable
//! across runs and machines.

use xxhash_rust::xxh3::xxh3_64;

/// Hashes of the character n-grams of `text`. Texts shorter than `ngram` characters are one shingle.
pub fn shingle_hashes(text: &str, ngram: usize) -> Vec<u32> {
    let bounds: Vec<usize> = text
        .char_indices()
        .map(|(i, _)| i)
        .chain(std::iter::once(text.len()))
        .collect();
    let chars = bounds.len() - 1;
    if chars <= ngram {
        return vec![xxh3_64(text.as_bytes()) as u32];
    }
    (0..=chars - ngram)
        .map(|start| xxh3_64(&text.as_bytes()[bounds[start]..bounds[start + ngram]]) as u32)
        .collect()
}

/// Sorted, de-duplicated shingle hashes: the set whose Jaccard similarity MinHash estimates.
pub fn shingle_set(text: &str, ngram: usize) -> Vec<u32> {
    let mut set = shingle_hashes(text, ngram);
    set.sort_unstable();
    set.dedup();
    set
}

/// Exact Jaccard similarity of two sorted, de-duplicated sets.
pub fn jaccard(a: &[u32], b: &[u32]) -> f64 {
    let (mut i, mut j, mut common) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                common += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let union = a.len() + b.len() - common;
    if union == 0 {
        1.0
    } else {
        common as f64 / union as f64
    }
}

/// A seeded family of `k` hash functions standing in for random permutations:
/// `h_i(x) = a_i·x + b_i mod 2³²` with random odd `a_i` (a bijection of the 32-bit shingle hashes,
/// whose order is mixed by the multiplication's carries). 32-bit lanes let the signature loop run
/// eight functions per AVX2 instruction.
pub struct Permutations {
    a: Vec<u32>,
    b: Vec<u32>,
}

fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

impl Permutations {
    pub fn new(k: usize, seed: u64) -> Self {
        let mut state = seed;
        let a = (0..k)
            .map(|_| (splitmix64(&mut state) >> 32) as u32 | 1)
            .collect();
        let b = (0..k)
            .map(|_| (splitmix64(&mut state) >> 32) as u32)
            .collect();
        Self { a, b }
    }

    pub fn len(&self) -> usize {
        self.a.len()
    }

    pub fn is_empty(&self) -> bool {
        self.a.is_empty()
    }

    /// Writes the MinHash signature of `shingles` into `out` (length `self.len()`).
    pub fn signature_into(&self, shingles: &[u32], out: &mut [u32]) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { self.signature_avx2(shingles, out) };
        }
        self.signature_portable(shingles, out)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn signature_avx2(&self, shingles: &[u32], out: &mut [u32]) {
        self.signature_portable(shingles, out)
    }

    #[inline(always)]
    fn signature_portable(&self, shingles: &[u32], out: &mut [u32]) {
        out.fill(u32::MAX);
        for &x in shingles {
            for ((slot, &a), &b) in out.iter_mut().zip(&self.a).zip(&self.b) {
                *slot = (*slot).min(a.wrapping_mul(x).wrapping_add(b));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shingles_count_characters_not_bytes() {
        assert_eq!(shingle_hashes("abcdef", 5).len(), 2);
        assert_eq!(shingle_hashes("डॉक्टर", 5).len(), 2); // 6 chars, 18 bytes
        assert_eq!(shingle_hashes("abc", 5).len(), 1);
    }

    #[test]
    fn jaccard_of_known_sets() {
        assert_eq!(jaccard(&[1, 2, 3], &[2, 3, 4]), 0.5);
        assert_eq!(jaccard(&[1], &[1]), 1.0);
        assert_eq!(jaccard(&[1], &[2]), 0.0);
    }

    #[test]
    fn signature_agreement_estimates_jaccard() {
        let perms = Permutations::new(512, 7);
        let a = shingle_set("a portrait of a smiling doctor in a hospital corridor", 5);
        let b = shingle_set("a portrait of a smiling doctor in the hospital corridor", 5);
        let (mut sa, mut sb) = (vec![0; 512], vec![0; 512]);
        perms.signature_into(&a, &mut sa);
        perms.signature_into(&b, &mut sb);
        let agree = sa.iter().zip(&sb).filter(|(x, y)| x == y).count() as f64 / 512.0;
        let exact = jaccard(&a, &b);
        assert!(
            (agree - exact).abs() < 0.08,
            "estimate {agree} vs exact {exact}"
        );
    }
}
