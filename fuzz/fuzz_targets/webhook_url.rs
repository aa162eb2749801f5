//! Outbound URLs a tenant sets (webhooks): the no-DNS checks must never panic, and a URL they
//! accept never names a special-purpose address literally.
#![no_main]

use gatehouse_egress::AddressPolicy;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else { return };
    if let Ok(url) = AddressPolicy::default().validate_url(s) {
        match url.host() {
            Some(url::Host::Ipv4(ip)) => assert!(gatehouse_egress::special_purpose(ip.into()).is_none(), "{s}"),
            Some(url::Host::Ipv6(ip)) => {
                let ip = ip.to_ipv4_mapped().map_or(std::net::IpAddr::V6(ip), std::net::IpAddr::V4);
                assert!(gatehouse_egress::special_purpose(ip).is_none(), "{s}");
            }
            _ => {}
        }
    }
});
