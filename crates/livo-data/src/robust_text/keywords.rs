//! Keyword matching on the robust normal form: which groups of terms (one group per value) a text
//! mentions.
//!
//! The contract, and why:
//!
//! - **Everything is matched on the robust normal form** ([`super::normalize_robust`]), texts,
//!   terms, exception phrases and protected words alike, so "bl00d", "b.l.o.o.d" and "BLOOD" are
//!   the word "blood", and a term is written once however it is spelled.
//! - **Whole words only.** The normal form is words separated by single spaces, and a term matches
//!   whole words: "dead" never matches in "deadline", "sex" never in "Sussex". A term ending in `*`
//!   is a prefix of its last word ("zombi*" matches "zombies"); a term may be several words
//!   ("blood splatter").
//! - **Exceptions are applied after normalisation.** An occurrence of a term lying inside an
//!   occurrence of one of its group's exception phrases ("blood orange") does not count, so
//!   "bl00d orange" stays benign; other occurrences in the same text still count.
//! - **Bounded edit distance for typos.** A one-word term (or the stem of a one-word prefix term)
//!   of at least `fuzzy_min_len` characters also matches a word within Damerau-Levenshtein
//!   distance 1, of at least `fuzzy2_min_len` within 2; shorter terms match exactly, because one
//!   edit turns a short word into another real word ("sex" → "sax", "gore" → "more"). A prefix term
//!   matches by edit distance only as its bare stem ("zombei" ~ "zombie*"; "zombeis" does not):
//!   allowing edits anywhere in an open-ended word would match far too much. Several-word terms
//!   match exactly: an edit in any of their words would multiply look-alikes. Exception phrases
//!   are matched with the same tolerance per word, so that the typo that makes a hit also makes
//!   its exception ("blod orange" stays benign).
//! - **Protected words never match by edit distance.** Real words one edit from a term ("baked"
//!   and "naked", "blond" and "blood", "corps" and "corpse") are the caller's list, which depends
//!   on the language and the terms; none is built in.
//! - **One hit per group**: the closest (exact before fuzzy), then the earliest in the text, then
//!   the term listed first.

use std::ops::Range;

use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};

use super::edit_distance::damerau_levenshtein_within;
use super::normalize::{RobustNormalizer, PARALLEL_MIN_TEXTS};
use crate::error::{DataError, Result};

mod build;
mod fuzzy;

use build::{Openings, Phrase, Term};
use fuzzy::FuzzyIndex;

/// The shortest word length for which edit distance is allowed at all: one edit on a shorter word
/// matches almost anything.
const FUZZY_FLOOR: usize = 3;

/// When words are close enough to a term to count as a typo of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeywordOptions {
    /// Terms of at least this many characters match within one edit.
    pub fuzzy_min_len: usize,
    /// Terms of at least this many characters match within two edits.
    pub fuzzy2_min_len: usize,
}

impl Default for KeywordOptions {
    fn default() -> Self {
        Self {
            fuzzy_min_len: 5,
            fuzzy2_min_len: 8,
        }
    }
}

impl KeywordOptions {
    fn validate(&self) -> Result<()> {
        if self.fuzzy_min_len < FUZZY_FLOOR {
            return Err(DataError::parameter(
                "fuzzy_min_len",
                self.fuzzy_min_len,
                format!("must be at least {FUZZY_FLOOR}: one edit on shorter words matches almost anything"),
            ));
        }
        if self.fuzzy2_min_len < self.fuzzy_min_len {
            return Err(DataError::parameter(
                "fuzzy2_min_len",
                self.fuzzy2_min_len,
                format!("must be at least fuzzy_min_len ({})", self.fuzzy_min_len),
            ));
        }
        Ok(())
    }

    /// The edits a term word of `chars` characters tolerates.
    fn max_distance(&self, chars: usize) -> usize {
        if chars >= self.fuzzy2_min_len {
            2
        } else if chars >= self.fuzzy_min_len {
            1
        } else {
            0
        }
    }
}

