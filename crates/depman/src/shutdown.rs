//! The signal every role stops on: SIGTERM (Kubernetes) or SIGINT (Ctrl-C).

use tokio::signal::unix::{SignalKind, signal};

/// Resolves when the process is asked to stop.
pub async fn signal_received() {
    let mut terminate = match signal(SignalKind::terminate()) {
        Ok(stream) => stream,
        Err(error) => {
            tracing::error!(%error, "cannot listen for SIGTERM; stopping on Ctrl-C only");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = terminate.recv() => tracing::info!("SIGTERM received, shutting down"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, shutting down"),
    }
}
