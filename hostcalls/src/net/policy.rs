//! The egress policy: which destinations a guest may open a connection to.
//!
//! Plain data and a pure [`EgressPolicy::check`], so the whole policy is unit-tested without a
//! socket. The check is made on the address actually dialled (after DNS, for every address
//! tried): the connect code dials exactly the checked IP and never resolves again, so a name
//! whose DNS answer changes between check and connect (rebinding) cannot reach a refused range.
//!
//! Order of the check, first match wins:
//! 1. the server's `deny` list refuses (host pattern on the name asked for, CIDR on the IP);
//! 2. a non-empty per-Function allowlist refuses whatever none of its entries match;
//! 3. an IP in a range refused by default ([`reserved`]: loopback, private, link-local, CGNAT,
//!    unspecified, multicast, broadcast, documentation, cloud metadata, ...) is refused unless
//!    an entry of the server's `allow` list matches (the operator's `--egress-allow`);
//! 4. anything else is allowed.
//!
//! Rule syntax (for all three lists): `HOST[:PORTS]` or `CIDR[:PORTS]`, where HOST is a DNS name
//! (`api.example.com`), `*.example.com` (any name below example.com, not example.com itself) or
//! `*` (any destination); CIDR is `10.0.0.0/8`, `1.2.3.4` (a /32), `::1/128` or `[::1/128]`
//! (brackets are needed before a port: `[fd00::/8]:443`); PORTS is `443`, `8000-8080` or `*`
//! (the default when absent).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use thiserror::Error;

/// Why a rule could not be parsed.
#[derive(Clone, Debug, Error, PartialEq, Eq)]
pub enum PolicyError {
    /// The rule is malformed.
    #[error("invalid egress rule {rule:?} in the {list} list: {reason}")]
    InvalidRule {
        /// Which list it came from (`server allow`, `server deny`, `function allow`).
        list: &'static str,
        /// The rule as given.
        rule: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Why a destination was refused (its `Display` is the reason dmesg shows).
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum Refusal {
    /// A rule of the server's deny list matched.
    #[error("{ip} port {port} is denied by the server's rule {rule}")]
    ServerDeny {
        /// The IP dialled.
        ip: IpAddr,
        /// The port.
        port: u16,
        /// The rule that matched, as written.
        rule: String,
    },
    /// The Function has an allowlist and no entry matched.
    #[error("{host} ({ip}) port {port} is not in the function's egress allowlist")]
    NotAllowed {
        /// The name asked for.
        host: String,
        /// The IP dialled.
        ip: IpAddr,
        /// The port.
        port: u16,
    },
    /// The IP is in a range refused by default.
    #[error("{ip} is {range}, refused by default (the server's egress allow list can open it)")]
    Reserved {
        /// The IP dialled (IPv4-mapped IPv6 addresses shown as IPv4).
        ip: IpAddr,
        /// Which range.
        range: &'static str,
    },
}

/// Ports a rule applies to (inclusive).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Ports {
    lo: u16,
    hi: u16,
}

impl Ports {
    const ANY: Ports = Ports {
        lo: 0,
        hi: u16::MAX,
    };

    fn contains(self, p: u16) -> bool {
        (self.lo..=self.hi).contains(&p)
    }
}

/// What a rule matches.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    /// Every destination (`*`).
    Any,
    /// Exactly this (lowercase) name.
    Name(String),
    /// Names ending with `.suffix` (from `*.suffix`).
    Below(String),
    /// IPs in this network (IPv4 networks as IPv4; IPv4-mapped IPs are compared as IPv4).
    Net(IpAddr, u8),
}

