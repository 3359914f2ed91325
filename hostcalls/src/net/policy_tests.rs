//! Unit tests of the egress policy: parsing, the default-refused ranges, and the order of the
//! three lists.

use super::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn none() -> EgressPolicy {
    EgressPolicy::default()
}

fn policy(allow: &[&str], deny: &[&str], function: &[&str]) -> EgressPolicy {
    EgressPolicy::new(allow, deny, function).unwrap()
}

#[test]
fn reserved_by_default() {
    let p = none();
    for a in [
        "127.0.0.1",
        "127.255.255.254",
        "::1",
        "::ffff:127.0.0.1",
        "::ffff:7f00:1",
        "10.1.2.3",
        "::ffff:10.0.0.1",
        "172.16.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "169.254.169.254",
        "::ffff:169.254.169.254",
        "fd00:ec2::254",
        "169.254.1.1",
        "fe80::1",
        "fc00::1",
        "fd12:3456::1",
        "100.64.0.1",
        "100.127.255.255",
        "0.0.0.0",
        "0.1.2.3",
        "::",
        "224.0.0.1",
        "239.255.255.250",
        "ff02::1",
        "255.255.255.255",
        "240.0.0.1",
        "192.0.2.1",
        "198.51.100.7",
        "203.0.113.9",
        "2001:db8::1",
        "192.0.0.8",
        "198.18.0.1",
        "::127.0.0.1",
        "64:ff9b::7f00:1",
        "64:ff9b::a00:1",
        "2002:7f00:1::1",
        "2001::1",
        "fec0::1",
        "100::1",
    ] {
        let r = p.check("h", ip(a), 80);
        assert!(
            matches!(r, Err(Refusal::Reserved { .. })),
            "{a} must be refused by default: {r:?}"
        );
    }
    for a in [
        "1.1.1.1",
        "8.8.8.8",
        "93.184.216.34",
        "172.32.0.1",
        "172.15.255.255",
        "100.63.255.255",
        "100.128.0.0",
        "169.253.0.1",
        "192.169.0.1",
        "11.0.0.1",
        "2606:4700::1111",
        "::ffff:1.1.1.1",
        "64:ff9b::808:808",
        "2002:808:808::1",
    ] {
        assert_eq!(p.check("h", ip(a), 443), Ok(()), "{a} must be allowed");
    }
}

#[test]
fn refusal_names_the_range() {
    assert_eq!(
        none().check("x", ip("169.254.169.254"), 80),
        Err(Refusal::Reserved {
            ip: ip("169.254.169.254"),
            range: "a cloud metadata address"
        })
    );
    // The mapped form is reported as the IPv4 it is.
    let e = none().check("x", ip("::ffff:127.0.0.1"), 80).unwrap_err();
    assert_eq!(
        e.to_string(),
        "127.0.0.1 is loopback (127.0.0.0/8), refused by default (the server's egress allow list can open it)"
    );
}

#[test]
fn server_allow_opens_ranges() {
    let p = policy(&["127.0.0.0/8", "[::1]:8080"], &[], &[]);
    assert_eq!(p.check("localhost", ip("127.0.0.1"), 1), Ok(()));
    assert_eq!(p.check("x", ip("::ffff:127.0.0.5"), 1), Ok(()));
    assert_eq!(p.check("x", ip("::1"), 8080), Ok(()));
    assert!(p.check("x", ip("::1"), 8081).is_err());
    assert!(p.check("x", ip("10.0.0.1"), 80).is_err());
    // A mapped CIDR opens the IPv4 range.
    let p = policy(&["::ffff:10.0.0.0/104"], &[], &[]);
    assert_eq!(p.check("x", ip("10.9.9.9"), 1), Ok(()));
    assert!(p.check("x", ip("11.0.0.0"), 1).is_ok());
    // A host pattern in the allow list opens what that name resolves to.
    let p = policy(&["db.internal:5432"], &[], &[]);
    assert_eq!(p.check("DB.Internal.", ip("10.1.1.1"), 5432), Ok(()));
    assert!(p.check("db.internal", ip("10.1.1.1"), 5433).is_err());
    assert!(p.check("other.internal", ip("10.1.1.1"), 5432).is_err());
}

#[test]
fn server_deny_always_wins() {
    let p = policy(
        &["*"],
        &["1.2.3.0/24", "*.evil.com", "[2606:4700::/32]:443"],
        &["*"],
    );
    assert!(matches!(
        p.check("x", ip("1.2.3.4"), 80),
        Err(Refusal::ServerDeny { .. })
    ));
    assert!(matches!(
        p.check("x", ip("::ffff:1.2.3.4"), 80),
        Err(Refusal::ServerDeny { .. })
    ));
    assert!(p.check("a.evil.com", ip("8.8.8.8"), 80).is_err());
    assert!(p.check("a.b.EVIL.com", ip("8.8.8.8"), 80).is_err());
    // `*.evil.com` does not cover the apex, nor a name merely ending in the same letters.
    assert!(p.check("evil.com", ip("8.8.8.8"), 80).is_ok());
    assert!(p.check("notevil.com", ip("8.8.8.8"), 80).is_ok());
    assert!(p.check("x", ip("2606:4700::1"), 443).is_err());
    assert!(p.check("x", ip("2606:4700::1"), 80).is_ok());
    // The server's allow `*` opened loopback here.
    assert!(p.check("x", ip("127.0.0.1"), 80).is_ok());
}

