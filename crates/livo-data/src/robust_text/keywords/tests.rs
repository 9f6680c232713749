use proptest::prelude::*;

use super::{KeywordHit, KeywordMatcher, KeywordOptions};
use crate::robust_text::normalize_robust;
use crate::DataError;

const NUDITY: usize = 0;
const GORE: usize = 1;
const HORROR: usize = 2;

fn matcher_with(protected: &[&str], options: KeywordOptions) -> KeywordMatcher {
    let groups = vec![
        vec!["naked", "nude", "sex", "porn*", "in the buff"],
        vec![
            "blood",
            "bloody",
            "gore",
            "dead",
            "massacre",
            "open wound*",
            "blood splatter",
        ],
        vec!["zombie*", "corpse*", "walking dead"],
    ];
    let exceptions = vec![
        vec!["naked mole rat*", "same sex"],
        vec!["blood orange*", "bloody mary"],
        vec!["zombie cocktail*"],
    ];
    KeywordMatcher::new(&groups, &exceptions, protected, options).unwrap()
}

fn matcher() -> KeywordMatcher {
    matcher_with(
        &["baked", "blond", "corps", "bloom"],
        KeywordOptions::default(),
    )
}

fn hits(text: &str) -> Vec<(usize, String, String, usize)> {
    matcher()
        .match_text(text)
        .into_iter()
        .map(|h| (h.group, h.term, h.matched, h.distance))
        .collect()
}

fn groups(text: &str) -> Vec<usize> {
    matcher().match_text(text).iter().map(|h| h.group).collect()
}

fn hit(group: usize, term: &str, matched: &str, distance: usize) -> (usize, String, String, usize) {
    (group, term.to_owned(), matched.to_owned(), distance)
}

#[test]
fn finds_obfuscated_spellings() {
    for text in [
        "bl00dy",
        "BLOOOODY",
        "b.l.o.o.d",
        "b_l_o_o_d",
        "bl0od",
        "g0re",
    ] {
        assert_eq!(groups(text), [GORE], "{text:?}");
    }
    for text in ["n@ked", "n-a-k-e-d", "n a k e d", "nakeddd", "$ex", "nàkéd"] {
        assert_eq!(groups(text), [NUDITY], "{text:?}");
    }
    for text in ["z0mbie", "zombies", "zombei", "corspe", "c0rpses"] {
        assert_eq!(groups(text), [HORROR], "{text:?}");
    }
}

#[test]
fn reports_the_term_as_written_the_matched_words_and_the_distance() {
    assert_eq!(hits("a bloddy knife"), [hit(GORE, "bloody", "bloddy", 1)]);
    assert_eq!(
        hits("Z0MBIES at night"),
        [hit(HORROR, "zombie*", "zombies", 0)]
    );
    let found = matcher().match_text("a  b.l.o.o.d  moon");
    assert_eq!(found[0].span, 2..7);
}

#[test]
fn matches_whole_words_only() {
    for text in [
        "a deadline",
        "Sussex countryside",
        "a bloodhound",
        "pornography",
    ] {
        let expected: &[usize] = if text == "pornography" {
            &[NUDITY]
        } else {
            &[]
        };
        assert_eq!(groups(text), expected, "{text:?}");
    }
    assert!(groups("a deadline").is_empty());
}

#[test]
fn short_terms_match_exactly() {
    assert!(groups("more dew").is_empty()); // gore, dead: four letters, no edits
    assert!(groups("six nudes").is_empty()); // sex, nude
}

#[test]
fn long_terms_tolerate_two_edits() {
    assert_eq!(hits("a masakre"), [hit(GORE, "massacre", "masakre", 2)]);
}

#[test]
fn several_word_and_prefix_terms() {
    assert_eq!(
        hits("open wounds"),
        [hit(GORE, "open wound*", "open wounds", 0)]
    );
    assert_eq!(
        hits("the walking dead"),
        [
            hit(GORE, "dead", "dead", 0),
            hit(HORROR, "walking dead", "walking dead", 0)
        ]
    );
    assert_eq!(
        hits("in the buff"),
        [hit(NUDITY, "in the buff", "in the buff", 0)]
    );
    assert!(groups("in the buffet").is_empty());
}

#[test]
fn prefix_terms_tolerate_edits_only_as_their_bare_stem() {
    assert_eq!(groups("zombei"), [HORROR]);
    assert!(groups("zombeis").is_empty());
}

#[test]
fn exceptions_apply_after_normalisation() {
    for text in [
        "blood orange",
        "bl00d oranges",
        "BLOOD-ORANGE juice",
        "a naked mole rat",
        "same-sex couple",
    ] {
        assert!(groups(text).is_empty(), "{text:?}");
    }
    assert!(groups("zombie cocktail").is_empty());
}

#[test]
fn exceptions_tolerate_the_typo_that_made_the_hit() {
    assert!(groups("blod orange").is_empty());
}

