//! Who the client is, for rate limiting: the connection's peer, or, when the peer is a proxy
//! the operator trusts (`--trusted-proxies`), the address that proxy reports in
//! `X-Forwarded-For`.
//!
//! `X-Forwarded-For` is a list each proxy appends to; only the entries added by trusted proxies
//! can be believed, so the client is the rightmost entry that is not itself a trusted proxy. A
//! client cannot pick its own bucket by sending the header: entries it wrote are to the left of
//! the first one a trusted proxy added.

use std::net::IpAddr;

use ipnet::IpNet;

/// Address ranges of trusted reverse proxies.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl std::str::FromStr for TrustedProxies {
    type Err = String;

    /// `ADDR[/PREFIX],...`, or empty for none.
    fn from_str(spec: &str) -> Result<TrustedProxies, String> {
        let mut ranges = Vec::new();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let net = if item.contains('/') {
                item.parse::<IpNet>().map_err(|e| format!("--trusted-proxies {item:?}: {e}"))?
            } else {
                // A single address; an IPv4-mapped IPv6 one stands for the IPv4 address.
                let addr: IpAddr =
                    item.parse().map_err(|e| format!("--trusted-proxies {item:?}: {e}"))?;
                IpNet::from(addr.to_canonical())
            };
            ranges.push(net);
        }
        Ok(TrustedProxies(ranges))
    }
}

impl TrustedProxies {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client behind `peer`, given the request's `X-Forwarded-For` values (in order).
    pub fn client<'a>(&self, peer: IpAddr, forwarded_for: impl Iterator<Item = &'a str>) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        let hops: Vec<&str> = forwarded_for.flat_map(|v| v.split(',')).map(str::trim).collect();
        let mut client = peer;
        for hop in hops.iter().rev() {
            // An entry that does not parse cannot be told apart from a forgery: stop at the
            // last proxy we trust.
            let Ok(ip) = hop.parse::<IpAddr>() else { break };
            client = ip.to_canonical();
            if !self.contains(client) {
                break;
            }
        }
        client
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_parse_and_match() {
        let p: TrustedProxies = "10.0.0.0/8, 127.0.0.1, fd00::/8".parse().unwrap();
        assert!(p.contains(ip("10.1.2.3")));
        assert!(p.contains(ip("127.0.0.1")));
        assert!(p.contains(ip("::ffff:127.0.0.1")), "IPv4-mapped peers count as IPv4");
        assert!(!p.contains(ip("127.0.0.2")));
        assert!(p.contains(ip("fd12::1")));
        assert!(!p.contains(ip("2001:db8::1")));
        assert!("".parse::<TrustedProxies>().unwrap().is_empty());
        assert!("0.0.0.0/0".parse::<TrustedProxies>().unwrap().contains(ip("8.8.8.8")));
        assert!("10.0.0.0/33".parse::<TrustedProxies>().is_err());
        assert!("proxy.example".parse::<TrustedProxies>().is_err());
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop() {
        let p: TrustedProxies = "10.0.0.0/8".parse().unwrap();
        // Not from a trusted proxy: the header is ignored.
        assert_eq!(p.client(ip("203.0.113.9"), ["198.51.100.1"].into_iter()), ip("203.0.113.9"));
        // One proxy: it appended the client.
        assert_eq!(p.client(ip("10.0.0.2"), ["198.51.100.1"].into_iter()), ip("198.51.100.1"));
        // The client sent a forged entry first; the proxy appended the real address.
        assert_eq!(
            p.client(ip("10.0.0.2"), ["1.2.3.4, 198.51.100.1"].into_iter()),
            ip("198.51.100.1")
        );
        // Two trusted proxies in a row, in two header lines.
        assert_eq!(
            p.client(ip("10.0.0.2"), ["198.51.100.1", "10.0.0.7"].into_iter()),
            ip("198.51.100.1")
        );
        // A trusted proxy that sent no header, or garbage: the proxy is the client.
        assert_eq!(p.client(ip("10.0.0.2"), std::iter::empty()), ip("10.0.0.2"));
        assert_eq!(p.client(ip("10.0.0.2"), ["unknown"].into_iter()), ip("10.0.0.2"));
    }
}
