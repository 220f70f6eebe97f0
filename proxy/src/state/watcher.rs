//! Watching the configuration file and the provider directories of discovery sources, so a change
//! reloads the configuration (`config_reload`): with file-system notifications (inotify) where
//! `use_watchdog` allows and they work, otherwise by polling every `interval_s`.
//!
//! Editors save by writing a new file and renaming it over the old one, so the file's directory is
//! watched, not the file (whose inode goes away), and events are matched by name. Changes are
//! debounced: a reload waits for a short quiet spell, so a file written in several pieces is read
//! once, whole. A half-written file that does not parse is rejected like any invalid candidate
//! and the next write reloads again.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::AppState;

/// Quiet time after the last change before a reload.
const DEBOUNCE: Duration = Duration::from_millis(150);
/// Longest a stream of changes delays the reload.
const MAX_DEBOUNCE: Duration = Duration::from_secs(2);
/// How often a disabled watcher looks whether a reload enabled it.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// What is watched.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Targets {
    file: PathBuf,
    dirs: Vec<PathBuf>,
}

impl Targets {
    /// Whether an event on `path` concerns a target.
    fn concerns(&self, path: &Path) -> bool {
        path == self.file
            || path.file_name() == self.file.file_name() && path.parent() == self.file.parent()
            || self.dirs.iter().any(|d| path.starts_with(d))
    }

    /// A digest of what the targets hold now: the file's bytes, and each directory's file names,
    /// sizes and modification times (polling compares it).
    fn fingerprint(&self) -> u64 {
        let mut h = DefaultHasher::new();
        std::fs::read(&self.file).ok().hash(&mut h);
        for dir in &self.dirs {
            let mut entries: Vec<(PathBuf, u64, Option<std::time::SystemTime>)> = std::fs::read_dir(dir)
                .map(|d| {
                    d.filter_map(Result::ok)
                        .filter_map(|e| e.metadata().ok().map(|m| (e.path(), m.len(), m.modified().ok())))
                        .collect()
                })
                .unwrap_or_default();
            entries.sort();
            entries.hash(&mut h);
        }
        h.finish()
    }
}

/// The watcher: what the files look like is taken now, before it runs (call it before the
/// gateway says it is ready), so an edit made as soon as the gateway is up is a change to
/// apply, not the starting point.
pub fn start(state: Arc<AppState>) -> impl std::future::Future<Output = ()> {
    let seen = targets_of(&state).map(|t| t.fingerprint());
    run(state, seen)
}

/// The targets under the current configuration (`None` without a configuration file).
fn targets_of(state: &AppState) -> Option<Targets> {
    let file = state.reconciler.path().map(Path::to_path_buf)?;
    let file = std::path::absolute(&file).unwrap_or(file);
    Some(Targets { file, dirs: absolute(crate::discovery::watched_dirs(&state.snapshot().config)) })
}

/// Watches until shutdown. `seen` is what the targets looked like when they were last read: a
/// difference from it is a change, even one made while no watch was set up (between a reload
/// and the next watch, say).
async fn run(state: Arc<AppState>, mut seen: Option<u64>) {
    let mut shutdown = state.shutdown_signal();
    loop {
        let Some(targets) = targets_of(&state) else { return };
        let settings = state.snapshot().config.config_reload.clone();
        let changed = if !settings.enabled {
            // Nothing to watch; SIGHUP and the reload tool still work. Look again later, in
            // case one of them turned watching on.
            tokio::time::sleep(IDLE_CHECK).await;
            seen = None;
            false
        } else {
            tokio::select! {
                changed = watch_once(&targets, settings.use_watchdog, settings.interval, seen) => changed,
                _ = shutdown.changed() => return,
            }
        };
        if *shutdown.borrow() {
            return;
        }
        if changed {
            // Taken before the read: a write after it shows as a change next time round.
            seen = Some(targets.fingerprint());
            let _ = state.reconciler.reload(&state, "file change", true).await;
        }
    }
}

fn absolute(dirs: Vec<PathBuf>) -> Vec<PathBuf> {
    dirs.into_iter().map(|d| std::path::absolute(&d).unwrap_or(d)).collect()
}

