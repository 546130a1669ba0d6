//! Where a webhook may be aimed: an `http` or `https` URL whose host
//! resolves only to public addresses, unless the host is allowed by name
//! (`DEPMAN_WEBHOOK_ALLOWED_HOSTS`). Checked when a webhook is registered
//! and again at every delivery, by the resolver the delivery connects
//! through: a name that later resolves inside (DNS rebinding) is refused.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    sync::Arc,
};

use reqwest::{
    Url,
    dns::{Addrs, Name, Resolve, Resolving},
};

/// The longest URL a webhook may have.
pub const MAX_URL_LEN: usize = 2048;
/// A name that does not resolve by then does not resolve.
const LOOKUP_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("must be an absolute http or https URL")]
    NotHttp,
    #[error("must not carry credentials: the signature authenticates depman")]
    Credentials,
    #[error("must be at most {MAX_URL_LEN} characters")]
    TooLong,
    #[error("`{0}` cannot be resolved")]
    Unresolvable(String),
    #[error(
        "`{host}` resolves to {address}, a loopback, private, link-local, multicast or metadata address"
    )]
    Inside { host: String, address: IpAddr },
}

/// The hosts a webhook may reach although they resolve inside.
#[derive(Debug, Clone, Default)]
pub struct Allowed(Arc<Vec<String>>);

impl Allowed {
    pub fn new(hosts: &[String]) -> Self {
        let hosts = hosts
            .iter()
            .map(|host| host.trim().to_ascii_lowercase())
            .filter(|host| !host.is_empty())
            .collect();
        Self(Arc::new(hosts))
    }

    fn allows(&self, host: &str) -> bool {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        self.0
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(host))
    }

    /// Parses `text` as a webhook URL and checks where it leads now.
    pub async fn check(&self, text: &str) -> Result<Url, Refused> {
        if text.len() > MAX_URL_LEN {
            return Err(Refused::TooLong);
        }
        let url = Url::parse(text).map_err(|_| Refused::NotHttp)?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Refused::NotHttp);
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Refused::Credentials);
        }
        let host = url.host_str().ok_or(Refused::NotHttp)?.to_owned();
        let port = url.port_or_known_default().unwrap_or(80);
        self.resolve(&host, port).await?;
        Ok(url)
    }

    /// The addresses `host` may be reached at: all of them if it is
    /// allowed, else only if every one is public.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Refused> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addresses: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::time::timeout(LOOKUP_TIMEOUT, tokio::net::lookup_host((bare, port)))
                .await
                .ok()
                .and_then(Result::ok)
                .ok_or_else(|| Refused::Unresolvable(host.to_owned()))?
                .collect(),
        };
        if addresses.is_empty() {
            return Err(Refused::Unresolvable(host.to_owned()));
        }
        self.refuse_inside(host, addresses.iter().map(SocketAddr::ip))?;
        Ok(addresses)
    }

    /// The check of an address written in the URL itself, which a
    /// delivery's resolver never sees (it resolves names only).
    pub fn check_address(&self, url: &Url) -> Result<(), Refused> {
        let host = url.host_str().unwrap_or_default();
        match host.trim_start_matches('[').trim_end_matches(']').parse() {
            Ok(address) => self.refuse_inside(host, [address].into_iter()),
            Err(_) => Ok(()),
        }
    }

    /// Refused if any of `addresses` is inside and `host` is not allowed.
    fn refuse_inside(
        &self,
        host: &str,
        mut addresses: impl Iterator<Item = IpAddr>,
    ) -> Result<(), Refused> {
        if self.allows(host) {
            return Ok(());
        }
        match addresses.find(|address| is_inside(*address)) {
            Some(address) => Err(Refused::Inside {
                host: host.to_owned(),
                address,
            }),
            None => Ok(()),
        }
    }
}

/// The resolver deliveries connect through: a host that resolves inside is
/// refused at connection time.
impl Resolve for Allowed {
    fn resolve(&self, name: Name) -> Resolving {
        let allowed = self.clone();
        Box::pin(async move {
            let addresses = Allowed::resolve(&allowed, name.as_str(), 0).await?;
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

/// Addresses a webhook must not reach: anything but the public internet.
pub fn is_inside(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_inside_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_inside_v4(v4);
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local, cloud metadata (fd00:ec2::254)
                || (first & 0xffc0) == 0xfe80 // link-local
                || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
                || is_nat64_inside(v6)
        }
    }
}

fn is_inside_v4(v4: Ipv4Addr) -> bool {
    let [a, b, ..] = v4.octets();
    v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local() // 169.254/16, cloud metadata
        || v4.is_multicast()
        || v4.is_broadcast()
        || v4.is_unspecified()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && v4.octets()[2] == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240 // reserved
}

/// 64:ff9b::/96 carries an IPv4 address a NAT64 gateway reaches.
fn is_nat64_inside(v6: Ipv6Addr) -> bool {
    let s = v6.segments();
    if s[..6] != [0x64, 0xff9b, 0, 0, 0, 0] {
        return false;
    }
    let embedded = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    is_inside_v4(embedded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_are_outside() {
        for inside in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00:ec2::254",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(is_inside(inside.parse().expect("an address")), "{inside}");
        }
        for outside in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700:4700::1111",
            "64:ff9b::808:808",
        ] {
            assert!(
                !is_inside(outside.parse().expect("an address")),
                "{outside}"
            );
        }
    }

    #[tokio::test]
    async fn urls_must_be_http_without_credentials_and_lead_outside() {
        let none = Allowed::default();
        assert_eq!(
            none.check("ftp://example.com/").await,
            Err(Refused::NotHttp)
        );
        assert_eq!(none.check("/relative").await, Err(Refused::NotHttp));
        assert_eq!(
            none.check("http://user:pw@203.0.113.9/").await,
            Err(Refused::Credentials)
        );
        assert!(matches!(
            none.check("http://127.0.0.1:9000/hook").await,
            Err(Refused::Inside { .. })
        ));
        assert!(matches!(
            none.check("http://[::1]/hook").await,
            Err(Refused::Inside { .. })
        ));
        assert!(matches!(
            none.check("http://localhost/hook").await,
            Err(Refused::Inside { .. })
        ));
        assert!(none.check("https://203.0.113.9/hook").await.is_ok());
        let loopback = Allowed::new(&["127.0.0.1".into()]);
        assert!(loopback.check("http://127.0.0.1:9000/hook").await.is_ok());
        assert!(loopback.check("http://10.0.0.1/").await.is_err());
    }
}
