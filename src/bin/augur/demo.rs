//! `augur demo-data` and `augur suggest-demo-data`: write the synthetic demo data.

use anyhow::Context;

use augur::cli::demo;

use crate::args::{DemoDataArgs, SuggestDemoDataArgs};

pub(crate) fn ranking(args: DemoDataArgs) -> anyhow::Result<()> {
    let DemoDataArgs { out, users, items, impressions, seed, impressions_seed } = args;
    let spec = demo::DemoSpec { users, items, impressions, seed, impressions_seed, ..Default::default() };
    demo::generate(&spec, &out).with_context(|| format!("writing {}", out.display()))?;
    eprintln!("demo data written to {}", out.display());
    Ok(())
}

pub(crate) fn suggest(args: SuggestDemoDataArgs) -> anyhow::Result<()> {
    let SuggestDemoDataArgs { out, log, users, suggestions, queries, seed } = args;
    let spec = demo::SuggestSpec { suggestions, queries, seed, ..Default::default() };
    let summary = demo::generate_suggestions(&spec, &users, &out, log.as_deref())
        .with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "{} suggestions written to {}; {} log rows ({} clicks)",
        summary.suggestions,
        out.display(),
        summary.rows,
        summary.clicks
    );
    Ok(())
}
