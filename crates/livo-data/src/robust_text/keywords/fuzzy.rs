//! The typo index: one-word terms that tolerate edits, arranged so that a word is measured only
//! against the few terms it could be within reach of.
//!
//! Two filters come before the edit distance, both exact (they never drop a real match): the
//! lengths (an edit changes the length by at most one) and the character sets (an edit brings at
//! most one character the other word lacks, and removes at most one it has).

use std::ops::Range;

use super::super::edit_distance::damerau_levenshtein_within;

/// The most edits any term tolerates.
const MAX_EDITS: usize = 2;

#[derive(Debug)]
struct Entry {
    term: usize,
    chars: Vec<char>,
    mask: u64,
    max_distance: usize,
}

#[derive(Debug, Default)]
pub(super) struct FuzzyIndex {
    /// Sorted by length.
    entries: Vec<Entry>,
    /// `starts[l]`: the first entry of at least `l` characters.
    starts: Vec<usize>,
}

/// One bit per character, hashed into 64 (collisions only make the filter weaker, never wrong).
fn char_mask(chars: &[char]) -> u64 {
    chars.iter().fold(0, |m, &c| m | 1 << (c as u32 % 64))
}

/// Whether `x` has at most `k` bits set. Clearing the lowest bit `k` times is cheaper than
/// `count_ones` on targets without a popcount instruction (the default x86-64 one).
fn at_most_bits(mut x: u64, k: usize) -> bool {
    for _ in 0..k {
        x &= x.wrapping_sub(1);
    }
    x == 0
}

impl FuzzyIndex {
    /// `words`: (term id, its one word, the edits it tolerates), for terms tolerating at least one.
    pub(super) fn new<'a>(words: impl Iterator<Item = (usize, &'a str, usize)>) -> Self {
        let mut entries: Vec<Entry> = words
            .map(|(term, word, max_distance)| {
                debug_assert!((1..=MAX_EDITS).contains(&max_distance));
                let chars: Vec<char> = word.chars().collect();
                let mask = char_mask(&chars);
                Entry {
                    term,
                    chars,
                    mask,
                    max_distance,
                }
            })
            .collect();
        entries.sort_by_key(|e| (e.chars.len(), e.term));
        let longest = entries.last().map_or(0, |e| e.chars.len());
        let starts = (0..=longest + 1)
            .map(|l| entries.partition_point(|e| e.chars.len() < l))
            .collect();
        Self { entries, starts }
    }

    fn entries_of_length(&self, lengths: Range<usize>) -> &[Entry] {
        let at = |l: usize| self.starts.get(l).copied().unwrap_or(self.entries.len());
        &self.entries[at(lengths.start)..at(lengths.end)]
    }

    /// Calls `found(term id, distance)` for every term within its tolerated edits of `word`, but
    /// not equal to it (exact matches are found elsewhere). `chars` is scratch space.
    pub(super) fn within(
        &self,
        word: &str,
        chars: &mut Vec<char>,
        mut found: impl FnMut(usize, usize),
    ) {
        let length = if word.is_ascii() {
            word.len()
        } else {
            word.chars().count()
        };
        let reach =
            self.entries_of_length(length.saturating_sub(MAX_EDITS)..length + MAX_EDITS + 1);
        if reach.is_empty() {
            return;
        }
        chars.clear();
        chars.extend(word.chars());
        let mask = char_mask(chars);
        for e in reach {
            let k = e.max_distance;
            if length.abs_diff(e.chars.len()) > k
                || !at_most_bits(mask & !e.mask, k)
                || !at_most_bits(e.mask & !mask, k)
            {
                continue;
            }
            match damerau_levenshtein_within(chars, &e.chars, k) {
                Some(0) | None => {}
                Some(distance) => found(e.term, distance),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FuzzyIndex;

    fn within(index: &FuzzyIndex, word: &str) -> Vec<(usize, usize)> {
        let mut found = Vec::new();
        index.within(word, &mut Vec::new(), |t, d| found.push((t, d)));
        found
    }

    #[test]
    fn finds_terms_within_their_own_tolerance_only() {
        let index =
            FuzzyIndex::new([(0, "blood", 1), (1, "massacre", 2), (2, "zombie", 1)].into_iter());
        assert_eq!(within(&index, "blod"), [(0, 1)]);
        assert_eq!(within(&index, "masakre"), [(1, 2)]);
        assert_eq!(within(&index, "zmobei"), []); // two edits from a one-edit term
        assert_eq!(within(&index, "blood"), []); // exact: not a typo
        assert_eq!(within(&index, "a"), []);
        assert_eq!(within(&index, &"x".repeat(300)), []);
    }

    #[test]
    fn an_empty_index_finds_nothing() {
        assert_eq!(within(&FuzzyIndex::new(std::iter::empty()), "blood"), []);
    }
}
