//! `augur serve`: build the service from the config, serve until SIGTERM/SIGINT, then drain in
//! order (a second signal, or `server.grace_ms`, cuts the drain short and exits non-zero).

use anyhow::Context;

use augur::config::Config;

/// `config` was loaded by main, before tracing, so its `[log]` section could set the format.
pub(crate) async fn run(config: Config) -> anyhow::Result<()> {
    // Signals are listened for before the (slow) model loads, so an early SIGTERM is not lost.
    let requests = augur::shutdown::signals();
    let listen = config.server.listen;
    let app = augur::app::App::build(config).await?;
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("server.listen: cannot bind {listen}"))?;
    app.serve(listener, requests).await?;
    Ok(())
}
