//! Bounded Damerau-Levenshtein distance between two words.
//!
//! The restricted form (optimal string alignment): insertions, deletions, substitutions and
//! transpositions of two adjacent characters each cost one, and no substring is edited twice.
//! It counts the typos people make ("bloddy", "zombei", "corspe" are one edit from their word)
//! and, unlike the unrestricted form, needs three rows of the table, not an alphabet-sized map.

/// Cells in a row kept on the stack; longer words use the heap.
const STACK_ROW: usize = 48;

/// The distance between `a` and `b` when it is at most `max`, else None. Stops as soon as every
/// cell of a row exceeds `max`.
pub fn damerau_levenshtein_within(a: &[char], b: &[char], max: usize) -> Option<usize> {
    if a.len().abs_diff(b.len()) > max {
        return None;
    }
    if a.is_empty() || b.is_empty() {
        return Some(a.len().max(b.len()));
    }
    let width = b.len() + 1;
    if width <= STACK_ROW {
        let mut rows = [[0usize; STACK_ROW]; 3];
        let [r0, r1, r2] = &mut rows;
        bounded(
            a,
            b,
            max,
            [&mut r0[..width], &mut r1[..width], &mut r2[..width]],
        )
    } else {
        let mut rows = vec![0usize; 3 * width];
        let (r0, rest) = rows.split_at_mut(width);
        let (r1, r2) = rest.split_at_mut(width);
        bounded(a, b, max, [r0, r1, r2])
    }
}

/// The table, row by row: `rows` are the row before the previous one, the previous one and the
/// current one, each `b.len() + 1` long; they rotate after each row.
fn bounded(a: &[char], b: &[char], max: usize, rows: [&mut [usize]; 3]) -> Option<usize> {
    let [mut before, mut previous, mut current] = rows;
    for (j, cell) in previous.iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        current[0] = i;
        let mut row_min = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut d = (previous[j] + 1)
                .min(current[j - 1] + 1)
                .min(previous[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                d = d.min(before[j - 2] + 1);
            }
            current[j] = d;
            row_min = row_min.min(d);
        }
        if row_min > max {
            return None;
        }
        (before, previous, current) = (previous, current, before);
    }
    let d = previous[b.len()];
    (d <= max).then_some(d)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::damerau_levenshtein_within;

    fn d(a: &str, b: &str, max: usize) -> Option<usize> {
        let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
        damerau_levenshtein_within(&a, &b, max)
    }

    /// The whole table, for comparison.
    fn reference(a: &[char], b: &[char]) -> usize {
        let mut t = vec![vec![0usize; b.len() + 1]; a.len() + 1];
        for (i, row) in t.iter_mut().enumerate() {
            row[0] = i;
        }
        t[0] = (0..=b.len()).collect();
        for i in 1..=a.len() {
            for j in 1..=b.len() {
                let cost = usize::from(a[i - 1] != b[j - 1]);
                t[i][j] = (t[i - 1][j] + 1)
                    .min(t[i][j - 1] + 1)
                    .min(t[i - 1][j - 1] + cost);
                if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                    t[i][j] = t[i][j].min(t[i - 2][j - 2] + 1);
                }
            }
        }
        t[a.len()][b.len()]
    }

    #[test]
    fn counts_each_kind_of_typo_as_one_edit() {
        assert_eq!(d("bloddy", "bloody", 2), Some(1));
        assert_eq!(d("zombei", "zombie", 2), Some(1));
        assert_eq!(d("corspe", "corpse", 2), Some(1));
        assert_eq!(d("blod", "blood", 1), Some(1));
        assert_eq!(d("bloodd", "blood", 1), Some(1));
        assert_eq!(d("blood", "blood", 0), Some(0));
    }

    #[test]
    fn says_none_beyond_the_bound() {
        assert_eq!(d("bloodhound", "blood", 2), None);
        assert_eq!(d("deadline", "dead", 1), None);
        assert_eq!(d("abcd", "badc", 1), None);
        assert_eq!(d("abcd", "badc", 2), Some(2));
    }

    #[test]
    fn handles_long_words_on_the_heap() {
        let long = "a".repeat(100);
        assert_eq!(d(&long, &format!("{long}b"), 1), Some(1));
    }

    proptest! {
        #[test]
        fn agrees_with_the_whole_table(a in "[abc]{0,9}", b in "[abc]{0,9}", max in 0usize..4) {
            let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
            let full = reference(&a, &b);
            prop_assert_eq!(damerau_levenshtein_within(&a, &b, max), (full <= max).then_some(full));
        }
    }
}
