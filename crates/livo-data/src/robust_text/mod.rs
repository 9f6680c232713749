//! Robust text for value selection's keyword stage: a normal form that undoes the spellings prompt
//! logs use to get past filters, and keyword matching over it with word boundaries, benign
//! exception phrases and bounded edit distance.
//!
//! - [`normalize`]: the robust normal form ([`normalize_robust`]);
//! - [`keywords`]: [`KeywordMatcher`], groups of terms matched against that form;
//! - [`edit_distance`]: the bounded Damerau-Levenshtein distance the matcher tolerates.

pub mod edit_distance;
pub mod keywords;
pub mod normalize;

pub use keywords::{KeywordHit, KeywordMatcher, KeywordOptions};
pub use normalize::{normalize_robust, normalize_robust_batch, RobustNormalizer};
