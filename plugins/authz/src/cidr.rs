//! Address blocks for `source_ips`: `10.0.0.0/8`, `2001:db8::/32`, or a
//! bare address (`/32` or `/128`). Parsed with `std::net`; host bits must be
//! zero. IPv4-mapped IPv6 blocks (`::ffff:10.0.0.0/104`) become IPv4 blocks,
//! because client addresses are compared in canonical form.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A network: its address (host bits zero) and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cidr {
    V4(u32, u8),
    V6(u128, u8),
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

impl Cidr {
    /// Parse `addr/prefix` or a bare address. Errors read
    /// `invalid CIDR "10.0.0/8"` plus, where it helps, why.
    pub(crate) fn parse(text: &str) -> Result<Cidr, String> {
        let invalid = |why: &str| format!("invalid CIDR {text:?}{why}");
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => (addr, Some(prefix)),
            None => (text, None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| invalid(""))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()) => p
                .parse::<u8>()
                .ok()
                .filter(|&n| n <= max)
                .ok_or_else(|| invalid(&format!(": prefix length must be 0 to {max}")))?,
            Some(_) => return Err(invalid("")),
        };
        let cidr = match addr {
            IpAddr::V4(v4) => Cidr::V4(u32::from(v4), prefix),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) if prefix >= 96 => Cidr::V4(u32::from(v4), prefix - 96),
                _ => Cidr::V6(u128::from(v6), prefix),
            },
        };
        let network = cidr.network();
        if network != cidr {
            return Err(invalid(&format!(": host bits are set (the network is {network})")));
        }
        Ok(cidr)
    }

    /// The same block with its host bits cleared.
    fn network(self) -> Cidr {
        match self {
            Cidr::V4(a, p) => Cidr::V4(a & mask32(p), p),
            Cidr::V6(a, p) => Cidr::V6(a & mask128(p), p),
        }
    }

    /// Whether `ip` (in canonical form: IPv4-mapped addresses as IPv4) is in
    /// the block. IPv4 blocks never contain IPv6 addresses and the other
    /// way round, `/0` included.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        match (*self, ip) {
            (Cidr::V4(net, p), IpAddr::V4(ip)) => u32::from(ip) & mask32(p) == net,
            (Cidr::V6(net, p), IpAddr::V6(ip)) => u128::from(ip) & mask128(p) == net,
            _ => false,
        }
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Cidr::V4(a, p) => write!(f, "{}/{p}", Ipv4Addr::from(a)),
            Cidr::V6(a, p) => write!(f, "{}/{p}", Ipv6Addr::from(a)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cidr;
    use std::net::IpAddr;

    fn cidr(text: &str) -> Cidr {
        match Cidr::parse(text) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    fn ip(text: &str) -> IpAddr {
        match text.parse::<IpAddr>() {
            Ok(ip) => ip.to_canonical(),
            Err(e) => panic!("{text}: {e}"),
        }
    }

    #[test]
    fn parses_blocks_and_bare_addresses() {
        assert_eq!(cidr("10.0.0.0/8").to_string(), "10.0.0.0/8");
        assert_eq!(cidr("127.0.0.1").to_string(), "127.0.0.1/32");
        assert_eq!(cidr("2001:db8::/32").to_string(), "2001:db8::/32");
        assert_eq!(cidr("::1").to_string(), "::1/128");
        assert_eq!(cidr("0.0.0.0/0").to_string(), "0.0.0.0/0");
        assert_eq!(cidr("::/0").to_string(), "::/0");
        assert_eq!(cidr("::ffff:10.0.0.0/104").to_string(), "10.0.0.0/8");
    }

    #[test]
    fn rejects_malformed_blocks() {
        assert_eq!(Cidr::parse("10.0.0/8"), Err("invalid CIDR \"10.0.0/8\"".into()));
        for bad in [
            "",
            "10.0.0.0/",
            "10.0.0.0/+8",
            "10.0.0.0/8/8",
            "x/8",
            "[::1]",
            "fe80::1%eth0",
            "10.0.0.0/0008",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            Cidr::parse("10.0.0.0/33"),
            Err("invalid CIDR \"10.0.0.0/33\": prefix length must be 0 to 32".into())
        );
        assert!(Cidr::parse("::/129").is_err());
        assert_eq!(
            Cidr::parse("10.1.2.3/8"),
            Err("invalid CIDR \"10.1.2.3/8\": host bits are set (the network is 10.0.0.0/8)".into())
        );
    }

    #[test]
    fn containment_at_the_edges() {
        assert!(cidr("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!cidr("0.0.0.0/0").contains(ip("2001:db8::1")));
        assert!(cidr("::/0").contains(ip("2001:db8::1")));
        assert!(!cidr("::/0").contains(ip("10.0.0.1")));
        assert!(cidr("10.0.0.1/32").contains(ip("10.0.0.1")));
        assert!(!cidr("10.0.0.1/32").contains(ip("10.0.0.2")));
        assert!(cidr("10.0.0.0/8").contains(ip("10.255.255.255")));
        assert!(!cidr("10.0.0.0/8").contains(ip("11.0.0.0")));
        assert!(cidr("2001:db8::/32").contains(ip("2001:db8:ffff::1")));
        assert!(!cidr("2001:db8::/32").contains(ip("2001:db9::1")));
        assert!(cidr("::1/128").contains(ip("::1")));
        assert!(cidr("10.0.0.0/8").contains(ip("::ffff:10.1.2.3")));
    }
}
