use proptest::prelude::*;

use super::{normalize_robust as n, normalize_robust_batch};

#[test]
fn folds_case_width_and_punctuation_like_the_dedup_form() {
    assert_eq!(n("  A Photo,  of a DOCTOR!!  "), "a photo of a doctor");
    assert_eq!(n("ｆｕｌｌ　ｗｉｄｔｈ"), "full width");
    assert_eq!(n("STRASSE"), n("straße"));
    assert_eq!(n(""), "");
    assert_eq!(n(" \t\n "), "");
    assert_eq!(n("!!! ... ???"), "");
}

#[test]
fn maps_look_alike_digits_and_symbols_inside_words() {
    assert_eq!(n("bl00dy"), "bloody");
    assert_eq!(n("n@ked"), "naked");
    assert_eq!(n("Z0MBIE"), "zombie");
    assert_eq!(n("g0re"), "gore");
    assert_eq!(n("$ex"), "sex");
    assert_eq!(n("s3x"), "sex");
    assert_eq!(n("$3x"), "sex");
    assert_eq!(n("sh!t"), "shit");
    assert_eq!(n("g0r3"), "gore");
    assert_eq!(n("b1ood"), "biood");
}

#[test]
fn leaves_numbers_units_and_names_alone() {
    assert_eq!(n("in 1990, 4 cats"), "in 1990 4 cats");
    assert_eq!(
        n("4k 8k 35mm 1080p 3d 1girl 90s"),
        "4k 8k 35mm 1080p 3d 1girl 90s"
    );
    assert_eq!(n("sd15 mp4 gpt4 r2d2"), "sd15 mp4 gpt4 r2d2");
    assert_eq!(n("f/1.8 16:9"), "f 1 8 16 9");
}

#[test]
fn treats_symbols_at_word_edges_as_punctuation() {
    assert_eq!(n("bloody! wow!!!"), "bloody wow");
    assert_eq!(n("$5 and $$$"), "5 and");
    assert_eq!(n("!!!wow 5$5"), "wow 5 5");
    assert_eq!(n("masterpiece|best quality"), "masterpiece best quality");
}

#[test]
fn joins_spaced_out_letters() {
    assert_eq!(n("b.l.o.o.d"), "blood");
    assert_eq!(n("n-a-k-e-d woman"), "naked woman");
    assert_eq!(n("the n a k e d truth"), "the naked truth");
    assert_eq!(n("b_l_o_o_d"), "blood");
    assert_eq!(n("n . a . k . e . d"), "naked");
    assert_eq!(n("N*A*K*E*D"), "naked");
    assert_eq!(n("b.l.0.0.d"), "blood");
    assert_eq!(n("a b.l.o.o.d moon"), "a blood moon");
}

#[test]
fn keeps_short_and_numeric_spaced_runs_apart() {
    assert_eq!(n("a b"), "a b");
    assert_eq!(n("1 2 3 go"), "1 2 3 go");
    assert_eq!(n("4 x 4 truck"), "4 x 4 truck");
    assert_eq!(n("v1.2.3"), "v1 2 3");
}

#[test]
fn shrinks_letter_runs_to_two() {
    assert_eq!(n("bloooody"), "bloody");
    assert_eq!(n("NAKEDDD"), "nakedd");
    assert_eq!(n("bl000dy"), "bloody");
    assert_eq!(n("blood 1000"), "blood 1000");
    assert_eq!(n("aaa aaa"), "aa aa");
}

#[test]
fn drops_invisible_characters_and_latin_accents() {
    assert_eq!(n("na\u{200b}ked"), "naked");
    assert_eq!(n("doc\u{1}tor"), "doctor");
    assert_eq!(n("nàkéd"), "naked");
    assert_eq!(n("n\u{336}a\u{336}k\u{336}e\u{336}d\u{336}"), "naked");
    assert_eq!(n("𝐧𝐚𝐤𝐞𝐝 ⓑⓛⓞⓞⓓ"), "naked blood");
}

#[test]
fn maps_cyrillic_look_alikes_only_inside_latin_words() {
    assert_eq!(n("n\u{430}ked"), "naked");
    assert_eq!(n("BL\u{41e}\u{41e}D"), "blood");
    assert_eq!(n("n4\u{43a}ed"), "naked");
    assert_eq!(n("Врач, улыбается"), "врач улыбается");
    assert_eq!(n("Καλημέρα"), "καλημέρα");
}

#[test]
fn orders_marks_that_an_invisible_character_kept_apart() {
    let marks = n("\u{301}\u{200b}\u{336}");
    assert_eq!(n(&marks), marks);
}

#[test]
fn keeps_other_scripts() {
    assert_eq!(n("एक डॉक्टर।"), "एक डॉक्टर");
    assert_eq!(n("一位医生，微笑着。"), "一位医生 微笑着");
    assert_eq!(n("طبيب يبتسم؟"), "طبيب يبتسم");
}

#[test]
fn joins_single_characters_that_other_punctuation_spaces_out() {
    assert_eq!(n("n, a, k, e, d"), "naked");
    assert_eq!(n("b/l/0/0/d"), "blood");
}

proptest! {
    #[test]
    fn is_a_fixed_point(text in "([a-dA-D0-9@$!.\\- _*,|/]|\u{430}|\u{43e}|\u{3bf}|\u{336}|\u{301}|é|Å|ß|ﬁ|Ｂ|\u{200b}|\u{1}){0,24}") {
        let once = n(&text);
        prop_assert_eq!(n(&once), once.clone());
        prop_assert!(!once.starts_with(' ') && !once.ends_with(' ') && !once.contains("  "));
    }
}

#[test]
fn batch_agrees_with_single_texts_in_order() {
    let texts: Vec<String> = (0..5000)
        .map(|i| format!("B{i} bl00d n a k e d {i}"))
        .collect();
    let expected: Vec<String> = texts.iter().map(|t| n(t)).collect();
    assert_eq!(normalize_robust_batch(&texts, true), expected);
    assert_eq!(normalize_robust_batch(&texts, false), expected);
}
