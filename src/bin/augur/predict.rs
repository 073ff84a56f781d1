//! `augur predict`: call Predict on a running server and print the scores.

use std::time::Duration;

use anyhow::Context;

use crate::args::PredictArgs;

pub(crate) async fn run(PredictArgs { addr, scene, user, items, context, wait }: PredictArgs) -> anyhow::Result<()> {
    let mut client = augur::cli::client::connect(&addr, Duration::from_secs(wait))
        .await
        .with_context(|| format!("cannot connect to {addr}"))?;
    let context = augur::cli::client::parse_context(&context).map_err(anyhow::Error::msg)?;
    let request = augur::cli::client::request(&scene, &user, &items, context);
    let response = client.predict(request).await.map_err(|s| anyhow::anyhow!("{:?}: {}", s.code(), s.message()))?;
    print!("{}", augur::cli::client::render(&items, response.get_ref()));
    Ok(())
}
