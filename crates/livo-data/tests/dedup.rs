//! End-to-end properties of deduplication: determinism, representatives, arbitrary Unicode input.

use livo_data::{dedup, normalize, DedupConfig, Silent};
use proptest::prelude::*;

fn corpus() -> Vec<String> {
    // Bases are random 16-word sentences (a fixed LCG), so distinct bases share few n-grams.
    let words = [
        "amber", "bridge", "candle", "desert", "ember", "forest", "garden", "harbour", "island",
        "jungle", "kettle", "lantern", "meadow", "nurse", "orchard", "pilot", "quarry", "river",
        "sailor", "tower", "umbrella", "valley", "window", "yarn", "zephyr", "doctor", "baker",
        "teacher", "violin", "compass",
    ];
    let mut state: u64 = 42;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (state >> 33) as usize
    };
    let mut texts = Vec::new();
    for _ in 0..60 {
        let base: Vec<&str> = (0..16).map(|_| words[next() % words.len()]).collect();
        let base = base.join(" ");
        texts.push(base.clone());
        texts.push(format!("{}!", base.to_uppercase()));
        texts.push(format!("{base} today"));
    }
    texts
}

#[test]
fn same_clusters_for_any_thread_count() {
    let texts = corpus();
    let results: Vec<_> = [1, 2, 3]
        .into_iter()
        .map(|threads| {
            let config = DedupConfig {
                threads: Some(threads),
                ..DedupConfig::default()
            };
            dedup(texts.as_slice(), &config, &Silent).unwrap()
        })
        .collect();
    assert_eq!(results[0].cluster_id, results[1].cluster_id);
    assert_eq!(results[0].cluster_id, results[2].cluster_id);
}

#[test]
fn every_base_prompt_absorbs_its_variants() {
    let texts = corpus();
    let result = dedup(texts.as_slice(), &DedupConfig::default(), &Silent).unwrap();
    let mut edits_found = 0;
    for base in (0..texts.len()).step_by(3) {
        assert_eq!(result.cluster_id[base], base as i64);
        assert_eq!(result.cluster_id[base + 1], base as i64, "upper-case copy");
        edits_found += usize::from(result.cluster_id[base + 2] == base as i64);
    }
    assert_eq!(result.exact_duplicates, texts.len() / 3);
    // Jaccard ~0.93 for the edits: LSH (9 bands x 13 rows) finds each with probability ~0.97.
    assert!(edits_found >= 56, "{edits_found} of 60 light edits found");
    assert_eq!(result.near_duplicates, edits_found);
}

#[test]
fn invalid_band_count_is_reported() {
    let config = DedupConfig {
        num_perm: 100,
        bands: Some(7),
        ..DedupConfig::default()
    };
    let err = dedup(["a"].as_slice(), &config, &Silent).unwrap_err();
    assert!(err.to_string().contains("not a multiple"), "{err}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn normalisation_is_idempotent(text in "\\PC{0,64}") {
        let once = normalize(&text);
        prop_assert_eq!(normalize(&once), once.clone());
        prop_assert!(!once.starts_with(' ') && !once.ends_with(' ') && !once.contains("  "));
    }

    #[test]
    fn arbitrary_unicode_never_panics_and_representatives_are_first(texts in proptest::collection::vec("\\PC{0,24}", 0..40)) {
        let result = dedup(texts.as_slice(), &DedupConfig::default(), &Silent).unwrap();
        prop_assert_eq!(result.cluster_id.len(), texts.len());
        for (i, &c) in result.cluster_id.iter().enumerate() {
            prop_assert!(c as usize <= i);
            prop_assert_eq!(result.keep[i], c as usize == i);
            prop_assert!(result.keep[c as usize]);
        }
        prop_assert_eq!(result.clusters + result.exact_duplicates + result.near_duplicates, texts.len());
    }

    #[test]
    fn exact_copies_always_share_a_cluster(text in "\\PC{1,40}", n in 2usize..5) {
        let texts: Vec<String> = std::iter::repeat_n(text.clone(), n).collect();
        let result = dedup(texts.as_slice(), &DedupConfig::default(), &Silent).unwrap();
        if normalize(&text).is_empty() {
            prop_assert_eq!(result.empty_rows.len(), n);
        } else {
            prop_assert!(result.cluster_id.iter().all(|&c| c == 0));
        }
    }
}
