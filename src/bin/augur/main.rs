//! The `augur` binary: thin. Parse the command, set up tracing (for `serve`, as its config's
//! `[log]` says), build the runtime, dispatch. The flags are in `args.rs`; each subcommand
//! group's body is in its own file, and the work itself is in the library (`serve` runs the path;
//! the rest are `augur::cli` tools).

mod args;
mod bench;
mod demo;
mod features;
mod models;
mod predict;
mod serve;

use augur::config::{Config, DEFAULT_LOG_LEVEL, LogConfig, LogFormat};
use clap::Parser;
use tracing_subscriber::EnvFilter;

use args::{Cli, Command, FeaturesCommand, ModelsCommand};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // `serve` reads its config first (a bad file is reported on stderr before any log line), so
    // `[log]` decides the format; the tools keep human logs.
    let (config, log) = match &cli.command {
        Command::Serve(args) => {
            let config = Config::load(args.config.as_deref())?;
            let log = config.log.clone();
            (Some(config), log)
        }
        _ => (None, LogConfig::default()),
    };
    // Dropping the guard flushes what the writer thread still holds: keep it until main returns.
    let _log_guard = init_tracing(&log);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(cli.command, config))
}

/// Logs go to stderr through `tracing-appender`'s writer thread, so an async worker never blocks
/// on a slow or full stderr pipe; when its buffer (128k lines) is full, lines are dropped rather
/// than stalling requests. `RUST_LOG` overrides `log.level`.
fn init_tracing(log: &LogConfig) -> tracing_appender::non_blocking::WorkerGuard {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_LEVEL));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(writer);
    match log.format {
        LogFormat::Human => builder.with_ansi(ansi).init(),
        // Span fields ride along with each event, so a request's fields reach every line.
        LogFormat::Json => builder.json().with_current_span(true).with_span_list(false).init(),
    }
    guard
}

async fn run(command: Command, config: Option<Config>) -> anyhow::Result<()> {
    match command {
        Command::Serve(_) => serve::run(config.expect("serve loads its config before tracing")).await,
        Command::Predict(args) => predict::run(args).await,
        Command::Bench(args) => bench::load(args).await,
        Command::BenchOrt(args) => bench::raw_ort(args).await,
        Command::DemoData(args) => demo::ranking(args),
        Command::SuggestDemoData(args) => demo::suggest(args),
        Command::Features { command: FeaturesCommand::Export(args) } => features::export(args).await,
        Command::Features { command: FeaturesCommand::Load(args) } => features::load(args).await,
        Command::Models { command: ModelsCommand::Publish(args) } => models::publish(args).await,
        Command::Models { command: ModelsCommand::List(args) } => models::list(args).await,
        Command::Models { command: ModelsCommand::SetLatest(args) } => models::set_latest(args).await,
    }
}
