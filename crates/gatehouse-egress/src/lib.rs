//! Where the gateway may connect on a tenant's behalf (SSRF defence), one guard for every
//! outbound URL a tenant can set (webhooks today; provider base URLs and MCP servers when
//! tenants can set them).
//!
//! - [`special_purpose`] classifies an address against every block of the IANA IPv4 and IPv6
//!   special-purpose registries, multicast and the reserved space, including the IPv6 forms
//!   that embed or translate an IPv4 address (mapped, compatible, SIIT-translated, NAT64,
//!   6to4, Teredo).
//! - [`AddressPolicy::validate_url`] is the check that needs no DNS (at save, and again before
//!   each delivery); [`AddressPolicy::resolve`] the one after DNS.
//! - [`client`] builds the HTTP client that connects only to addresses that passed: its DNS
//!   resolver is the policy, so there is no second lookup between the check and the connection
//!   (no rebinding window), and it follows no redirects and uses no proxy (a proxy would resolve
//!   the name itself, after our check).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Longest outbound URL accepted.
pub const MAX_URL: usize = 2048;

const fn v4(a: u8, b: u8, c: u8, d: u8, len: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), len)
}

#[expect(clippy::too_many_arguments, reason = "the eight segments of an address, as written")]
const fn v6(a: u16, b: u16, c: u16, d: u16, e: u16, f: u16, g: u16, h: u16, len: u8) -> Ipv6Net {
    Ipv6Net::new_assert(Ipv6Addr::new(a, b, c, d, e, f, g, h), len)
}

/// IANA IPv4 Special-Purpose Address Registry (RFC 6890 and updates), plus multicast and the
/// limited broadcast address. Every entry is refused, including the few the registry marks
/// globally reachable (anycast service addresses no webhook has a reason to use).
const V4: &[(Ipv4Net, &str)] = &[
    (v4(0, 0, 0, 0, 8), "this network"),
    (v4(10, 0, 0, 0, 8), "private-use"),
    (v4(100, 64, 0, 0, 10), "shared address space (carrier-grade NAT)"),
    (v4(127, 0, 0, 0, 8), "loopback"),
    (v4(169, 254, 0, 0, 16), "link-local"),
    (v4(172, 16, 0, 0, 12), "private-use"),
    (v4(192, 0, 0, 0, 24), "IETF protocol assignments"),
    (v4(192, 0, 2, 0, 24), "documentation (TEST-NET-1)"),
    (v4(192, 31, 196, 0, 24), "AS112-v4"),
    (v4(192, 52, 193, 0, 24), "AMT"),
    (v4(192, 88, 99, 0, 24), "6to4 relay anycast (deprecated)"),
    (v4(192, 168, 0, 0, 16), "private-use"),
    (v4(192, 175, 48, 0, 24), "AS112 direct delegation"),
    (v4(198, 18, 0, 0, 15), "benchmarking"),
    (v4(198, 51, 100, 0, 24), "documentation (TEST-NET-2)"),
    (v4(203, 0, 113, 0, 24), "documentation (TEST-NET-3)"),
    (v4(224, 0, 0, 0, 4), "multicast"),
    (v4(255, 255, 255, 255, 32), "limited broadcast"),
    (v4(240, 0, 0, 0, 4), "reserved"),
];

/// IANA IPv6 Special-Purpose Address Registry, multicast and deprecated ranges. Order
/// matters: the first match names the block. Anything outside global unicast (2000::/3) that
/// no entry names is refused as reserved.
const V6: &[(Ipv6Net, &str)] = &[
    (v6(0, 0, 0, 0, 0, 0, 0, 0, 128), "unspecified"),
    (v6(0, 0, 0, 0, 0, 0, 0, 1, 128), "loopback"),
    (v6(0, 0, 0, 0, 0, 0xffff, 0, 0, 96), "IPv4-mapped"),
    (v6(0, 0, 0, 0, 0, 0, 0, 0, 96), "IPv4-compatible (deprecated)"),
    (v6(0, 0, 0, 0, 0xffff, 0, 0, 0, 96), "IPv4-translated (SIIT)"),
    (v6(0x64, 0xff9b, 1, 0, 0, 0, 0, 0, 48), "IPv4/IPv6 translation (local use)"),
    (v6(0x100, 0, 0, 0, 0, 0, 0, 0, 64), "discard-only"),
    (v6(0x100, 0, 0, 1, 0, 0, 0, 0, 64), "dummy prefix"),
    (v6(0x2001, 0, 0, 0, 0, 0, 0, 0, 32), "Teredo"),
    (v6(0x2001, 0x2, 0, 0, 0, 0, 0, 0, 48), "benchmarking"),
    (v6(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0, 32), "documentation"),
    (v6(0x2001, 0, 0, 0, 0, 0, 0, 0, 23), "IETF protocol assignments"),
    (v6(0x2002, 0, 0, 0, 0, 0, 0, 0, 16), "6to4"),
    (v6(0x2620, 0x4f, 0x8000, 0, 0, 0, 0, 0, 48), "AS112 direct delegation"),
    (v6(0x3fff, 0, 0, 0, 0, 0, 0, 0, 20), "documentation"),
    (v6(0x5f00, 0, 0, 0, 0, 0, 0, 0, 16), "segment routing (SRv6) SIDs"),
    (v6(0xfc00, 0, 0, 0, 0, 0, 0, 0, 7), "unique local"),
    (v6(0xfe80, 0, 0, 0, 0, 0, 0, 0, 10), "link-local"),
    (v6(0xfec0, 0, 0, 0, 0, 0, 0, 0, 10), "site-local (deprecated)"),
    (v6(0xff00, 0, 0, 0, 0, 0, 0, 0, 8), "multicast"),
];

