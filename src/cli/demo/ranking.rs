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

/// Sizes and seeds.
#[derive(Debug, Clone)]
pub struct DemoSpec {
    /// Users.
    pub users: usize,
    /// Items.
    pub items: usize,
    /// Impressions (training log).
    pub impressions: usize,
    /// RNG seed: the catalogue and, unless `impressions_seed` is set, the impressions.
    pub seed: u64,
    /// Draws the impressions from their own seed, so a held-out log covers the same catalogue as
    /// `seed` with other (user, item, context, label) draws.
    pub impressions_seed: Option<u64>,
    /// Zipf exponent of item popularity.
    pub zipf: f64,
}

impl Default for DemoSpec {
    fn default() -> Self {
        DemoSpec { users: 2000, items: 5000, impressions: 200_000, seed: 42, impressions_seed: None, zipf: 1.1 }
    }
}

const SEGMENTS: usize = 20;
const BRANDS: usize = 200;
const TAGS: usize = 50;

/// One user as drawn: the hidden `pref` and `age` drive clicks, the rest is only written out.
#[derive(Debug)]
struct User {
    pref: usize,
    segment: usize,
    age: u32,
    gender: &'static str,
    activity: f64,
}

/// One item as drawn: `category`, `price` (rounded to cents, as written) and the hidden
/// `quality` drive clicks.
#[derive(Debug)]
struct Item {
    category: usize,
    brand: usize,
    price: f64,
    quality: f64,
    tags: Vec<usize>,
}

/// The hidden world behind a catalogue: what the click model knows about every user and item.
/// Rebuilt from the seed by the same draws `generate` makes, so `augur simulate` clicks the way
/// the demo impressions do.
#[derive(Debug)]
pub struct World {
    users: Vec<User>,
    items: Vec<Item>,
}

impl World {
    /// The world `generate(spec, _)` writes as `users.csv` and `items.csv`.
    pub fn new(spec: &DemoSpec) -> World {
        World::draw(spec, &mut ChaCha8Rng::seed_from_u64(spec.seed))
    }

    /// Users first, then items, each field in a fixed order: the committed catalogue depends on
    /// this exact sequence of draws.
    fn draw(spec: &DemoSpec, rng: &mut ChaCha8Rng) -> World {
        let noise = Normal::new(0.0, 1.0).expect("valid normal");
        let price = LogNormal::new(3.0, 0.8).expect("valid lognormal");
        let activity = LogNormal::new(2.0, 1.0).expect("valid lognormal");
        let users = (0..spec.users)
            .map(|_| {
                let pref = rng.random_range(0..CATEGORIES);
                // The segment reveals the preferred category 70% of the time.
                let segment = if rng.random_bool(0.7) { pref } else { rng.random_range(0..SEGMENTS) };
                let age = rng.random_range(16..70u32);
                let gender = if rng.random_bool(0.5) { "f" } else { "m" };
                User { pref, segment, age, gender, activity: activity.sample(rng) }
            })
            .collect();
        let items = (0..spec.items)
            .map(|_| {
                let category = rng.random_range(0..CATEGORIES);
                let brand = rng.random_range(0..BRANDS);
                let price: f64 = (price.sample(rng) * 100.0_f64).round() / 100.0;
                let quality: f64 = noise.sample(rng);
                let n_tags = rng.random_range(1..=3);
                let tags = (0..n_tags).map(|_| rng.random_range(0..TAGS)).collect();
                Item { category, brand, price, quality, tags }
            })
            .collect();
        World { users, items }
    }

    /// Users in the world (ids `u0..`).
    pub fn users(&self) -> usize {
        self.users.len()
    }

    /// Items in the world (ids `i0..`).
    pub fn items(&self) -> usize {
        self.items.len()
    }

    /// The true click probability of user `u` on item `i` at `hour` from `device`: the logistic
    /// model every demo label is drawn from. Panics on an index outside the world.
    pub fn click_probability(&self, u: usize, i: usize, hour: u32, device: &str) -> f64 {
        let (user, item) = (&self.users[u], &self.items[i]);
        let logit = -2.0 + 1.8 * f64::from(u8::from(user.pref == item.category)) + 0.8 * item.quality
            - 0.4 * (item.price.ln() - 3.0)
            + 0.6 * f64::from(u8::from(device == "ios" && item.price > 30.0))
            + 0.5 * f64::from(u8::from((18..23).contains(&hour)))
            + 0.5 * f64::from(u8::from(user.age < 30 && item.category < 5));
        1.0 / (1.0 + (-logit).exp())
    }
}

