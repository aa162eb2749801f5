//! MCP sessions (the handshake era's `Mcp-Session-Id`). The gateway issues its own session id
//! (256 random bits) and keeps the server's behind it, so a client never learns the server's and
//! a server's id is never accepted from a client. A session is bound to the credential that
//! opened it (a digest of the presented secret) and to the server: presented with anything else
//! it is "not found", exactly like an unknown one. Bounded in number (all callers, and per
//! credential) and in lifetime (idle and absolute).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use gatehouse_config::mcp::McpSettings;
use http::HeaderValue;
use sha2::{Digest, Sha256};

/// Who may use a session: the digest of the presented secret (not the secret itself).
pub type Binding = [u8; 32];

pub fn binding(presented: &str) -> Binding {
    Sha256::digest(presented.as_bytes()).into()
}

pub struct Session {
    pub binding: Binding,
    /// The registered server's id (a server re-registered under the same name is another).
    pub server: Box<str>,
    /// The server's own session id, if it issued one.
    pub upstream: Option<HeaderValue>,
    opened: Instant,
    /// Milliseconds after `opened` of the last use.
    last_used: AtomicU64,
}

impl Session {
    fn expired(&self, now: Instant, s: &McpSettings) -> bool {
        let idle_since = self.opened + Duration::from_millis(self.last_used.load(Ordering::Relaxed));
        now.duration_since(self.opened) > s.session_max_lifetime
            || now.duration_since(idle_since) > s.session_idle_timeout
    }

    fn touch(&self, now: Instant) {
        let ms = u64::try_from(now.duration_since(self.opened).as_millis()).unwrap_or(u64::MAX);
        self.last_used.store(ms, Ordering::Relaxed);
    }
}

/// Why a session could not be opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Full {
    /// The replica holds `mcp.max_sessions`.
    All,
    /// The credential holds `mcp.max_sessions_per_credential`.
    Credential,
}

pub struct Sessions {
    settings: McpSettings,
    by_id: DashMap<Box<str>, Arc<Session>>,
    per_binding: DashMap<Binding, usize>,
    count: AtomicUsize,
}

impl Sessions {
    pub fn new(settings: McpSettings) -> Sessions {
        Sessions { settings, by_id: DashMap::new(), per_binding: DashMap::new(), count: AtomicUsize::new(0) }
    }

    /// Opens a session for `binding` on `server`; returns the id to give the client.
    pub fn open(&self, binding: Binding, server: &str, upstream: Option<HeaderValue>) -> Result<String, Full> {
        let max = self.settings.max_sessions.get() as usize;
        if self.count.fetch_add(1, Ordering::AcqRel) >= max {
            self.count.fetch_sub(1, Ordering::AcqRel);
            return Err(Full::All);
        }
        {
            let mut n = self.per_binding.entry(binding).or_insert(0);
            if *n >= self.settings.max_sessions_per_credential.get() as usize {
                drop(n);
                self.count.fetch_sub(1, Ordering::AcqRel);
                return Err(Full::Credential);
            }
            *n += 1;
        }
        let Some(id) = new_id() else {
            self.count.fetch_sub(1, Ordering::AcqRel);
            if let Some(mut n) = self.per_binding.get_mut(&binding) {
                *n = n.saturating_sub(1);
            }
            return Err(Full::All);
        };
        let s =
            Session { binding, server: server.into(), upstream, opened: Instant::now(), last_used: AtomicU64::new(0) };
        self.by_id.insert(id.as_str().into(), Arc::new(s));
        Ok(id)
    }

    /// The session `id` if it exists, is live, and belongs to `binding` on `server`; `None`
    /// otherwise (all alike to the caller).
    pub fn get(&self, id: &str, binding: &Binding, server: &str) -> Option<Arc<Session>> {
        let s = self.by_id.get(id)?.clone();
        let now = Instant::now();
        if s.expired(now, &self.settings) {
            // refused from now on; the sweeper removes it and tells its server
            return None;
        }
        // a digest comparison: equal digests mean the same presented secret
        if s.binding != *binding || &*s.server != server {
            return None;
        }
        s.touch(now);
        Some(s)
    }

    /// Whether a session exists under `id` for this binding (live or not): used to close the
    /// sessions of a credential that stopped authenticating (revoked, expired).
    pub fn belongs_to(&self, id: &str, binding: &Binding) -> bool {
        self.by_id.get(id).is_some_and(|s| s.binding == *binding)
    }

    /// Removes a session; returns it if it was there (the caller tells the server).
    pub fn close(&self, id: &str) -> Option<Arc<Session>> {
        let (_, s) = self.by_id.remove(id)?;
        self.count.fetch_sub(1, Ordering::AcqRel);
        if let dashmap::mapref::entry::Entry::Occupied(mut e) = self.per_binding.entry(s.binding) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
        Some(s)
    }

    /// Removes every expired session; returns them (for the caller to tell their servers).
    pub fn sweep(&self) -> Vec<Arc<Session>> {
        let now = Instant::now();
        let expired: Vec<Box<str>> =
            self.by_id.iter().filter(|e| e.value().expired(now, &self.settings)).map(|e| e.key().clone()).collect();
        expired.iter().filter_map(|id| self.close(id)).collect()
    }

    pub fn len(&self) -> usize {
        self.count.load(Ordering::Acquire)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// 256 random bits, hex: unguessable, and visible ASCII as the transport requires. `None` if
/// the system's generator fails (no session is opened then).
fn new_id() -> Option<String> {
    gatehouse_security::seal::random_key().ok().map(|k| hex::encode(*k))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max: u32, per: u32) -> McpSettings {
        McpSettings {
            max_sessions: std::num::NonZeroU32::new(max).unwrap(),
            max_sessions_per_credential: std::num::NonZeroU32::new(per).unwrap(),
            ..McpSettings::default()
        }
    }

    #[test]
    fn bound_to_credential_and_server_and_bounded_in_number() {
        let s = Sessions::new(settings(3, 2));
        let (a, b) = (binding("key-a"), binding("key-b"));
        let id = s.open(a, "srv", None).unwrap();
        assert_eq!(id.len(), 64);
        assert!(s.get(&id, &a, "srv").is_some());
        assert!(s.get(&id, &b, "srv").is_none(), "another credential");
        assert!(s.get(&id, &a, "other").is_none(), "another server");
        assert!(s.get("nope", &a, "srv").is_none());
        s.open(a, "srv", None).unwrap();
        assert_eq!(s.open(a, "srv", None), Err(Full::Credential));
        s.open(b, "srv", None).unwrap();
        assert_eq!(s.open(b, "srv", None), Err(Full::All));
        assert!(s.close(&id).is_some());
        assert!(s.close(&id).is_none());
        assert_eq!(s.len(), 2);
        s.open(a, "srv", None).unwrap();
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn expired_sessions_are_swept() {
        let mut cfg = settings(10, 10);
        cfg.session_idle_timeout = Duration::from_millis(0);
        let s = Sessions::new(cfg);
        let id = s.open(binding("k"), "srv", None).unwrap();
        std::hint::black_box(&id);
        let later = Instant::now() + Duration::from_millis(5);
        while Instant::now() < later {
            std::hint::spin_loop();
        }
        assert_eq!(s.sweep().len(), 1);
        assert!(s.is_empty());
    }
}
