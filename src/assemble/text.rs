//! Text helpers of the assembly step: the tokenizer transforms (`tokens`, `char_ngrams`) that turn
//! one string into a padded list of hashed ids, and the two-source derivations (`cross`,
//! `prefix_len`) of `derive:` features.
//!
//! Lowercasing is per character (`char::to_lowercase`, no locale rules), so the same text gives
//! the same ids on every machine, in serving and in `augur features export`.

use super::spec::Step;

/// Joins the two parts of a cross. A control character (ASCII unit separator) that typed text
/// does not contain, so `("ab", "c")` and `("a", "bc")` never hash alike.
pub const CROSS_SEPARATOR: char = '\u{1f}';

/// Wraps the text for `char_ngrams`, so prefixes and suffixes get their own n-grams.
pub const NGRAM_BOUNDARY: char = '#';

/// Calls `emit` with each token `step` makes of `text`, in order, until it returns `false`.
/// A step that is not a tokenizer yields the whole text as one token.
pub(crate) fn tokenize(step: &Step, text: &str, emit: impl FnMut(&str) -> bool) {
    match step {
        Step::Tokens => each_token(text, emit),
        Step::CharNgrams { n } => each_ngram(text, *n, emit),
        _ => {
            let mut emit = emit;
            emit(text);
        }
    }
}

/// `tokens`: lowercase words, split on every character that is not alphanumeric (Unicode), empty
/// pieces dropped.
pub fn tokens(text: &str) -> Vec<String> {
    collect(&Step::Tokens, text)
}

/// `char_ngrams`: the lowercased text wrapped in `#`, every window of `n` characters (not bytes).
/// Empty text has none; text shorter than the window yields the whole wrapped text once.
pub fn char_ngrams(text: &str, n: usize) -> Vec<String> {
    collect(&Step::CharNgrams { n }, text)
}

/// `cross`: both values' text joined by [`CROSS_SEPARATOR`].
pub fn cross(a: &str, b: &str) -> String {
    let mut joined = String::with_capacity(a.len() + b.len() + 1);
    joined.push_str(a);
    joined.push(CROSS_SEPARATOR);
    joined.push_str(b);
    joined
}

/// `prefix_len`: how many leading characters the two lowercased strings share.
pub fn prefix_len(a: &str, b: &str) -> usize {
    if a.is_ascii() && b.is_ascii() {
        // Same answer, one byte per character, no case-mapping tables.
        return a.bytes().zip(b.bytes()).take_while(|(x, y)| x.eq_ignore_ascii_case(y)).count();
    }
    lower(a).zip(lower(b)).take_while(|(x, y)| x == y).count()
}

fn lower(text: &str) -> impl Iterator<Item = char> + '_ {
    text.chars().flat_map(char::to_lowercase)
}

/// Appends `text` lowercased (the ASCII fast path gives the same characters).
fn push_lower(out: &mut String, text: &str) {
    if text.is_ascii() {
        let from = out.len();
        out.push_str(text);
        out[from..].make_ascii_lowercase();
    } else {
        out.extend(lower(text));
    }
}

fn collect(step: &Step, text: &str) -> Vec<String> {
    let mut out = Vec::new();
    tokenize(step, text, |t| {
        out.push(t.to_owned());
        true
    });
    out
}

fn each_token(text: &str, mut emit: impl FnMut(&str) -> bool) {
    // Split on the original characters, then lowercase: lowercasing may add combining marks
    // (`İ` → `i̇`) that are not alphanumeric and must not split a word.
    let mut token = String::new();
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        token.clear();
        push_lower(&mut token, word);
        if !emit(&token) {
            return;
        }
    }
}