/// One parsed rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    text: String,
    target: Target,
    ports: Ports,
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl Rule {
    /// Parses one rule (see the module docs for the syntax).
    pub fn parse(rule: &str) -> Result<Rule, &'static str> {
        let text = rule.trim();
        if text.is_empty() {
            return Err("empty rule");
        }
        // Split off the port: after a closing bracket, or after the last ':' if the rest has
        // no other ':' (a bare IPv6 CIDR has several and takes no port).
        let (addr, ports) = if let Some(rest) = text.strip_prefix('[') {
            let (inside, after) = rest.split_once(']').ok_or("unclosed '['")?;
            let ports = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or("expected ':' after ']'")?),
            };
            (inside, ports)
        } else if text.matches(':').count() == 1 {
            let (a, p) = text.split_once(':').ok_or("expected ':'")?;
            (a, Some(p))
        } else {
            (text, None)
        };
        let ports = match ports {
            None | Some("*") => Ports::ANY,
            Some(p) => parse_ports(p)?,
        };
        let target = parse_target(addr)?;
        Ok(Rule {
            text: text.to_string(),
            target,
            ports,
        })
    }

    /// Whether the rule matches a connection to `ip` port `port` asked for as `host` (a lowercase
    /// name, or an IP literal; a host pattern never matches a literal).
    fn matches(&self, host: &str, ip: IpAddr, port: u16) -> bool {
        if !self.ports.contains(port) {
            return false;
        }
        match &self.target {
            Target::Any => true,
            Target::Name(n) => host.parse::<IpAddr>().is_err() && host == n,
            Target::Below(s) => {
                host.parse::<IpAddr>().is_err()
                    && host.len() > s.len() + 1
                    && host.ends_with(s.as_str())
                    && host.as_bytes().get(host.len() - s.len() - 1) == Some(&b'.')
            }
            Target::Net(net, bits) => in_net(canonical(ip), *net, *bits),
        }
    }
}

fn parse_ports(p: &str) -> Result<Ports, &'static str> {
    let port = |s: &str| -> Result<u16, &'static str> {
        match s.parse::<u16>() {
            Ok(0) | Err(_) => Err("a port is a number from 1 to 65535, a range or '*'"),
            Ok(n) => Ok(n),
        }
    };
    match p.split_once('-') {
        Some((a, b)) => {
            let (lo, hi) = (port(a)?, port(b)?);
            if lo > hi {
                return Err("port range is reversed");
            }
            Ok(Ports { lo, hi })
        }
        None => {
            let n = port(p)?;
            Ok(Ports { lo: n, hi: n })
        }
    }
}

fn parse_target(a: &str) -> Result<Target, &'static str> {
    if a == "*" {
        return Ok(Target::Any);
    }
    if let Some((ip, bits)) = a.split_once('/') {
        let ip: IpAddr = ip.parse().map_err(|_| "invalid IP address in a CIDR")?;
        let bits: u8 = bits.parse().map_err(|_| "invalid CIDR prefix length")?;
        return net(ip, bits);
    }
    if let Ok(ip) = a.parse::<IpAddr>() {
        let bits = if ip.is_ipv4() { 32 } else { 128 };
        return net(ip, bits);
    }
    let (below, name) = match a.strip_prefix("*.") {
        Some(s) => (true, s),
        None => (false, a),
    };
    let name = normalize_name(name).ok_or("invalid host name or pattern")?;
    Ok(if below {
        Target::Below(name)
    } else {
        Target::Name(name)
    })
}

/// A network, with IPv4-mapped IPv6 networks turned into IPv4 ones.
fn net(ip: IpAddr, bits: u8) -> Result<Target, &'static str> {
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if bits > max {
        return Err("CIDR prefix length too long");
    }
    if let IpAddr::V6(v6) = ip {
        if let (Some(v4), true) = (v6.to_ipv4_mapped(), bits >= 96) {
            return Ok(Target::Net(IpAddr::V4(v4), bits - 96));
        }
    }
    Ok(Target::Net(ip, bits))
}

/// `name` lowercased, without a trailing dot, if it is a valid DNS name (letters, digits, `-`,
/// `_`; labels of 1 to 63 bytes; at most 253 bytes).
pub(crate) fn normalize_name(name: &str) -> Option<String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    ok.then(|| name.to_ascii_lowercase())
}

