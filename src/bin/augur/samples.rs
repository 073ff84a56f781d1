//! `augur samples dump`: the sample log, a Kafka topic or a Redis stream as JSON lines on
//! stdout, a summary on stderr.

use augur::cli::samples::{DumpOptions, Source, dump as dump_source};

use crate::args::DumpArgs;

pub(crate) async fn dump(args: DumpArgs) -> anyhow::Result<()> {
    let DumpArgs { log, kafka, topic, redis_stream, stream, after, limit } = args;
    // clap's argument group guarantees exactly one source, with its companion argument.
    let source = match (log, kafka, redis_stream) {
        (Some(dir), _, _) => Source::File(dir),
        (None, Some(brokers), _) => Source::Kafka { brokers, topic: topic.unwrap_or_default() },
        (None, None, Some(url)) => Source::RedisStream { url, stream: stream.unwrap_or_default() },
        (None, None, None) => anyhow::bail!("one of --log, --kafka or --redis-stream is required"),
    };
    let name = match &source {
        Source::File(dir) => dir.display().to_string(),
        Source::Kafka { topic, .. } => format!("kafka topic {topic}"),
        Source::RedisStream { stream, .. } => format!("redis stream {stream}"),
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let summary = dump_source(&source, DumpOptions { after, limit }, &mut out).await?;
    eprintln!(
        "{name}: {} records (last sequence {}), {} corrupt skipped",
        summary.records, summary.last_sequence, summary.corrupt
    );
    Ok(())
}
