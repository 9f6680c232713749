//! Rule 3 of the robust normal form: spaced-out letters ("b.l.o.o.d", "n a k e d") joined into
//! one word.

use std::ops::Range;

use super::lookalike::confusable_digit;
use super::tokens::{class, Class};

/// Fewest single characters in a row that are joined into one word.
pub(super) const MIN_SPACED_RUN: usize = 3;
/// Fewest letters among them.
pub(super) const MIN_SPACED_LETTERS: usize = 2;
/// Longest separator between spaced characters, in characters (" - " is three).
const MAX_SPACED_SEPARATOR: usize = 3;

/// A token that can be one character of a spaced-out word: Some(is a letter).
fn spaced_char(token: &str) -> Option<bool> {
    if token.len() > 4 {
        return None; // more than one character
    }
    let mut chars = token.chars();
    let c = chars.next()?;
    if chars.next().is_some() {
        return None;
    }
    match class(c) {
        Class::Letter => Some(true),
        Class::Digit if confusable_digit(c).is_some() => Some(false),
        Class::Symbol => Some(false),
        _ => None,
    }
}

/// The part of a separator that must repeat between spaced characters (its non-space characters),
/// or None when the separator cannot join them.
fn spaced_separator(sep: &str) -> Option<&str> {
    let joiners = |c: char| matches!(c, '.' | '-' | '_' | '*') || c.is_whitespace();
    (sep.chars().count() <= MAX_SPACED_SEPARATOR && sep.chars().all(joiners))
        .then(|| sep.trim_matches(char::is_whitespace))
}

/// Rule 3. Writes `text` with the separators inside spaced-out runs removed into `joined` and
/// returns true, or returns false (leaving `joined` unspecified) when there is no such run.
pub(super) fn join_spaced_runs(text: &str, tokens: &[Range<usize>], joined: &mut String) -> bool {
    let mut runs: Vec<Range<usize>> = Vec::new();
    let mut i = 0;
    while i + MIN_SPACED_RUN <= tokens.len() {
        let end = spaced_run_end(text, tokens, i);
        if end > i {
            runs.push(i..end);
            i = end;
        } else {
            i += 1;
        }
    }
    if runs.is_empty() {
        return false;
    }
    joined.clear();
    let mut run = runs.iter().peekable();
    for (k, token) in tokens.iter().enumerate() {
        while run.peek().is_some_and(|r| r.end <= k) {
            run.next();
        }
        let inside = run.peek().is_some_and(|r| r.start < k && k < r.end);
        if k > 0 {
            joined.push_str(if inside {
                ""
            } else {
                &text[tokens[k - 1].end..token.start]
            });
        }
        joined.push_str(&text[token.clone()]);
    }
    true
}

/// The end (exclusive token index) of a spaced-out run starting at token `i`, or `i` when none
/// starts there.
fn spaced_run_end(text: &str, tokens: &[Range<usize>], i: usize) -> usize {
    let Some(first_is_letter) = spaced_char(&text[tokens[i].clone()]) else {
        return i;
    };
    let mut letters = usize::from(first_is_letter);
    let mut pattern = None;
    let mut end = i + 1;
    while end < tokens.len() {
        let sep = spaced_separator(&text[tokens[end - 1].end..tokens[end].start]);
        let Some(sep) = sep.filter(|s| pattern.is_none_or(|p| p == *s)) else {
            break;
        };
        let Some(is_letter) = spaced_char(&text[tokens[end].clone()]) else {
            break;
        };
        pattern = Some(sep);
        letters += usize::from(is_letter);
        end += 1;
    }
    if end - i >= MIN_SPACED_RUN && letters >= MIN_SPACED_LETTERS {
        end
    } else {
        i
    }
}
