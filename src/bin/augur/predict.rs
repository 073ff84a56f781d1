//! `augur predict`: call Predict on a running server (or, with `--discover`, on one of the
//! instances found in etcd) and print the scores.

use std::time::Duration;

use anyhow::Context;

use crate::args::PredictArgs;

pub(crate) async fn run(
    PredictArgs { addr, discover, scene, user, items, context, wait }: PredictArgs,
) -> anyhow::Result<()> {
    let context = augur::cli::predict::parse_context(&context).map_err(anyhow::Error::msg)?;
    let request = augur::cli::predict::request(&scene, &user, &items, context);
    let response = match discover {
        Some(target) => {
            let client = augur::client::PredictionClient::discover(&target)?;
            client.wait_for_endpoints(Duration::from_secs(wait)).await?;
            client.predict(request).await.map_err(|e| match e.status() {
                Some(s) => anyhow::anyhow!("{:?}: {}", s.code(), s.message()),
                None => e.into(),
            })?
        }
        None => {
            let mut client =
                augur::cli::predict::connect(&addr, Duration::from_secs(wait)).await.with_context(|| {
                    let retry = if wait == 0 { " (`--wait SECS` retries while it starts)" } else { "" };
                    format!("cannot connect to {addr}: is `augur serve` running there?{retry}")
                })?;
            client.predict(request).await.map_err(|s| anyhow::anyhow!("{:?}: {}", s.code(), s.message()))?.into_inner()
        }
    };
    print!("{}", augur::cli::predict::render(&items, &response));
    Ok(())
}
