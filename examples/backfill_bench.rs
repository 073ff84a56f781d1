//! Throughput and memory of `augur features backfill` on the bench scene (`features/bench.yaml`),
//! the numbers in BENCHMARKS.md "Point-in-time backfill".
//!
//! `cargo run --release --example backfill_bench -- [IMPRESSIONS] [UPDATES] [DIR]` generates
//! (nothing is committed; DIR defaults to `target/backfill-bench`, emptied first):
//! - IMPRESSIONS (default 1,000,000) impressions as CSV, **unsorted** (uniform random times over
//!   one day), users and items drawn Zipf(1.1) from 100,000 users and 200,000 items, the bench
//!   spec's context (`hour`, `device`);
//! - a changelog, streamed (never held in memory): a bulk load of every user and item an hour
//!   before the day, then UPDATES (default 1,000,000) stream upserts spread evenly over the day
//!   (item prices and user activity, event times up to 5 s before their applied times).
//!
//! then backfills with the default options (applied-time basis, 256 MiB sort buffer) through
//! the library call the command runs, and prints the summary. The generated changelog stands in
//! for `feature_history::read::changes` (not on this branch yet): the reader's own cost is not in
//! the number. Peak RSS: run it under `/usr/bin/time -v` (the generation streams to disk and
//! holds little).

use std::convert::Infallible;
use std::io::{BufWriter, Write};
use std::path::PathBuf;

use augur::feature_history::{Change, ChangeKind};
use augur::fetch::Value;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Zipf};

const USERS: u64 = 100_000;
const ITEMS: u64 = 200_000;
/// 2026-12-06T00:00:00Z.
const DAY: i64 = 20_793 * 86_400_000;
const DAY_MS: i64 = 86_400_000;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let impressions: u64 = args.first().map_or(Ok(1_000_000), |a| a.parse())?;
    let updates: i64 = args.get(1).map_or(Ok(1_000_000), |a| a.parse())?;
    let dir = args.get(2).map_or_else(|| PathBuf::from("target/backfill-bench"), PathBuf::from);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;

    let started = std::time::Instant::now();
    let csv = dir.join("impressions.csv");
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(&csv)?);
    writeln!(out, "timestamp_ms,user_id,item_id,label,hour,device")?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    let (users, items) = (Zipf::new(USERS as f64, 1.1)?, Zipf::new(ITEMS as f64, 1.1)?);
    for _ in 0..impressions {
        let t = DAY + rng.random_range(0..DAY_MS);
        let (u, i) = (users.sample(&mut rng) as u64 - 1, items.sample(&mut rng) as u64 - 1);
        let label = u8::from(rng.random_bool(0.05));
        let device = ["ios", "android", "web"][rng.random_range(0..3)];
        writeln!(out, "{t},u{u},i{i},{label},{},{device}", (t - DAY) / 3_600_000)?;
    }
    out.flush()?;
    drop(out);
    eprintln!(
        "generated {impressions} impressions ({} MB) in {:.1} s",
        std::fs::metadata(&csv)?.len() >> 20,
        started.elapsed().as_secs_f64()
    );

    let history = move |until: i64| {
        Ok::<_, Infallible>(changelog(updates).take_while(move |c| c.applied_time_ms <= until).map(Ok))
    };
    let spec = augur::assemble::Spec::load(&PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("features/bench.yaml"))?;
    let options = augur::cli::backfill::Options::default();
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let summary = runtime.block_on(augur::cli::backfill::backfill(
        &spec,
        &csv,
        history,
        &dir.join("out"),
        &options,
        &indicatif::ProgressBar::hidden(),
    ))?;
    println!("{summary}");
    println!("spill: {:?}", summary.spill);
    Ok(())
}

/// The load of every entity at DAY - 1 h, then `updates` upserts in applied order over the day.
fn changelog(updates: i64) -> impl Iterator<Item = Change> {
    let load_at = DAY - 3_600_000;
    let load = move |table: &str, id: String, fields: Vec<(&str, String)>| Change {
        table: table.into(),
        entity_id: id,
        event_time_ms: load_at,
        applied_time_ms: load_at,
        kind: ChangeKind::Load,
        features: fields.into_iter().map(|(f, v)| (f.to_owned(), Some(Value::Str(v)))).collect(),
    };
    let users = (0..USERS).map(move |u| {
        let fields = vec![
            ("age", (18 + u % 60).to_string()),
            ("gender", ["f", "m"][(u % 2) as usize].to_owned()),
            ("segment", format!("s{}", u % 50)),
            ("activity", (u % 40).to_string()),
        ];
        load("users", format!("u{u}"), fields)
    });
    let items = (0..ITEMS).map(move |i| {
        let fields = vec![
            ("category", format!("c{}", i % 64)),
            ("brand", format!("b{}", i % 900)),
            ("price", format!("{}.{}", 1 + i % 300, i % 100)),
            ("tags", format!("t{}|t{}", i % 50, (i * 7) % 50)),
        ];
        load("items", format!("i{i}"), fields)
    });
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let (user_ids, item_ids) = (Zipf::new(USERS as f64, 1.1).unwrap(), Zipf::new(ITEMS as f64, 1.1).unwrap());
    let upserts = (0..updates).map(move |j| {
        let applied = DAY + j * DAY_MS / updates.max(1);
        let event = applied - rng.random_range(0..5_000);
        let (table, id, field, value) = if j % 4 == 0 {
            ("users", format!("u{}", user_ids.sample(&mut rng) as u64 - 1), "activity", rng.random_range(0.0..40.0))
        } else {
            ("items", format!("i{}", item_ids.sample(&mut rng) as u64 - 1), "price", rng.random_range(1.0..300.0))
        };
        Change {
            table: table.into(),
            entity_id: id,
            event_time_ms: event,
            applied_time_ms: applied,
            kind: ChangeKind::Upsert,
            features: vec![(field.to_owned(), Some(Value::Float(value)))],
        }
    });
    users.chain(items).chain(upserts)
}
