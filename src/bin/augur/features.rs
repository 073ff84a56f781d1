//! `augur features export` (offline features by the serving code) and `augur features load`
//! (bulk-write a table into the configured Redis).

use anyhow::Context;

use augur::cli::load;
use augur::config::Config;

use crate::args::{ExportArgs, LoadArgs};

pub(crate) async fn export(ExportArgs { config, scene, impressions, out }: ExportArgs) -> anyhow::Result<()> {
    let config = Config::load(config.as_deref())?;
    let scene_config = config
        .scenes
        .iter()
        .find(|s| s.name == scene)
        .with_context(|| format!("scene `{scene}` is not in the config's scenes"))?;
    let spec = augur::assemble::Spec::load(&scene_config.spec)?;
    let store = augur::app::store(&config, &augur::telemetry::Metrics::new()).await?;
    let started = std::time::Instant::now();
    let summary = augur::cli::export::export(&spec, store.as_ref(), &impressions, &out).await?;
    eprintln!(
        "exported {} rows ({} positive) to {} in {:.1}s; fallbacks: {:?}",
        summary.rows,
        summary.positives,
        out.display(),
        started.elapsed().as_secs_f64(),
        summary.fallbacks
    );
    Ok(())
}

pub(crate) async fn load(
    LoadArgs { config, table, file, key_column, batch, on_error }: LoadArgs,
) -> anyhow::Result<()> {
    let config = Config::load(config.as_deref())?;
    let augur::config::StoreConfig::Redis(redis) = &config.store else {
        anyhow::bail!("`features load` writes to Redis: set store.kind = \"redis\" in the config");
    };
    let source = load::table_source(redis, &table);
    let file = file
        .or_else(|| source.map(|t| t.path.clone()))
        .with_context(|| format!("--file is needed: table `{table}` is not in store.tables"))?;
    let options = load::LoadOptions {
        key_column: key_column.or_else(|| source.map(|t| t.key.clone())),
        table,
        batch: batch as usize,
        on_error,
    };
    let store = load::connect(redis).await?;
    let size = std::fs::metadata(&file).with_context(|| format!("{}", file.display()))?.len();
    let target = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        indicatif::ProgressDrawTarget::stderr()
    } else {
        indicatif::ProgressDrawTarget::hidden()
    };
    let progress = indicatif::ProgressBar::with_draw_target(Some(size), target).with_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{wide_bar}] {bytes}/{total_bytes} eta {eta}")?,
    );
    let summary = load::load_file(&store, &file, &options, &progress).await?;
    progress.finish_and_clear();
    println!("{}: table `{}` into {}: {summary}", file.display(), options.table, store.target());
    if let Some(line) = summary.stopped_at {
        anyhow::bail!("load stopped at line {line}");
    }
    Ok(())
}
