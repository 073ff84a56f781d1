//! Rescans a repository on file-system events (debounced) and every `poll` (the fallback when
//! inotify is unavailable or misses an event). The task is spawned on the app's tracker and
//! ends when shutdown starts or the repository is dropped, so it never outlives the app.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::Repository;

/// Starts watching `repo`.
pub fn watch(
    repo: Arc<Repository>,
    events: bool,
    poll: Option<Duration>,
    tracker: &TaskTracker,
    shutdown: CancellationToken,
) {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    let watcher = if events {
        use notify::Watcher;
        let tx = tx.clone();
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if event.is_ok() {
                let _ = tx.try_send(());
            }
        });
        match &mut watcher {
            Ok(w) => {
                if let Err(e) = w.watch(repo.dir(), notify::RecursiveMode::Recursive) {
                    tracing::warn!(model = %repo.name(), error = %e, "cannot watch model repository; polling only");
                }
            }
            Err(e) => tracing::warn!(error = %e, "no file-system watcher; polling only"),
        }
        watcher.ok()
    } else {
        None
    };
    let weak = Arc::downgrade(&repo);
    drop(repo);
    tracker.spawn(async move {
        let _watcher = watcher;
        let poll = poll.unwrap_or(Duration::from_secs(24 * 3600));
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                Some(()) = rx.recv() => {
                    // Debounce: a copy produces a burst of events; act once it settles.
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    while rx.try_recv().is_ok() {}
                }
                () = tokio::time::sleep(poll) => {}
            }
            let Some(repo) = weak.upgrade() else { return };
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = repo.rescan() => {}
            }
        }
    });
}
