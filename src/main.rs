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
            let predictor = augur::app::build(&config).await?;
            let listener = tokio::net::TcpListener::bind(config.server.listen)
                .await
                .with_context(|| format!("server.listen: cannot bind {}", config.server.listen))?;
            augur::server::run(listener, predictor, config.server.clone(), augur::shutdown::signal()).await?;
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
        Command::DemoData { out, users, items, impressions, seed } => {
            let spec = augur::demo::DemoSpec { users, items, impressions, seed, ..Default::default() };
            augur::demo::generate(&spec, &out).with_context(|| format!("writing {}", out.display()))?;
            eprintln!("demo data written to {}", out.display());
        }
        Command::Features { command: FeaturesCommand::Export { config, scene, impressions, out } } => {
            let config = Config::load(config.as_deref())?;
            let scene_config = config
                .scenes
                .iter()
                .find(|s| s.name == scene)
                .with_context(|| format!("scene `{scene}` is not in the config's scenes"))?;
            let spec = augur::assemble::Spec::load(&scene_config.spec)?;
            let store = augur::app::store(&config)?;
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
    }
    Ok(())
}
