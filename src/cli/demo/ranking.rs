//! `augur demo-data`: users, items and an impression log with a learnable click signal.
//!
//! Users have a hidden preferred category (visible through a noisy `segment`), items a hidden
//! quality; item popularity is Zipf-distributed. Clicks follow a logistic model of
//! segment×category match, quality, price, device and hour, so a model trained on the export
//! has something real to learn. The same seed always writes byte-identical files.

use std::io::Write;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, LogNormal, Normal, Zipf};

use super::{CATEGORIES, DEVICES};

/// Sizes and seed.
#[derive(Debug, Clone)]
pub struct DemoSpec {
    /// Users.
    pub users: usize,
    /// Items.
    pub items: usize,
    /// Impressions (training log).
    pub impressions: usize,
    /// RNG seed.
    pub seed: u64,
    /// Zipf exponent of item popularity.
    pub zipf: f64,
}

impl Default for DemoSpec {
    fn default() -> Self {
        DemoSpec { users: 2000, items: 5000, impressions: 200_000, seed: 42, zipf: 1.1 }
    }
}

const SEGMENTS: usize = 20;
const BRANDS: usize = 200;
const TAGS: usize = 50;

struct User {
    pref: usize,
    age: u32,
}

struct Item {
    category: usize,
    price: f64,
    quality: f64,
}

/// Writes `users.csv`, `items.csv` and (when `impressions > 0`) `impressions.csv` into `dir`.
pub fn generate(spec: &DemoSpec, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let noise = Normal::new(0.0, 1.0).expect("valid normal");
    let price = LogNormal::new(3.0, 0.8).expect("valid lognormal");
    let activity = LogNormal::new(2.0, 1.0).expect("valid lognormal");

    let mut users = Vec::with_capacity(spec.users);
    let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join("users.csv"))?);
    writeln!(out, "user_id,age,gender,segment,activity")?;
    for u in 0..spec.users {
        let pref = rng.random_range(0..CATEGORIES);
        // The segment reveals the preferred category 70% of the time.
        let segment = if rng.random_bool(0.7) { pref } else { rng.random_range(0..SEGMENTS) };
        let age = rng.random_range(16..70u32);
        let gender = if rng.random_bool(0.5) { "f" } else { "m" };
        let clicks: f64 = activity.sample(&mut rng);
        writeln!(out, "u{u},{age},{gender},s{segment},{}", clicks.round() as u64)?;
        users.push(User { pref, age });
    }
    out.flush()?;

    let mut items = Vec::with_capacity(spec.items);
    let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join("items.csv"))?);
    writeln!(out, "item_id,category,brand,price,tags")?;
    for i in 0..spec.items {
        let category = rng.random_range(0..CATEGORIES);
        let brand = rng.random_range(0..BRANDS);
        let p: f64 = (price.sample(&mut rng) * 100.0_f64).round() / 100.0;
        let quality: f64 = noise.sample(&mut rng);
        let n_tags = rng.random_range(1..=3);
        let tags: Vec<String> = (0..n_tags).map(|_| format!("t{}", rng.random_range(0..TAGS))).collect();
        writeln!(out, "i{i},c{category},b{brand},{p:.2},{}", tags.join("|"))?;
        items.push(Item { category, price: p, quality });
    }
    out.flush()?;

    if spec.impressions == 0 {
        return Ok(());
    }
    let zipf = Zipf::new(spec.items as f64, spec.zipf).expect("valid zipf");
    let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join("impressions.csv"))?);
    writeln!(out, "user_id,item_id,hour,device,label,ts")?;
    let start_ts = 1_700_000_000u64;
    for n in 0..spec.impressions {
        let u = rng.random_range(0..spec.users);
        let i = (zipf.sample(&mut rng) as usize).clamp(1, spec.items) - 1;
        let hour = rng.random_range(0..24u32);
        let device = DEVICES[rng.random_range(0..DEVICES.len())];
        let (user, item) = (&users[u], &items[i]);
        let logit = -2.0 + 1.8 * f64::from(u8::from(user.pref == item.category)) + 0.8 * item.quality
            - 0.4 * (item.price.ln() - 3.0)
            + 0.6 * f64::from(u8::from(device == "ios" && item.price > 30.0))
            + 0.5 * f64::from(u8::from((18..23).contains(&hour)))
            + 0.5 * f64::from(u8::from(user.age < 30 && item.category < 5));
        let p = 1.0 / (1.0 + (-logit).exp());
        let label = u8::from(rng.random_bool(p));
        writeln!(out, "u{u},i{i},{hour},{device},{label},{}", start_ts + n as u64 * 3)?;
    }
    out.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_bytes_and_committed_catalogue_is_reproducible() {
        let spec = DemoSpec { impressions: 500, ..DemoSpec::default() };
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        generate(&spec, a.path()).unwrap();
        generate(&spec, b.path()).unwrap();
        for file in ["users.csv", "items.csv", "impressions.csv"] {
            assert_eq!(std::fs::read(a.path().join(file)).unwrap(), std::fs::read(b.path().join(file)).unwrap());
        }
        // The catalogue committed under demo/ is what the default seed generates.
        let committed = Path::new(env!("CARGO_MANIFEST_DIR")).join("demo");
        for file in ["users.csv", "items.csv"] {
            assert_eq!(
                std::fs::read(committed.join(file)).unwrap(),
                std::fs::read(a.path().join(file)).unwrap(),
                "demo/{file} differs from `augur demo-data` output; regenerate it"
            );
        }
        let clicks = std::fs::read_to_string(a.path().join("impressions.csv")).unwrap();
        let positives = clicks.lines().skip(1).filter(|l| l.split(',').nth(4) == Some("1")).count();
        assert!((10..250).contains(&positives), "click rate should be plausible, got {positives}/500");
    }
}
