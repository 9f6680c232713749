//! Writing the normal form: rules 6 and 7 (letter runs shrink to two, words are separated by
//! single spaces), and noticing single characters left spaced out for a second pass.

use super::lookalike::confusable_digit;
use super::spaced::{MIN_SPACED_LETTERS, MIN_SPACED_RUN};

/// Longest run of one letter that is kept.
const MAX_REPEAT: usize = 2;

/// Writes words separated by single spaces, shrinking runs of one letter (rules 6 and 7), and
/// notes whether single characters were left spaced out.
pub(super) struct Emitter<'a> {
    out: &'a mut String,
    last: char,
    run: usize,
    space: bool,
    /// Characters in the word being written, and its first one.
    word_chars: usize,
    word_first: char,
    /// Single-character words in a row so far, and the letters among them.
    singles: usize,
    single_letters: usize,
    spaced_run: bool,
}

impl<'a> Emitter<'a> {
    pub(super) fn new(out: &'a mut String) -> Self {
        Self {
            out,
            last: ' ',
            run: 0,
            space: false,
            word_chars: 0,
            word_first: ' ',
            singles: 0,
            single_letters: 0,
            spaced_run: false,
        }
    }

    pub(super) fn start_token(&mut self) {
        self.separate();
    }

    /// Ends the current word (if any): what follows starts a new one.
    pub(super) fn separate(&mut self) {
        self.end_word();
        self.space = !self.out.is_empty();
        self.last = ' ';
        self.run = 0;
    }

    pub(super) fn after_latin_letter(&self) -> bool {
        self.last.is_ascii_alphabetic()
    }

    pub(super) fn push(&mut self, c: char) {
        if c == self.last {
            if self.run >= MAX_REPEAT && c.is_alphabetic() {
                return;
            }
            self.run += 1;
        } else {
            self.last = c;
            self.run = 1;
        }
        if self.space {
            self.out.push(' ');
            self.space = false;
        }
        if self.word_chars == 0 {
            self.word_first = c;
        }
        self.word_chars += 1;
        self.out.push(c);
    }

    /// Writes a whole word of ASCII characters with no run longer than two, as `push` would.
    pub(super) fn push_word(&mut self, word: &str) {
        let bytes = word.as_bytes();
        let (Some(&first), Some(&last)) = (bytes.first(), bytes.last()) else {
            return;
        };
        if self.space {
            self.out.push(' ');
            self.space = false;
        }
        self.out.push_str(word);
        let repeated = bytes.len() > 1 && bytes[bytes.len() - 2] == last;
        self.last = last as char;
        self.run = if repeated { 2 } else { 1 };
        self.word_first = first as char;
        self.word_chars = bytes.len();
    }

    fn end_word(&mut self) {
        match self.word_chars {
            0 => return,
            1 if self.word_first.is_alphabetic() || confusable_digit(self.word_first).is_some() => {
                self.singles += 1;
                self.single_letters += usize::from(self.word_first.is_alphabetic());
                self.spaced_run |=
                    self.singles >= MIN_SPACED_RUN && self.single_letters >= MIN_SPACED_LETTERS;
            }
            _ => {
                self.singles = 0;
                self.single_letters = 0;
            }
        }
        self.word_chars = 0;
    }

    /// Ends the text; true when it has a spaced-out run that a second pass would join.
    pub(super) fn finish(mut self) -> bool {
        self.end_word();
        self.spaced_run
    }
}