/// Writes `users.csv`, `items.csv` and (when `impressions > 0`) `impressions.csv` into `dir`.
pub fn generate(spec: &DemoSpec, dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut rng = ChaCha8Rng::seed_from_u64(spec.seed);
    let world = World::draw(spec, &mut rng);

    let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join("users.csv"))?);
    writeln!(out, "user_id,age,gender,segment,activity")?;
    for (u, user) in world.users.iter().enumerate() {
        let User { segment, age, gender, activity, .. } = user;
        writeln!(out, "u{u},{age},{gender},s{segment},{}", activity.round() as u64)?;
    }
    out.flush()?;

    let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join("items.csv"))?);
    writeln!(out, "item_id,category,brand,price,tags")?;
    for (i, item) in world.items.iter().enumerate() {
        let Item { category, brand, price, tags, .. } = item;
        let tags: Vec<String> = tags.iter().map(|t| format!("t{t}")).collect();
        writeln!(out, "i{i},c{category},b{brand},{price:.2},{}", tags.join("|"))?;
    }
    out.flush()?;

    if spec.impressions == 0 {
        return Ok(());
    }
    if let Some(seed) = spec.impressions_seed {
        rng = ChaCha8Rng::seed_from_u64(seed);
    }
    let zipf = popularity(spec);
    let mut out = std::io::BufWriter::new(std::fs::File::create(dir.join("impressions.csv"))?);
    // `p`: the true click probability the label was drawn from (the ceiling a model can reach:
    // `tools/train/score.py --oracle`).
    writeln!(out, "user_id,item_id,hour,device,label,ts,p")?;
    let start_ts = 1_700_000_000u64;
    for n in 0..spec.impressions {
        let u = rng.random_range(0..spec.users);
        let i = draw_item(&zipf, spec.items, &mut rng);
        let hour = rng.random_range(0..24u32);
        let device = DEVICES[rng.random_range(0..DEVICES.len())];
        let p = world.click_probability(u, i, hour, device);
        let label = u8::from(rng.random_bool(p));
        writeln!(out, "u{u},i{i},{hour},{device},{label},{},{p:.6}", start_ts + n as u64 * 3)?;
    }
    out.flush()
}

/// Item popularity: Zipf over the catalogue, item 0 the most popular.
pub fn popularity(spec: &DemoSpec) -> Zipf<f64> {
    Zipf::new(spec.items as f64, spec.zipf).expect("valid zipf")
}

/// One item index drawn by popularity.
pub fn draw_item(zipf: &Zipf<f64>, items: usize, rng: &mut impl Rng) -> usize {
    (zipf.sample(rng) as usize).clamp(1, items) - 1
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

    #[test]
    fn labels_are_drawn_from_the_world_click_model_and_impressions_seed_keeps_the_catalogue() {
        let spec = DemoSpec { impressions: 4000, ..DemoSpec::default() };
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        generate(&spec, a.path()).unwrap();
        // The world `augur simulate` rebuilds gives the generator's labels their rate: the sum of
        // its probabilities over the logged impressions matches the clicks within 4 sd.
        let world = World::new(&spec);
        assert_eq!((world.users(), world.items()), (spec.users, spec.items));
        let log = std::fs::read_to_string(a.path().join("impressions.csv")).unwrap();
        let (mut expected, mut variance, mut clicks) = (0.0, 0.0, 0.0);
        for line in log.lines().skip(1) {
            let f: Vec<&str> = line.split(',').collect();
            let (u, i) = (f[0][1..].parse().unwrap(), f[1][1..].parse().unwrap());
            let p = world.click_probability(u, i, f[2].parse().unwrap(), f[3]);
            // The logged probability is the one the label was drawn from.
            assert!((f[6].parse::<f64>().unwrap() - p).abs() < 1e-6, "{line}");
            expected += p;
            variance += p * (1.0 - p);
            clicks += f64::from(f[4].parse::<u8>().unwrap());
        }
        assert!((clicks - expected).abs() < 4.0 * variance.sqrt(), "{clicks} clicks, model expects {expected:.1}");

        // A held-out log: same catalogue, other impressions.
        generate(&DemoSpec { impressions_seed: Some(7), ..spec }, b.path()).unwrap();
        for file in ["users.csv", "items.csv"] {
            assert_eq!(std::fs::read(a.path().join(file)).unwrap(), std::fs::read(b.path().join(file)).unwrap());
        }
        assert_ne!(
            std::fs::read(a.path().join("impressions.csv")).unwrap(),
            std::fs::read(b.path().join("impressions.csv")).unwrap()
        );
    }
}
