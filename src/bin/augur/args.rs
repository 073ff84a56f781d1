//! The command line: every subcommand, flag and default, as clap structs. The bodies live in one
//! file per group (`serve.rs`, `predict.rs`, `bench.rs`, `demo.rs`, `features.rs`,
//! `samples.rs`, `models.rs`, `simulate.rs`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(name = "augur", version, about = "Online CTR prediction service over gRPC")]
pub(crate) struct Cli {
    /// The tools log warnings only; `-v` adds their progress (INFO), `-vv` debug. `augur serve`
    /// logs as its config's `[log]` says.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub(crate) verbose: u8,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand, Debug)]
pub(crate) enum Command {
    /// Serve Predict / GetFeatures, health and reflection over gRPC.
    Serve(ServeArgs),
    /// Call Predict on a running server and print the scores.
    Predict(PredictArgs),
    /// Generate the deterministic synthetic demo catalogue and impression log.
    DemoData(DemoDataArgs),
    /// Generate the search_suggest demo: the suggestion catalogue and (with --log) a query log.
    SuggestDemoData(SuggestDemoDataArgs),
    /// Simulated demo users: Predict, show the top-scored items, click by the demo's true click
    /// model, ReportEvents. Exits non-zero if any call failed.
    Simulate(SimulateArgs),
    /// Load generator: drive a running augur and report throughput and latency percentiles.
    Bench(BenchArgs),
    /// The ceiling: raw ONNX Runtime throughput on a model at a fixed batch shape.
    BenchOrt(BenchOrtArgs),
    /// Offline features, computed by the serving code.
    Features {
        #[command(subcommand)]
        command: FeaturesCommand,
    },
    /// Training samples the sample log wrote.
    Samples {
        #[command(subcommand)]
        command: SamplesCommand,
    },
    /// Model repositories: publish a version to a bucket or directory, list versions, set LATEST.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
}

#[derive(Subcommand, Debug)]
pub(crate) enum ModelsCommand {
    /// Validate a model against the scene's feature spec, evaluate it against LATEST's on recent
    /// joined samples (refused if worse beyond a tolerance), then upload its files, the
    /// completion marker (sizes + SHA-256, the evaluation, the lineage) and flip LATEST last. A
    /// serving augur polling the bucket deploys it.
    Publish(PublishArgs),
    /// Versions in a repository (bucket or directory), their marker state, and which is LATEST;
    /// with --admin-addr, the versions a running augur serves and their drift.
    List(ListArgs),
    /// Point LATEST at a complete version (rollback: an older one).
    SetLatest(SetLatestArgs),
    /// A running augur's canary (a scene with a rollout policy): stable and canary versions,
    /// share, impressions, online AUC and calibration of each, the last decision and its numbers.
    Rollout(ServedArgs),
    /// An operator's decision on a running augur's canary (ModelAdmin.DecideCanary), recorded in
    /// the model repository so every replica follows: promote, rollback, hold or resume.
    Decide(DecideArgs),
    /// `decide --action promote`: the canary (or --version) becomes stable now.
    Promote(DecisionArgs),
    /// `decide --action rollback`: the canary (or --version) is refused now.
    Rollback(DecisionArgs),
}

/// A running augur's admin gRPC port and the scene to look at.
#[derive(Args, Debug)]
pub(crate) struct ServedArgs {
    /// The server's admin gRPC address (`admin.grpc_listen`).
    #[arg(long, default_value = "http://127.0.0.1:50052")]
    pub(crate) admin_addr: String,
    /// Bearer token for an admin port that asks for one (`admin.auth_token`).
    #[arg(long, env = "AUGUR_ADMIN_TOKEN", hide_env_values = true)]
    pub(crate) token: Option<String>,
    /// Scene, as the server's config names it.
    #[arg(long, default_value = "ranking")]
    pub(crate) scene: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args, Debug)]
pub(crate) struct DecisionArgs {
    #[command(flatten)]
    pub(crate) served: ServedArgs,
    /// The version decided; default: the canary under evaluation.
    #[arg(long)]
    pub(crate) version: Option<u64>,
    /// Recorded with the decision (the audit trail shows it).
    #[arg(long, default_value = "")]
    pub(crate) reason: String,
}

