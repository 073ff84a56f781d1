//! `augur simulate`: simulated demo users against a running server; non-zero exit on any failure.

use std::time::Duration;

use augur::cli::demo::DemoSpec;
use augur::cli::simulate;

use crate::args::SimulateArgs;

pub(crate) async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    let SimulateArgs {
        addr,
        scene,
        requests,
        concurrency,
        candidates,
        shown,
        explore,
        seed,
        until_version,
        max_seconds,
        report_delay_ms,
        users,
        items,
        catalogue_seed,
        json,
    } = args;
    let config = simulate::SimulateConfig {
        addr,
        scene,
        world: DemoSpec { users, items, impressions: 0, seed: catalogue_seed, ..Default::default() },
        requests,
        concurrency,
        candidates,
        shown,
        explore,
        seed,
        until_version,
        max_duration: Duration::from_secs_f64(max_seconds),
        report_delay: Duration::from_millis(report_delay_ms),
    };
    let report = simulate::run(&config).await?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{report}");
    }
    anyhow::ensure!(report.ok(), "simulate: {} failed calls, {} rejected events", report.failed(), report.rejected);
    Ok(())
}
