//! The per-row and per-pair steps of [`super::dedup`], exposed on their own so that a distributed
//! job can run them on blocks of a corpus and reach exactly the single-process result: the same
//! normal form, exact-duplicate hash, MinHash permutations, band hashes and Jaccard verification.

use rayon::prelude::*;
use xxhash_rust::xxh3::xxh3_128;

use super::lsh::{self, LshParams};
use super::minhash::{self, jaccard, shingle_set, Permutations};
use super::TextColumn;
use crate::error::Result;
use crate::normalize::normalize;
use crate::union_find::UnionFind;
use crate::DedupConfig;

/// What deduplication needs to know of each row of a block.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockFeatures {
    /// 128-bit xxh3 of the normalised text, high and low halves (equal for exact duplicates).
    pub hash_high: Vec<u64>,
    pub hash_low: Vec<u64>,
    /// The text is empty after normalisation (its row is never merged).
    pub empty: Vec<bool>,
    /// LSH band hashes, `[row][band]`; zero for empty rows.
    pub band_hashes: Vec<u64>,
    pub lsh: LshParams,
}

/// Normal-form hash and LSH band hashes of every row of `texts`, as [`super::dedup`] computes them.
pub fn block_features(
    texts: &(impl TextColumn + ?Sized),
    config: &DedupConfig,
) -> Result<BlockFeatures> {
    let lsh = config.lsh_params()?;
    let perms = Permutations::new(lsh.bands * lsh.rows, config.seed);
    let n = texts.len();
    let mut band_hashes = vec![0u64; n * lsh.bands];
    let per_row: Vec<(u128, bool)> = band_hashes
        .par_chunks_mut(lsh.bands.max(1))
        .enumerate()
        .map_init(
            || vec![0u32; perms.len()],
            |signature, (i, slot)| {
                let text = texts.get(i).map(normalize).unwrap_or_default();
                if text.is_empty() {
                    return (0, true);
                }
                let shingles = minhash::shingle_hashes(&text, config.ngram);
                perms.signature_into(&shingles, signature);
                lsh::band_hashes(signature, lsh, slot);
                (xxh3_128(text.as_bytes()), false)
            },
        )
        .collect();
    Ok(BlockFeatures {
        hash_high: per_row.iter().map(|(h, _)| (h >> 64) as u64).collect(),
        hash_low: per_row.iter().map(|(h, _)| *h as u64).collect(),
        empty: per_row.iter().map(|(_, e)| *e).collect(),
        band_hashes,
        lsh,
    })
}

/// For each candidate pair `(left[i], right[i])`, whether the Jaccard similarity of the normalised
/// texts' n-gram sets reaches `threshold` (the verification step of [`super::dedup`]).
pub fn verify_pairs(
    left: &(impl TextColumn + ?Sized),
    right: &(impl TextColumn + ?Sized),
    ngram: usize,
    threshold: f64,
) -> Vec<bool> {
    (0..left.len().min(right.len()))
        .into_par_iter()
        .map(|i| {
            let a = shingle_set(&left.get(i).map(normalize).unwrap_or_default(), ngram);
            let b = shingle_set(&right.get(i).map(normalize).unwrap_or_default(), ngram);
            jaccard(&a, &b) >= threshold
        })
        .collect()
}

/// Connected components of the graph with edges `(a[i], b[i])`: every node that is in an edge, in
/// increasing order, with the smallest node of its component. For a graph small enough to gather in
/// one task; a distributed job uses shuffled rounds above that size.
pub fn components(a: &[i64], b: &[i64]) -> (Vec<i64>, Vec<i64>) {
    let mut nodes: Vec<i64> = a.iter().chain(b).copied().collect();
    nodes.par_sort_unstable();
    nodes.dedup();
    let index = |x: i64| nodes.binary_search(&x).expect("every endpoint is a node") as u32;
    let mut sets = UnionFind::new(nodes.len());
    for (&x, &y) in a.iter().zip(b) {
        sets.union(index(x), index(y));
    }
    // The union-find's root is its smallest index, and nodes are sorted: the smallest node.
    let roots = (0..nodes.len() as u32)
        .map(|i| nodes[sets.find(i) as usize])
        .collect();
    (nodes, roots)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::Silent;

    #[test]
    fn blocks_reproduce_the_single_process_band_hashes_and_verification() {
        let texts = [
            "A red bicycle leaning on a wall",
            "a red bicycle, leaning on a wall!",
            "",
            "a red bicycle leaning on a brick wall",
            "an unrelated prompt about the sea",
        ];
        let config = DedupConfig::default();
        let whole = super::super::dedup(&texts[..], &config, &Silent).unwrap();
        let features = block_features(&texts[..], &config).unwrap();
        assert_eq!(features.empty, vec![false, false, true, false, false]);
        assert_eq!(features.hash_high[0], features.hash_high[1]);
        assert_eq!(features.hash_low[0], features.hash_low[1]);
        assert_ne!(features.hash_low[0], features.hash_low[3]);
        let verdicts = verify_pairs(&texts[..1], &texts[3..4], config.ngram, config.threshold);
        // The pair is merged by the single-process run exactly when it verifies.
        assert_eq!(verdicts[0], whole.cluster_id[3] == 0);
        assert_eq!(features.band_hashes.len(), 5 * features.lsh.bands);
    }

    #[test]
    fn components_name_each_node_by_its_smallest_connected_node() {
        let (nodes, roots) = components(&[9, 4, 20, 7], &[4, 30, 21, 30]);
        assert_eq!(nodes, vec![4, 7, 9, 20, 21, 30]);
        assert_eq!(roots, vec![4, 4, 4, 20, 20, 4]);
    }
}
