//! What triggers a config reload: SIGHUP, and a change of the config file seen by a watcher.
//!
//! The watcher watches the file's folder, not the file: editors save by renaming a new file
//! over the old one, and Kubernetes updates a mounted ConfigMap by swapping a `..data`
//! symlink, and both replace the watched inode. Events are debounced (a save is several
//! events) and a reload happens only when the file's text, or the listener's certificate or
//! key, differs from what the serving plan was built from, so unrelated files in the folder
//! cost a read, not a reload. The certificate's folder is watched too: a renewal needs no
//! SIGHUP.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::{mpsc, watch};

use crate::server::Shared;

/// Quiet time after the last event before the file is read.
const DEBOUNCE: Duration = Duration::from_millis(250);

/// The triggers of one server's reloads, set up when it binds: a SIGHUP or a save that
/// comes between the start and the first request is not lost.
pub struct Triggers {
    path: PathBuf,
    watcher: Option<notify::RecommendedWatcher>,
    events: mpsc::Receiver<()>,
    hangup: Hangup,
}

impl Triggers {
    /// Watches `path`'s folder (and the folders of `tls` files, so a renewed certificate
    /// is loaded) and listens for SIGHUP, from now on (events wait until [`Triggers::spawn`]).
    pub fn new(path: PathBuf, tls: Option<&crate::tls::ServerTls>) -> Triggers {
        let (tx, events) = mpsc::channel::<()>(1);
        let mut files = vec![path.as_path()];
        if let Some(tls) = tls {
            files.extend([tls.cert.as_path(), tls.key.as_path()]);
        }
        Triggers {
            watcher: start_watcher(&files, tx),
            hangup: hangup_signal(),
            events,
            path,
        }
    }

    /// Reloads `path` into `shared` on SIGHUP and when the file's text differs from the
    /// serving plan's, until `stop` says so or the returned guard is dropped.
    pub fn spawn(self, shared: Arc<Shared>, mut stop: watch::Receiver<bool>) -> Reloader {
        let Triggers {
            path,
            watcher,
            mut events,
            mut hangup,
        } = self;
        let task = tokio::spawn(async move {
            // A save between the first read and the watcher's start: caught here.
            let mut forced = false;
            // The text of the last refused reload: retried on SIGHUP, not on every event.
            let mut refused: Option<String> = None;
            loop {
                let current = std::fs::read_to_string(&path).ok();
                let plan = shared.plan();
                let changed = (current.as_deref() != plan.source_text.as_deref()
                    || plan.tls.as_ref().is_some_and(|t| t.files_changed()))
                    && current != refused;
                drop(plan);
                if forced || changed {
                    // Failures are logged and counted by `reload` itself.
                    refused = match shared.reload().await {
                        Ok(()) => None,
                        Err(_) => current,
                    };
                }
                forced = tokio::select! {
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
            }
        });
        Reloader {
            _watcher: watcher,
            _task: tokio_util::task::AbortOnDropHandle::new(task),
        }
    }
}

/// Stops the watcher and the signal listener when dropped.
pub struct Reloader {
    _watcher: Option<notify::RecommendedWatcher>,
    _task: tokio_util::task::AbortOnDropHandle<()>,
}

fn start_watcher(files: &[&Path], tx: mpsc::Sender<()>) -> Option<notify::RecommendedWatcher> {
    // Only events about these names matter: a log file written next to the config must not
    // wake the reloader at every line. Names starting with `..` are Kubernetes' ConfigMap
    // machinery (`..data`, `..data_tmp`, `..2026_...`), through which the file changes there.
    let names: Vec<std::ffi::OsString> = files
        .iter()
        .filter_map(|f| f.file_name().map(|n| n.to_os_string()))
        .collect();
    let relevant = move |path: &Path| {
        path.file_name().is_some_and(|n| {
            names.iter().any(|w| w == n) || n.as_encoded_bytes().starts_with(b"..")
        })
    };
    let mut watcher =
        match notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            if let Ok(e) = event {
                if !matches!(e.kind, notify::EventKind::Access(_))
                    && e.paths.iter().any(|p| relevant(p))
                {
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
    let mut folders: Vec<PathBuf> = files
        .iter()
        .map(|f| match f.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        })
        .collect();
    folders.sort();
    folders.dedup();
    for folder in folders {
        if let Err(e) = watcher.watch(&folder, RecursiveMode::NonRecursive) {
            tracing::warn!(folder = %folder.display(), error = %e, "cannot watch this folder for changes; reload with SIGHUP");
        }
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
