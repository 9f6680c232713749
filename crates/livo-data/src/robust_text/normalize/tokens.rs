//! Tokens: maximal runs of letters, digits, marks and the symbols that may stand for letters.

use std::ops::Range;

use crate::normalize::{role, CharRole};

/// What a character is to the tokenizer.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Class {
    Letter,
    /// An ASCII digit.
    Digit,
    /// `$`, `@` or `!`: a letter inside a word, punctuation elsewhere.
    Symbol,
    /// Kept inside a word but neither a letter nor a digit (marks, other scripts' digits).
    Other,
    Separator,
}

pub(super) fn class(c: char) -> Class {
    match c {
        'a'..='z' | 'A'..='Z' => Class::Letter,
        '0'..='9' => Class::Digit,
        '$' | '@' | '!' => Class::Symbol,
        c if c.is_ascii() => Class::Separator,
        c => match role(c) {
            CharRole::Keep if c.is_alphabetic() => Class::Letter,
            CharRole::Keep => Class::Other,
            _ => Class::Separator,
        },
    }
}

/// Whether each ASCII byte separates tokens (a table: the lexer's hot loop).
const ASCII_SEPARATOR: [bool; 128] = {
    let mut table = [false; 128];
    let mut b = 0;
    while b < 128 {
        table[b] = !((b as u8).is_ascii_alphanumeric() || matches!(b as u8, b'$' | b'@' | b'!'));
        b += 1;
    }
    table
};

/// Splits `text` into tokens: maximal runs of non-separator characters.
pub(super) fn lex(text: &str, tokens: &mut Vec<Range<usize>>) {
    tokens.clear();
    let bytes = text.as_bytes();
    let mut start = None;
    let mut i = 0;
    while i < bytes.len() {
        let (separator, width) = match bytes[i] {
            b if b.is_ascii() => (ASCII_SEPARATOR[b as usize], 1),
            _ => {
                let c = text[i..].chars().next().expect("a character starts here");
                (class(c) == Class::Separator, c.len_utf8())
            }
        };
        match (separator, start) {
            (true, Some(s)) => {
                tokens.push(s..i);
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
        i += width;
    }
    if let Some(s) = start {
        tokens.push(s..text.len());
    }
}
