//! SIGKILL during sample logging, on the real binary: every record the log reported durable
//! (`augur_samples_log_durable_sequence`, read just before the kill) is read back after the
//! restart, gap-free; the restarted process resumes the sequence after the last intact record,
//! and a torn tail is truncated and counted instead of failing start-up.

use std::time::Duration;

use augur::proto::{ReportEventsRequest, log_record};

use crate::common;
use crate::common::process::{AugurProcess as Augur, field};
use crate::common::samples::{metric, read_log};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_durable_record_survives_sigkill_and_a_torn_tail_is_counted() {
    common::require!(Ort);
    let dir = tempfile::tempdir().unwrap();
    let log_dir = dir.path().join("samples");
    let config = dir.path().join("augur.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\n[admin]\nlisten = \"127.0.0.1:0\"\ngrpc_listen = \"127.0.0.1:0\"\n\
             [samples]\nenabled = true\n[samples.log]\ndir = \"{}\"\nfsync_interval_ms = 100\n\
             [samples.join]\ntick_ms = 20\npositive_wait_s = {{ click = 0, conversion = 0 }}\n",
            log_dir.display()
        ),
    )
    .unwrap();
    let augur = Augur::start(&config).await;
    let mut client = augur.client().await;
    // Load: predictions and their impressions until well over 100 records are durable.
    let load = tokio::spawn(async move {
        for k in 0.. {
            let mut r = common::ranking_request(&format!("u{}", k % 50), &["i1", "i2", "i3", "i4"]);
            r.request_id = format!("crash-{k}");
            if client.predict(r.clone()).await.is_err() {
                return;
            }
            let events = r
                .candidates
                .iter()
                .map(|c| augur::proto::Event {
                    request_id: r.request_id.clone(),
                    item_id: c.item_id.clone(),
                    r#type: "impression".into(),
                    timestamp_ms: 0,
                    value: None,
                })
                .collect();
            if client.report_events(ReportEventsRequest { events }).await.is_err() {
                return;
            }
        }
    });
    let mut durable = 0.0;
    for _ in 0..1200 {
        durable = metric(&augur.metrics().await, "augur_samples_log_durable_sequence");
        if durable >= 100.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(durable >= 100.0, "only {durable} records durable");
    // Killed while the load still runs: the log is being appended to right now.
    augur.kill();
    let _ = load.await;

    let records = read_log(&log_dir);
    let durable = durable as usize;
    assert!(records.len() >= durable, "{} records read back, {durable} were durable", records.len());
    let samples = records.iter().filter(|r| matches!(r.record, Some(log_record::Record::Sample(_)))).count();
    assert!(samples >= durable, "the load writes only samples: {samples}");

    // Tear the tail: cut the newest segment mid-record, as a crash during a write would.
    let mut segments: Vec<_> = std::fs::read_dir(&log_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    let newest = segments.last().expect("a segment");
    let len = std::fs::metadata(newest).unwrap().len();
    let file = std::fs::OpenOptions::new().write(true).open(newest).unwrap();
    file.set_len(len - 3).unwrap();
    drop(file);

    let augur = Augur::start(&config).await;
    let exposition = augur.metrics().await;
    assert!(metric(&exposition, "augur_samples_log_truncated_bytes_total") > 0.0, "torn tail counted");
    // Read from the open line: by the first scrape the joiner may already have emitted
    // candidates whose claim had not reached the journal (emitted again: at least once).
    let resumed = field(&augur.log, "sample log open", "last_sequence").expect("sample log open logged");
    let resumed: usize = resumed.parse().unwrap();
    assert_eq!(resumed, records.len() - 1, "the sequence resumes after the last intact record");
    assert!(
        augur.log.iter().any(|l| l.contains("replayed from the journal")),
        "pending joins come back from the journal after a SIGKILL: {:#?}",
        augur.log
    );

    // Pending joins: P predictions nobody reported on yet, journaled and fsynced, then SIGKILL.
    let before = metric(&exposition, "augur_samples_pending");
    let mut client = augur.client().await;
    let p = 20;
    let mut pending = Vec::new();
    for k in 0..p {
        let mut r = common::ranking_request("u7", &["i5", "i6"]);
        r.request_id = format!("pend-{k}");
        client.predict(r.clone()).await.expect("predict");
        pending.push(r);
    }
    let mut synced = false;
    for _ in 0..600 {
        let m = augur.metrics().await;
        let written = metric(&m, "augur_samples_journal_sequence");
        if metric(&m, "augur_samples_pending") >= before + p as f64
            && metric(&m, "augur_samples_journal_durable_sequence") >= written
        {
            synced = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(synced, "the journal never caught up");
    augur.kill();

    let augur = Augur::start(&config).await;
    assert_eq!(
        metric(&augur.metrics().await, "augur_samples_pending"),
        before + p as f64,
        "every journaled, fsynced prediction is pending again"
    );
    let mut client = augur.client().await;
    let events = pending
        .iter()
        .map(|r| augur::proto::Event {
            request_id: r.request_id.clone(),
            item_id: "i6".into(),
            r#type: "click".into(),
            timestamp_ms: 0,
            value: None,
        })
        .collect();
    let results = client.report_events(ReportEventsRequest { events }).await.expect("report").into_inner().results;
    assert!(
        results.iter().all(|r| r.status == augur::proto::EventStatus::Accepted as i32),
        "joined after the crash: {results:?}"
    );
    augur.signal(libc::SIGTERM);
    let log = augur.wait().join("\n");
    assert!(log.contains("samples flushed"), "{log}");
    let again = read_log(&log_dir);
    assert!(again.len() >= durable, "still every durable record after the restarts");
    let joined = again
        .iter()
        .filter(|r| matches!(&r.record, Some(log_record::Record::Sample(s)) if s.request_id.starts_with("pend-")))
        .count();
    assert_eq!(joined, p, "each pending prediction became its sample");
}