/// Waits for a change to `targets` from `seen` (from what they look like when the watch starts,
/// if `None`), then for the changes to settle; `false` when the wait ended without one (the
/// targets are then looked at again).
async fn watch_once(targets: &Targets, notifications: bool, interval: Duration, seen: Option<u64>) -> bool {
    if notifications {
        match Notifier::start(targets) {
            Ok(mut notifier) => {
                // Notifications, with a slow poll behind them: a change in a directory created
                // after the watch began has no notification.
                let before = seen.unwrap_or_else(|| targets.fingerprint());
                if targets.fingerprint() != before {
                    notifier.settle().await;
                    return true;
                }
                let seen = tokio::select! {
                    seen = notifier.next() => seen,
                    () = poll_until_changed(targets, before, interval.max(Duration::from_secs(30))) => true,
                };
                if seen {
                    notifier.settle().await;
                }
                return seen;
            }
            Err(e) => tracing::warn!("file notifications unavailable ({e}); polling every {interval:?}"),
        }
    }
    let before = seen.unwrap_or_else(|| targets.fingerprint());
    if targets.fingerprint() == before {
        poll_until_changed(targets, before, interval).await;
    }
    // Let a writer finish: wait until two looks a moment apart agree.
    let mut last = targets.fingerprint();
    let started = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(DEBOUNCE).await;
        let now = targets.fingerprint();
        if now == last || started.elapsed() > MAX_DEBOUNCE {
            return true;
        }
        last = now;
    }
}

async fn poll_until_changed(targets: &Targets, before: u64, interval: Duration) {
    loop {
        tokio::time::sleep(interval).await;
        let targets = targets.clone();
        let now = tokio::task::spawn_blocking(move || targets.fingerprint()).await.unwrap_or(before);
        if now != before {
            return;
        }
    }
}

/// File-system notifications for the targets, delivered to a channel.
struct Notifier {
    _watcher: RecommendedWatcher,
    rx: mpsc::Receiver<()>,
}

impl Notifier {
    fn start(targets: &Targets) -> notify::Result<Self> {
        let (tx, rx) = mpsc::channel(64);
        let filter = targets.clone();
        let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
            let relevant = match &event {
                Ok(e) => !e.kind.is_access() && e.paths.iter().any(|p| filter.concerns(p)),
                Err(_) => true,
            };
            if relevant {
                let _ = tx.try_send(());
            }
        })?;
        let dir = targets.file.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
        for d in &targets.dirs {
            if let Err(e) = watcher.watch(d, RecursiveMode::NonRecursive) {
                tracing::debug!("cannot watch {}: {e}; it is polled", d.display());
            }
        }
        Ok(Self { _watcher: watcher, rx })
    }

    /// The next change; `false` if notifications stopped.
    async fn next(&mut self) -> bool {
        self.rx.recv().await.is_some()
    }

    /// Waits until no change came for a moment (bounded).
    async fn settle(&mut self) {
        let deadline = tokio::time::Instant::now() + MAX_DEBOUNCE;
        loop {
            match tokio::time::timeout_at(deadline.min(tokio::time::Instant::now() + DEBOUNCE), self.rx.recv()).await {
                Ok(Some(())) if tokio::time::Instant::now() < deadline => continue,
                _ => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_matched_by_name_so_rename_over_saves_count() {
        let t = Targets { file: "/etc/hangar/config.yaml".into(), dirs: vec!["/etc/hangar/providers.d".into()] };
        assert!(t.concerns(Path::new("/etc/hangar/config.yaml")));
        assert!(!t.concerns(Path::new("/etc/hangar/.config.yaml.swp")));
        assert!(t.concerns(Path::new("/etc/hangar/providers.d/x.yaml")));
        assert!(!t.concerns(Path::new("/etc/other.yaml")));
    }

    #[test]
    fn the_fingerprint_follows_content_and_directories() {
        let dir = std::env::temp_dir().join(format!("hangar-watch-{}", std::process::id()));
        let providers = dir.join("providers.d");
        std::fs::create_dir_all(&providers).expect("dir");
        let file = dir.join("config.yaml");
        std::fs::write(&file, "a: 1\n").expect("write");
        let t = Targets { file: file.clone(), dirs: vec![providers.clone()] };
        let first = t.fingerprint();
        assert_eq!(t.fingerprint(), first, "stable while nothing changes");
        std::fs::write(&file, "a: 2\n").expect("write");
        let second = t.fingerprint();
        assert_ne!(second, first, "same size, other content");
        std::fs::write(providers.join("p.yaml"), "name: p\n").expect("write");
        assert_ne!(t.fingerprint(), second, "a new provider file");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