/// `ip`, with an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) turned into its IPv4: the kernel
/// dials such an address as IPv4, so it is checked as one.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

fn v4_in(ip: Ipv4Addr, net: [u8; 4], bits: u8) -> bool {
    in_net(IpAddr::V4(ip), IpAddr::V4(Ipv4Addr::from(net)), bits)
}

fn v6_in(ip: Ipv6Addr, net: Ipv6Addr, bits: u8) -> bool {
    in_net(IpAddr::V6(ip), IpAddr::V6(net), bits)
}

/// IPv4 ranges refused by default, most specific first (so the name shown is the precise one).
const V4_RESERVED: &[([u8; 4], u8, &str)] = &[
    ([169, 254, 169, 254], 32, "a cloud metadata address"),
    ([255, 255, 255, 255], 32, "the broadcast address"),
    ([0, 0, 0, 0], 8, "unspecified (0.0.0.0/8)"),
    ([10, 0, 0, 0], 8, "private (10.0.0.0/8)"),
    ([100, 64, 0, 0], 10, "shared CGNAT space (100.64.0.0/10)"),
    ([127, 0, 0, 0], 8, "loopback (127.0.0.0/8)"),
    ([169, 254, 0, 0], 16, "link-local (169.254.0.0/16)"),
    ([172, 16, 0, 0], 12, "private (172.16.0.0/12)"),
    (
        [192, 0, 0, 0],
        24,
        "IETF protocol assignments (192.0.0.0/24)",
    ),
    ([192, 0, 2, 0], 24, "documentation (192.0.2.0/24)"),
    ([192, 168, 0, 0], 16, "private (192.168.0.0/16)"),
    ([198, 18, 0, 0], 15, "benchmarking (198.18.0.0/15)"),
    ([198, 51, 100, 0], 24, "documentation (198.51.100.0/24)"),
    ([203, 0, 113, 0], 24, "documentation (203.0.113.0/24)"),
    ([224, 0, 0, 0], 4, "multicast (224.0.0.0/4)"),
    ([240, 0, 0, 0], 4, "reserved (240.0.0.0/4)"),
];

/// Why `ip` is refused by default, or `None` if it is an ordinary public address. IPv6
/// addresses that embed an IPv4 one (IPv4-mapped, IPv4-compatible, NAT64 `64:ff9b::/96`, 6to4
/// `2002::/16`) are refused when the embedded address would be.
pub fn reserved(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => V4_RESERVED
            .iter()
            .find(|(net, bits, _)| v4_in(v4, *net, *bits))
            .map(|(_, _, name)| *name),
        IpAddr::V6(v6) => {
            let seg = v6.segments();
            let embedded = |hi: u16, lo: u16| Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo));
            let ranges: &[(Ipv6Addr, u8, &str)] = &[
                (
                    Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254),
                    128,
                    "a cloud metadata address",
                ),
                (Ipv6Addr::UNSPECIFIED, 128, "unspecified (::)"),
                (Ipv6Addr::LOCALHOST, 128, "loopback (::1)"),
                (
                    Ipv6Addr::new(0xfc00, 0, 0, 0, 0, 0, 0, 0),
                    7,
                    "private (fc00::/7)",
                ),
                (
                    Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 0),
                    10,
                    "link-local (fe80::/10)",
                ),
                (
                    Ipv6Addr::new(0xfec0, 0, 0, 0, 0, 0, 0, 0),
                    10,
                    "site-local (fec0::/10)",
                ),
                (
                    Ipv6Addr::new(0xff00, 0, 0, 0, 0, 0, 0, 0),
                    8,
                    "multicast (ff00::/8)",
                ),
                (
                    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0),
                    32,
                    "documentation (2001:db8::/32)",
                ),
                (
                    Ipv6Addr::new(0x2001, 0, 0, 0, 0, 0, 0, 0),
                    32,
                    "Teredo (2001::/32)",
                ),
                (
                    Ipv6Addr::new(0x100, 0, 0, 0, 0, 0, 0, 0),
                    64,
                    "discard-only (100::/64)",
                ),
            ];
            if let Some((_, _, name)) = ranges.iter().find(|(n, b, _)| v6_in(v6, *n, *b)) {
                return Some(name);
            }
            if v6_in(v6, Ipv6Addr::UNSPECIFIED, 96) {
                return Some("IPv4-compatible (::/96)");
            }
            if v6_in(v6, Ipv6Addr::new(0x64, 0xff9b, 0, 0, 0, 0, 0, 0), 96)
                && reserved(IpAddr::V4(embedded(seg[6], seg[7]))).is_some()
            {
                return Some("NAT64 (64:ff9b::/96) of a reserved IPv4 address");
            }
            if v6_in(v6, Ipv6Addr::new(0x2002, 0, 0, 0, 0, 0, 0, 0), 16)
                && reserved(IpAddr::V4(embedded(seg[1], seg[2]))).is_some()
            {
                return Some("6to4 (2002::/16) of a reserved IPv4 address");
            }
            None
        }
    }
}