#[test]
fn exceptions_suppress_only_their_own_occurrence() {
    assert_eq!(
        hits("blood orange with blood"),
        [hit(GORE, "blood", "blood", 0)]
    );
    assert_eq!(groups("naked mole rat, naked man"), [NUDITY]);
}

#[test]
fn protected_words_never_match_by_edit_distance() {
    assert!(groups("baked bread").is_empty());
    assert!(groups("a blond woman in bloom").is_empty());
    assert!(groups("army corps").is_empty());
    let unprotected = matcher_with(&[], KeywordOptions::default());
    assert_eq!(unprotected.match_text("baked bread")[0].group, NUDITY);
}

#[test]
fn one_hit_per_group_preferring_exact_then_earliest() {
    assert_eq!(
        hits("bloddy gore and blood"),
        [hit(GORE, "gore", "gore", 0)]
    );
    assert_eq!(
        hits("nude zombies in blood"),
        [
            hit(NUDITY, "nude", "nude", 0),
            hit(GORE, "blood", "blood", 0),
            hit(HORROR, "zombie*", "zombies", 0)
        ]
    );
}

#[test]
fn edit_distance_lengths_are_parameters() {
    let strict = KeywordOptions {
        fuzzy_min_len: 6,
        fuzzy2_min_len: 9,
    };
    assert!(matcher_with(&[], strict).match_text("bloddy").len() == 1); // bloody has 6 letters
    assert!(matcher_with(&[], strict).match_text("blod").is_empty());
    assert!(matcher_with(&[], strict).match_text("masakre").is_empty());
}

#[test]
fn odd_texts_find_nothing_and_do_not_fail() {
    for text in ["", "   ", "!!!", "🙂", "血 blood", &"x".repeat(10_000)] {
        let expected: &[usize] = if text.contains("blood") { &[GORE] } else { &[] };
        assert_eq!(groups(text), expected, "{text:?}");
    }
}

#[test]
fn batch_agrees_with_single_texts() {
    let m = matcher();
    let texts: Vec<String> = (0..5000)
        .map(|i| format!("prompt {i} with b.l.o.o.d and n@ked"))
        .collect();
    let single: Vec<Vec<KeywordHit>> = texts.iter().map(|t| m.match_text(t)).collect();
    assert_eq!(m.match_batch(&texts, true), single);
    assert_eq!(m.match_batch(&texts, false), single);
}

fn error(
    groups: &[Vec<&str>],
    exceptions: &[Vec<&str>],
    protected: &[&str],
    options: KeywordOptions,
) -> String {
    match KeywordMatcher::new(groups, exceptions, protected, options) {
        Err(e @ DataError::InvalidParameter { .. }) => e.to_string(),
        other => panic!("expected an invalid parameter, got {other:?}"),
    }
}

#[test]
fn rejects_invalid_inputs_naming_them() {
    let ok = KeywordOptions::default();
    let message = error(&[vec!["blood"]], &[], &[], ok);
    assert!(
        message.contains("exceptions") && message.contains("1 groups"),
        "{message}"
    );
    let message = error(&[vec!["blood", "!!!"]], &[vec![]], &[], ok);
    assert!(
        message.contains("groups=\"!!!\" (group 0, item 1)"),
        "{message}"
    );
    let message = error(&[vec!["*"]], &[vec![]], &[], ok);
    assert!(message.contains("groups=\"*\""), "{message}");
    let message = error(&[vec!["blood"]], &[vec![" "]], &[], ok);
    assert!(message.contains("exceptions="), "{message}");
    let message = error(&[vec!["blood"]], &[vec![]], &["blood orange"], ok);
    assert!(
        message.contains("protected=") && message.contains("one word"),
        "{message}"
    );
    let options = KeywordOptions {
        fuzzy_min_len: 2,
        fuzzy2_min_len: 8,
    };
    assert!(error(&[], &[], &[], options).contains("fuzzy_min_len=2"));
    let options = KeywordOptions {
        fuzzy_min_len: 6,
        fuzzy2_min_len: 5,
    };
    assert!(error(&[], &[], &[], options).contains("fuzzy2_min_len=5"));
}

#[test]
fn groups_without_terms_are_allowed() {
    let m = KeywordMatcher::new::<&str>(
        &[vec![], vec!["blood"]],
        &[vec![], vec![]],
        &[],
        KeywordOptions::default(),
    )
    .unwrap();
    assert_eq!(m.groups(), 2);
    assert_eq!(m.match_text("blood")[0].group, 1);
}

proptest! {
    #[test]
    fn any_text_matches_as_its_normal_form_does(text in "(\\PC|[bl0o.d n@ked]){0,40}") {
        let m = matcher();
        let hits = m.match_text(&text);
        prop_assert_eq!(m.match_text(&normalize_robust(&text)), hits.clone());
        for hit in hits {
            prop_assert_eq!(&normalize_robust(&text)[hit.span], hit.matched.as_str());
        }
    }
}
