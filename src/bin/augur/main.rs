//! The `augur` binary: thin. Parse the command, build the runtime, set up tracing (for `serve`,
//! as its config's `[log]` and `[trace]` say), dispatch. The flags are in `args.rs`; each subcommand
//! group's body is in its own file, and the work itself is in the library (`serve` runs the path;
//! the rest are `augur::cli` tools).

mod args;
mod bench;
mod demo;
mod features;
mod models;
mod predict;
mod samples;
mod serve;
mod simulate;

use augur::config::{Config, LogConfig};
use augur::telemetry::trace::OtlpTraces;
use clap::Parser;
use tracing_subscriber::util::SubscriberInitExt as _;

use args::{Cli, Command, FeaturesCommand, ModelsCommand, SamplesCommand};

fn main() -> std::process::ExitCode {
    match try_main() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("augur: {}", said_once(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes in one line, each said once: a cause whose words its parent already
/// carries (`not published: <the model error>`) is not repeated.
fn said_once(e: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line
}

fn try_main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // `serve` reads its config first (a bad file is reported on stderr before any log line), so
    // `[log]` decides the format; the tools keep human logs.
    let (config, log) = match &cli.command {
        Command::Serve(args) => {
            let config = Config::load(args.config.as_deref())?;
            let log = config.log.clone();
            (Some(config), log)
        }
        _ => (None, tool_log(cli.verbose)),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // The OTLP exporter's channel lives on the runtime, so it is built inside it; only `serve`
    // exports traces.
    let traces = match &config {
        Some(config) => runtime.block_on(async { OtlpTraces::from_config(&config.trace) })?,
        None => None,
    };
    // Dropping the guard flushes what the writer thread still holds: keep it until main returns.
    let _log_guard = init_tracing(&log, traces.as_ref());
    runtime.block_on(run(cli.command, config, traces))
}

/// The tools' logs: warnings only unless asked (`-v`), so a command's output is its answer, not
/// the runtime's progress lines.
fn tool_log(verbose: u8) -> LogConfig {
    let level = match verbose {
        0 => "warn",
        1 => augur::config::DEFAULT_LOG_LEVEL,
        _ => "debug,h2=info,hyper=info,tower=info",
    };
    LogConfig { level: level.to_owned(), ..LogConfig::default() }
}

/// Logs go to stderr through `tracing-appender`'s writer thread, so an async worker never blocks
/// on a slow or full stderr pipe; when its buffer (128k lines) is full, lines are dropped rather
/// than stalling requests. `RUST_LOG` overrides `log.level`.
fn init_tracing(log: &LogConfig, traces: Option<&OtlpTraces>) -> tracing_appender::non_blocking::WorkerGuard {
    let (writer, guard) = tracing_appender::non_blocking(std::io::stderr());
    // `init` also routes `log` records (from crates that use `log`) into the subscriber.
    augur::telemetry::trace::subscriber(log, traces, writer).init();
    guard
}

async fn run(command: Command, config: Option<Config>, traces: Option<OtlpTraces>) -> anyhow::Result<()> {
    match command {
        Command::Serve(_) => serve::run(config.expect("serve loads its config before tracing"), traces).await,
        Command::Predict(args) => predict::run(args).await,
        Command::Simulate(args) => simulate::run(args).await,
        Command::Bench(args) => bench::load(args).await,
        Command::BenchOrt(args) => bench::raw_ort(args).await,
        Command::DemoData(args) => demo::ranking(args),
        Command::SuggestDemoData(args) => demo::suggest(args),
        Command::Features { command: FeaturesCommand::Export(args) } => features::export(args).await,
        Command::Features { command: FeaturesCommand::Backfill(args) } => features::backfill(args).await,
        Command::Features { command: FeaturesCommand::Load(args) } => features::load(args).await,
        Command::Features { command: FeaturesCommand::Publish(args) } => features::publish(args).await,
        Command::Samples { command: SamplesCommand::Dump(args) } => samples::dump(args).await,
        Command::Models { command: ModelsCommand::Publish(args) } => models::publish(args).await,
        Command::Models { command: ModelsCommand::List(args) } => models::list(args).await,
        Command::Models { command: ModelsCommand::SetLatest(args) } => models::set_latest(args).await,
        Command::Models { command: ModelsCommand::Rollout(args) } => models::rollout(args).await,
        Command::Models { command: ModelsCommand::Decide(args) } => models::decide(args).await,
        Command::Models { command: ModelsCommand::Promote(args) } => {
            models::decided(args, augur::proto::CanaryAction::Promote).await
        }
        Command::Models { command: ModelsCommand::Rollback(args) } => {
            models::decided(args, augur::proto::CanaryAction::Rollback).await
        }
    }
}