fn each_ngram(text: &str, n: usize, mut emit: impl FnMut(&str) -> bool) {
    if text.is_empty() || n == 0 {
        return;
    }
    let mut chars: Vec<char> = Vec::with_capacity(text.len() + 2);
    chars.push(NGRAM_BOUNDARY);
    if text.is_ascii() {
        chars.extend(text.bytes().map(|b| char::from(b.to_ascii_lowercase())));
    } else {
        chars.extend(lower(text));
    }
    chars.push(NGRAM_BOUNDARY);
    let mut gram = String::with_capacity(4 * n);
    if chars.len() < n {
        gram.extend(&chars);
        emit(&gram);
        return;
    }
    for window in chars.windows(n) {
        gram.clear();
        gram.extend(window);
        if !emit(&gram) {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_lowercase_and_split_on_non_alphanumerics() {
        assert_eq!(tokens("iPhone 15-Pro,  case!"), ["iphone", "15", "pro", "case"]);
        assert_eq!(tokens(""), Vec::<String>::new());
        assert_eq!(tokens(" -- ,, "), Vec::<String>::new());
        // Unicode letters and digits are word characters; punctuation of any script splits.
        assert_eq!(tokens("Crème BRÛLÉE·Größe"), ["crème", "brûlée", "größe"]);
        assert_eq!(tokens("東京 タワー、２０２４"), ["東京", "タワー", "２０２４"]);
        assert_eq!(tokens("ΣΟΦΙΑ"), ["σοφια"]);
        // A lowercase expansion with a combining mark stays one token.
        assert_eq!(tokens("İstanbul"), ["i\u{307}stanbul"]);
        // Emoji and symbols separate words.
        assert_eq!(tokens("red🔥shoes"), ["red", "shoes"]);
    }

    #[test]
    fn char_ngrams_count_characters_not_bytes() {
        assert_eq!(char_ngrams("Ab", 3), ["#ab", "ab#"]);
        assert_eq!(char_ngrams("abc", 2), ["#a", "ab", "bc", "c#"]);
        assert_eq!(char_ngrams("é", 2), ["#é", "é#"]);
        assert_eq!(char_ngrams("brü", 3), ["#br", "brü", "rü#"]);
        assert_eq!(char_ngrams("日本", 3), ["#日本", "日本#"]);
        assert_eq!(char_ngrams("x", 1), ["#", "x", "#"]);
    }

    #[test]
    fn char_ngrams_boundaries() {
        assert!(char_ngrams("", 3).is_empty(), "empty text has no n-grams");
        assert_eq!(char_ngrams("a", 3), ["#a#"], "exactly one window");
        assert_eq!(char_ngrams("a", 5), ["#a#"], "shorter than the window: the whole wrapped text");
        assert_eq!(char_ngrams("ab cd", 8), ["#ab cd#"]);
        assert_eq!(char_ngrams("abcdefgh", 8), ["#abcdefg", "abcdefgh", "bcdefgh#"]);
        // Every n-gram is n characters, whatever their byte length.
        for n in 1..=8 {
            for gram in char_ngrams("añb😀c日本語 x", n) {
                assert_eq!(gram.chars().count(), n, "{gram:?}");
            }
        }
    }

    #[test]
    fn tokenize_stops_when_the_consumer_is_full() {
        let mut seen = Vec::new();
        tokenize(&Step::Tokens, "a b c d", |t| {
            seen.push(t.to_owned());
            seen.len() < 2
        });
        assert_eq!(seen, ["a", "b"]);
        let mut count = 0;
        tokenize(&Step::CharNgrams { n: 3 }, "abcdef", |_| {
            count += 1;
            count < 3
        });
        assert_eq!(count, 3);
    }

    #[test]
    fn prefix_len_counts_shared_lowercased_characters() {
        assert_eq!(prefix_len("Kov", "kovari case"), 3);
        assert_eq!(prefix_len("kovari case", "KOV"), 3);
        assert_eq!(prefix_len("brü", "BRÜLO"), 3, "characters, not bytes");
        assert_eq!(prefix_len("kox", "kovari"), 2);
        assert_eq!(prefix_len("", "kovari"), 0);
        assert_eq!(prefix_len("", ""), 0);
        assert_eq!(prefix_len("same", "same"), 4);
        assert_eq!(prefix_len("日本語", "日本"), 2);
        // ASCII on one side only takes the general path: é is one character (two bytes).
        assert_eq!(prefix_len("cafe", "café"), 3);
        assert_eq!(prefix_len("CAFÉ", "café au lait"), 4);
    }

    #[test]
    fn ascii_fast_paths_agree_with_the_general_ones() {
        for (a, b) in [("Hello World", "hello there"), ("ABC-def_9", "abc-DEF_9x"), ("", "x"), ("Zz", "zZ")] {
            assert_eq!(prefix_len(a, b), lower(a).zip(lower(b)).take_while(|(x, y)| x == y).count());
            let mut fast = String::new();
            push_lower(&mut fast, a);
            assert_eq!(fast, lower(a).collect::<String>());
        }
    }

    #[test]
    fn cross_separator_keeps_parts_apart() {
        assert_eq!(cross("ab", "c"), "ab\u{1f}c");
        assert_ne!(cross("ab", "c"), cross("a", "bc"));
        assert_eq!(cross("", ""), "\u{1f}");
    }
}
