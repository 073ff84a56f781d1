//! `augur serve`: build the service from the config, serve until SIGTERM/SIGINT, then drain in
//! order (a second signal, or `server.grace_ms`, cuts the drain short and exits non-zero).

use anyhow::Context;

use augur::app::Parts;
use augur::config::Config;
use augur::telemetry::trace::OtlpTraces;

/// `config` was loaded by main, before tracing, so its `[log]` section could set the format;
/// `traces` is the OTLP pipeline main's subscriber feeds, for the app to flush last at shutdown.
pub(crate) async fn run(config: Config, traces: Option<OtlpTraces>) -> anyhow::Result<()> {
    // Signals are listened for before the (slow) model loads, so an early SIGTERM is not lost.
    let requests = augur::shutdown::signals();
    let listen = config.server.listen;
    let app = augur::app::App::build_with(config, Parts { traces, ..Parts::default() }).await?;
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("server.listen: cannot bind {listen}"))?;
    app.serve(listener, requests).await?;
    Ok(())
}
