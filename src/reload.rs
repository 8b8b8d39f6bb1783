//! What triggers a config reload: SIGHUP, and a change of the config file seen by a watcher.
//!
//! The watcher watches the file's folder, not the file: editors save by renaming a new file
//! over the old one, and Kubernetes updates a mounted ConfigMap by swapping a `..data`
//! symlink, and both replace the watched inode. Events are debounced (a save is several
//! events) and a reload happens only when the file's text changed, so unrelated files in the
//! folder cost a read, not a reload.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use crate::server::Shared;

/// Quiet time after the last event before the file is read.
const DEBOUNCE: Duration = Duration::from_millis(250);

/// Stops the watcher and the signal listener when dropped.
pub struct Reloader {
    _watcher: Option<notify::RecommendedWatcher>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Reloader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts reloading `path` into `shared` on SIGHUP and when the file changes, until `stop`
/// says so or the returned guard is dropped.
pub fn spawn(shared: Arc<Shared>, path: PathBuf, mut stop: watch::Receiver<bool>) -> Reloader {
    let (tx, mut events) = mpsc::channel::<()>(1);
    let watcher = start_watcher(&path, tx);
    let task = tokio::spawn(async move {
        let mut last_text = std::fs::read(&path).ok();
        let mut hangup = hangup_signal();
        loop {
            let forced = tokio::select! {
                Some(()) = events.recv() => false,
                Some(()) = recv_signal(&mut hangup) => {
                    tracing::info!("SIGHUP received: reloading the config");
                    true
                }
                _ = stop.changed() => return,
            };
            if !forced {
                // A save is a burst of events: wait until it is over.
                while let Ok(Some(())) = tokio::time::timeout(DEBOUNCE, events.recv()).await {}
            }
            let text = std::fs::read(&path).ok();
            if !forced && text == last_text {
                continue;
            }
            last_text = text;
            // Failures are logged and counted by `reload` itself.
            let _ = shared.reload().await;
        }
    });
    Reloader {
        _watcher: watcher,
        task,
    }
}

fn start_watcher(path: &Path, tx: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut watcher =
        match notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Ok(e) = event {
                if !matches!(e.kind, notify::EventKind::Access(_)) {
                    // A full channel already holds a wake-up: this event is covered by it.
                    let _ = tx.try_send(());
                }
            }
        }) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch the config file; reload with SIGHUP");
                return None;
            }
        };
    if let Err(e) = watcher.watch(&folder, RecursiveMode::NonRecursive) {
        tracing::warn!(folder = %folder.display(), error = %e, "cannot watch the config file's folder; reload with SIGHUP");
        return None;
    }
    Some(watcher)
}

#[cfg(unix)]
type Hangup = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangup = Option<()>;

#[cfg(unix)]
fn hangup_signal() -> Hangup {
    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok()
}

#[cfg(not(unix))]
fn hangup_signal() -> Hangup {
    None
}

#[cfg(unix)]
async fn recv_signal(s: &mut Hangup) -> Option<()> {
    match s {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(not(unix))]
async fn recv_signal(_: &mut Hangup) -> Option<()> {
    std::future::pending().await
}
