//! Hot reload of the dynamic config: on SIGHUP, and when the file's content changes (polled,
//! which also catches Kubernetes' symlink swaps that file-event watchers miss). Parse ->
//! validate -> build -> swap; any failure keeps the running snapshot.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gatehouse_audit::{Actor, Event, EventKind, Outcome};
use gatehouse_config::{Config, ServerConfig};
use gatehouse_proxy::{AppState, build_runtime};

const POLL: Duration = Duration::from_secs(1);

/// Every reload attempt is a configuration event in the audit trail.
fn audit_reload(app: &AppState, outcome: Outcome, status: u16, code: &'static str) {
    if let Some(a) = &app.services.audit.auditor {
        a.submit(Event::new(EventKind::ConfigReload, outcome, status, code, Actor::System));
    }
}

fn fingerprint(path: &Path) -> Option<u64> {
    let bytes = std::fs::read(path).ok()?;
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    Some(h.finish())
}

fn reload(path: &Path, running: &ServerConfig, app: &AppState) {
    let cfg = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "config reload rejected; keeping the running config");
            audit_reload(app, Outcome::Denied, 400, "config_invalid");
            return;
        }
    };
    // CLI/env overrides apply to static fields only, so compare what the file itself says
    // about them with what the file said at start.
    let changed = running.changed_fields(&cfg.server);
    if !changed.is_empty() {
        tracing::error!(fields = ?changed, "config reload rejected: static fields need a restart; keeping the running config");
        audit_reload(app, Outcome::Denied, 400, "config_static_changed");
        return;
    }
    let env = |k: &str| std::env::var(k).ok();
    match build_runtime(&cfg.policy, &app.services, &env) {
        Ok(rt) => {
            app.runtime.store(Arc::new(rt));
            metrics::counter!("gatehouse_config_reloads_total", "outcome" => "applied").increment(1);
            tracing::info!(path = %path.display(), "config reloaded");
            audit_reload(app, Outcome::Allowed, 200, "ok");
        }
        Err(e) => {
            metrics::counter!("gatehouse_config_reloads_total", "outcome" => "rejected").increment(1);
            tracing::error!(error = %e, "config reload rejected; keeping the running config");
            audit_reload(app, Outcome::Denied, 400, "config_invalid");
        }
    }
}

/// The file as the gateway started with it: read before serving begins, so a change made
/// right after start is a change (a task that read it only when first scheduled could take
/// the changed file for the original and never reload it).
pub struct Watch {
    path: PathBuf,
    /// The static part as the file states it, before CLI/env overrides.
    file_server: ServerConfig,
    last: Option<u64>,
}

impl Watch {
    pub fn new(path: PathBuf) -> Option<Watch> {
        let last = fingerprint(&path);
        let file_server = Config::load(&path).ok()?.server;
        Some(Watch { path, file_server, last })
    }
}

pub async fn watch(w: Watch, app: AppState) {
    let Watch { path, file_server, mut last } = w;
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    loop {
        #[cfg(unix)]
        let by_signal = {
            let hup_recv = async {
                match hup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = hup_recv => true,
                () = tokio::time::sleep(POLL) => false,
            }
        };
        #[cfg(not(unix))]
        let by_signal = {
            tokio::time::sleep(POLL).await;
            false
        };
        let now = fingerprint(&path);
        if by_signal || (now.is_some() && now != last) {
            last = now;
            reload(&path, &file_server, &app);
        }
    }
}
