//! Which `Host` values a plane answers. A DNS-rebinding page (`evil.example` re-pointed at
//! 127.0.0.1) makes the victim's browser send same-origin requests to our port, but always
//! with the attacker's name in `Host`. Answering only known names defeats it. IP-literal hosts
//! cannot be rebound (no name to re-point), so the listen address and loopback are allowed,
//! and when the plane listens on every interface (we cannot know our own addresses) any IP
//! literal is.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use gatehouse_core::{Denial, DenyCode, host_name};
use http::header;
use http::uri::Authority;

#[derive(Clone, Debug)]
pub struct AllowedHosts {
    /// Lower-case names without a trailing dot; always includes `localhost`.
    names: Vec<String>,
    listen: IpAddr,
}

/// An allow-list entry that is not a host name or IP address.
#[derive(Debug, thiserror::Error)]
#[error("not a host name or IP address (no scheme, port or path)")]
pub struct BadHost;

impl AllowedHosts {
    /// Loopback names and addresses, the listen address, plus `extra` names (validated).
    pub fn new(listen: SocketAddr, extra: &[String]) -> Result<Self, BadHost> {
        let mut names = vec!["localhost".to_owned()];
        for e in extra {
            names.push(host_name(e).ok_or(BadHost)?);
        }
        Ok(AllowedHosts { names, listen: listen.ip() })
    }

    /// Whether a request naming `host` (as sent: may carry a port and IPv6 brackets) is served.
    pub fn permits(&self, host: &str) -> bool {
        let Ok(auth) = Authority::from_str(host) else { return false };
        if auth.as_str().contains('@') {
            return false;
        }
        let Some(h) = host_name(auth.host()) else { return false };
        if let Ok(ip) = h.parse::<IpAddr>() {
            return ip.is_loopback() || ip == self.listen || self.listen.is_unspecified() || self.names.contains(&h);
        }
        self.names.contains(&h)
    }
}

/// Middleware: refuses with 421 `host_not_allowed` a request whose Host (or absolute-form
/// authority) is not allowed, or that names none.
pub async fn require_allowed_host(State(allowed): State<Arc<AllowedHosts>>, req: Request, next: Next) -> Response {
    let host = match req.uri().authority() {
        Some(a) => Some(a.as_str()),
        None => req.headers().get(header::HOST).and_then(|v| v.to_str().ok()),
    };
    if host.is_some_and(|h| allowed.permits(h)) {
        return next.run(req).await;
    }
    tracing::debug!("refused a request naming a Host that is not allowed");
    Denial::new(DenyCode::HostNotAllowed).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(listen: &str, extra: &[&str]) -> AllowedHosts {
        let extra: Vec<String> = extra.iter().map(|s| (*s).to_owned()).collect();
        AllowedHosts::new(listen.parse().unwrap(), &extra).unwrap()
    }

    #[test]
    fn loopback_names_and_the_listen_address_are_served_by_default() {
        let h = hosts("10.0.0.5:8081", &[]);
        for ok in
            ["localhost", "LOCALHOST:8081", "localhost.", "127.0.0.1", "127.0.0.1:8081", "[::1]:8081", "10.0.0.5:8081"]
        {
            assert!(h.permits(ok), "{ok}");
        }
        for no in [
            "evil.example",
            "evil.example:8081",
            "localhost.evil.example",
            "10.0.0.6",
            "user@localhost",
            "",
            "local host",
            "[::1",
        ] {
            assert!(!h.permits(no), "{no}");
        }
    }

    #[test]
    fn configured_names_are_added_and_any_ip_literal_is_served_on_a_wildcard_listener() {
        let h = hosts("0.0.0.0:8081", &["Gatehouse-Admin.internal."]);
        assert!(h.permits("gatehouse-admin.internal:8081"));
        assert!(h.permits("192.168.1.20:8081"));
        assert!(h.permits("[fd00::1]:8081"));
        assert!(!h.permits("rebind.evil.example:8081"));
    }

    #[test]
    fn entries_that_are_not_hosts_are_refused() {
        for bad in ["http://x.example", "x.example:8080", "x.example/path", "", "a@b"] {
            assert!(AllowedHosts::new("127.0.0.1:1".parse().unwrap(), &[bad.to_owned()]).is_err(), "{bad}");
        }
    }
}
