//! Building a [`KeywordMatcher`]: checking and normalising the caller's lists, then indexing the
//! terms for matching.

use rustc_hash::{FxHashMap, FxHashSet};

use super::fuzzy::FuzzyIndex;
use super::{KeywordMatcher, KeywordOptions};
use crate::error::{DataError, Result};
use crate::robust_text::RobustNormalizer;

/// A term or an exception phrase, normalised.
#[derive(Debug)]
pub(super) struct Phrase {
    pub(super) words: Vec<String>,
    /// The last word is a prefix (the phrase ended in `*`).
    pub(super) prefix: bool,
}

impl Phrase {
    /// None when nothing of it is left after normalisation.
    fn parse(written: &str, normalizer: &mut RobustNormalizer) -> Option<Self> {
        let written = written.trim();
        let (stem, prefix) = match written.strip_suffix('*') {
            Some(stem) => (stem, true),
            None => (written, false),
        };
        let normal = normalizer.normalize(stem);
        let words: Vec<String> = normal
            .split(' ')
            .filter(|w| !w.is_empty())
            .map(String::from)
            .collect();
        (!words.is_empty()).then_some(Self { words, prefix })
    }
}

#[derive(Debug)]
pub(super) struct Term {
    pub(super) group: usize,
    pub(super) written: String,
    pub(super) phrase: Phrase,
}

/// The first two bytes of every word that can begin an exact match: most words of a prompt begin
/// otherwise, and are not looked up at all.
#[derive(Debug)]
pub(super) struct Openings {
    bits: Vec<u64>,
}

impl Openings {
    fn new() -> Self {
        Self {
            bits: vec![0; (1 << 16) / 64],
        }
    }

    /// A word's first two bytes; a one-byte word pairs its byte with 0, which no word contains.
    fn key(first: u8, second: u8) -> usize {
        usize::from(first) << 8 | usize::from(second)
    }

    fn set(&mut self, key: usize) {
        self.bits[key / 64] |= 1 << (key % 64);
    }

    fn add_word(&mut self, word: &str) {
        let b = word.as_bytes();
        self.set(Self::key(b[0], b.get(1).copied().unwrap_or(0)));
    }

    fn add_stem(&mut self, stem: &str) {
        match stem.as_bytes() {
            [only] => (0..=u8::MAX).for_each(|second| self.set(Self::key(*only, second))),
            _ => self.add_word(stem),
        }
    }

    pub(super) fn may_begin(&self, word: &str) -> bool {
        let b = word.as_bytes();
        let key = Self::key(b[0], b.get(1).copied().unwrap_or(0));
        self.bits[key / 64] & (1 << (key % 64)) != 0
    }
}

impl KeywordMatcher {
    /// Builds a matcher. `groups[g]` are the terms of group g and `exceptions[g]` its benign
    /// phrases (one list per group, possibly empty); `protected` are words that never match by
    /// edit distance. A term, phrase or protected word that normalises to nothing, a protected
    /// entry of several words, or too few exception lists is an error naming it.
    pub fn new<S: AsRef<str>>(
        groups: &[Vec<S>],
        exceptions: &[Vec<S>],
        protected: &[S],
        options: KeywordOptions,
    ) -> Result<Self> {
        options.validate()?;
        if exceptions.len() != groups.len() {
            return Err(DataError::parameter(
                "exceptions",
                format!("{} lists", exceptions.len()),
                format!(
                    "one list of exception phrases per group is needed ({} groups)",
                    groups.len()
                ),
            ));
        }
        let mut normalizer = RobustNormalizer::default();
        let mut parse = |name: &'static str, g: usize, i: usize, written: &str| {
            Phrase::parse(written, &mut normalizer).ok_or_else(|| {
                DataError::parameter(
                    name,
                    format!("{written:?} (group {g}, item {i})"),
                    "nothing is left of it after normalisation",
                )
            })
        };
        let mut terms = Vec::new();
        for (g, group) in groups.iter().enumerate() {
            for (i, written) in group.iter().enumerate() {
                let written = written.as_ref();
                let phrase = parse("groups", g, i, written)?;
                terms.push(Term {
                    group: g,
                    written: written.to_owned(),
                    phrase,
                });
            }
        }
        let exceptions = exceptions
            .iter()
            .enumerate()
            .map(|(g, list)| {
                let parsed = list.iter().enumerate();
                parsed
                    .map(|(i, p)| parse("exceptions", g, i, p.as_ref()))
                    .collect()
            })
            .collect::<Result<Vec<Vec<Phrase>>>>()?;
        let protected = protected
            .iter()
            .enumerate()
            .map(|(i, word)| protected_word(word.as_ref(), i, &mut normalizer))
            .collect::<Result<FxHashSet<String>>>()?;
        Ok(Self::index(options, terms, exceptions, protected))
    }

    fn index(
        options: KeywordOptions,
        terms: Vec<Term>,
        exceptions: Vec<Vec<Phrase>>,
        protected: FxHashSet<String>,
    ) -> Self {
        let mut by_first_word: FxHashMap<String, Vec<usize>> = FxHashMap::default();
        let mut by_stem: FxHashMap<String, Vec<usize>> = FxHashMap::default();
        let mut openings = Openings::new();
        for (id, term) in terms.iter().enumerate() {
            let first = &term.phrase.words[0];
            if term.phrase.words.len() == 1 && term.phrase.prefix {
                openings.add_stem(first);
                by_stem.entry(first.clone()).or_default().push(id);
            } else {
                openings.add_word(first);
                by_first_word.entry(first.clone()).or_default().push(id);
            }
        }
        let mut stem_lengths: Vec<usize> = by_stem.keys().map(String::len).collect();
        stem_lengths.sort_unstable();
        stem_lengths.dedup();
        let fuzzy = FuzzyIndex::new(terms.iter().enumerate().filter_map(|(id, term)| {
            let [word] = term.phrase.words.as_slice() else {
                return None;
            };
            let max_distance = options.max_distance(word.chars().count());
            (max_distance > 0).then_some((id, word.as_str(), max_distance))
        }));
        Self {
            options,
            terms,
            exceptions,
            by_first_word,
            by_stem,
            stem_lengths,
            openings,
            fuzzy,
            protected,
        }
    }
}

fn protected_word(written: &str, i: usize, normalizer: &mut RobustNormalizer) -> Result<String> {
    let word = normalizer.normalize(written);
    if word.is_empty() || word.contains(' ') {
        return Err(DataError::parameter(
            "protected",
            format!("{written:?} (item {i})"),
            format!("a protected entry must be one word after normalisation (it is {word:?})"),
        ));
    }
    Ok(word)
}
