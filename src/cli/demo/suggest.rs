//! `augur suggest-demo-data`: the `search_suggest` scene's catalogue and query log.
//!
//! A catalogue of suggestion texts over the ranking demo's 20 categories, and a log of typed
//! queries (prefixes of a target suggestion, sometimes with a typo) with the suggestions shown for
//! each and clicks.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, Zipf};

use super::{CATEGORIES, DEVICES};

/// Sizes and seed of the search-suggestion demo (`augur suggest-demo-data`).
#[derive(Debug, Clone)]
pub struct SuggestSpec {
    /// Suggestions in the catalogue.
    pub suggestions: usize,
    /// Typed queries in the log; each logs `shown` rows (one per suggestion shown).
    pub queries: usize,
    /// Suggestions shown per query (the target plus others).
    pub shown: usize,
    /// RNG seed.
    pub seed: u64,
    /// Zipf exponent of suggestion popularity.
    pub zipf: f64,
}

impl Default for SuggestSpec {
    fn default() -> Self {
        SuggestSpec { suggestions: 2000, queries: 40_000, shown: 5, seed: 42, zipf: 1.05 }
    }
}

/// What [`generate_suggestions`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuggestSummary {
    /// Catalogue rows.
    pub suggestions: usize,
    /// Log rows (impressions).
    pub rows: usize,
    /// Clicked log rows.
    pub clicks: usize,
}

const HEADS_PER_CATEGORY: usize = 10;
const ONSETS: [&str; 18] =
    ["b", "k", "d", "f", "g", "l", "m", "n", "p", "r", "s", "t", "v", "z", "br", "st", "tr", "gl"];
// A few multi-byte vowels, so the demo exercises character (not byte) n-grams and prefixes.
const VOWELS: [&str; 9] = ["a", "e", "i", "o", "u", "a", "o", "é", "ü"];
const CODAS: [&str; 5] = ["", "", "n", "r", "x"];
const MODIFIERS: [&str; 40] = [
    "pro",
    "mini",
    "max",
    "case",
    "cover",
    "set",
    "kit",
    "review",
    "price",
    "deals",
    "used",
    "new",
    "2024",
    "for kids",
    "near me",
    "black",
    "white",
    "xl",
    "lite",
    "plus",
    "repair",
    "manual",
    "parts",
    "sale",
    "online",
    "wireless",
    "cheap",
    "best",
    "gift",
    "bundle",
    "refill",
    "replacement",
    "vs",
    "size chart",
    "coupon",
    "outlet",
    "original",
    "travel",
    "organic",
    "premium",
];

struct Suggestion {
    text: String,
    category: usize,
    popularity: f64,
}