/// The server's and a Function's egress rules (see the module docs).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    server_allow: Vec<Rule>,
    server_deny: Vec<Rule>,
    function_allow: Vec<Rule>,
}

impl EgressPolicy {
    /// Parses the three lists; the first malformed rule is the error.
    pub fn new<S: AsRef<str>>(
        server_allow: &[S],
        server_deny: &[S],
        function_allow: &[S],
    ) -> Result<EgressPolicy, PolicyError> {
        fn list<S: AsRef<str>>(name: &'static str, rules: &[S]) -> Result<Vec<Rule>, PolicyError> {
            rules
                .iter()
                .map(|r| {
                    Rule::parse(r.as_ref()).map_err(|reason| PolicyError::InvalidRule {
                        list: name,
                        rule: r.as_ref().to_string(),
                        reason,
                    })
                })
                .collect()
        }
        Ok(EgressPolicy {
            server_allow: list("server allow", server_allow)?,
            server_deny: list("server deny", server_deny)?,
            function_allow: list("function allow", function_allow)?,
        })
    }

    /// The same server lists with another Function allowlist (a server keeps one policy per
    /// Function, sharing its parsed server lists).
    pub fn with_function_allow<S: AsRef<str>>(
        &self,
        function_allow: &[S],
    ) -> Result<EgressPolicy, PolicyError> {
        let f = EgressPolicy::new::<S>(&[], &[], function_allow)?;
        Ok(EgressPolicy {
            function_allow: f.function_allow,
            ..self.clone()
        })
    }

    /// Whether a connection to `ip` port `port`, asked for by the name `host` (or an IP
    /// literal), may be made. `host` is compared case-insensitively, without a trailing dot.
    pub fn check(&self, host: &str, ip: IpAddr, port: u16) -> Result<(), Refusal> {
        let lowered;
        let host = if host.bytes().any(|b| b.is_ascii_uppercase()) || host.ends_with('.') {
            lowered = host.trim_end_matches('.').to_ascii_lowercase();
            lowered.as_str()
        } else {
            host
        };
        let ip = canonical(ip);
        if let Some(r) = self.server_deny.iter().find(|r| r.matches(host, ip, port)) {
            return Err(Refusal::ServerDeny {
                ip,
                port,
                rule: r.text.clone(),
            });
        }
        if !self.function_allow.is_empty()
            && !self
                .function_allow
                .iter()
                .any(|r| r.matches(host, ip, port))
        {
            return Err(Refusal::NotAllowed {
                host: host.to_string(),
                ip,
                port,
            });
        }
        if let Some(range) = reserved(ip) {
            if !self.server_allow.iter().any(|r| r.matches(host, ip, port)) {
                return Err(Refusal::Reserved { ip, range });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
