//! The process signals as a stream of shutdown requests: the first SIGTERM/SIGINT starts the
//! ordered drain in [`crate::app`], a second one cuts it short. Tests drive the same receiver
//! with a channel instead of signals.

use tokio::sync::mpsc;

/// Shutdown requests: one message per signal.
pub type Requests = mpsc::Receiver<()>;

/// Forwards every SIGTERM and SIGINT (Ctrl-C) as one request, for the life of the process.
pub fn signals() -> Requests {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        #[cfg(unix)]
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the server");
                None
            }
        };
        loop {
            #[cfg(unix)]
            let term_received = async {
                match term.as_mut() {
                    Some(s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            #[cfg(not(unix))]
            let term_received = std::future::pending::<()>();
            tokio::select! {
                r = tokio::signal::ctrl_c() => {
                    if r.is_err() {
                        std::future::pending::<()>().await;
                    }
                    tracing::info!("SIGINT received");
                }
                () = term_received => tracing::info!("SIGTERM received"),
            }
            if tx.send(()).await.is_err() {
                return;
            }
        }
    });
    rx
}
