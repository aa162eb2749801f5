//! The one reading of a host allow-list entry (a DNS name or an IP address), shared by the
//! config check (`gatehouse validate`, reload) and the edge that enforces the list, so what
//! one accepts the other cannot refuse.

use std::net::IpAddr;

/// Longest DNS name.
pub const MAX_HOST: usize = 253;

/// `text` as a host: lower case, IPv6 brackets and a trailing dot removed, an international
/// name in its ASCII (punycode) form, which is how clients send it in `Host`. `None` when it
/// is not a host name or IP address (a scheme, port, path, user or space in it).
pub fn host_name(text: &str) -> Option<String> {
    let h = text.trim().trim_end_matches('.');
    let bare = h.strip_prefix('[').and_then(|b| b.strip_suffix(']')).unwrap_or(h);
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Some(ip.to_string());
    }
    if h.is_empty() || h.len() > MAX_HOST || h.contains(['/', ':', '@', ' ', '[', ']']) {
        return None;
    }
    match url::Host::parse(h) {
        Ok(url::Host::Domain(d)) => Some(d.to_ascii_lowercase()),
        // a dotted form the URL rules read as an address (e.g. `0x7f.1`) is not a name we match
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses_are_read_in_one_canonical_form() {
        for (text, want) in [
            ("Gatehouse-Admin.internal.", "gatehouse-admin.internal"),
            ("localhost", "localhost"),
            ("[::1]", "::1"),
            ("::1", "::1"),
            ("[FD00:0::1]", "fd00::1"),
            ("10.0.0.5", "10.0.0.5"),
            ("bücher.example", "xn--bcher-kva.example"),
        ] {
            assert_eq!(host_name(text).as_deref(), Some(want), "{text}");
        }
    }

    #[test]
    fn anything_else_is_not_a_host() {
        for bad in [
            "http://x.example",
            "x.example:8080",
            "x.example/path",
            "",
            ".",
            "a@b",
            "local host",
            "[::1",
            "0x7f.1",
            "[x]",
        ] {
            assert_eq!(host_name(bad), None, "{bad}");
        }
        assert_eq!(host_name(&"a".repeat(254)), None);
    }
}
