//! Which peers may name the caller: `X-User-ID` is only believed from the
//! addresses in `DEPMAN_TRUSTED_PROXIES` (the authenticating proxy in front
//! of depman), when that is set.

use std::{net::IpAddr, str::FromStr};

/// `any`, or a comma-separated list of addresses and CIDR blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustedProxies(Option<Vec<Block>>);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Block {
    network: IpAddr,
    prefix: u8,
}

impl TrustedProxies {
    /// Whether `X-User-ID` from `peer` is believed; an unknown peer only
    /// when every peer is.
    pub fn allows(&self, peer: Option<IpAddr>) -> bool {
        match (&self.0, peer) {
            (None, _) => true,
            (Some(blocks), Some(peer)) => {
                let peer = peer.to_canonical();
                blocks.iter().any(|block| block.contains(peer))
            }
            (Some(_), None) => false,
        }
    }
}

impl Block {
    fn contains(self, address: IpAddr) -> bool {
        match (self.network, address) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                prefix_matches(&network.octets(), &address.octets(), self.prefix)
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                prefix_matches(&network.octets(), &address.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

/// The first `prefix` bits of `a` and `b` are the same.
fn prefix_matches(a: &[u8], b: &[u8], prefix: u8) -> bool {
    let (whole, rest) = (usize::from(prefix / 8), prefix % 8);
    if a[..whole] != b[..whole] {
        return false;
    }
    rest == 0 || {
        let mask = 0xffu8 << (8 - rest);
        a[whole] & mask == b[whole] & mask
    }
}

impl FromStr for TrustedProxies {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.is_empty() || text == "any" {
            return Ok(Self(None));
        }
        text.split(',')
            .map(|item| item.trim().parse())
            .collect::<Result<Vec<Block>, String>>()
            .map(|blocks| Self(Some(blocks)))
    }
}

impl FromStr for Block {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("`{text}`: `{address}` is not an IP address"))?;
        let bits = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|&p| p <= bits)
                .ok_or_else(|| format!("`{text}`: the prefix must be 0 to {bits}"))?,
            None => bits,
        };
        // An IPv4-mapped block (`::ffff:10.0.0.0/104`) is the IPv4 block it
        // maps, as a peer's mapped address is matched as IPv4.
        let canonical = network.to_canonical();
        let prefix = match (network, canonical) {
            (IpAddr::V6(_), IpAddr::V4(_)) => prefix.checked_sub(96).ok_or_else(|| {
                format!("`{text}`: an IPv4-mapped block needs a prefix of 96 or more")
            })?,
            _ => prefix,
        };
        Ok(Self {
            network: canonical,
            prefix,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> Option<IpAddr> {
        Some(text.parse().expect("an address"))
    }

    #[test]
    fn any_trusts_everyone() {
        let any: TrustedProxies = "any".parse().expect("a list");
        assert!(any.allows(ip("203.0.113.9")));
        assert!(any.allows(None));
        assert_eq!("".parse::<TrustedProxies>(), Ok(any));
    }

    #[test]
    fn blocks_and_single_addresses_are_matched_by_prefix() {
        let list: TrustedProxies = "10.0.0.0/8, 192.168.1.7, fd00::/8".parse().expect("a list");
        assert!(list.allows(ip("10.200.3.4")));
        assert!(!list.allows(ip("11.0.0.1")));
        assert!(!list.allows(None));
        assert!(list.allows(ip("192.168.1.7")));
        assert!(!list.allows(ip("192.168.1.8")));
        assert!(list.allows(ip("fd12::1")));
        assert!(!list.allows(ip("fe80::1")));
        // An IPv4 peer seen on a dual-stack socket.
        assert!(list.allows(ip("::ffff:10.1.2.3")));
        let odd: TrustedProxies = "172.16.0.0/12".parse().expect("a list");
        assert!(odd.allows(ip("172.31.255.255")));
        assert!(!odd.allows(ip("172.32.0.0")));
    }

    #[test]
    fn ipv4_mapped_entries_are_their_ipv4_blocks() {
        let list: TrustedProxies = "::ffff:10.0.0.0/104, ::ffff:127.0.0.1"
            .parse()
            .expect("a list");
        assert!(list.allows(ip("10.9.8.7")));
        assert!(list.allows(ip("127.0.0.1")));
        assert!(!list.allows(ip("11.0.0.1")));
        assert!("::ffff:0:0/80".parse::<TrustedProxies>().is_err());
    }

    #[test]
    fn nonsense_is_refused() {
        for bad in [
            "10.0.0.0/33",
            "10.0.0/8",
            "proxy.example.com",
            "::1/129",
            "1.2.3.4/x",
        ] {
            assert!(bad.parse::<TrustedProxies>().is_err(), "{bad}");
        }
    }
}