#[derive(Args, Debug)]
pub(crate) struct DecideArgs {
    #[command(flatten)]
    pub(crate) decision: DecisionArgs,
    /// promote, rollback, hold (stays canary, the decider leaves it alone) or resume (its
    /// decision removed, the decider looks again).
    #[arg(long, value_enum)]
    pub(crate) action: DecideAction,
}

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub(crate) enum DecideAction {
    Promote,
    Rollback,
    Hold,
    Resume,
}

#[derive(Args, Debug)]
pub(crate) struct ModelRepoArgs {
    /// TOML config with the scene (its spec, model directory and source); default: the embedded one.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Scene whose repository (and feature spec) to use.
    #[arg(long, default_value = "ranking")]
    pub(crate) scene: String,
}

#[derive(Args, Debug)]
pub(crate) struct PublishArgs {
    #[command(flatten)]
    pub(crate) repo: ModelRepoArgs,
    /// The ONNX model; published as model.onnx. A `reference.json` beside it (the trainer's
    /// training reference, for drift) is published with it.
    #[arg(long)]
    pub(crate) model: PathBuf,
    /// Further files of the version (e.g. a train report); repeatable.
    #[arg(long = "file")]
    pub(crate) files: Vec<PathBuf>,
    /// `s3://bucket/prefix` (as the scene's source.url) or a model directory; default: the
    /// scene's source, else its model directory.
    #[arg(long)]
    pub(crate) to: Option<String>,
    /// Version number; default: one above every version present.
    #[arg(long)]
    pub(crate) version: Option<u64>,
    #[command(flatten)]
    pub(crate) gate: GateArgs,
}

/// The publish gate: the candidate against the version LATEST names, on the same recent joined
/// samples; worse beyond a tolerance is refused (exit 1, nothing uploaded).
#[derive(Args, Debug)]
pub(crate) struct GateArgs {
    /// Sample-log directory to evaluate on; default: the config's `samples.log.dir` when
    /// `samples.enabled`. Without one the publish goes through, recorded as `no_samples`.
    #[arg(long)]
    pub(crate) samples: Option<PathBuf>,
    /// JSON the trainer wrote: `run` (its parameters), `samples` (`from_ms`, `to_ms`, `rows`:
    /// the window it trained on; the gate evaluates on samples from `to_ms` on) and
    /// `warm_start_version`. Recorded in the marker.
    #[arg(long)]
    pub(crate) lineage: Option<PathBuf>,
    /// Publish and move LATEST even if the gate refuses; recorded in the marker.
    #[arg(long)]
    pub(crate) force: bool,
    /// Refuse when the candidate's AUC is lower than LATEST's by more than this.
    #[arg(long, default_value_t = augur::cli::gate::DEFAULT_TOLERANCE.max_auc_drop)]
    pub(crate) max_auc_drop: f64,
    /// Refuse when the candidate's log loss is higher than LATEST's by more than this (nats).
    #[arg(long, default_value_t = augur::cli::gate::DEFAULT_TOLERANCE.max_log_loss_rise)]
    pub(crate) max_log_loss_rise: f64,
    /// Refuse when the candidate's calibration error |mean score / observed rate - 1| is higher
    /// than LATEST's by more than this.
    #[arg(long, default_value_t = augur::cli::gate::DEFAULT_TOLERANCE.max_calibration_error)]
    pub(crate) max_calibration_error: f64,
    /// Fewer joined samples than this (or one class only): no evaluation, recorded as `no_samples`.
    #[arg(long, default_value_t = 100)]
    pub(crate) gate_min_rows: u64,
    /// Evaluate on the newest this many joined samples at most.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) gate_max_rows: usize,
    /// Without a training window in the lineage: samples predicted within this many seconds of
    /// the newest.
    #[arg(long, default_value_t = 3600)]
    pub(crate) gate_window_s: u64,
    /// The event type that makes a sample positive; default: `samples.quality.positive_event`.
    #[arg(long)]
    pub(crate) positive_event: Option<String>,
}

