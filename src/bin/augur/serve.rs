//! `augur serve`: build the service from the config and serve until SIGTERM/SIGINT.

use anyhow::Context;

use augur::config::Config;

use crate::args::ServeArgs;

pub(crate) async fn run(ServeArgs { config }: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(config.as_deref())?;
    let predictor = augur::app::build(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .with_context(|| format!("server.listen: cannot bind {}", config.server.listen))?;
    augur::server::run(listener, predictor, config.server.clone(), augur::shutdown::signal()).await?;
    Ok(())
}
