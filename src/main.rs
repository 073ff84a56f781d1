//! The `augur` binary: thin. Parse the command, build, serve until a signal.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use augur::config::Config;

#[derive(Parser, Debug)]
#[command(name = "augur", version, about = "Online CTR prediction service over gRPC")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Serve Predict / GetFeatures, health and reflection over gRPC.
    Serve {
        /// TOML config layered over the embedded defaults (then AUGUR__ env vars).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Call Predict on a running server and print the scores.
    Predict {
        /// Server address.
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        addr: String,
        /// Scene.
        #[arg(long, default_value = "ranking")]
        scene: String,
        /// User id.
        #[arg(long)]
        user: String,
        /// Comma-separated item ids.
        #[arg(long, value_delimiter = ',', required = true)]
        items: Vec<String>,
        /// Context values as key=value (ints, floats, else strings); repeatable.
        #[arg(long = "context")]
        context: Vec<String>,
        /// Seconds to keep retrying the connection while the server starts.
        #[arg(long, default_value_t = 30)]
        wait: u64,
    },
    /// Generate the deterministic synthetic demo catalogue and impression log.
    DemoData {
        /// Output directory.
        #[arg(long, default_value = "demo")]
        out: PathBuf,
        /// Users.
        #[arg(long, default_value_t = 2000)]
        users: usize,
        /// Items.
        #[arg(long, default_value_t = 5000)]
        items: usize,
        /// Impressions (0 = catalogue only).
        #[arg(long, default_value_t = 200_000)]
        impressions: usize,
        /// RNG seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Generate the search_suggest demo: the suggestion catalogue and (with --log) a query log.
    SuggestDemoData {
        /// Directory for suggestions.csv.
        #[arg(long, default_value = "demo")]
        out: PathBuf,
        /// Impression log to write (user_id,item_id,query,device,label); omitted = catalogue only.
        #[arg(long)]
        log: Option<PathBuf>,
        /// Users the log is for (`user_id`, `segment` columns).
        #[arg(long, default_value = "demo/users.csv")]
        users: PathBuf,
        /// Suggestions in the catalogue.
        #[arg(long, default_value_t = 2000)]
        suggestions: usize,
        /// Typed queries in the log (each logs one row per suggestion shown).
        #[arg(long, default_value_t = 40_000)]
        queries: usize,
        /// RNG seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Load generator: drive a running augur and report throughput and latency percentiles.
    Bench {
        /// Server address.
        #[arg(long, default_value = "http://127.0.0.1:50051")]
        addr: String,
        /// Scene.
        #[arg(long, default_value = "ranking")]
        scene: String,
        /// Open loop at this many requests/s (default: closed loop).
        #[arg(long)]
        rate: Option<f64>,
        /// Closed-loop callers (or, open loop, the outstanding-request cap).
        #[arg(long, default_value_t = 32)]
        concurrency: usize,
        /// Measured seconds.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Unmeasured lead-in seconds.
        #[arg(long, default_value_t = 2.0)]
        warmup: f64,
        /// Candidates per request.
        #[arg(long, default_value_t = 100)]
        candidates: usize,
        /// Users in the catalogue.
        #[arg(long, default_value_t = 2000)]
        users: usize,
        /// Items in the catalogue.
        #[arg(long, default_value_t = 5000)]
        items: usize,
        /// Zipf exponent of item popularity.
        #[arg(long, default_value_t = 1.1)]
        zipf: f64,
        /// HTTP/2 connections.
        #[arg(long, default_value_t = 4)]
        connections: usize,
        /// grpc-timeout per request, milliseconds.
        #[arg(long)]
        timeout_ms: Option<u64>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// The ceiling: raw ONNX Runtime throughput on a model at a fixed batch shape.
    BenchOrt {
        /// The .onnx file.
        #[arg(long)]
        model: PathBuf,
        /// Rows per run.
        #[arg(long, default_value_t = 256)]
        batch: usize,
        /// Threads, one session each.
        #[arg(long, default_value_t = 2)]
        threads: usize,
        /// Intra-op threads per session.
        #[arg(long, default_value_t = 1)]
        intra_op_threads: usize,
        /// Random ids are drawn from [0, vocab).
        #[arg(long, default_value_t = 2_000_000)]
        vocab: i64,
        /// Seconds.
        #[arg(long, default_value_t = 10.0)]
        duration: f64,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Offline features, computed by the serving code.
    Features {
        #[command(subcommand)]
        command: FeaturesCommand,
    },
}

#[derive(Subcommand, Debug)]
enum FeaturesCommand {
    /// Impression log + store tables → features.npz + meta.json (the model's exact inputs).
    Export {
        /// Config naming the store tables and the scene's spec.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Scene whose spec to apply.
        #[arg(long, default_value = "ranking")]
        scene: String,
        /// Impression CSV: user_id,item_id,label[,context columns...].
        #[arg(long)]
        impressions: PathBuf,
        /// Output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Bulk-load a table from CSV or JSONL into the configured Redis (HSET per row, pipelined).
    Load {
        /// Config with `store.kind = "redis"`.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Table name (`{table}` in the key template).
        #[arg(long)]
        table: String,
        /// Rows: `.csv` with a header, or `.jsonl`. Default: the table's `store.tables` path.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Column holding the id. Default: the table's `store.tables` key, else the first column.
        #[arg(long)]
        key_column: Option<String>,
        /// Rows per pipeline.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
        batch: u32,
        /// A line that cannot be loaded: `skip` it (reported) or `stop`.
        #[arg(long, default_value = "skip")]
        on_error: augur::fetch::load::OnError,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,ort=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(cli.command))
}

async fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Serve { config } => {
            let config = Config::load(config.as_deref())?;
            // Signals are listened for before the (slow) model loads, so an early SIGTERM is
            // not lost.
            let requests = augur::shutdown::signals();
            let listen = config.server.listen;
            let app = augur::app::App::build(config).await?;
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("server.listen: cannot bind {listen}"))?;
            app.serve(listener, requests).await?;
        }
        Command::Predict { addr, scene, user, items, context, wait } => {
            let mut client = augur::client::connect(&addr, Duration::from_secs(wait))
                .await
                .with_context(|| format!("cannot connect to {addr}"))?;
            let context = augur::client::parse_context(&context).map_err(anyhow::Error::msg)?;
            let request = augur::client::request(&scene, &user, &items, context);
            let response =
                client.predict(request).await.map_err(|s| anyhow::anyhow!("{:?}: {}", s.code(), s.message()))?;
            print!("{}", augur::client::render(&items, response.get_ref()));
        }
        Command::Bench {
            addr,
            scene,
            rate,
            concurrency,
            duration,
            warmup,
            candidates,
            users,
            items,
            zipf,
            connections,
            timeout_ms,
            json,
        } => {
            let mode = match rate {
                Some(rate) => augur::loadgen::Mode::Open { rate, max_in_flight: concurrency.max(1) * 64 },
                None => augur::loadgen::Mode::Closed { concurrency },
            };
            let config = augur::loadgen::LoadConfig {
                addr,
                scene,
                mode,
                duration: Duration::from_secs_f64(duration),
                warmup: Duration::from_secs_f64(warmup),
                candidates,
                users,
                items,
                zipf,
                seed: 7,
                connections,
                timeout: timeout_ms.map(Duration::from_millis),
            };
            let report = augur::loadgen::run(&config).await?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                print!("{report}");
            }
        }
        Command::BenchOrt { model, batch, threads, intra_op_threads, vocab, duration, json } => {
            let options = augur::model::onnx::SessionOptions { intra_op_threads, library: None };
            let report = tokio::task::spawn_blocking(move || {
                augur::loadgen::raw_ort::run(&model, batch, threads, &options, vocab, Duration::from_secs_f64(duration))
            })
            .await??;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                println!(
                    "raw ORT: batch {} x {} threads ({} intra-op): {} runs, {:.0} items/s",
                    report.batch, report.threads, report.intra_op_threads, report.runs, report.items_per_s
                );
            }
        }
        Command::DemoData { out, users, items, impressions, seed } => {
            let spec = augur::demo::DemoSpec { users, items, impressions, seed, ..Default::default() };
            augur::demo::generate(&spec, &out).with_context(|| format!("writing {}", out.display()))?;
            eprintln!("demo data written to {}", out.display());
        }
        Command::SuggestDemoData { out, log, users, suggestions, queries, seed } => {
            let spec = augur::demo::SuggestSpec { suggestions, queries, seed, ..Default::default() };
            let summary = augur::demo::generate_suggestions(&spec, &users, &out, log.as_deref())
                .with_context(|| format!("writing {}", out.display()))?;
            eprintln!(
                "{} suggestions written to {}; {} log rows ({} clicks)",
                summary.suggestions,
                out.display(),
                summary.rows,
                summary.clicks
            );
        }
        Command::Features { command: FeaturesCommand::Export { config, scene, impressions, out } } => {
            let config = Config::load(config.as_deref())?;
            let scene_config = config
                .scenes
                .iter()
                .find(|s| s.name == scene)
                .with_context(|| format!("scene `{scene}` is not in the config's scenes"))?;
            let spec = augur::assemble::Spec::load(&scene_config.spec)?;
            let store = augur::app::store(&config, &augur::telemetry::Metrics::new()).await?;
            let started = std::time::Instant::now();
            let summary = augur::export::export(&spec, store.as_ref(), &impressions, &out).await?;
            eprintln!(
                "exported {} rows ({} positive) to {} in {:.1}s; fallbacks: {:?}",
                summary.rows,
                summary.positives,
                out.display(),
                started.elapsed().as_secs_f64(),
                summary.fallbacks
            );
        }
        Command::Features { command: FeaturesCommand::Load { config, table, file, key_column, batch, on_error } } => {
            use augur::fetch::load;
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
                indicatif::ProgressStyle::with_template(
                    "{elapsed_precise} [{wide_bar}] {bytes}/{total_bytes} eta {eta}",
                )?,
            );
            let summary = load::load_file(&store, &file, &options, &progress).await?;
            progress.finish_and_clear();
            println!("{}: table `{}` into {}: {summary}", file.display(), options.table, store.target());
            if let Some(line) = summary.stopped_at {
                anyhow::bail!("load stopped at line {line}");
            }
        }
    }
    Ok(())
}
