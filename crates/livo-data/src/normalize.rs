//! Unicode-aware prompt normalisation.
//!
//! Two prompts that a person reads as the same text must normalise to the same string, whatever
//! the script: compatibility forms are folded (NFKC), case is folded (full Unicode case folding, not
//! ASCII lowercasing), punctuation and symbols are removed by their Unicode *category* (so Devanagari
//! vowel signs or CJK ideographs survive), invisible format characters are dropped and whitespace is
//! collapsed.

use std::borrow::Cow;

use unicode_general_category::{get_general_category, GeneralCategory as Gc};
use unicode_normalization::{is_nfkc_quick, IsNormalized, UnicodeNormalization};

/// What a character becomes in the normalised text.
pub(crate) enum CharRole {
    Keep,
    Separator,
    Drop,
}

pub(crate) fn role(c: char) -> CharRole {
    if c.is_ascii() {
        return match c {
            c if c.is_ascii_alphanumeric() => CharRole::Keep,
            c if c.is_whitespace() => CharRole::Separator,
            c if c.is_ascii_control() => CharRole::Drop,
            _ => CharRole::Separator,
        };
    }
    if c.is_whitespace() {
        return CharRole::Separator;
    }
    if is_default_ignorable(c) {
        // Variation selectors (the emoji form "❤\u{fe0f}"), the combining grapheme joiner,
        // Hangul fillers: invisible, so "❤\u{fe0f}" and "❤" are one text, and two emoji that are
        // dropped as symbols do not leave the same selector behind as their text.
        return CharRole::Drop;
    }
    match get_general_category(c) {
        // Punctuation and symbols separate words ("red-haired" ~ "red haired").
        Gc::ConnectorPunctuation
        | Gc::DashPunctuation
        | Gc::OpenPunctuation
        | Gc::ClosePunctuation
        | Gc::InitialPunctuation
        | Gc::FinalPunctuation
        | Gc::OtherPunctuation
        | Gc::MathSymbol
        | Gc::CurrencySymbol
        | Gc::ModifierSymbol
        | Gc::OtherSymbol
        | Gc::LineSeparator
        | Gc::ParagraphSeparator
        | Gc::SpaceSeparator => CharRole::Separator,
        // Zero-width spaces, joiners, BOMs, controls: invisible, so they must not split or change text.
        // An enclosing mark (the keycap of "#\u{fe0f}\u{20e3}") only decorates the symbol it encloses.
        Gc::Format
        | Gc::Control
        | Gc::Surrogate
        | Gc::PrivateUse
        | Gc::Unassigned
        | Gc::EnclosingMark => CharRole::Drop,
        _ => CharRole::Keep,
    }
}

/// Unicode's Default_Ignorable_Code_Point characters that are not already format characters
/// (those are dropped by category): rendered as nothing when a font lacks them.
fn is_default_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{034F}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// Normalise one prompt for deduplication (NFKC, case folding, punctuation/symbols removed by
/// Unicode category, whitespace collapsed). Returns an empty string when nothing textual is left.
pub fn normalize(text: &str) -> String {
    if text.is_ascii() {
        // ASCII is already NFKC and folds by lowercasing: skip the Unicode tables.
        return collapse(text.bytes().map(|b| b.to_ascii_lowercase() as char));
    }
    collapse(fold(text).chars())
}

/// NFKC and full case folding, nothing removed: the text every normal form here starts from.
/// Borrows when the text is already folded (lower-case ASCII).
pub(crate) fn fold(text: &str) -> Cow<'_, str> {
    if text.is_ascii() {
        return if text.bytes().any(|b| b.is_ascii_uppercase()) {
            Cow::Owned(text.to_ascii_lowercase())
        } else {
            Cow::Borrowed(text)
        };
    }
    let composed: Cow<'_, str> = match is_nfkc_quick(text.chars()) {
        IsNormalized::Yes => Cow::Borrowed(text),
        _ => Cow::Owned(text.nfkc().collect()),
    };
    // Case folding can produce text that is no longer NFKC ("ǰ" → "ǰ"), hence the second pass.
    let folded = caseless::default_case_fold_str(&composed);
    match is_nfkc_quick(folded.chars()) {
        IsNormalized::Yes => Cow::Owned(folded),
        _ => Cow::Owned(folded.nfkc().collect()),
    }
}

/// Applies each character's role and collapses separators into single spaces.
fn collapse(chars: impl Iterator<Item = char>) -> String {
    let mut out = String::new();
    let mut pending_space = false;
    for c in chars {
        match role(c) {
            CharRole::Keep => {
                if pending_space && !out.is_empty() {
                    out.push(' ');
                }
                pending_space = false;
                out.push(c);
            }
            CharRole::Separator => pending_space = true,
            CharRole::Drop => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn folds_case_punctuation_and_whitespace() {
        assert_eq!(
            normalize("  A Photo,  of a DOCTOR!!  "),
            "a photo of a doctor"
        );
        assert_eq!(normalize("red-haired\tnurse"), "red haired nurse");
    }

    #[test]
    fn applies_full_case_folding_not_ascii_lowercase() {
        assert_eq!(normalize("STRASSE"), normalize("straße"));
        assert_eq!(normalize("ΣΟΦΙΑ"), normalize("σοφια"));
    }

    #[test]
    fn folds_compatibility_forms() {
        assert_eq!(normalize("ｆｕｌｌ　ｗｉｄｔｈ"), "full width");
        assert_eq!(normalize("ﬁre ①"), "fire 1");
        // Composed and decomposed accents are the same text.
        assert_eq!(normalize("cafe\u{301}"), normalize("café"));
    }

    #[test]
    fn keeps_non_latin_scripts() {
        assert_eq!(normalize("एक डॉक्टर।"), "एक डॉक्टर");
        assert_eq!(normalize("一位医生，微笑着。"), "一位医生 微笑着");
        assert_eq!(normalize("طبيب يبتسم؟"), "طبيب يبتسم");
        assert_eq!(normalize("Врач, улыбается"), "врач улыбается");
        assert_eq!(normalize("医者が笑う"), "医者が笑う");
    }

    #[test]
    fn ascii_fast_path_agrees_with_the_unicode_path() {
        // The same text with one non-ASCII character appended takes the Unicode path.
        for text in [
            "Hello,\tWorld!\x01 $5 + a_b",
            "  MIXED case -- text\r\n",
            "\x1c\x1fa",
        ] {
            let unicode = normalize(&format!("{text} é"));
            let ascii = normalize(text);
            assert_eq!(format!("{ascii} é").trim_start(), unicode, "{text:?}");
        }
    }

    #[test]
    fn drops_invisible_format_characters() {
        assert_eq!(normalize("doc\u{200b}tor"), "doctor");
        assert_eq!(normalize("\u{feff}nurse"), "nurse");
    }

    #[test]
    fn drops_variation_selectors_and_enclosing_marks() {
        assert_eq!(
            normalize("a red heart \u{2764}\u{fe0f}"),
            normalize("a red heart \u{2764}")
        );
        assert_eq!(normalize("\u{2764}\u{fe0f}"), "");
        assert_eq!(normalize("#\u{fe0f}\u{20e3}"), "");
        assert_eq!(normalize("doc\u{34f}tor\u{e0101}"), "doctor");
        assert_eq!(normalize("\u{3164}nurse"), "nurse");
    }

    #[test]
    fn punctuation_only_text_is_empty() {
        assert_eq!(normalize("!!! ... ???"), "");
        assert_eq!(normalize("🙂🙂"), "");
        assert_eq!(normalize(""), "");
    }
}
