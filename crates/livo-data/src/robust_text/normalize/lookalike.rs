//! Which characters stand for which Latin letter (rules 2, 4 and 5 of the robust normal form).

use unicode_normalization::char::decompose_canonical;

/// The ASCII letter under an accented Latin letter ("é" → 'e'); None for other characters.
pub(super) fn latin_base(c: char) -> Option<char> {
    if !matches!(c, '\u{c0}'..='\u{24f}' | '\u{1e00}'..='\u{1eff}') {
        return None;
    }
    let mut base = None;
    decompose_canonical(c, |d| {
        base.get_or_insert(d);
    });
    base.filter(|b| b.is_ascii_alphabetic() && *b != c)
}

/// Rule 4: the letter a digit stands for inside a word. `1` is i, not l: i is the more common
/// intent ("k1ll", "n1pple"), and edit distance catches the other ("b1ood" → "biood"). 2, 6 and 9
/// have no dominant letter.
pub(super) fn confusable_digit(c: char) -> Option<char> {
    Some(match c {
        '0' => 'o',
        '1' => 'i',
        '3' => 'e',
        '4' => 'a',
        '5' => 's',
        '7' => 't',
        '8' => 'b',
        _ => return None,
    })
}

/// Rule 4: the letter `$`, `@` or `!` stands for inside a word.
pub(super) fn confusable_symbol(c: char) -> char {
    match c {
        '@' => 'a',
        '$' => 's',
        _ => 'i',
    }
}

/// Rule 5: Cyrillic and Greek letters (case-folded) that look like a Latin letter.
pub(super) fn latin_lookalike(c: char) -> Option<char> {
    Some(match c {
        'а' | 'α' => 'a',
        'в' | 'β' => 'b',
        'с' => 'c',
        'ԁ' => 'd',
        'е' | 'ε' => 'e',
        'һ' | 'н' => 'h',
        'і' | 'ι' | 'ı' => 'i',
        'ј' => 'j',
        'к' | 'κ' => 'k',
        'м' => 'm',
        'о' | 'ο' => 'o',
        'р' | 'ρ' => 'p',
        'ԛ' => 'q',
        'ѕ' => 's',
        'т' | 'τ' => 't',
        'υ' => 'u',
        'ν' => 'v',
        'ԝ' => 'w',
        'х' | 'χ' => 'x',
        'у' | 'ү' => 'y',
        _ => return None,
    })
}
