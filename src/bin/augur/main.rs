//! The `augur` binary: thin. Set up tracing, parse the command, build the runtime, dispatch. The
//! flags are in `args.rs`; each subcommand group's body is in its own file, and the work itself is
//! in the library (`serve` runs the path; the rest are `augur::cli` tools).

mod args;
mod bench;
mod demo;
mod features;
mod predict;
mod serve;

use clap::Parser;

use args::{Cli, Command, FeaturesCommand};

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
        Command::Serve(args) => serve::run(args).await,
        Command::Predict(args) => predict::run(args).await,
        Command::Bench(args) => bench::load(args).await,
        Command::BenchOrt(args) => bench::raw_ort(args).await,
        Command::DemoData(args) => demo::ranking(args),
        Command::SuggestDemoData(args) => demo::suggest(args),
        Command::Features { command: FeaturesCommand::Export(args) } => features::export(args).await,
        Command::Features { command: FeaturesCommand::Load(args) } => features::load(args).await,
    }
}
