//! Where a webhook may deliver: the URL a user gives (checked when the webhook is created) and
//! the addresses it resolves to (checked at every attempt, after DNS, so that a name that later
//! points at 127.0.0.1 or a metadata service is refused as well).
//!
//! By default only public addresses are allowed: a webhook URL is chosen by an API user and the
//! deliverer runs beside ClickHouse (whose HTTP interface runs SQL), the broker and the cloud's
//! metadata service. `--webhook-allow-private-networks` lifts that for receivers on a private
//! network (and for tests).

use std::net::{IpAddr, SocketAddr};

use url::Url;

/// Longest webhook URL.
pub const MAX_URL_BYTES: usize = 2048;

/// Checks a webhook URL: absolute `http` or `https`, with a host, without user and password
/// (they would be sent on every delivery and shown back by the API). The reason when not.
pub fn check_url(text: &str) -> Result<Url, String> {
    if text.len() > MAX_URL_BYTES {
        return Err(format!("is longer than {MAX_URL_BYTES} bytes"));
    }
    let url = Url::parse(text).map_err(|e| format!("is not a URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("must be an http:// or https:// URL".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("has no host".into());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not hold a user or password: authenticate deliveries with the secret".into());
    }
    if url.fragment().is_some() {
        return Err("must not have a #fragment".into());
    }
    Ok(url)
}

/// Whether deliveries may go to `ip`: a public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_unspecified()
                || v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                // Shared address space (carrier-grade NAT), 100.64.0.0/10.
                || (a == 100 && (64..128).contains(&b))
                // IETF protocol assignments, 192.0.0.0/24, and benchmarking, 198.18.0.0/15.
                || (a == 192 && b == 0 && v4.octets()[2] == 0)
                || (a == 198 && (b == 18 || b == 19))
                // Reserved, 240.0.0.0/4.
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            let embedded =
                |high: u16, low: u16| is_public(IpAddr::V4(((u32::from(high) << 16) | u32::from(low)).into()));
            // NAT64 64:ff9b::/96 and 6to4 2002::/16 reach the IPv4 address they hold: judged by it.
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return embedded(s[6], s[7]);
            }
            if s[0] == 0x2002 {
                return embedded(s[1], s[2]);
            }
            !(v6.is_unspecified()
                || v6.is_loopback()
                || v6.is_multicast()
                // IPv4-compatible ::/96 and IPv4-translated ::ffff:0:0/96 (deprecated, and
                // translated to IPv4 by some hosts).
                || s[..6] == [0; 6]
                || s[..6] == [0, 0, 0, 0, 0xffff, 0]
                // Unique local fc00::/7, link-local fe80::/10, site-local fec0::/10.
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] & 0xffc0) == 0xfec0
                // Teredo 2001::/32, documentation 2001:db8::/32, discard 100::/64.
                || (s[0] == 0x2001 && (s[1] == 0 || s[1] == 0x0db8))
                || s[..4] == [0x100, 0, 0, 0])
        }
    }
}

/// Why the URL's host, when it is an address literal (which DNS never sees), may not be
/// delivered to.
pub fn refused_literal(url: &Url, allow_private: bool) -> Option<String> {
    let ip = match url.host()? {
        url::Host::Ipv4(v4) => IpAddr::V4(v4),
        url::Host::Ipv6(v6) => IpAddr::V6(v6),
        url::Host::Domain(_) => return None,
    };
    (!allow_private && !is_public(ip)).then(|| refusal(ip))
}

fn refusal(ip: IpAddr) -> String {
    format!(
        "{ip} is not a public address; deliveries to private networks need \
         FLEETSTREAM_WEBHOOK_ALLOW_PRIVATE_NETWORKS=true"
    )
}

/// A delivery refused for where it would go: never retried.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// Resolves a name and keeps only the addresses deliveries may go to (all of them when private
/// networks are allowed); none left is a [`Refused`] naming the address.
pub async fn resolve(host: &str, allow_private: bool) -> std::io::Result<Vec<SocketAddr>> {
    let found: Vec<SocketAddr> = tokio::net::lookup_host((host, 0)).await?.collect();
    let allowed: Vec<SocketAddr> = found.iter().copied().filter(|a| allow_private || is_public(a.ip())).collect();
    match (allowed.is_empty(), found.first()) {
        (false, _) => Ok(allowed),
        (true, Some(refused)) => {
            Err(std::io::Error::other(Refused(format!("{host} resolves to {}", refusal(refused.ip())))))
        }
        (true, None) => Err(std::io::Error::other(format!("{host} resolves to no address"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn urls_are_checked() {
        assert!(check_url("https://hooks.example.com/fleet?x=1").is_ok());
        assert!(check_url("http://10.0.0.5:8080/in").is_ok(), "literal addresses are judged at delivery");
        assert!(check_url("ftp://example.com/").unwrap_err().contains("http"));
        assert!(check_url("example.com/hook").unwrap_err().contains("not a URL"));
        assert!(check_url("https://user:pw@example.com/").unwrap_err().contains("password"));
        assert!(check_url("https://example.com/#x").unwrap_err().contains("fragment"));
        assert!(check_url(&format!("https://example.com/{}", "a".repeat(MAX_URL_BYTES))).unwrap_err().contains("2048"));
    }

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
            "240.0.0.1",
            "192.0.0.8",
            "::127.0.0.1",
            "::ffff:0:7f00:1",
            "fec0::1",
            "2001::1",
            "100::1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn literal_hosts_are_refused_unless_allowed() {
        let url = check_url("http://[::1]:8123/?query=DROP").unwrap();
        assert!(refused_literal(&url, false).unwrap().contains("ALLOW_PRIVATE"));
        assert_eq!(refused_literal(&url, true), None);
        assert_eq!(refused_literal(&check_url("http://localhost/").unwrap(), false), None, "names go through DNS");
    }

    proptest! {
        /// Every address in 127/8, 10/8 and 169.254/16 is refused, whatever its other bytes.
        #[test]
        fn whole_private_ranges_are_refused(b in 0u8.., c in 0u8.., d in 0u8..) {
            for a in [127u8, 10] {
                prop_assert!(!is_public(IpAddr::from([a, b, c, d])));
            }
            prop_assert!(!is_public(IpAddr::from([169, 254, c, d])));
        }
    }
}
