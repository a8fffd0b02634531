//! Where a tenant may send a webhook: https to a public address. A URL is checked when a rule is
//! made and its host's addresses again at each delivery (DNS can change in between), and the
//! delivery connects only to an address that passed.

use std::net::{IpAddr, Ipv4Addr};

use crate::validation::Invalid;

/// A webhook URL that passed the checks that need no DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    pub url: String,
    pub host: String,
    pub port: u16,
}

const MAX_URL_CHARS: usize = 2048;

/// Parses a webhook URL: `https://host[:port]/path`, no credentials, no fragment; with
/// `allow_private` (a private network, or tests) plain `http` too. A literal address must be
/// public unless `allow_private`.
pub fn parse_webhook_url(field: &str, text: &str, allow_private: bool) -> Result<WebhookUrl, Invalid> {
    let refuse = |why: &str| Err(Invalid::one(field, why));
    if text.len() > MAX_URL_CHARS || text.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return refuse("a URL of at most 2048 characters without spaces or control characters");
    }
    let (scheme, rest) = match text.split_once("://") {
        Some(("https", rest)) => ("https", rest),
        Some(("http", rest)) if allow_private => ("http", rest),
        Some(("http", _)) => {
            return refuse("must be https (plain http only with CHANGETRAIL_ALLOW_PRIVATE_TARGETS=true)")
        }
        _ => return refuse("must be an https:// URL"),
    };
    if text.contains('#') {
        return refuse("must not have a fragment");
    }
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    if authority.contains('@') {
        return refuse("must not carry credentials (user:password@); sign with the rule's secret instead");
    }
    let (host, port) = match split_host_port(authority) {
        Some(parts) => parts,
        None => return refuse("has no valid host[:port]"),
    };
    let port = port.unwrap_or(if scheme == "https" { 443 } else { 80 });
    if host.is_empty()
        || !host.chars().all(|c| c.is_ascii_alphanumeric() || "-.:".contains(c))
        || host.parse::<IpAddr>().is_err() && (host.starts_with('-') || host.contains(':'))
    {
        return refuse("has no valid host name");
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        if !allow_private && !is_public(ip) {
            return refuse(&forbidden_reason(ip));
        }
    } else if !allow_private && (host == "localhost" || host.ends_with(".localhost") || host.ends_with(".internal")) {
        return refuse("names a local host; webhooks go to public addresses");
    }
    Ok(WebhookUrl { url: text.to_owned(), host: host.to_owned(), port })
}

/// What is shown of a webhook URL: its scheme, host and first path segment, the rest (where
/// services put tokens: `/services/T0/B0/XXXX`, `?key=`) hidden as `…`.
pub fn shown_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return "…".to_owned() };
    let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    let mut shown = format!("{scheme}://{authority}");
    let path = path.split('?').next().unwrap_or("");
    let mut segments = path.split('/').filter(|s| !s.is_empty());
    if let Some(first) = segments.next() {
        shown.push('/');
        shown.push_str(first);
    }
    if segments.next().is_some() || url.contains('?') {
        shown.push_str("/…");
    }
    shown
}

/// A webhook's URL and signing secret, sealed together: what a delivery unseals.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WebhookTarget {
    pub url: String,
    pub secret: String,
}

fn split_host_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        return match after {
            "" => Some((host, None)),
            port => Some((host, Some(port.strip_prefix(':')?.parse().ok()?))),
        };
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host, Some(port.parse().ok()?))),
        None => Some((authority, None)),
    }
}

/// Why an address may not be a webhook's target, in words for the error.
pub fn forbidden_reason(ip: IpAddr) -> String {
    format!("resolves to {ip}, a loopback, private, link-local or otherwise non-public address")
}

/// Whether an address is on the public internet: not loopback, private (RFC 1918, unique local),
/// link-local (where cloud metadata lives: 169.254.169.254, fd00:ec2::254), shared (CGNAT),
/// unspecified, multicast, broadcast, documentation or reserved.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local, fd00:ec2::254 among them
                || (first & 0xffc0) == 0xfe80 // link-local
                || first == 0x2001 && v6.segments()[1] == 0x0db8 // documentation
                || first == 0x0064 && v6.segments()[1] == 0xff9b) // NAT64 to anything, private too
        }
    }
}

fn is_public_v4(v4: Ipv4Addr) -> bool {
    let [a, b, _, _] = v4.octets();
    !(v4.is_loopback()
        || v4.is_private()
        || v4.is_link_local()
        || v4.is_unspecified()
        || v4.is_broadcast()
        || v4.is_multicast()
        || v4.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_loopback_link_local_and_metadata_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "::1",
            "::",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip} must not be public");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(ip.parse().unwrap()), "{ip} is public");
        }
    }

    #[test]
    fn webhook_urls_must_be_https_to_a_public_host() {
        let ok = parse_webhook_url("url", "https://hooks.example.com/changetrail?x=1", false).unwrap();
        assert_eq!((ok.host.as_str(), ok.port), ("hooks.example.com", 443));
        assert_eq!(parse_webhook_url("url", "https://[2606:4700::1]:8443/x", false).unwrap().port, 8443);
        for bad in [
            "http://hooks.example.com/",
            "ftp://hooks.example.com/",
            "hooks.example.com",
            "https://user:pw@hooks.example.com/",
            "https://127.0.0.1/",
            "https://169.254.169.254/latest/meta-data/",
            "https://[::1]/",
            "https://localhost/",
            "https://metadata.google.internal/",
            "https://hooks.example.com:99999/",
            "https:///path",
            "https://exa mple.com/",
        ] {
            assert!(parse_webhook_url("url", bad, false).is_err(), "{bad} must be refused");
        }
        assert!(parse_webhook_url("url", "http://127.0.0.1:9000/hook", true).is_ok());
    }

    #[test]
    fn shown_urls_hide_what_may_be_a_token() {
        assert_eq!(shown_url("https://hooks.slack.com/services/T0/B0/XXXX"), "https://hooks.slack.com/services/…");
        assert_eq!(shown_url("https://example.com/hook?token=abc"), "https://example.com/hook/…");
        assert_eq!(shown_url("https://example.com/hook"), "https://example.com/hook");
        assert_eq!(shown_url("https://example.com"), "https://example.com");
        assert_eq!(shown_url("https://example.com?k=1"), "https://example.com/…");
    }
}
