use super::*;

/// One address inside every block of the registries (first, inside and last addresses where
/// a boundary is easy to get wrong), with the block's name.
const REFUSED: &[(&str, &str)] = &[
    ("0.0.0.0", "this network"),
    ("0.255.255.255", "this network"),
    ("10.0.0.1", "private-use"),
    ("10.255.255.255", "private-use"),
    ("100.64.0.0", "shared address space (carrier-grade NAT)"),
    ("100.127.255.255", "shared address space (carrier-grade NAT)"),
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("169.254.169.254", "link-local"),
    ("172.16.0.1", "private-use"),
    ("172.31.255.255", "private-use"),
    ("192.0.0.8", "IETF protocol assignments"),
    ("192.0.0.170", "IETF protocol assignments"),
    ("192.0.2.1", "documentation (TEST-NET-1)"),
    ("192.31.196.1", "AS112-v4"),
    ("192.52.193.1", "AMT"),
    ("192.88.99.1", "6to4 relay anycast (deprecated)"),
    ("192.168.1.1", "private-use"),
    ("192.175.48.1", "AS112 direct delegation"),
    ("198.18.0.1", "benchmarking"),
    ("198.19.255.255", "benchmarking"),
    ("198.51.100.7", "documentation (TEST-NET-2)"),
    ("203.0.113.9", "documentation (TEST-NET-3)"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.254", "reserved"),
    ("255.255.255.255", "limited broadcast"),
    ("::", "unspecified"),
    ("::1", "loopback"),
    ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:7f00:1", "loopback"),
    ("::ffff:a9fe:a9fe", "link-local"),
    ("::ffff:10.0.0.1", "private-use"),
    ("::127.0.0.1", "IPv4-compatible (deprecated)"),
    ("::8.8.8.8", "IPv4-compatible (deprecated)"),
    ("::ffff:0:127.0.0.1", "IPv4-translated (SIIT)"),
    ("::ffff:0:808:808", "IPv4-translated (SIIT)"),
    ("64:ff9b::127.0.0.1", "NAT64 embedding a non-public IPv4 address"),
    ("64:ff9b::a9fe:a9fe", "NAT64 embedding a non-public IPv4 address"),
    ("64:ff9b::10.1.2.3", "NAT64 embedding a non-public IPv4 address"),
    ("64:ff9b:1::a00:1", "IPv4/IPv6 translation (local use)"),
    ("100::1", "discard-only"),
    ("100:0:0:1::1", "dummy prefix"),
    ("2001::1", "Teredo"),
    ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"),
    ("2001:2::1", "benchmarking"),
    ("2001:db8::1", "documentation"),
    ("2001:10::1", "IETF protocol assignments"),
    ("2001:1ff:ffff::1", "IETF protocol assignments"),
    ("2002:7f00:1::1", "6to4"),
    ("2002:a9fe:a9fe::", "6to4"),
    ("2002:808:808::1", "6to4"),
    ("2620:4f:8000::1", "AS112 direct delegation"),
    ("3fff::1", "documentation"),
    ("3fff:fff:ffff::1", "documentation"),
    ("5f00::1", "segment routing (SRv6) SIDs"),
    ("fc00::1", "unique local"),
    ("fd12:3456:789a::1", "unique local"),
    ("fe80::1", "link-local"),
    ("febf::1", "link-local"),
    ("fec0::1", "site-local (deprecated)"),
    ("ff02::1", "multicast"),
    ("ff0e::1", "multicast"),
    ("::2", "IPv4-compatible (deprecated)"),
    ("1::1", "reserved (outside global unicast)"),
    ("4000::1", "reserved (outside global unicast)"),
    ("e000::1", "reserved (outside global unicast)"),
];

const PUBLIC: &[&str] = &[
    "1.1.1.1",
    "8.8.8.8",
    "93.184.216.34",
    "100.63.255.255",
    "100.128.0.0",
    "172.15.255.255",
    "172.32.0.0",
    "192.0.1.1",
    "198.17.255.255",
    "198.20.0.0",
    "223.255.255.255",
    "::ffff:8.8.8.8",
    "64:ff9b::8.8.8.8",
    "2606:2800:220:1:248:1893:25c8:1946",
    "2001:200::1",
    "2003::1",
    "2620:4f:8001::1",
    "3fff:1000::1",
];

#[test]
fn every_special_purpose_block_is_classified_by_name() {
    for (addr, block) in REFUSED {
        let ip: IpAddr = addr.parse().unwrap();
        assert_eq!(special_purpose(ip), Some(*block), "{addr}");
        assert!(!AddressPolicy::default().permits(ip), "{addr}");
    }
    for addr in PUBLIC {
        assert_eq!(special_purpose(addr.parse().unwrap()), None, "{addr}");
    }
}

#[test]
fn the_allow_list_opens_a_range_in_either_spelling() {
    let allow = AddressPolicy { allow: vec!["127.0.0.1/32".parse().unwrap(), "fd00::/8".parse().unwrap()] };
    assert!(allow.permits("127.0.0.1".parse().unwrap()));
    assert!(allow.permits("::ffff:127.0.0.1".parse().unwrap()), "the mapped form is the same socket");
    assert!(!allow.permits("127.0.0.2".parse().unwrap()));
    assert!(!allow.permits("::127.0.0.1".parse().unwrap()), "a compatible address is not the IPv4 one");
    assert!(allow.permits("fd00::1".parse().unwrap()));
    assert!(!allow.permits("fe80::1".parse().unwrap()));
}

#[test]
fn urls_are_checked_before_dns_in_every_literal_spelling() {
    let p = AddressPolicy::default();
    assert!(p.validate_url("https://hooks.example.com/x").is_ok());
    assert!(p.validate_url("https://[2606:2800:220:1:248:1893:25c8:1946]/x").is_ok());
    assert_eq!(p.validate_url("ftp://example.com").unwrap_err(), TargetError::Url);
    assert_eq!(p.validate_url("https://user:pw@example.com").unwrap_err(), TargetError::Url);
    assert_eq!(p.validate_url("https://user@example.com").unwrap_err(), TargetError::Url);
    assert_eq!(p.validate_url("file:///etc/passwd").unwrap_err(), TargetError::Url);
    assert_eq!(p.validate_url(&format!("https://e.com/{}", "a".repeat(3000))).unwrap_err(), TargetError::Url);
    for blocked in [
        "http://127.0.0.1:9/",
        "http://127.1/",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://0177.0.0.1/",
        "http://0x7f.0.0.1/",
        "http://0/",
        "http://[::1]/",
        "http://[::]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        "http://[0:0:0:0:0:ffff:169.254.169.254]/",
        "http://[::127.0.0.1]/",
        "http://[::ffff:0:127.0.0.1]/",
        "http://[64:ff9b::7f00:1]/",
        "http://[64:ff9b::169.254.169.254]/",
        "http://[2002:7f00:1::]/",
        "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/",
        "http://[fd00::1]/",
        "http://[fe80::1]/",
        "http://[ff02::1]/",
        "http://169.254.169.254/latest/meta-data/",
    ] {
        assert_eq!(p.validate_url(blocked).unwrap_err(), TargetError::Blocked, "{blocked}");
    }
}

#[tokio::test]
async fn names_are_judged_by_what_they_resolve_to() {
    let p = AddressPolicy::default();
    assert!(matches!(p.resolve("localhost").await, Err(ResolveError::Blocked(_))));
    assert_eq!(p.check_at_save("http://localhost:8080/hook").await.unwrap_err(), TargetError::Blocked);
    // a name that does not resolve now is accepted at save and checked at every connection
    assert!(p.check_at_save("https://hooks.invalid/x").await.is_ok());
    let allow = AddressPolicy { allow: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()] };
    assert!(!allow.resolve("localhost").await.unwrap().is_empty());
}

/// The client connects only to checked addresses: a name that resolves to loopback is
/// refused at connect time even though a server listens there.
#[tokio::test]
async fn the_client_never_connects_to_a_refused_address() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let http = client(Arc::new(AddressPolicy::default())).build().unwrap();
    let err = http.get(format!("http://localhost:{port}/")).send().await.unwrap_err();
    assert!(err.is_connect() || err.is_request(), "{err}");
    let mut source: Option<&dyn std::error::Error> = Some(&err);
    let mut blocked = false;
    while let Some(e) = source {
        blocked |= e.is::<BlockedAddress>();
        source = e.source();
    }
    assert!(blocked, "refused by the policy, not by chance: {err:?}");
    let allowed =
        client(Arc::new(AddressPolicy { allow: vec!["127.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()] }))
            .build()
            .unwrap();
    let accept = tokio::spawn(async move { listener.accept().await.is_ok() });
    let _ = allowed.get(format!("http://localhost:{port}/")).timeout(Duration::from_millis(500)).send().await;
    assert!(accept.await.unwrap(), "with the range allowed, the same name connects");
}