#[derive(Args, Debug)]
pub(crate) struct ListArgs {
    #[command(flatten)]
    pub(crate) repo: ModelRepoArgs,
    /// `s3://bucket/prefix` or a model directory; default: the scene's source, else its directory.
    #[arg(long)]
    pub(crate) from: Option<String>,
    /// Also download every file, check it against its marker, and open the model against the
    /// scene's feature spec (as the service would before serving it).
    #[arg(long, conflicts_with = "admin_addr")]
    pub(crate) verify: bool,
    /// List what a running augur serves instead (its admin gRPC address, `admin.grpc_listen`):
    /// each loaded version's labels, share and drift against its training reference.
    #[arg(long, conflicts_with = "from")]
    pub(crate) admin_addr: Option<String>,
    /// With --admin-addr: bearer token for an admin port that asks for one (`admin.auth_token`).
    #[arg(long, env = "AUGUR_ADMIN_TOKEN", hide_env_values = true, requires = "admin_addr")]
    pub(crate) token: Option<String>,
    /// With --admin-addr: features named per version, worst PSI first (the JSON has all).
    #[arg(long, default_value_t = 3)]
    pub(crate) top: usize,
    /// With --admin-addr: print JSON instead of a table.
    #[arg(long, requires = "admin_addr")]
    pub(crate) json: bool,
}

#[derive(Args, Debug)]
pub(crate) struct SetLatestArgs {
    #[command(flatten)]
    pub(crate) repo: ModelRepoArgs,
    /// `s3://bucket/prefix` or a model directory; default: the scene's source, else its directory.
    #[arg(long)]
    pub(crate) to: Option<String>,
    /// The version LATEST will name.
    #[arg(long)]
    pub(crate) version: u64,
}

#[derive(Subcommand, Debug)]
pub(crate) enum FeaturesCommand {
    /// Impression log + store tables → features.npz + meta.json (the model's exact inputs).
    Export(ExportArgs),
    /// Impressions + the feature changelog → each impression's model inputs as of its own time
    /// (never later), as Parquet partitioned by hour.
    Backfill(BackfillArgs),
    /// Bulk-load a table from CSV or JSONL into the configured Redis (HSET per row, pipelined).
    Load(LoadArgs),
    /// Publish feature updates to a feature stream's Kafka topic (JSON lines, or one update).
    Publish(FeaturePublishArgs),
}

#[derive(Subcommand, Debug)]
pub(crate) enum SamplesCommand {
    /// Print samples, corrections and orphans as JSON lines (input of tools/train/samples.py).
    Dump(DumpArgs),
}

// The structs below carry no doc comment of their own: the variant's doc above is the
// subcommand's help text.

