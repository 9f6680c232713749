//! The robust normal form: the text keyword matching compares, with the usual filter-evasion
//! spellings of prompt logs undone.
//!
//! It starts from the dedup normal form's folding ([`crate::normalize`]: NFKC, so full-width,
//! circled and mathematical letters are plain letters, and full Unicode case folding), then applies
//! these rules, in this order. Each undoes one way of writing a word so that a filter misses it
//! while a person (and a text encoder) still reads it.
//!
//! 1. **Invisible characters are dropped** (zero-width spaces and joiners, controls), without
//!    splitting the word they sit in: "na\u{200b}ked" is "naked" on screen.
//! 2. **Accents on Latin letters are removed** ("nàkéd" → "naked"), and so are combining marks
//!    stacked on an ASCII letter (strike-through and "Zalgo" decorations). Marks on other scripts
//!    stay: a Devanagari vowel sign is part of the spelling.
//! 3. **Spaced-out letters are joined**: three or more single characters in a row, at least two of
//!    them letters, separated each time by the same separator made of `.` `-` `_` `*` and spaces
//!    ("b.l.o.o.d", "n-a-k-e-d", "n a k e d", "b_l_o_o_d", "n . a . k . e . d") become one word.
//!    Requiring the same separator keeps an ordinary neighbour out ("a b.l.o.o.d" → "a blood");
//!    requiring two letters keeps numbers apart ("1 2 3", "4 x 4"). A single-letter word before a
//!    run spaced the same way is joined too ("a n a k e d" → "anaked"); edit distance still finds it.
//! 4. **Look-alike digits and symbols become letters**, but only inside a token (a run of letters,
//!    digits and `$` `@` `!`) that also has letters: `0`→o, `1`→i, `3`→e, `4`→a, `5`→s, `7`→t,
//!    `8`→b, `@`→a, `$`→s, `!`→i ("bl00dy", "n@ked", "z0mbie", "g0re", "$ex", "sh!t"). `1` is read
//!    as i, the more common intent; when it stood for l ("b1ood" → "biood") the edit distance
//!    of keyword matching still finds the word. Not mapped: `2` `6` `9` (no dominant letter), and
//!    `|`, which prompt logs use between tags ("masterpiece|best quality").
//!    Tokens left alone: numbers ("1990", "4"); a number followed by letters or letters followed
//!    by a number, which are units and names ("4k", "35mm", "1080p", "3d", "1girl", "sd15", "mp4",
//!    "gpt4") — mapping them would turn every camera and model tag into a pseudo-word. The price is
//!    that an obfuscation of exactly that shape ("nud3", "5ex") is not undone; one with a symbol
//!    or a digit between letters is ("s3x", "$3x", "g0r3"). `$` and `@` count as letters only
//!    inside a token or as its single first character ("$ex", "@ss"); `!` only inside a token;
//!    trailing symbols are punctuation ("bloody!", "cash$").
//! 5. **Look-alike Cyrillic and Greek letters become Latin** inside a token that has Latin letters
//!    ("nаked" with a Cyrillic а). A token wholly in another script is real text and stays.
//! 6. **Runs of three or more identical letters shrink to two** ("bloooody" → "bloody",
//!    "nakeddd" → "nakedd"): two, not one, because doubled letters are spelling ("blood", "all");
//!    the remaining extra letter is one edit, which keyword matching tolerates.
//! 7. **Other punctuation and symbols separate words, and whitespace collapses** to single spaces,
//!    as in the dedup form.
//!
//! The result is deterministic: it depends on the text alone, never on a locale or a batch. It is
//! also a fixed point (normalising it again changes nothing), so a caller may match text it has
//! already normalised; to keep that true, single characters that other punctuation spaces out
//! ("n, a, k, e, d") are joined as well, by a second pass over the first one's output.

use std::borrow::Cow;
use std::ops::Range;

use rayon::prelude::*;
use unicode_normalization::char::is_combining_mark;