/// Writes `suggestions.csv` (`suggestion_id` = the text, `category`, `popularity`) into `dir` and,
/// when `log` is given and `queries > 0`, the impression log there
/// (`user_id,item_id,query,device,label`) for the users of `users_csv` (`user_id`, `segment`).
///
/// Clicks are likelier for the suggestion the user meant, for a longer shared prefix with the
/// query, for suggestions that complete the query, for the category the user's segment names
/// (segment `s3` ↔ category `c3`, as in the ranking demo) and for popular suggestions.
pub fn generate_suggestions(
    spec: &SuggestSpec,
    users_csv: &Path,
    dir: &Path,
    log: Option<&Path>,
) -> std::io::Result<SuggestSummary> {
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let catalogue = suggestion_catalogue(spec, &mut rng);
    std::fs::create_dir_all(dir)?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join("suggestions.csv"))?);
    writeln!(out, "suggestion_id,category,popularity")?;
    for s in &catalogue {
        writeln!(out, "{},c{},{:.1}", s.text, s.category, s.popularity)?;
    }
    out.flush()?;
    let mut summary = SuggestSummary { suggestions: catalogue.len(), rows: 0, clicks: 0 };
    let Some(log) = log.filter(|_| spec.queries > 0) else { return Ok(summary) };

    let users = read_segments(users_csv)?;
    if users.is_empty() {
        return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, "no users to log queries for"));
    }
    // Most popular first: Zipf samples a rank, `by_rank` maps it to the suggestion.
    let mut by_rank: Vec<usize> = (0..catalogue.len()).collect();
    by_rank.sort_by(|a, b| catalogue[*b].popularity.total_cmp(&catalogue[*a].popularity));
    let zipf = Zipf::new(catalogue.len() as f64, spec.zipf).expect("valid zipf");
    let mut by_initial: HashMap<char, Vec<usize>> = HashMap::new();
    for (i, s) in catalogue.iter().enumerate() {
        by_initial.entry(initial(&s.text)).or_default().push(i);
    }
    if let Some(parent) = log.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut out = std::io::BufWriter::new(std::fs::File::create(log)?);
    writeln!(out, "user_id,item_id,query,device,label")?;
    let mut shown: Vec<usize> = Vec::with_capacity(spec.shown);
    for _ in 0..spec.queries {
        let (user_id, segment) = &users[rng.random_range(0..users.len())];
        let target = by_rank[(zipf.sample(&mut rng) as usize).clamp(1, catalogue.len()) - 1];
        let query = typed_query(&catalogue[target].text, &mut rng);
        let device = DEVICES[rng.random_range(0..DEVICES.len())];
        shown.clear();
        shown.push(target);
        for _attempt in 0..spec.shown * 4 {
            if shown.len() >= spec.shown {
                break;
            }
            let pick = match rng.random_range(0..10) {
                // What an autocompleter shows: completions of the query, else its first letter.
                0..5 => {
                    let pool = &by_initial[&initial(&query)];
                    let completions: Vec<usize> =
                        pool.iter().copied().filter(|&i| catalogue[i].text.starts_with(query.as_str())).collect();
                    let pool = if completions.len() > 1 { &completions } else { pool };
                    pool[rng.random_range(0..pool.len())]
                }
                5..8 => {
                    let pool = &by_initial[&initial(&query)];
                    pool[rng.random_range(0..pool.len())]
                }
                _ => by_rank[(zipf.sample(&mut rng) as usize).clamp(1, catalogue.len()) - 1],
            };
            if !shown.contains(&pick) {
                shown.push(pick);
            }
        }
        let query_chars = query.chars().count();
        for &i in &shown {
            let s = &catalogue[i];
            let shared = crate::assemble::text::prefix_len(&query, &s.text);
            let logit = -3.0
                + 1.5 * f64::from(u8::from(i == target))
                + 0.3 * shared.min(8) as f64
                + 0.8 * f64::from(u8::from(shared == query_chars))
                + 1.2 * f64::from(u8::from(*segment == Some(s.category)))
                + 0.35 * (s.popularity.log10() - 2.5);
            let label = u8::from(rng.random_bool(1.0 / (1.0 + (-logit).exp())));
            writeln!(out, "{user_id},{},{query},{device},{label}", s.text)?;
            summary.rows += 1;
            summary.clicks += usize::from(label);
        }
    }
    out.flush()?;
    Ok(summary)
}

/// Distinct suggestion texts: a category's head word plus up to two modifiers.
fn suggestion_catalogue(spec: &SuggestSpec, rng: &mut ChaCha8Rng) -> Vec<Suggestion> {
    let mut words: HashSet<String> = HashSet::new();
    let mut heads: Vec<Vec<String>> = vec![Vec::new(); CATEGORIES];
    for category_heads in &mut heads {
        while category_heads.len() < HEADS_PER_CATEGORY {
            let syllables = rng.random_range(2..=3);
            let mut word: String = (0..syllables)
                .map(|_| {
                    format!(
                        "{}{}",
                        ONSETS[rng.random_range(0..ONSETS.len())],
                        VOWELS[rng.random_range(0..VOWELS.len())]
                    )
                })
                .collect();
            word.push_str(CODAS[rng.random_range(0..CODAS.len())]);
            if words.insert(word.clone()) {
                category_heads.push(word);
            }
        }
    }
    let popularity = LogNormal::new(0.0, 0.15).expect("valid lognormal");
    let mut seen: HashSet<String> = HashSet::new();
    let mut catalogue = Vec::with_capacity(spec.suggestions);
    // Popularity rank 1..=n in a random order, so the CSV order says nothing about it.
    let mut ranks: Vec<usize> = (1..=spec.suggestions).collect();
    for i in (1..ranks.len()).rev() {
        ranks.swap(i, rng.random_range(0..=i));
    }
    while catalogue.len() < spec.suggestions {
        let category = rng.random_range(0..CATEGORIES);
        let mut text = heads[category][rng.random_range(0..HEADS_PER_CATEGORY)].clone();
        let modifiers = match rng.random_range(0..4) {
            0 => 0,
            1 | 2 => 1,
            _ => 2,
        };
        let mut used: Vec<usize> = Vec::new();
        while used.len() < modifiers {
            let m = rng.random_range(0..MODIFIERS.len());
            if !used.contains(&m) {
                used.push(m);
                text.push(' ');
                text.push_str(MODIFIERS[m]);
            }
        }
        if seen.insert(text.clone()) {
            let rank = ranks[catalogue.len()] as f64;
            let noise: f64 = popularity.sample(rng);
            catalogue.push(Suggestion { text, category, popularity: 1.0e5 * rank.powf(-spec.zipf) * noise });
        }
    }
    catalogue
}