#[derive(Args, Debug)]
pub(crate) struct ServeArgs {
    /// TOML config layered over the embedded defaults (then AUGUR__ env vars).
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub(crate) struct PredictArgs {
    /// Server address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub(crate) addr: String,
    /// Find the servers instead: `etcd://host:port[,host:port]/<service>` (the keys augur
    /// registers), or `host:port,host:port`; balances across them, retries once on UNAVAILABLE.
    #[arg(long, conflicts_with = "addr")]
    pub(crate) discover: Option<String>,
    /// Scene.
    #[arg(long, default_value = "ranking")]
    pub(crate) scene: String,
    /// User id.
    #[arg(long)]
    pub(crate) user: String,
    /// Comma-separated item ids.
    #[arg(long, value_delimiter = ',', required = true)]
    pub(crate) items: Vec<String>,
    /// Context values as key=value (ints, floats, else strings); repeatable.
    #[arg(long = "context")]
    pub(crate) context: Vec<String>,
    /// Seconds to keep retrying the connection while the server starts; 0 (the default) fails at
    /// once when nothing listens.
    #[arg(long, default_value_t = 0)]
    pub(crate) wait: u64,
}

#[derive(Args, Debug)]
pub(crate) struct DemoDataArgs {
    /// Output directory.
    #[arg(long, default_value = "demo")]
    pub(crate) out: PathBuf,
    /// Users.
    #[arg(long, default_value_t = 2000)]
    pub(crate) users: usize,
    /// Items.
    #[arg(long, default_value_t = 5000)]
    pub(crate) items: usize,
    /// Impressions (0 = catalogue only).
    #[arg(long, default_value_t = 200_000)]
    pub(crate) impressions: usize,
    /// RNG seed.
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
    /// Draw the impressions from this seed instead (same catalogue: a held-out log).
    #[arg(long)]
    pub(crate) impressions_seed: Option<u64>,
}

#[derive(Args, Debug)]
pub(crate) struct SimulateArgs {
    /// Server address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub(crate) addr: String,
    /// Scene (its spec must read the demo catalogue).
    #[arg(long, default_value = "ranking")]
    pub(crate) scene: String,
    /// Requests to send (with --until-version: at least this many).
    #[arg(long, default_value_t = 1000)]
    pub(crate) requests: u64,
    /// Requests in flight at once.
    #[arg(long, default_value_t = 8)]
    pub(crate) concurrency: usize,
    /// Candidates per request.
    #[arg(long, default_value_t = 50)]
    pub(crate) candidates: usize,
    /// Top-scored candidates shown (impressed) per request.
    #[arg(long, default_value_t = 10)]
    pub(crate) shown: usize,
    /// Share of requests (0..1) that show random candidates instead of the best-scored.
    #[arg(long, default_value_t = 0.0)]
    pub(crate) explore: f64,
    /// Seed of the users' choices and clicks.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Keep sending until a response comes from this model version.
    #[arg(long)]
    pub(crate) until_version: Option<String>,
    /// Give up after this many seconds (a failure when --until-version has not answered).
    #[arg(long, default_value_t = 600.0)]
    pub(crate) max_seconds: f64,
    /// Report each request's events this long after its Predict answered.
    #[arg(long, default_value_t = 200)]
    pub(crate) report_delay_ms: u64,
    /// Catalogue users (as `augur demo-data` wrote them).
    #[arg(long, default_value_t = 2000)]
    pub(crate) users: usize,
    /// Catalogue items.
    #[arg(long, default_value_t = 5000)]
    pub(crate) items: usize,
    /// Catalogue seed.
    #[arg(long, default_value_t = 42)]
    pub(crate) catalogue_seed: u64,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args, Debug)]
pub(crate) struct SuggestDemoDataArgs {
    /// Directory for suggestions.csv.
    #[arg(long, default_value = "demo")]
    pub(crate) out: PathBuf,
    /// Impression log to write (user_id,item_id,query,device,label); omitted = catalogue only.
    #[arg(long)]
    pub(crate) log: Option<PathBuf>,
    /// Users the log is for (`user_id`, `segment` columns).
    #[arg(long, default_value = "demo/users.csv")]
    pub(crate) users: PathBuf,
    /// Suggestions in the catalogue.
    #[arg(long, default_value_t = 2000)]
    pub(crate) suggestions: usize,
    /// Typed queries in the log (each logs one row per suggestion shown).
    #[arg(long, default_value_t = 40_000)]
    pub(crate) queries: usize,
    /// RNG seed.
    #[arg(long, default_value_t = 42)]
    pub(crate) seed: u64,
}

