//! Where a webhook may point (SSRF defence). A URL is checked when it is saved (scheme, no
//! credentials, bounded length, and an IP literal against the address policy) and every
//! address is checked again **after DNS resolution, at delivery**, inside the HTTP client's
//! resolver — so a name that later resolves to 127.0.0.1 or 169.254.169.254 (rebinding) is
//! refused, and the client connects only to the addresses that passed. Redirects are never
//! followed.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

const MAX_URL: usize = 2048;

/// Private, loopback, link-local and other non-public ranges are refused unless the platform
/// admin allows a range explicitly (`webhooks.allow_private_targets`).
#[derive(Clone, Debug, Default)]
pub struct AddressPolicy {
    pub allow: Vec<IpNet>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("url must be an http(s) URL without credentials, at most 2048 bytes")]
    Url,
    #[error("url points at a private, loopback or link-local address")]
    Blocked,
}

fn non_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
                || (a == 192 && b == 0) // IETF protocol assignments
                || (a == 198 && (b == 18 || b == 19)) // benchmarking
                || a >= 240 // reserved
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return non_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
                || first == 0x2001 && v6.segments()[1] == 0x0db8 // documentation
                || first == 0x0064 && v6.segments()[1] == 0xff9b // NAT64 (embeds IPv4)
        }
    }
}

impl AddressPolicy {
    pub fn permits(&self, ip: IpAddr) -> bool {
        !non_public(ip) || self.allow.iter().any(|n| n.contains(&ip))
    }

    /// The checks that do not need DNS.
    pub fn validate_url(&self, raw: &str) -> Result<Url, TargetError> {
        if raw.len() > MAX_URL {
            return Err(TargetError::Url);
        }
        let url = Url::parse(raw).map_err(|_| TargetError::Url)?;
        if !matches!(url.scheme(), "https" | "http") || !url.username().is_empty() || url.password().is_some() {
            return Err(TargetError::Url);
        }
        match url.host() {
            None => Err(TargetError::Url),
            Some(url::Host::Ipv4(ip)) if !self.permits(IpAddr::V4(ip)) => Err(TargetError::Blocked),
            Some(url::Host::Ipv6(ip)) if !self.permits(IpAddr::V6(ip)) => Err(TargetError::Blocked),
            Some(_) => Ok(url),
        }
    }
}

/// The resolver the delivery client uses: system DNS, then the address policy.
pub struct CheckedResolver {
    pub policy: Arc<AddressPolicy>,
}

/// Marks a delivery refused by the address policy (not retried).
#[derive(Debug, thiserror::Error)]
#[error("every address of the webhook host is refused by the address policy")]
pub struct BlockedAddress;

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // port 0: only the addresses matter; the client sets the port
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let ok: Vec<SocketAddr> = addrs.into_iter().filter(|a| policy.permits(a.ip())).collect();
            if ok.is_empty() {
                return Err(Box::new(BlockedAddress) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(ok.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_public_addresses_are_refused_unless_allowed() {
        let p = AddressPolicy::default();
        for bad in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(!p.permits(bad.parse().unwrap()), "{bad}");
        }
        for good in ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"] {
            assert!(p.permits(good.parse().unwrap()), "{good}");
        }
        let allow = AddressPolicy { allow: vec!["127.0.0.1/32".parse().unwrap()] };
        assert!(allow.permits("127.0.0.1".parse().unwrap()));
        assert!(!allow.permits("127.0.0.2".parse().unwrap()));
    }

    #[test]
    fn urls_are_checked_before_dns() {
        let p = AddressPolicy::default();
        assert!(p.validate_url("https://hooks.example.com/x").is_ok());
        assert_eq!(p.validate_url("ftp://example.com").unwrap_err(), TargetError::Url);
        assert_eq!(p.validate_url("https://user:pw@example.com").unwrap_err(), TargetError::Url);
        assert_eq!(p.validate_url("http://127.0.0.1:9/").unwrap_err(), TargetError::Blocked);
        assert_eq!(p.validate_url("http://[::1]/").unwrap_err(), TargetError::Blocked);
        assert_eq!(p.validate_url("http://2130706433/").unwrap_err(), TargetError::Blocked, "decimal IPv4");
        assert_eq!(p.validate_url(&format!("https://e.com/{}", "a".repeat(3000))).unwrap_err(), TargetError::Url);
    }
}