#[test]
fn function_allowlist_restricts() {
    let p = policy(
        &[],
        &[],
        &["api.example.com:443", "*.cdn.net:*", "93.184.0.0/16"],
    );
    assert_eq!(p.check("api.example.com", ip("1.1.1.1"), 443), Ok(()));
    assert!(matches!(
        p.check("api.example.com", ip("1.1.1.1"), 80),
        Err(Refusal::NotAllowed { .. })
    ));
    assert!(p.check("www.example.com", ip("1.1.1.1"), 443).is_err());
    assert_eq!(p.check("a.cdn.net", ip("1.1.1.1"), 8080), Ok(()));
    assert_eq!(p.check("anything", ip("93.184.216.34"), 1), Ok(()));
    assert_eq!(p.check("93.184.216.34", ip("93.184.216.34"), 1), Ok(()));
    // A host pattern never matches an IP literal.
    let p = policy(&[], &[], &["1-2-3-4.example:*"]);
    assert!(p.check("1.2.3.4", ip("1.2.3.4"), 1).is_err());
    // The allowlist does not open reserved ranges: only the server can.
    let p = policy(&[], &[], &["localhost:*", "127.0.0.0/8"]);
    assert!(matches!(
        p.check("localhost", ip("127.0.0.1"), 80),
        Err(Refusal::Reserved { .. })
    ));
    let p = policy(&["127.0.0.0/8"], &[], &["localhost:8080"]);
    assert_eq!(p.check("localhost", ip("127.0.0.1"), 8080), Ok(()));
    assert!(matches!(
        p.check("localhost", ip("127.0.0.1"), 8081),
        Err(Refusal::NotAllowed { .. })
    ));
    // with_function_allow keeps the server lists.
    let q = p.with_function_allow(&["*:*"]).unwrap();
    assert_eq!(q.check("x", ip("127.0.0.1"), 9), Ok(()));
    assert!(q.check("x", ip("10.0.0.1"), 9).is_err());
}

#[test]
fn rule_parsing() {
    for ok in [
        "*",
        "*:*",
        "*:443",
        "example.com",
        "example.com:443",
        "Example.COM.:443",
        "*.example.com:*",
        "a_b.example:1-65535",
        "10.0.0.0/8",
        "10.0.0.0/8:443",
        "1.2.3.4",
        "1.2.3.4:80",
        "::1",
        "::1/128",
        "[::1/128]",
        "[::1]:8080",
        "[fd00::/8]:443",
        "0.0.0.0/0",
        "::/0",
        "  spaced.example:80  ",
    ] {
        assert!(Rule::parse(ok).is_ok(), "{ok:?} must parse");
    }
    for bad in [
        "",
        " ",
        "example.com:0",
        "example.com:65536",
        "example.com:http",
        "example.com:80-70",
        "example.com:",
        "exa mple.com",
        "a..b",
        "*.",
        "**.a",
        "a.*.b",
        "10.0.0.0/33",
        "::1/129",
        "10.0.0.0/x",
        "300.0.0.1/8",
        "[::1",
        "[::1]80",
        "[::1]:",
        "x/8",
        &"a".repeat(64),
        &format!("{}.com", ["a"; 127].join(".")),
    ] {
        assert!(Rule::parse(bad).is_err(), "{bad:?} must not parse");
    }
    let e = EgressPolicy::new(&["127.0.0.0/8"], &["ok.com"], &["bad rule"]).unwrap_err();
    assert_eq!(
        e,
        PolicyError::InvalidRule {
            list: "function allow",
            rule: "bad rule".into(),
            reason: "invalid host name or pattern"
        }
    );
    assert!(e.to_string().contains("function allow"));
    assert!(EgressPolicy::new(&["10.0.0.0/99"], &[], &[]).is_err());
    assert!(EgressPolicy::new(&[], &["x:0"], &[]).is_err());
}

#[test]
fn cidr_edges() {
    let p = policy(&["10.0.0.0/31", "[fe80::/16]:22"], &[], &[]);
    assert!(p.check("x", ip("10.0.0.1"), 1).is_ok());
    assert!(p.check("x", ip("10.0.0.2"), 1).is_err());
    assert!(p.check("x", ip("fe80::1"), 22).is_ok());
    assert!(p.check("x", ip("fe80::1"), 23).is_err());
    // /0 matches the whole family, and only it.
    let p = policy(&["0.0.0.0/0"], &[], &[]);
    assert!(p.check("x", ip("127.0.0.1"), 1).is_ok());
    assert!(p.check("x", ip("::ffff:127.0.0.1"), 1).is_ok());
    assert!(p.check("x", ip("::1"), 1).is_err());
    let p = policy(&[], &["::/0"], &[]);
    assert!(p.check("x", ip("2606:4700::1"), 1).is_err());
    assert!(p.check("x", ip("1.1.1.1"), 1).is_ok());
}