/// A group that a text mentions, with the occurrence that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeywordHit {
    /// Index of the group in the matcher's input.
    pub group: usize,
    /// The term, as written in the input.
    pub term: String,
    /// The matched words, as they are in the normal form.
    pub matched: String,
    /// Byte range of `matched` in the text's normal form.
    pub span: Range<usize>,
    /// 0 for an exact (or prefix) match, else the edit distance.
    pub distance: usize,
}

/// A possible hit, before exceptions: a term over the words `words`.
#[derive(Debug, Clone)]
struct Candidate {
    term: usize,
    words: Range<usize>,
    distance: usize,
}

/// Buffers reused from one text to the next.
#[derive(Default)]
struct Scratch {
    words: Vec<Range<usize>>,
    chars: Vec<char>,
    candidates: Vec<Candidate>,
}

/// Groups of terms matched against texts; built once (see [`KeywordMatcher::new`]), then shared
/// by any number of threads.
#[derive(Debug)]
pub struct KeywordMatcher {
    options: KeywordOptions,
    terms: Vec<Term>,
    /// Per group, its exception phrases.
    exceptions: Vec<Vec<Phrase>>,
    /// Terms by their first word, except one-word prefix terms.
    by_first_word: FxHashMap<String, Vec<usize>>,
    /// One-word prefix terms by their stem, and the stems' lengths in bytes.
    by_stem: FxHashMap<String, Vec<usize>>,
    stem_lengths: Vec<usize>,
    /// How the words of the two maps above begin.
    openings: Openings,
    fuzzy: FuzzyIndex,
    protected: FxHashSet<String>,
}

impl KeywordMatcher {
    /// Number of groups.
    pub fn groups(&self) -> usize {
        self.exceptions.len()
    }

    /// The groups `text` mentions, in group order (see the module documentation). Spans refer to
    /// the text's robust normal form.
    pub fn match_text(&self, text: &str) -> Vec<KeywordHit> {
        self.match_normalized(&RobustNormalizer::default().normalize(text))
    }

    /// [`Self::match_text`] for every text, in order; with `parallel`, large batches are spread
    /// over rayon's global pool.
    pub fn match_batch<S: AsRef<str> + Sync>(
        &self,
        texts: &[S],
        parallel: bool,
    ) -> Vec<Vec<KeywordHit>> {
        type State = (RobustNormalizer, String, Scratch);
        let one = |(normalizer, buffer, scratch): &mut State, text: &S| {
            normalizer.normalize_into(text.as_ref(), buffer);
            self.find(buffer, scratch)
        };
        if parallel && texts.len() >= PARALLEL_MIN_TEXTS {
            texts.par_iter().map_init(State::default, one).collect()
        } else {
            let mut state = State::default();
            texts.iter().map(|text| one(&mut state, text)).collect()
        }
    }

    /// The groups a text already in the robust normal form mentions.
    pub fn match_normalized(&self, text: &str) -> Vec<KeywordHit> {
        self.find(text, &mut Scratch::default())
    }

    fn find(&self, text: &str, scratch: &mut Scratch) -> Vec<KeywordHit> {
        let Scratch {
            words,
            chars,
            candidates,
        } = scratch;
        words.clear();
        words.extend(word_spans(text));
        candidates.clear();
        for i in 0..words.len() {
            self.exact_candidates(text, words, i, candidates);
            self.fuzzy_candidates(&text[words[i].clone()], i, chars, candidates);
        }
        if candidates.is_empty() {
            return Vec::new();
        }
        candidates.retain(|c| !self.excepted(c, text, words));
        candidates.sort_by_key(|c| (self.terms[c.term].group, c.distance, c.words.start, c.term));
        candidates.dedup_by_key(|c| self.terms[c.term].group);
        candidates
            .iter()
            .map(|c| {
                let span = words[c.words.start].start..words[c.words.end - 1].end;
                let term = &self.terms[c.term];
                KeywordHit {
                    group: term.group,
                    term: term.written.clone(),
                    matched: text[span.clone()].to_owned(),
                    span,
                    distance: c.distance,
                }
            })
            .collect()
    }