/// What the user typed: a prefix of the suggestion they mean, sometimes with one wrong letter.
fn typed_query(target: &str, rng: &mut ChaCha8Rng) -> String {
    let chars: Vec<char> = target.chars().collect();
    let len = rng.random_range(1..=chars.len().min(12));
    let mut query: Vec<char> = chars[..len].to_vec();
    if len >= 3 && rng.random_bool(0.1) {
        let at = rng.random_range(1..len);
        query[at] = char::from(b'a' + rng.random_range(0..26u8));
    }
    query.into_iter().collect()
}

fn initial(text: &str) -> char {
    text.chars().next().unwrap_or(' ')
}

/// `user_id` → segment number (`s3` → 3) from a users CSV.
fn read_segments(users_csv: &Path) -> std::io::Result<Vec<(String, Option<usize>)>> {
    let bad = |e: &dyn std::fmt::Display| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", users_csv.display()))
    };
    let mut reader = csv::Reader::from_path(users_csv).map_err(|e| bad(&e))?;
    let headers = reader.headers().map_err(|e| bad(&e))?.clone();
    let column = |name: &str| headers.iter().position(|h| h == name).ok_or_else(|| bad(&format!("no `{name}` column")));
    let (id, segment) = (column("user_id")?, column("segment")?);
    let mut users = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| bad(&e))?;
        let number = record[segment].strip_prefix('s').and_then(|n| n.parse().ok());
        users.push((record[id].to_owned(), number));
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestion_demo_is_reproducible_and_matches_the_committed_catalogue() {
        let spec = SuggestSpec { queries: 2000, ..SuggestSpec::default() };
        let users = Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/users.csv");
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let summary = generate_suggestions(&spec, &users, a.path(), Some(&a.path().join("log.csv"))).unwrap();
        generate_suggestions(&spec, &users, b.path(), Some(&b.path().join("log.csv"))).unwrap();
        for file in ["suggestions.csv", "log.csv"] {
            assert_eq!(std::fs::read(a.path().join(file)).unwrap(), std::fs::read(b.path().join(file)).unwrap());
        }
        let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("demo/suggestions.csv");
        assert_eq!(
            std::fs::read(committed).unwrap(),
            std::fs::read(a.path().join("suggestions.csv")).unwrap(),
            "demo/suggestions.csv differs from `augur suggest-demo-data` output; regenerate it"
        );

        let catalogue = std::fs::read_to_string(a.path().join("suggestions.csv")).unwrap();
        let rows: Vec<Vec<&str>> = catalogue.lines().skip(1).map(|l| l.split(',').collect()).collect();
        assert_eq!(rows.len(), 2000);
        assert!(rows.iter().all(|r| r.len() == 3), "texts never contain the CSV separator");
        let categories: HashSet<&str> = rows.iter().map(|r| r[1]).collect();
        assert_eq!(categories.len(), CATEGORIES);
        let texts: HashSet<&str> = rows.iter().map(|r| r[0]).collect();
        assert_eq!(texts.len(), 2000, "suggestion texts are the keys: distinct");

        assert_eq!(summary.rows, 2000 * spec.shown, "every query shows `shown` suggestions here");
        let rate = summary.clicks as f64 / summary.rows as f64;
        assert!((0.05..0.4).contains(&rate), "click rate {rate}");
        // Queries are prefixes of a shown suggestion (up to a typo), and clicked rows share
        // longer prefixes with their query than unclicked ones.
        let log = std::fs::read_to_string(a.path().join("log.csv")).unwrap();
        let mean_prefix = |label: &str| {
            let shared: Vec<usize> = log
                .lines()
                .skip(1)
                .map(|l| l.split(',').collect::<Vec<_>>())
                .filter(|r| r[4] == label)
                .map(|r| crate::assemble::text::prefix_len(r[2], r[1]))
                .collect();
            shared.iter().sum::<usize>() as f64 / shared.len() as f64
        };
        assert!(mean_prefix("1") > mean_prefix("0") + 0.5, "{} vs {}", mean_prefix("1"), mean_prefix("0"));
    }
}
