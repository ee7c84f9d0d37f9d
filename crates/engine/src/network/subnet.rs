//! IPv4 prefixes: parsing, overlap, and choosing a free one for a network
//! that names none (as docker picks from its address pools, skipping those
//! the host already routes).

use std::net::Ipv4Addr;

use crate::error::{Error, Result};

/// An IPv4 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Prefix {
    pub fn parse(s: &str) -> Result<Prefix> {
        let bad = |why: &str| Error::Invalid(format!("invalid subnet {s:?}: {why}"));
        let (a, l) = s
            .split_once('/')
            .ok_or_else(|| bad("expected ADDRESS/LENGTH"))?;
        let addr: Ipv4Addr = a.parse().map_err(|_| bad("not an IPv4 address"))?;
        let len: u8 = l.parse().map_err(|_| bad("bad prefix length"))?;
        if !(8..=30).contains(&len) {
            return Err(bad("prefix length must be 8 to 30"));
        }
        let p = Prefix { addr, len };
        if p.network() != addr {
            return Err(bad(&format!(
                "host bits are set (did you mean {}/{len}?)",
                p.network()
            )));
        }
        Ok(p)
    }

    fn mask(&self) -> u32 {
        if self.len == 0 {
            0
        } else {
            u32::MAX << (32 - self.len)
        }
    }

    pub fn network(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.addr) & self.mask())
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & self.mask() == u32::from(self.network())
    }

    pub fn overlaps(&self, other: &Prefix) -> bool {
        let m = self.mask() & other.mask();
        u32::from(self.addr) & m == u32::from(other.addr) & m
    }

    /// The first host address, docker's default gateway.
    pub fn first_host(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network()) + 1)
    }
}

/// `--ip-range`: a prefix (any length up to /32) inside `subnet`.
pub fn parse_range(subnet: &Prefix, s: &str) -> Result<Prefix> {
    let bad = |why: &str| Error::Invalid(format!("invalid ip range {s:?}: {why}"));
    let (a, l) = s
        .split_once('/')
        .ok_or_else(|| bad("expected ADDRESS/LENGTH"))?;
    let addr: Ipv4Addr = a.parse().map_err(|_| bad("not an IPv4 address"))?;
    let len: u8 = l.parse().map_err(|_| bad("bad prefix length"))?;
    if !(subnet.len..=32).contains(&len) {
        return Err(bad(&format!("not inside subnet {subnet}")));
    }
    let p = Prefix { addr, len };
    if p.network() != addr {
        return Err(bad(&format!(
            "host bits are set (did you mean {}/{len}?)",
            p.network()
        )));
    }
    if !subnet.contains(addr) {
        return Err(bad(&format!("not inside subnet {subnet}")));
    }
    Ok(p)
}

/// The first and last address host-local may give in `range` of `subnet`
/// (the subnet's network and broadcast addresses left out); None without
/// a range.
pub fn range_bounds(subnet: &str, range: &str) -> Option<(Ipv4Addr, Ipv4Addr)> {
    let subnet = Prefix::parse(subnet).ok()?;
    let range = parse_range(&subnet, range).ok()?;
    let first = u32::from(range.network()).max(u32::from(subnet.network()) + 1);
    let last = (u32::from(range.network()) | !range.mask())
        .min(u32::from(subnet.network()) | (!subnet.mask() - 1));
    Some((Ipv4Addr::from(first), Ipv4Addr::from(last)))
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// Destinations the host routes now (/proc/net/route), default route excluded.
pub fn host_routes() -> Vec<Prefix> {
    let text = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let dst = u32::from_str_radix(f.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(f.get(7)?, 16).ok()?;
            // The kernel prints the address's bytes, in network order, as a
            // native (little-endian) integer.
            let dst = Ipv4Addr::from(dst.to_le_bytes());
            let len = u32::from(Ipv4Addr::from(mask.to_le_bytes())).leading_ones() as u8;
            (len > 0).then_some(Prefix { addr: dst, len })
        })
        .collect()
}

/// A /24 in 10.128.0.0/9 that overlaps none of `taken`, starting from a
/// slot given by `seed` so that separate roots (parallel tests) rarely try
/// the same one.
pub fn choose(seed: u64, taken: &[Prefix]) -> Result<Prefix> {
    const SLOTS: u64 = 1 << 15;
    for i in 0..SLOTS {
        let slot = (seed.wrapping_add(i)) % SLOTS;
        let base = u32::from(Ipv4Addr::new(10, 128, 0, 0)) + ((slot as u32) << 8);
        let p = Prefix {
            addr: Ipv4Addr::from(base),
            len: 24,
        };
        if !taken.iter().any(|t| t.overlaps(&p)) {
            return Ok(p);
        }
    }
    Err(Error::Conflict(
        "no free subnet left in 10.128.0.0/9: give one with --subnet".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_overlap_choose() {
        let a = Prefix::parse("10.88.0.0/16").unwrap();
        assert_eq!(a.first_host(), Ipv4Addr::new(10, 88, 0, 1));
        assert!(a.contains(Ipv4Addr::new(10, 88, 3, 4)));
        assert!(a.overlaps(&Prefix::parse("10.88.7.0/24").unwrap()));
        assert!(!a.overlaps(&Prefix::parse("10.89.0.0/24").unwrap()));
        for bad in [
            "10.0.0.1/24",
            "10.0.0.0",
            "x/24",
            "10.0.0.0/4",
            "10.0.0.0/33",
        ] {
            assert!(Prefix::parse(bad).is_err(), "{bad}");
        }
        let first = choose(0, &[]).unwrap();
        assert_eq!(first.to_string(), "10.128.0.0/24");
        let next = choose(0, &[first]).unwrap();
        assert_eq!(next.to_string(), "10.128.1.0/24");
        assert!(choose(5, &[Prefix::parse("10.0.0.0/8").unwrap()]).is_err());
    }

    #[test]
    fn reads_the_route_table() {
        // Whatever the host has, the parse yields sane prefixes.
        for r in host_routes() {
            assert!(r.len <= 32);
        }
    }
}