#[derive(Args, Debug)]
pub(crate) struct BenchArgs {
    /// Server address.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub(crate) addr: String,
    /// The server's admin gRPC address (`admin.grpc_listen`), where GetStats is read; unreachable
    /// = client-side numbers only.
    #[arg(long, default_value = "http://127.0.0.1:50052")]
    pub(crate) admin_addr: String,
    /// Find the servers instead: `etcd://host:port[,host:port]/<service>` (the keys augur
    /// registers), or `host:port,host:port`; balances across them, no retries (errors are counted).
    /// The server stage latencies (ModelAdmin) are skipped: they belong to one instance.
    #[arg(long, conflicts_with = "addr")]
    pub(crate) discover: Option<String>,
    /// Scene.
    #[arg(long, default_value = "ranking")]
    pub(crate) scene: String,
    /// Open loop at this many requests/s (default: closed loop).
    #[arg(long)]
    pub(crate) rate: Option<f64>,
    /// Closed-loop callers (or, open loop, the outstanding-request cap).
    #[arg(long, default_value_t = 32)]
    pub(crate) concurrency: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) duration: f64,
    /// Unmeasured lead-in seconds.
    #[arg(long, default_value_t = 2.0)]
    pub(crate) warmup: f64,
    /// Candidates per request.
    #[arg(long, default_value_t = 100)]
    pub(crate) candidates: usize,
    /// Users in the catalogue.
    #[arg(long, default_value_t = 2000)]
    pub(crate) users: usize,
    /// Items in the catalogue.
    #[arg(long, default_value_t = 5000)]
    pub(crate) items: usize,
    /// Zipf exponent of item popularity.
    #[arg(long, default_value_t = 1.1)]
    pub(crate) zipf: f64,
    /// Distinct requests to cycle through; 1 repeats the first one, as h2load repeats its body.
    #[arg(long, default_value_t = augur::cli::loadgen::DISTINCT)]
    pub(crate) distinct: usize,
    /// HTTP/2 connections.
    #[arg(long, default_value_t = 4)]
    pub(crate) connections: usize,
    /// grpc-timeout per request, milliseconds.
    #[arg(long)]
    pub(crate) timeout_ms: Option<u64>,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
    /// Write the first Predict request this run would send (same scene, candidates, catalogue
    /// and seed), framed as a gRPC message, to this file and exit without connecting: the body
    /// for an external driver (`h2load -d FILE`, scripts/bench.sh).
    #[arg(long, value_name = "FILE")]
    pub(crate) write_body: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub(crate) struct BenchOrtArgs {
    /// The .onnx file.
    #[arg(long)]
    pub(crate) model: PathBuf,
    /// Rows per run.
    #[arg(long, default_value_t = 256)]
    pub(crate) batch: usize,
    /// Threads, one session each.
    #[arg(long, default_value_t = 2)]
    pub(crate) threads: usize,
    /// Intra-op threads per session.
    #[arg(long, default_value_t = 1)]
    pub(crate) intra_op_threads: usize,
    /// Each session loads its own copy of the weights (the old way) instead of sharing one, as
    /// the service does.
    #[arg(long)]
    pub(crate) own_weights: bool,
    /// Random ids are drawn from [0, vocab).
    #[arg(long, default_value_t = 2_000_000)]
    pub(crate) vocab: i64,
    /// Seconds.
    #[arg(long, default_value_t = 10.0)]
    pub(crate) duration: f64,
    /// Print JSON instead of text.
    #[arg(long)]
    pub(crate) json: bool,
}

// What `features export` and `features backfill` both start from: a scene's spec applied to an
// impression log. (A `//` comment: a doc comment here would become the `about` of both commands.)
#[derive(Args, Debug)]
pub(crate) struct SceneImpressions {
    /// Config naming the store tables and the scene's spec.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Scene whose spec to apply.
    #[arg(long, default_value = "ranking")]
    pub(crate) scene: String,
    /// Impressions, CSV or `.parquet`: user_id,item_id,label[,context columns...].
    #[arg(long)]
    pub(crate) impressions: PathBuf,
}

#[derive(Args, Debug)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    pub(crate) input: SceneImpressions,
    /// Output directory.
    #[arg(long)]
    pub(crate) out: PathBuf,
}

