//! `augur serve`: build the service from the config, serve until SIGTERM/SIGINT, then drain in
//! order (a second signal, or `server.grace_ms`, cuts the drain short and exits non-zero).

use anyhow::Context;

use augur::app::Parts;
use augur::config::Config;
use augur::telemetry::trace::OtlpTraces;

/// `config` was loaded by main, before tracing, so its `[log]` section could set the format;
/// `traces` is the OTLP pipeline main's subscriber feeds, for the app to flush last at shutdown.
pub(crate) async fn run(config: Config, traces: Option<OtlpTraces>) -> anyhow::Result<()> {
    // Signals are listened for before the (slow) model loads, so an early SIGTERM is not lost.
    let requests = augur::shutdown::signals();
    raise_open_file_limit(config.server.max_connections);
    let listen = config.server.listen;
    let app = augur::app::App::build_with(config, Parts { traces, ..Parts::default() }).await?;
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("server.listen: cannot bind {listen}"))?;
    app.serve(listener, requests).await?;
    Ok(())
}

/// Descriptors augur holds besides client connections (runtime, listeners, models, logs, Redis),
/// with room to spare.
const OWN_FILES: u64 = 256;

/// Raises the soft open-file limit to the hard one, as servers do (systemd's soft default is
/// 1024; every connection costs a descriptor), and logs both once. A failure is logged, not
/// fatal: augur still serves, with the cap and the accept back-off as its guards.
fn raise_open_file_limit(max_connections: usize) {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct it is given, which lives on this stack frame.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        let error = std::io::Error::last_os_error();
        tracing::warn!(%error, "cannot read the open-file limit (RLIMIT_NOFILE)");
        return;
    }
    let soft_before = limit.rlim_cur;
    if limit.rlim_cur < limit.rlim_max {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: setrlimit only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            limit = raised;
        } else {
            let error = std::io::Error::last_os_error();
            tracing::warn!(%error, soft = soft_before, hard = limit.rlim_max, "cannot raise the open-file limit");
        }
    }
    tracing::info!(soft_before, soft = limit.rlim_cur, hard = limit.rlim_max, "open-file limit (RLIMIT_NOFILE)");
    let wanted = (max_connections as u64).saturating_add(OWN_FILES);
    if limit.rlim_cur < wanted {
        tracing::warn!(
            soft = limit.rlim_cur,
            max_connections,
            "server.max_connections is near or above the open-file limit: accepting runs out of \
             descriptors before the cap (and backs off); raise the hard limit or lower the cap"
        );
    }
}
