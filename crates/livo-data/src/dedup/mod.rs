//! Exact and near-duplicate clustering of prompts.
//!
//! 1. every prompt is normalised ([`crate::normalize`]);
//! 2. exact duplicates share a 128-bit xxh3 hash of the normalised text;
//! 3. distinct texts get MinHash signatures over character n-grams, LSH banding yields candidate
//!    pairs, optionally verified by exact Jaccard similarity;
//! 4. union-find joins the pairs; each cluster's representative is its first row in input order.
//!
//! Every parallel step is a pure map or a total sort, so the result does not depend on the number
//! of threads.

mod blocks;
mod lsh;
mod minhash;

use std::collections::HashMap;
use std::time::Instant;

use rayon::prelude::*;
use xxhash_rust::xxh3::xxh3_128;

pub use blocks::{block_features, components, verify_pairs, BlockFeatures};
pub use lsh::{
    error_areas, optimal_params, weighted_params, LshParams, ALL_PAIRS_BUCKET, VERIFIED_WEIGHTS,
};
pub use minhash::{jaccard, shingle_set, Permutations};

use crate::error::{DataError, Result};
use crate::normalize::normalize;
use crate::progress::Progress;
use crate::union_find::UnionFind;

/// Parameters of a deduplication run.
#[derive(Debug, Clone)]
pub struct DedupConfig {
    /// Jaccard similarity above which two prompts are near duplicates, in (0, 1].
    pub threshold: f64,
    /// Number of MinHash permutations.
    pub num_perm: usize,
    /// Character n-gram size of the shingles.
    pub ngram: usize,
    /// Number of LSH bands; `None` chooses bands × rows from threshold and num_perm: for recall
    /// when pairs are verified ([`VERIFIED_WEIGHTS`]), with equal error weights when not.
    pub bands: Option<usize>,
    /// Check candidate pairs with exact Jaccard similarity (removes LSH false positives).
    pub verify: bool,
    /// Seed of the MinHash permutations.
    pub seed: u64,
    /// Worker threads; `None` uses all cores.
    pub threads: Option<usize>,
}

impl Default for DedupConfig {
    fn default() -> Self {
        Self {
            threshold: 0.8,
            num_perm: 128,
            ngram: 5,
            bands: None,
            verify: true,
            seed: 1,
            threads: None,
        }
    }
}

impl DedupConfig {
    /// Checks the parameters and returns the LSH banding they imply.
    pub fn lsh_params(&self) -> Result<LshParams> {
        if !(self.threshold > 0.0 && self.threshold <= 1.0) {
            return Err(DataError::parameter(
                "threshold",
                self.threshold,
                "must be in (0, 1]",
            ));
        }
        if self.num_perm == 0 || self.num_perm > 4096 {
            return Err(DataError::parameter(
                "num_perm",
                self.num_perm,
                "must be between 1 and 4096",
            ));
        }
        if self.ngram == 0 {
            return Err(DataError::parameter(
                "ngram",
                self.ngram,
                "must be at least 1",
            ));
        }
        if self.threads == Some(0) {
            return Err(DataError::parameter("threads", 0, "must be at least 1"));
        }
        match self.bands {
            None if self.verify => Ok(weighted_params(
                self.threshold,
                self.num_perm,
                VERIFIED_WEIGHTS,
            )),
            None => Ok(optimal_params(self.threshold, self.num_perm)),
            Some(bands) if bands == 0 || bands > self.num_perm => Err(DataError::parameter(
                "bands",
                bands,
                format!("must be between 1 and num_perm ({})", self.num_perm),
            )),
            Some(bands) if self.num_perm % bands != 0 => Err(DataError::parameter(
                "num_perm",
                self.num_perm,
                format!("is not a multiple of the number of bands ({bands})"),
            )),
            Some(bands) => Ok(LshParams {
                bands,
                rows: self.num_perm / bands,
            }),
        }
    }
}

