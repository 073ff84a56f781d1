//! The inference thread loop: collect chunks into a batch, run it, answer each chunk.
//!
//! Threads share the queue through a mutex held only while a batch is being collected, so one
//! thread collects while the others run their batches (pipelining). A chunk that would overflow
//! the batch is parked in `carry` and opens the next one, so nothing is reordered or lost.

use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Instant;

use super::{BatchConfig, BatchError, BatchStats, Message, Runner, merge};

pub(super) struct Shared {
    pub(super) rx: Receiver<Message>,
    pub(super) carry: Option<Message>,
}

pub(super) fn run<R: Runner>(mut runner: R, shared: &Mutex<Shared>, config: BatchConfig, stats: &BatchStats) {
    while let Some(batch) = collect(shared, config) {
        let now = Instant::now();
        let (live, expired): (Vec<Message>, Vec<Message>) =
            batch.into_iter().partition(|m| m.deadline.is_none_or(|d| d > now) && !m.reply.is_closed());
        for m in expired {
            if !m.reply.is_closed() {
                stats.expired.fetch_add(1, Ordering::Relaxed);
            }
            let _ = m.reply.send(Err(BatchError::Expired));
        }
        if live.is_empty() {
            continue;
        }
        let tensors = merge(&live);
        let rows: usize = live.iter().map(|m| m.rows).sum();
        stats.batches.fetch_add(1, Ordering::Relaxed);
        stats.rows.fetch_add(rows as u64, Ordering::Relaxed);
        match runner.run(&tensors) {
            Ok(scores) if scores.len() == rows => {
                let mut start = 0;
                for m in live {
                    let _ = m.reply.send(Ok(scores[start..start + m.rows].to_vec()));
                    start += m.rows;
                }
            }
            Ok(scores) => {
                let e = format!("model returned {} scores for {rows} rows", scores.len());
                live.into_iter().for_each(|m| drop(m.reply.send(Err(BatchError::Model(e.clone())))));
            }
            Err(e) => {
                let e = e.to_string();
                live.into_iter().for_each(|m| drop(m.reply.send(Err(BatchError::Model(e.clone())))));
            }
        }
    }
}

/// Blocks for the first chunk, then gathers more until `max_batch_rows`, `max_queue_delay` after
/// the first chunk was queued, or the earliest deadline in the batch. `None` = queue closed and
/// drained.
fn collect(shared: &Mutex<Shared>, config: BatchConfig) -> Option<Vec<Message>> {
    let mut guard = shared.lock().ok()?;
    let shared = &mut *guard;
    let first = match shared.carry.take() {
        Some(m) => m,
        None => shared.rx.recv().ok()?,
    };
    let mut until = first.enqueued + config.max_queue_delay;
    let mut rows = first.rows;
    let mut batch = vec![first];
    while rows < config.max_batch_rows {
        if let Some(d) = batch.iter().filter_map(|m| m.deadline).min() {
            until = until.min(d);
        }
        let now = Instant::now();
        if now >= until {
            break;
        }
        match shared.rx.recv_timeout(until - now) {
            Ok(m) if rows + m.rows > config.max_batch_rows => {
                shared.carry = Some(m);
                break;
            }
            Ok(m) => {
                rows += m.rows;
                batch.push(m);
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
        }
    }
    Some(batch)
}