#[derive(Args, Debug)]
#[command(mut_args(backfill_help))]
pub(crate) struct BackfillArgs {
    #[command(flatten)]
    pub(crate) input: SceneImpressions,
    /// The feature changelog directory (`dt=YYYY-MM-DD/hour=HH/part-*.parquet`).
    #[arg(long)]
    pub(crate) history: PathBuf,
    /// Output directory (new or empty): `dt=YYYY-MM-DD/hour=HH/part-*.parquet` and `_SUCCESS`.
    #[arg(long)]
    pub(crate) out: PathBuf,
    /// `applied`: the changes the store had applied by each impression's time (what Predict
    /// served); `event`: the changes whose event time is at or before it (what was true,
    /// including corrections that arrived late).
    #[arg(long, default_value = "applied", value_parser = ["applied", "event"])]
    pub(crate) time_basis: String,
    /// With `--time-basis event`: count only changes applied up to this time (ms since the
    /// Unix epoch), so a rerun ignores corrections that arrived since. Default: all.
    #[arg(long)]
    pub(crate) until_applied_ms: Option<i64>,
    /// Memory for sorting impressions, MiB: more spills to disk in sorted runs.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u64).range(1..=65_536))]
    pub(crate) sort_memory_mib: u64,
    /// Rows per Parquet row group.
    #[arg(long, default_value_t = 65_536, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    pub(crate) row_group_rows: u64,
    /// Print the summary as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Backfill reads no store and needs each impression's time, so two of the shared
/// [`SceneImpressions`] flags say so. (`mut_args`, not `mut_arg`: the latter moves the flag to the
/// end of the usage line.)
fn backfill_help(arg: clap::Arg) -> clap::Arg {
    match arg.get_id().as_str() {
        "config" => arg.help("Config naming the scene's spec (the store is not read: the changelog is)"),
        "impressions" => arg.help(
            "Impressions, CSV or `.parquet`: timestamp_ms,user_id,item_id,label[,request_id][,context columns...]; \
             any order",
        ),
        _ => arg,
    }
}

#[derive(Args, Debug)]
pub(crate) struct LoadArgs {
    /// Config with `store.kind = "redis"`.
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// Table name (`{table}` in the key template).
    #[arg(long)]
    pub(crate) table: String,
    /// Rows: `.csv` with a header, or `.jsonl`. Default: the table's `store.tables` path.
    #[arg(long)]
    pub(crate) file: Option<PathBuf>,
    /// Column holding the id. Default: the table's `store.tables` key, else the first column.
    #[arg(long)]
    pub(crate) key_column: Option<String>,
    /// Rows per pipeline.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub(crate) batch: u32,
    /// A line that cannot be loaded: `skip` it (reported) or `stop`.
    #[arg(long, default_value = "skip")]
    pub(crate) on_error: augur::cli::load::OnError,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("updates").required(true).args(["file", "entity"])))]
pub(crate) struct FeaturePublishArgs {
    /// Config whose `[[feature_streams]]` gives brokers, topic and format (with --stream).
    #[arg(long)]
    pub(crate) config: Option<PathBuf>,
    /// The stream of --config to publish to; default: its only stream.
    #[arg(long)]
    pub(crate) stream: Option<String>,
    /// Kafka bootstrap servers (instead of a config).
    #[arg(long, requires = "topic")]
    pub(crate) brokers: Option<String>,
    /// Topic (instead of a config).
    #[arg(long)]
    pub(crate) topic: Option<String>,
    /// `protobuf` or `json`; default: the stream's format (protobuf for `auto`), else protobuf.
    #[arg(long)]
    pub(crate) format: Option<String>,
    /// JSON lines of updates (`-` = stdin).
    #[arg(long, conflicts_with = "entity")]
    pub(crate) file: Option<String>,
    /// One update: `user`, `item` or `context`.
    #[arg(long, requires_all = ["id", "set"])]
    pub(crate) entity: Option<String>,
    /// The entity's id.
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// A feature value as name=value (int, float, else text); repeatable.
    #[arg(long)]
    pub(crate) set: Vec<String>,
    /// Event time of the update, ms since the Unix epoch; default: now.
    #[arg(long)]
    pub(crate) event_time_ms: Option<i64>,
}

#[derive(Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["log", "kafka", "redis_stream"])))]
pub(crate) struct DumpArgs {
    /// Sample-log directory (samples.log.dir), read in place: safe beside a running server.
    #[arg(long)]
    pub(crate) log: Option<PathBuf>,
    /// Kafka bootstrap servers (with --topic): read the topic a kafka sink writes.
    #[arg(long, requires = "topic")]
    pub(crate) kafka: Option<String>,
    /// Kafka topic.
    #[arg(long)]
    pub(crate) topic: Option<String>,
    /// Redis URL (with --stream): read the stream a redis_stream sink writes.
    #[arg(long, requires = "stream")]
    pub(crate) redis_stream: Option<String>,
    /// Redis stream key.
    #[arg(long)]
    pub(crate) stream: Option<String>,
    /// Only records with a sequence above this (the last sequence of a previous dump).
    #[arg(long, default_value_t = 0)]
    pub(crate) after: u64,
    /// At most this many records.
    #[arg(long)]
    pub(crate) limit: Option<u64>,
}
