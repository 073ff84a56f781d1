//! `augur bench` (load generator against a running server) and `augur bench-ort` (the raw ONNX
//! Runtime ceiling it is compared with).

use std::time::Duration;

use anyhow::Context;

use augur::cli::loadgen;

use crate::args::{BenchArgs, BenchOrtArgs};

pub(crate) async fn load(args: BenchArgs) -> anyhow::Result<()> {
    let BenchArgs {
        addr,
        admin_addr,
        discover,
        scene,
        rate,
        concurrency,
        duration,
        warmup,
        candidates,
        users,
        items,
        zipf,
        distinct,
        connections,
        timeout_ms,
        json,
        write_body,
    } = args;
    let mode = match rate {
        Some(rate) => loadgen::Mode::Open { rate, max_in_flight: concurrency.max(1) * 64 },
        None => loadgen::Mode::Closed { concurrency },
    };
    let config = loadgen::LoadConfig {
        addr,
        admin_addr,
        discover,
        scene,
        mode,
        duration: Duration::from_secs_f64(duration),
        warmup: Duration::from_secs_f64(warmup),
        candidates,
        users,
        items,
        zipf,
        seed: 7,
        distinct,
        connections,
        timeout: timeout_ms.map(Duration::from_millis),
    };
    if let Some(path) = write_body {
        let body = loadgen::framed_request(&config);
        std::fs::write(&path, &body).with_context(|| format!("writing {}", path.display()))?;
        eprintln!(
            "wrote {} ({} bytes: one framed PredictRequest, {candidates} candidates)",
            path.display(),
            body.len()
        );
        return Ok(());
    }
    let report = loadgen::run(&config).await?;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}

pub(crate) async fn raw_ort(args: BenchOrtArgs) -> anyhow::Result<()> {
    let BenchOrtArgs { model, batch, threads, intra_op_threads, own_weights, vocab, duration, json } = args;
    let options = augur::model::onnx::SessionOptions { intra_op_threads, library: None };
    let report = tokio::task::spawn_blocking(move || {
        loadgen::raw_ort::run(&model, batch, threads, &options, !own_weights, vocab, Duration::from_secs_f64(duration))
    })
    .await??;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "raw ORT: batch {} x {} threads ({} intra-op), {} weights: {} runs, {:.0} items/s; RSS {:.0} MiB open, {:.0} MiB end, peak {:.0} MiB",
            report.batch,
            report.threads,
            report.intra_op_threads,
            if report.shared_weights { "shared" } else { "per-session" },
            report.runs,
            report.items_per_s,
            report.rss_open_mib,
            report.rss_end_mib,
            report.rss_peak_mib
        );
        if let (Some(cpu), Some(per_cpu)) = (report.cpu_s, report.items_per_cpu_s) {
            println!("process CPU {cpu:.2} s: {per_cpu:.0} items per CPU-second");
        }
    }
    Ok(())
}
