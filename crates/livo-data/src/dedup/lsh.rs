//! LSH banding: choosing bands × rows for a Jaccard threshold, and turning signatures into
//! candidate pairs.

use rayon::prelude::*;
use xxhash_rust::xxh3::xxh3_64_with_seed;

/// Number of bands and rows per band of an LSH index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LshParams {
    pub bands: usize,
    pub rows: usize,
}

/// Probability that two documents of Jaccard similarity `s` share at least one band.
fn collision_probability(s: f64, params: LshParams) -> f64 {
    1.0 - (1.0 - s.powi(params.rows as i32)).powi(params.bands as i32)
}

/// Simpson's rule over [lo, hi].
fn integrate(f: impl Fn(f64) -> f64, lo: f64, hi: f64) -> f64 {
    const STEPS: usize = 512;
    if hi <= lo {
        return 0.0;
    }
    let h = (hi - lo) / STEPS as f64;
    let mut sum = f(lo) + f(hi);
    for i in 1..STEPS {
        let w = if i % 2 == 1 { 4.0 } else { 2.0 };
        sum += w * f(lo + i as f64 * h);
    }
    sum * h / 3.0
}

/// False-positive area (pairs below `threshold` that collide) and false-negative area (pairs at or
/// above it that do not), integrated over similarity.
pub fn error_areas(threshold: f64, params: LshParams) -> (f64, f64) {
    let fp = integrate(|s| collision_probability(s, params), 0.0, threshold);
    let fn_ = integrate(|s| 1.0 - collision_probability(s, params), threshold, 1.0);
    (fp, fn_)
}

/// Weights of the false-positive and false-negative areas when candidate pairs are verified by
/// exact Jaccard: a false candidate then costs one similarity computation, a missed pair costs
/// recall, so banding is chosen for recall. For the defaults (0.8, 128 permutations) this gives
/// 16 bands × 8 rows, which proposes a pair at the threshold with probability 0.95 (9 × 13, the
/// equal-weight choice, with 0.40).
pub const VERIFIED_WEIGHTS: (f64, f64) = (0.05, 0.95);

/// The bands × rows (with bands·rows ≤ num_perm) minimising the sum of false-positive and
/// false-negative areas, with equal weights: the choice when LSH alone decides. Ties go to the first
/// found (fewer bands).
pub fn optimal_params(threshold: f64, num_perm: usize) -> LshParams {
    weighted_params(threshold, num_perm, (0.5, 0.5))
}

/// As [`optimal_params`], with `(false positive, false negative)` weights.
pub fn weighted_params(threshold: f64, num_perm: usize, weights: (f64, f64)) -> LshParams {
    let mut best = LshParams { bands: 1, rows: 1 };
    let mut best_error = f64::INFINITY;
    for bands in 1..=num_perm {
        for rows in 1..=num_perm / bands {
            let params = LshParams { bands, rows };
            let (fp, fn_) = error_areas(threshold, params);
            let error = weights.0 * fp + weights.1 * fn_;
            if error < best_error - 1e-12 {
                best_error = error;
                best = params;
            }
        }
    }
    best
}

/// Hash of each band of each signature, laid out `[doc][band]`.
pub fn band_hashes(signature: &[u32], params: LshParams, out: &mut [u64]) {
    // The band's rows as little-endian bytes, in a stack buffer for the usual band sizes (this runs
    // bands × documents times: a heap buffer each time cost more than the hashing).
    const STACK_ROWS: usize = 64;
    let mut stack = [0u8; STACK_ROWS * 4];
    let mut heap = Vec::new();
    let bytes: &mut [u8] = if params.rows <= STACK_ROWS {
        &mut stack[..params.rows * 4]
    } else {
        heap.resize(params.rows * 4, 0);
        &mut heap
    };
    for (band, slot) in out.iter_mut().enumerate().take(params.bands) {
        let rows = &signature[band * params.rows..(band + 1) * params.rows];
        for (chunk, row) in bytes.chunks_exact_mut(4).zip(rows) {
            chunk.copy_from_slice(&row.to_le_bytes());
        }
        *slot = xxh3_64_with_seed(bytes, band as u64);
    }
}

/// Buckets up to this size propose every pair of their members when pairs are verified: one
/// member that is not a duplicate of the others must not keep true duplicates from being proposed.
/// Larger buckets (a template repeated thousands of times) propose a star and a chain, which stays
/// linear in the bucket's size.
pub const ALL_PAIRS_BUCKET: usize = 256;