use crate::normalize::{fold, role, CharRole};

mod emit;
mod lookalike;
mod spaced;
mod tokens;

use emit::Emitter;
use lookalike::{confusable_digit, confusable_symbol, latin_base, latin_lookalike};
use spaced::join_spaced_runs;
use tokens::{class, lex, Class};

/// Batches at least this long are normalised on rayon's pool; below it the hand-off costs more
/// than it saves.
pub(crate) const PARALLEL_MIN_TEXTS: usize = 2048;

/// The robust normal form of one text (see the module documentation for the rules).
pub fn normalize_robust(text: &str) -> String {
    RobustNormalizer::default().normalize(text)
}

/// The robust normal form of every text, in order. With `parallel`, batches of more than a few
/// thousand texts are spread over rayon's global pool.
pub fn normalize_robust_batch<S: AsRef<str> + Sync>(texts: &[S], parallel: bool) -> Vec<String> {
    if parallel && texts.len() >= PARALLEL_MIN_TEXTS {
        texts
            .par_iter()
            .map_init(RobustNormalizer::default, |n, t| n.normalize(t.as_ref()))
            .collect()
    } else {
        let mut normalizer = RobustNormalizer::default();
        texts
            .iter()
            .map(|t| normalizer.normalize(t.as_ref()))
            .collect()
    }
}

/// Normalises texts one after another, reusing its buffers.
#[derive(Default)]
pub struct RobustNormalizer {
    tokens: Vec<Range<usize>>,
    joined: String,
}

impl RobustNormalizer {
    pub fn normalize(&mut self, text: &str) -> String {
        let mut out = String::with_capacity(text.len());
        self.normalize_into(text, &mut out);
        out
    }

    /// Writes the normal form of `text` into `out` (cleared first).
    pub fn normalize_into(&mut self, text: &str, out: &mut String) {
        if self.pass(text, out) {
            // Single characters the first pass kept apart ("a, b, c") are spaced out by single
            // spaces now; a second pass joins them, so that the form is a fixed point.
            let first = std::mem::take(out);
            self.pass(&first, out);
        }
    }

    /// One pass of the rules; true when the output still has a spaced-out run.
    fn pass(&mut self, text: &str, out: &mut String) -> bool {
        out.clear();
        let source = clean(text);
        lex(&source, &mut self.tokens);
        let source: &str = if join_spaced_runs(&source, &self.tokens, &mut self.joined) {
            lex(&self.joined, &mut self.tokens);
            &self.joined
        } else {
            &source
        };
        let mut emit = Emitter::new(out);
        for range in &self.tokens {
            emit_token(&source[range.clone()], &mut emit);
        }
        emit.finish()
    }
}

/// Rules 1 and 2, plus case folding. ASCII text is not folded here: it is lower-cased character by
/// character when emitted, which saves a copy of nearly every prompt.
fn clean(text: &str) -> Cow<'_, str> {
    if text.is_ascii() {
        if text.bytes().any(is_invisible_ascii) {
            return Cow::Owned(
                text.chars()
                    .filter(|&c| !is_invisible_ascii(c as u8))
                    .collect(),
            );
        }
        return Cow::Borrowed(text);
    }
    // Invisible characters go before folding: left between two combining marks, they would keep
    // NFKC from putting the marks in order.
    let visible: Cow<'_, str> = if text.chars().any(is_invisible) {
        Cow::Owned(text.chars().filter(|&c| !is_invisible(c)).collect())
    } else {
        Cow::Borrowed(text)
    };
    let folded = fold(&visible);
    let mut out = String::with_capacity(folded.len());
    let mut last = ' ';
    for c in folded.chars() {
        if last.is_ascii_alphabetic() && is_combining_mark(c) {
            continue;
        }
        let c = latin_base(c).unwrap_or(c);
        out.push(c);
        last = c;
    }
    Cow::Owned(out)
}

