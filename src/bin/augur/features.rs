//! `augur features export` (offline features by the serving code), `augur features backfill`
//! (the same, as of each impression's time, from the changelog), `augur features load`
//! (bulk-write a table into the configured Redis) and `augur features publish` (updates onto a
//! feature stream's topic).

use anyhow::Context;

use augur::cli::load;
use augur::config::Config;

use crate::args::{BackfillArgs, ExportArgs, FeaturePublishArgs, LoadArgs, SceneImpressions};

/// The config `input` names and the spec of its scene.
fn scene_spec(input: &SceneImpressions) -> anyhow::Result<(Config, augur::assemble::Spec)> {
    let config = Config::load(input.config.as_deref())?;
    let scene = &input.scene;
    let scene_config = config
        .scenes
        .iter()
        .find(|s| &s.name == scene)
        .with_context(|| format!("scene `{scene}` is not in the config's scenes"))?;
    let spec = augur::assemble::Spec::load(&scene_config.spec)?;
    Ok((config, spec))
}

/// A progress bar drawn only on a terminal.
fn progress_bar(total: Option<u64>, template: &str) -> anyhow::Result<indicatif::ProgressBar> {
    let target = if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        indicatif::ProgressDrawTarget::stderr()
    } else {
        indicatif::ProgressDrawTarget::hidden()
    };
    Ok(indicatif::ProgressBar::with_draw_target(total, target)
        .with_style(indicatif::ProgressStyle::with_template(template)?))
}

pub(crate) async fn export(ExportArgs { input, out }: ExportArgs) -> anyhow::Result<()> {
    let (config, spec) = scene_spec(&input)?;
    let impressions = input.impressions;
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
    let progress = progress_bar(Some(size), "{elapsed_precise} [{wide_bar}] {bytes}/{total_bytes} eta {eta}")?;
    // Every row written goes to the changelog too, when one is configured (see `cli::load`).
    let mut history = match config.feature_history.active_dir() {
        Some(dir) => Some(augur::feature_history::write::HistoryWriter::open(
            dir,
            &config.feature_history,
            "load",
            augur::feature_history::HistoryMetrics::default(),
        )?),
        None => None,
    };
    let summary = load::load_file_with_history(&store, &file, &options, &progress, history.as_mut()).await?;
    progress.finish_and_clear();
    println!("{}: table `{}` into {}: {summary}", file.display(), options.table, store.target());
    if let (Some(history), Some(dir)) = (&history, config.feature_history.active_dir()) {
        println!("recorded in the feature history {} as writer {}", dir.display(), history.id());
    }
    if let Some(line) = summary.stopped_at {
        anyhow::bail!("load stopped at line {line}");
    }
    Ok(())
}

pub(crate) async fn backfill(args: BackfillArgs) -> anyhow::Result<()> {
    let BackfillArgs { input, history, out, time_basis, until_applied_ms, sort_memory_mib, row_group_rows, json } =
        args;
    let (_config, spec) = scene_spec(&input)?;
    let impressions = input.impressions;
    #[cfg(feature = "parquet")]
    {
        use augur::cli::backfill;
        let options = backfill::Options {
            basis: time_basis.parse().map_err(anyhow::Error::msg)?,
            until_applied_ms,
            spill_bytes: (sort_memory_mib as usize) << 20,
            row_group_rows: row_group_rows as usize,
            ..backfill::Options::default()
        };
        let progress = progress_bar(None, "{elapsed_precise} {msg} [{wide_bar}] {human_pos}/{human_len} {per_sec}")?;
        let changes = |until_applied_ms| augur::feature_history::read::changes(&history, until_applied_ms);
        let summary = backfill::backfill(&spec, &impressions, changes, &out, &options, &progress).await?;
        progress.finish_and_clear();
        if json {
            println!("{}", serde_json::to_string(&summary)?);
        } else {
            println!("{}: {summary}", out.display());
        }
        Ok(())
    }
    #[cfg(not(feature = "parquet"))]
    {
        let _ = (spec, impressions, history, out, time_basis, until_applied_ms, sort_memory_mib, row_group_rows, json);
        anyhow::bail!("this build of augur lacks the `parquet` feature: `augur features backfill` writes Parquet")
    }
}

pub(crate) async fn publish(args: FeaturePublishArgs) -> anyhow::Result<()> {
    use augur::feature_stream::UpdateFormat;
    let FeaturePublishArgs { config, stream, brokers, topic, format, file, entity, id, set, event_time_ms } = args;
    let (brokers, topic, stream_format) = match (brokers, topic) {
        (Some(brokers), Some(topic)) => (brokers, topic, UpdateFormat::Protobuf),
        (None, None) => {
            let config = Config::load(config.as_deref())?;
            let streams = &config.feature_streams;
            let found = match &stream {
                Some(name) => streams.iter().find(|s| &s.name == name),
                None if streams.len() == 1 => streams.first(),
                None => None,
            };
            let found = found.with_context(|| match &stream {
                Some(name) => format!("no feature stream `{name}` in the config"),
                None => format!("the config has {} feature streams: name one with --stream", streams.len()),
            })?;
            (found.brokers.clone(), found.topic.clone(), found.format)
        }
        _ => anyhow::bail!("--brokers and --topic go together (or use --config)"),
    };
    let format = match format.as_deref() {
        None => stream_format,
        Some("protobuf") => UpdateFormat::Protobuf,
        Some("json") => UpdateFormat::Json,
        Some(other) => anyhow::bail!("--format {other}: use protobuf or json"),
    };
    let updates = match (file, entity, id) {
        (Some(file), _, _) => augur::cli::publish::read_updates(&file)?,
        (None, Some(entity), Some(id)) => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
            vec![augur::cli::publish::update_from_args(&entity, &id, &set, event_time_ms.unwrap_or(now))?]
        }
        _ => anyhow::bail!("--file, or --entity with --id and --set"),
    };
    #[cfg(feature = "kafka")]
    {
        let sent = augur::feature_stream::publish::publish(&brokers, &topic, format, &updates).await?;
        println!("published {sent} updates to {topic}");
        Ok(())
    }
    #[cfg(not(feature = "kafka"))]
    {
        let _ = (brokers, format, updates);
        anyhow::bail!("this build of augur lacks the `kafka` feature: `augur features publish` to {topic} needs it")
    }
}