/// Candidate pairs `(i, j)` with `i < j` (indices into the documents) that share a bucket in any
/// band. Without `verify` each member is paired with the bucket's first member (every proposed pair
/// is kept, so the star joins the bucket). With `verify`, a bucket of up to [`ALL_PAIRS_BUCKET`]
/// members proposes all its pairs; a larger one pairs each member with the first and with its
/// predecessor. The result is sorted and unique.
pub fn candidate_pairs(
    hashes: &[u64],
    n_docs: usize,
    bands: usize,
    verify: bool,
) -> Vec<(u32, u32)> {
    let mut pairs: Vec<(u32, u32)> = (0..bands)
        .into_par_iter()
        .flat_map_iter(|band| {
            let mut keyed: Vec<(u64, u32)> = (0..n_docs)
                .map(|d| (hashes[d * bands + band], d as u32))
                .collect();
            keyed.sort_unstable();
            let mut local = Vec::new();
            let mut start = 0;
            while start < keyed.len() {
                let mut end = start + 1;
                while end < keyed.len() && keyed[end].0 == keyed[start].0 {
                    end += 1;
                }
                let members = &keyed[start..end];
                if verify && members.len() <= ALL_PAIRS_BUCKET {
                    for (k, &(_, a)) in members.iter().enumerate() {
                        local.extend(members[k + 1..].iter().map(|&(_, b)| (a, b)));
                    }
                } else {
                    let first = members[0].1;
                    for k in 1..members.len() {
                        local.push((first, members[k].1));
                        if verify && k > 1 {
                            local.push((members[k - 1].1, members[k].1));
                        }
                    }
                }
                start = end;
            }
            local
        })
        .collect();
    pairs.par_sort_unstable();
    pairs.dedup();
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_threshold_gives_a_steep_curve_around_it() {
        let p = optimal_params(0.8, 128);
        assert!(p.bands * p.rows <= 128);
        assert!(collision_probability(0.95, p) > 0.99, "{p:?}");
        assert!(collision_probability(0.5, p) < 0.05, "{p:?}");
    }

    #[test]
    fn matches_the_well_known_choice_for_the_defaults() {
        // 0.8 / 128 is the textbook setting: 9 bands of 13 rows.
        assert_eq!(optimal_params(0.8, 128), LshParams { bands: 9, rows: 13 });
    }

    #[test]
    fn verified_banding_favours_recall() {
        let p = weighted_params(0.8, 128, VERIFIED_WEIGHTS);
        assert_eq!(p, LshParams { bands: 16, rows: 8 });
        assert!(collision_probability(0.8, p) > 0.94, "{p:?}");
        assert!(collision_probability(0.8, optimal_params(0.8, 128)) < 0.45);
    }

    #[test]
    fn higher_threshold_means_more_rows_per_band() {
        let low = optimal_params(0.5, 128);
        let high = optimal_params(0.9, 128);
        assert!(high.rows > low.rows, "{low:?} vs {high:?}");
    }

    #[test]
    fn chosen_params_minimise_the_error_among_all_choices() {
        let t = 0.7;
        let best = optimal_params(t, 64);
        let (fp, fn_) = error_areas(t, best);
        for bands in 1..=64 {
            for rows in 1..=64 / bands {
                let (a, b) = error_areas(t, LshParams { bands, rows });
                assert!(fp + fn_ <= a + b + 1e-9);
            }
        }
    }

    #[test]
    fn small_buckets_yield_every_pair_when_verified() {
        // 5 docs, 1 band: docs 0, 2, 3, 4 share a bucket.
        let hashes = [7u64, 9, 7, 7, 7];
        assert_eq!(
            candidate_pairs(&hashes, 5, 1, false),
            vec![(0, 2), (0, 3), (0, 4)]
        );
        // (2, 4) matters: with 0 and 3 not duplicates of the others, a star and chain missed it.
        assert_eq!(
            candidate_pairs(&hashes, 5, 1, true),
            vec![(0, 2), (0, 3), (0, 4), (2, 3), (2, 4), (3, 4)]
        );
    }

    #[test]
    fn large_buckets_yield_star_and_chain_pairs() {
        let n = ALL_PAIRS_BUCKET + 2;
        let hashes = vec![7u64; n];
        let pairs = candidate_pairs(&hashes, n, 1, true);
        assert_eq!(pairs.len(), (n - 1) + (n - 2));
        assert!(
            pairs.contains(&(0, n as u32 - 1)) && pairs.contains(&(n as u32 - 2, n as u32 - 1))
        );
    }
}
