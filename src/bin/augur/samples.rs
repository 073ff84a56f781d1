//! `augur samples dump`: the sample log as JSON lines on stdout, a summary on stderr.

use augur::cli::samples::{DumpOptions, Source, dump as dump_source};

use crate::args::DumpArgs;

pub(crate) fn dump(DumpArgs { log, after, limit }: DumpArgs) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let summary = dump_source(&Source::File(log.clone()), DumpOptions { after, limit }, &mut out)?;
    eprintln!(
        "{}: {} records (last sequence {}), {} corrupt skipped",
        log.display(),
        summary.records,
        summary.last_sequence,
        summary.corrupt
    );
    Ok(())
}