/// Read access to a column of prompts; `None` is a missing value (treated as empty text).
pub trait TextColumn: Sync {
    fn len(&self) -> usize;
    fn get(&self, i: usize) -> Option<&str>;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<S: AsRef<str> + Sync> TextColumn for [S] {
    fn len(&self) -> usize {
        <[S]>::len(self)
    }
    fn get(&self, i: usize) -> Option<&str> {
        Some(self[i].as_ref())
    }
}

/// Result of a deduplication run, one entry per input row where indexed by row.
#[derive(Debug, Clone, PartialEq)]
pub struct DedupResult {
    /// Row index of the representative (first occurrence) of each row's cluster.
    pub cluster_id: Vec<i64>,
    /// True for representatives.
    pub keep: Vec<bool>,
    /// Rows whose text is empty after normalisation (each is its own cluster, never merged).
    pub empty_rows: Vec<u64>,
    pub rows: usize,
    /// Rows whose normalised text equals an earlier row's.
    pub exact_duplicates: usize,
    /// Rows merged into an earlier row's cluster by similarity (not exact equality).
    pub near_duplicates: usize,
    pub clusters: usize,
    /// Candidate pairs from LSH, and how many of them passed verification.
    pub candidate_pairs: usize,
    pub verified_pairs: usize,
    pub lsh: LshParams,
    pub seconds: f64,
}

const CHUNK: usize = 1 << 14;

fn check(progress: &dyn Progress) -> Result<()> {
    if progress.cancelled() {
        Err(DataError::Cancelled)
    } else {
        Ok(())
    }
}

/// Clusters exact and near-duplicate prompts. See the module documentation for the method.
pub fn dedup(
    texts: &(impl TextColumn + ?Sized),
    config: &DedupConfig,
    progress: &dyn Progress,
) -> Result<DedupResult> {
    let lsh = config.lsh_params()?;
    if texts.len() > u32::MAX as usize {
        return Err(DataError::parameter(
            "texts",
            texts.len(),
            "more than 2^32 rows; shard the input",
        ));
    }
    match config.threads {
        Some(threads) => rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .map_err(|e| DataError::parameter("threads", threads, e.to_string()))?
            .install(|| dedup_in_pool(texts, config, lsh, progress)),
        None => dedup_in_pool(texts, config, lsh, progress),
    }
}

fn dedup_in_pool(
    texts: &(impl TextColumn + ?Sized),
    config: &DedupConfig,
    lsh: LshParams,
    progress: &dyn Progress,
) -> Result<DedupResult> {
    let started = Instant::now();
    let n = texts.len();

    progress.stage("normalise", n as u64);
    let mut normalised: Vec<String> = Vec::with_capacity(n);
    for start in (0..n).step_by(CHUNK) {
        check(progress)?;
        let end = (start + CHUNK).min(n);
        normalised.par_extend(
            (start..end)
                .into_par_iter()
                .map(|i| texts.get(i).map(normalize).unwrap_or_default()),
        );
        progress.advance((end - start) as u64);
    }

    // Exact duplicates: first occurrence of each normalised text in input order.
    let hashes: Vec<u128> = normalised
        .par_iter()
        .map(|t| xxh3_128(t.as_bytes()))
        .collect();
    let mut uf = UnionFind::new(n);
    let mut first_seen: HashMap<u128, u32> = HashMap::with_capacity(n);
    let mut distinct: Vec<u32> = Vec::new();
    let mut empty_rows = Vec::new();
    let mut exact_duplicates = 0usize;
    for (i, (text, hash)) in normalised.iter().zip(&hashes).enumerate() {
        if text.is_empty() {
            empty_rows.push(i as u64);
            continue;
        }
        match first_seen.entry(*hash) {
            std::collections::hash_map::Entry::Occupied(e) => {
                uf.union(*e.get(), i as u32);
                exact_duplicates += 1;
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(i as u32);
                distinct.push(i as u32);
            }
        }
    }
    drop(first_seen);
    drop(hashes);

    // MinHash band hashes of the distinct texts.
    let perms = Permutations::new(lsh.bands * lsh.rows, config.seed);
    progress.stage("minhash", distinct.len() as u64);
    let mut band_hashes = vec![0u64; distinct.len() * lsh.bands];
    for (chunk_no, out) in band_hashes.chunks_mut(CHUNK * lsh.bands).enumerate() {
        check(progress)?;
        let docs = &distinct[chunk_no * CHUNK..(chunk_no * CHUNK + out.len() / lsh.bands)];
        out.par_chunks_mut(lsh.bands)
            .zip(docs.par_iter())
            .for_each_init(
                || vec![0u32; perms.len()],
                |signature, (slot, &row)| {
                    let shingles = minhash::shingle_hashes(&normalised[row as usize], config.ngram);
                    perms.signature_into(&shingles, signature);
                    lsh::band_hashes(signature, lsh, slot);
                },
            );
        progress.advance(docs.len() as u64);
    }

    check(progress)?;
    progress.stage("lsh", 1);
    let candidates = lsh::candidate_pairs(&band_hashes, distinct.len(), lsh.bands, config.verify);
    drop(band_hashes);
    progress.advance(1);
    let candidate_count = candidates.len();

    let accepted: Vec<(u32, u32)> = if config.verify {
        progress.stage("verify", candidates.len() as u64);
        // A document is in several pairs (one per band it collides in): its shingle set is made
        // once, for the documents that are in any pair only.
        let mut slot = vec![u32::MAX; distinct.len()];
        let mut members: Vec<u32> = Vec::new();
        for &(a, b) in &candidates {
            for doc in [a, b] {
                if slot[doc as usize] == u32::MAX {
                    slot[doc as usize] = members.len() as u32;
                    members.push(doc);
                }
            }
        }
        let sets: Vec<Vec<u32>> = members
            .par_iter()
            .map(|&doc| shingle_set(&normalised[distinct[doc as usize] as usize], config.ngram))
            .collect();
        drop(members);
        let set_of = |doc: u32| &sets[slot[doc as usize] as usize];
        let mut kept = Vec::new();
        for chunk in candidates.chunks(CHUNK) {
            check(progress)?;
            kept.par_extend(
                chunk
                    .par_iter()
                    .copied()
                    .filter(|&(a, b)| jaccard(set_of(a), set_of(b)) >= config.threshold),
            );
            progress.advance(chunk.len() as u64);
        }
        kept
    } else {
        candidates
    };
    let verified_pairs = accepted.len();
    for (a, b) in accepted {
        uf.union(distinct[a as usize], distinct[b as usize]);
    }

    let cluster_id: Vec<i64> = (0..n as u32).map(|i| uf.find(i) as i64).collect();
    let keep: Vec<bool> = cluster_id
        .iter()
        .enumerate()
        .map(|(i, &c)| c == i as i64)
        .collect();
    let clusters = keep.iter().filter(|&&k| k).count();
    Ok(DedupResult {
        near_duplicates: n - clusters - exact_duplicates,
        cluster_id,
        keep,
        empty_rows,
        rows: n,
        exact_duplicates,
        clusters,
        candidate_pairs: candidate_count,
        verified_pairs,
        lsh,
        seconds: started.elapsed().as_secs_f64(),
    })
}