const GLOBAL_UNICAST: Ipv6Net = v6(0x2000, 0, 0, 0, 0, 0, 0, 0, 3);
/// RFC 6052's well-known NAT64 prefix: DNS64 in an IPv6-only cluster hands out public IPv4
/// hosts in it, so it is judged by the IPv4 address it embeds (RFC 6052 forbids embedding
/// non-global IPv4 addresses in it; an address that does is exactly the attack).
const NAT64: Ipv6Net = v6(0x64, 0xff9b, 0, 0, 0, 0, 0, 0, 96);

/// The special-purpose block `ip` falls in, by name, or `None` for an ordinary public
/// address. An IPv4-mapped IPv6 address is the IPv4 address it maps (the socket connects to
/// that), and a NAT64 address is judged by the IPv4 address it embeds.
pub fn special_purpose(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(a) => V4.iter().find(|(net, _)| net.contains(&a)).map(|(_, name)| *name),
        IpAddr::V6(a) => {
            if let Some(mapped) = a.to_ipv4_mapped() {
                return special_purpose(IpAddr::V4(mapped));
            }
            if NAT64.contains(&a) {
                let [.., g, h] = a.segments();
                let embedded = Ipv4Addr::from((u32::from(g) << 16) | u32::from(h));
                return special_purpose(IpAddr::V4(embedded)).map(|_| "NAT64 embedding a non-public IPv4 address");
            }
            V6.iter()
                .find(|(net, _)| net.contains(&a))
                .map(|(_, name)| *name)
                .or_else(|| (!GLOBAL_UNICAST.contains(&a)).then_some("reserved (outside global unicast)"))
        }
    }
}

/// What the platform admin allows beyond public addresses (`allow_private_targets`), e.g. an
/// internal collector's range.
#[derive(Clone, Debug, Default)]
pub struct AddressPolicy {
    pub allow: Vec<IpNet>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error("url must be an http(s) URL without credentials, at most 2048 bytes")]
    Url,
    #[error("url points at a private, loopback, link-local or other special-purpose address")]
    Blocked,
}

/// Every address a name resolved to is refused by the policy (not worth retrying).
#[derive(Debug, thiserror::Error)]
#[error("every address of the host is refused by the outbound address policy")]
pub struct BlockedAddress;

impl AddressPolicy {
    pub fn permits(&self, ip: IpAddr) -> bool {
        let canonical = match ip {
            IpAddr::V6(a) => a.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        special_purpose(canonical).is_none() || self.allow.iter().any(|n| n.contains(&canonical) || n.contains(&ip))
    }

    /// The checks that need no DNS: scheme, no credentials, bounded length, and an IP literal
    /// (in any of the forms a URL parser accepts: decimal, octal, hex, IPv6) against the policy.
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

    /// The addresses of `host` that the policy permits; an error when none is.
    pub async fn resolve(&self, host: &str) -> Result<Vec<SocketAddr>, ResolveError> {
        // port 0: only the addresses matter; the client sets the port
        let addrs = tokio::net::lookup_host((host, 0)).await.map_err(ResolveError::Lookup)?;
        let ok: Vec<SocketAddr> = addrs.filter(|a| self.permits(a.ip())).collect();
        if ok.is_empty() { Err(ResolveError::Blocked(BlockedAddress)) } else { Ok(ok) }
    }

    /// The save-time check: [`Self::validate_url`], and a name that resolves now must resolve
    /// to at least one permitted address (a name that does not resolve yet is checked again
    /// at every connection).
    pub async fn check_at_save(&self, raw: &str) -> Result<Url, TargetError> {
        let url = self.validate_url(raw)?;
        if let Some(url::Host::Domain(name)) = url.host() {
            match tokio::time::timeout(Duration::from_secs(2), self.resolve(name)).await {
                Ok(Err(ResolveError::Blocked(_))) => return Err(TargetError::Blocked),
                Ok(Ok(_) | Err(ResolveError::Lookup(_))) | Err(_) => {}
            }
        }
        Ok(url)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("name lookup failed: {0}")]
    Lookup(std::io::Error),
    #[error(transparent)]
    Blocked(BlockedAddress),
}

/// The resolver of [`client`]: system DNS, then the policy; the client connects only to the
/// addresses returned here.
struct CheckedResolver {
    policy: Arc<AddressPolicy>,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            match policy.resolve(&host).await {
                Ok(addrs) => Ok(Box::new(addrs.into_iter()) as Addrs),
                Err(ResolveError::Lookup(e)) => Err(Box::new(e) as Box<dyn std::error::Error + Send + Sync>),
                Err(ResolveError::Blocked(b)) => Err(Box::new(b) as Box<dyn std::error::Error + Send + Sync>),
            }
        })
    }
}

/// The client builder for every connection to a tenant-set URL: names resolved through the
/// policy, no redirects (a redirect could point anywhere), no proxy from the environment.
/// Callers add timeouts and a user agent. IP-literal URLs bypass the resolver, so callers
/// run [`AddressPolicy::validate_url`] before each request too.
pub fn client(policy: Arc<AddressPolicy>) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(CheckedResolver { policy }))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
}

#[cfg(test)]
mod tests;
