//! "Did you mean ...?" suggestions for misspelt keys, values and names.

/// Returns the candidate closest to `word`, if one is close enough to be a
/// plausible typo.
///
/// Closeness is the Damerau-Levenshtein distance (an adjacent transposition
/// counts as one edit), compared case-insensitively. A candidate is accepted
/// when it is at most `max(1, len / 3)` edits away, where `len` is the length
/// of `word` in characters. On a tie, the earliest candidate wins.
///
/// ```
/// use pgtrail_config::suggest;
/// let keys = ["schemas", "include", "exclude"];
/// assert_eq!(suggest("inclde", keys), Some("include"));
/// assert_eq!(suggest("public.studnets", ["public.students", "public.staff"]), Some("public.students"));
/// assert_eq!(suggest("zzz", keys), None);
/// ```
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lowered = word.to_lowercase();
    let threshold = (word.chars().count() / 3).max(1);
    let mut best: Option<(usize, &'a str)> = None;
    for candidate in candidates {
        let distance = strsim::damerau_levenshtein(&lowered, &candidate.to_lowercase());
        if distance <= threshold && best.is_none_or(|(d, _)| distance < d) {
            best = Some((distance, candidate));
        }
    }
    best.map(|(_, candidate)| candidate)
}

/// Formats `["a", "b", "c"]` as "`a`, `b` or `c`".
pub(crate) fn one_of(candidates: &[&str]) -> String {
    match candidates {
        [] => String::new(),
        [only] => format!("`{only}`"),
        [init @ .., last] => {
            let init: Vec<String> = init.iter().map(|c| format!("`{c}`")).collect();
            format!("{} or `{last}`", init.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_matches() {
        let keys = [
            "schemas",
            "include",
            "exclude",
            "images",
            "ignore_columns",
            "redact_columns",
            "auto_attach",
        ];
        assert_eq!(suggest("inclde", keys), Some("include"));
        assert_eq!(suggest("ignore_colums", keys), Some("ignore_columns"));
        assert_eq!(suggest("Schemas", keys), Some("schemas"));
        assert_eq!(suggest("imgaes", keys), Some("images"));
        assert_eq!(suggest("fulll", ["diff", "full"]), Some("full"));
        assert_eq!(suggest("FULL", ["diff", "full"]), Some("full"));
    }

    #[test]
    fn rejects_far_words() {
        assert_eq!(suggest("colour", ["diff", "full"]), None);
        assert_eq!(suggest("x", ["ip", "reason"]), None);
        assert_eq!(suggest("anything", std::iter::empty()), None);
    }

    #[test]
    fn prefers_the_closest_then_the_first() {
        assert_eq!(suggest("ab", ["ax", "ab"]), Some("ab"));
        assert_eq!(suggest("abc", ["abx", "aby"]), Some("abx"));
    }

    #[test]
    fn lists_alternatives() {
        assert_eq!(one_of(&[]), "");
        assert_eq!(one_of(&["diff"]), "`diff`");
        assert_eq!(one_of(&["diff", "full"]), "`diff` or `full`");
        assert_eq!(one_of(&["a", "b", "c"]), "`a`, `b` or `c`");
    }
}