    /// Terms that occur exactly (or by prefix) starting at word `i`.
    fn exact_candidates(
        &self,
        text: &str,
        words: &[Range<usize>],
        i: usize,
        out: &mut Vec<Candidate>,
    ) {
        let word = &text[words[i].clone()];
        if !self.openings.may_begin(word) {
            return;
        }
        for &id in self.by_first_word.get(word).into_iter().flatten() {
            let phrase = &self.terms[id].phrase;
            let end = i + phrase.words.len();
            let exact = end <= words.len()
                && phrase.words.iter().enumerate().all(|(k, pattern)| {
                    let word = &text[words[i + k].clone()];
                    let stem = phrase.prefix && k + 1 == phrase.words.len();
                    word == pattern || (stem && word.starts_with(pattern.as_str()))
                });
            if exact {
                out.push(Candidate {
                    term: id,
                    words: i..end,
                    distance: 0,
                });
            }
        }
        for &len in &self.stem_lengths {
            if len > word.len() {
                break;
            }
            let Some(stem) = word.get(..len) else {
                continue;
            };
            for &id in self.by_stem.get(stem).into_iter().flatten() {
                out.push(Candidate {
                    term: id,
                    words: i..i + 1,
                    distance: 0,
                });
            }
        }
    }

    /// One-word terms within their tolerated edits of `word` (word `i`), unless it is protected.
    fn fuzzy_candidates(
        &self,
        word: &str,
        i: usize,
        chars: &mut Vec<char>,
        out: &mut Vec<Candidate>,
    ) {
        let mut protected = None;
        self.fuzzy.within(word, chars, |term, distance| {
            if !*protected.get_or_insert_with(|| self.protected.contains(word)) {
                out.push(Candidate {
                    term,
                    words: i..i + 1,
                    distance,
                });
            }
        });
    }

    /// Whether the candidate lies inside an occurrence of one of its group's exception phrases.
    fn excepted(&self, candidate: &Candidate, text: &str, words: &[Range<usize>]) -> bool {
        let Range { start, end } = candidate.words;
        self.exceptions[self.terms[candidate.term].group]
            .iter()
            .any(|phrase| {
                let n = phrase.words.len();
                let first = end.saturating_sub(n);
                let last = start.min(words.len().saturating_sub(n));
                n >= end - start
                    && n <= words.len()
                    && (first..=last).any(|s| {
                        phrase.words.iter().enumerate().all(|(k, pattern)| {
                            let stem = phrase.prefix && k + 1 == n;
                            self.word_matches(pattern, stem, &text[words[s + k].clone()])
                        })
                    })
            })
    }

    /// One word of an exception phrase against a word of the text: exactly, by prefix, or within
    /// the edits the phrase word's length allows.
    fn word_matches(&self, pattern: &str, stem: bool, word: &str) -> bool {
        if word == pattern || (stem && word.starts_with(pattern)) {
            return true;
        }
        let pattern: Vec<char> = pattern.chars().collect();
        let max = self.options.max_distance(pattern.len());
        if max == 0 || self.protected.contains(word) {
            return false;
        }
        let word: Vec<char> = word.chars().collect();
        damerau_levenshtein_within(&word, &pattern, max).is_some()
    }
}

/// Byte ranges of the words of a normalised text.
fn word_spans(text: &str) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut start = 0;
    text.split(' ').filter_map(move |w| {
        let span = start..start + w.len();
        start = span.end + 1;
        (!w.is_empty()).then_some(span)
    })
}

#[cfg(test)]
mod tests;