fn is_invisible(c: char) -> bool {
    matches!(role(c), CharRole::Drop)
}

fn is_invisible_ascii(b: u8) -> bool {
    b.is_ascii_control() && !(b as char).is_whitespace()
}

/// How a token's characters are written out.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// No letters: digits stay, symbols separate ("1990", "$5" → "5").
    Number,
    /// A unit or a name ("4k", "sd15"): digits stay.
    Plain,
    /// Look-alike digits and symbols become letters.
    Mapped,
}

/// Rules 4 and 5 for one token, written through the emitter (which applies rules 6 and 7).
fn emit_token(token: &str, emit: &mut Emitter<'_>) {
    let bytes = token.as_bytes();
    // Most words: nothing to map, at most case and repeats to fix.
    if bytes.iter().all(u8::is_ascii_lowercase) && !has_triple(bytes) {
        emit.start_token();
        emit.push_word(token);
        return;
    }
    if bytes.iter().all(u8::is_ascii_alphabetic) {
        emit.start_token();
        for &b in bytes {
            emit.push(b.to_ascii_lowercase() as char);
        }
        return;
    }
    // Symbols are ASCII, so counting bytes counts characters.
    let trailing = bytes.iter().rev().take_while(|b| is_symbol(**b)).count();
    let core = &token[..token.len() - trailing];
    let leading = core.bytes().take_while(|b| is_symbol(*b)).count();
    let mut letters = 0;
    let mut latin = false;
    let mut lookalikes = false;
    let mut symbols = 0;
    let mut look_alike_digits = false;
    let mut shifts = 0; // changes between digits and non-digits
    let mut previous_digit = None;
    for c in core.chars() {
        let k = class(c);
        match k {
            Class::Letter => {
                letters += 1;
                latin |= c.is_ascii_alphabetic();
                lookalikes |= !c.is_ascii() && latin_lookalike(c).is_some();
            }
            Class::Symbol => symbols += 1,
            Class::Digit => look_alike_digits |= confusable_digit(c).is_some(),
            _ => {}
        }
        let digit = k == Class::Digit;
        if previous_digit.is_some_and(|p| p != digit) {
            shifts += 1;
        }
        previous_digit = Some(digit);
    }
    // A lone leading `$` or `@` is a letter ("$ex"); other leading symbols are punctuation.
    let keeps_lead = leading == 1 && matches!(bytes[0], b'$' | b'@') && letters > 0;
    let core = if keeps_lead {
        core
    } else {
        symbols -= leading;
        &core[leading..]
    };
    let mode = if letters == 0 {
        Mode::Number
    } else if symbols == 0 && shifts == 1 {
        Mode::Plain
    } else {
        Mode::Mapped
    };
    // Mapped digits and symbols are Latin letters too ("n4кed").
    let latin = latin || (mode == Mode::Mapped && (symbols > 0 || look_alike_digits));
    let unspoof = lookalikes && latin;
    emit.start_token();
    for c in core.chars() {
        let c = c.to_ascii_lowercase();
        let out = match (class(c), mode) {
            (Class::Symbol, Mode::Number) => {
                emit.separate();
                continue;
            }
            (Class::Symbol, _) => confusable_symbol(c),
            (Class::Digit, Mode::Mapped) => confusable_digit(c).unwrap_or(c),
            (Class::Letter, _) if unspoof => latin_lookalike(c).unwrap_or(c),
            // A mark on a look-alike now mapped to Latin goes, as rule 2 drops it on Latin.
            (Class::Other, _) if emit.after_latin_letter() && is_combining_mark(c) => continue,
            _ => c,
        };
        emit.push(out);
    }
}

fn has_triple(bytes: &[u8]) -> bool {
    bytes.windows(3).any(|w| w[0] == w[1] && w[1] == w[2])
}

fn is_symbol(b: u8) -> bool {
    matches!(b, b'$' | b'@' | b'!')
}

#[cfg(test)]
mod tests;
