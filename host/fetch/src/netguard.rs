//! Refuses link-local and cloud metadata addresses, so a model URL cannot read node credentials.
//!
//! The check runs after DNS resolution (a resolver handed to reqwest), on IP literals in the URL
//! and on every redirect target, so neither a DNS name nor a redirect can lead around it.
//! HTTP(S)_PROXY is honoured by reqwest; through a proxy the proxy resolves the name instead.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Marker error carried through reqwest's error chain, found again by `find_forbidden`.
#[derive(Debug, thiserror::Error)]
#[error(
    "refusing to connect to {host} ({addr}): link-local and metadata addresses are not allowed (use --allow-link-local)"
)]
pub struct Forbidden {
    pub host: String,
    pub addr: IpAddr,
}

/// AWS's IPv6 instance metadata endpoint.
const AWS_METADATA_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);

/// Alibaba Cloud's (and others') instance metadata endpoint, outside link-local.
const ALIBABA_METADATA: Ipv4Addr = Ipv4Addr::new(100, 100, 100, 200);

pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => {
            // An IPv4 address inside an IPv6 one reaches that IPv4 host: mapped and compatible
            // (::ffff:a.b.c.d, ::a.b.c.d), NAT64's well-known prefix (64:ff9b::/96, RFC 6052)
            // and 6to4 (2002:AABB:CCDD::/48).
            let s = v6.segments();
            let embedded = if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                Some(Ipv4Addr::new(
                    (s[6] >> 8) as u8,
                    s[6] as u8,
                    (s[7] >> 8) as u8,
                    s[7] as u8,
                ))
            } else if s[0] == 0x2002 {
                Some(Ipv4Addr::new(
                    (s[1] >> 8) as u8,
                    s[1] as u8,
                    (s[2] >> 8) as u8,
                    s[2] as u8,
                ))
            } else {
                v6.to_ipv4()
            };
            if embedded.is_some_and(is_forbidden_v4) {
                return true;
            }
            // fe80::/10 is IPv6 link-local.
            v6 == AWS_METADATA_V6 || (s[0] & 0xffc0) == 0xfe80
        }
    }
}

fn is_forbidden_v4(v4: Ipv4Addr) -> bool {
    v4.is_link_local() || v4 == ALIBABA_METADATA
}

/// Checks an IP literal host in a URL (a resolver never sees those).
pub fn check_url(url: &Url, allow_link_local: bool) -> Result<(), Forbidden> {
    if allow_link_local {
        return Ok(());
    }
    let host = url.host_str().unwrap_or_default();
    let Ok(ip) = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
    else {
        return Ok(());
    };
    if is_forbidden(ip) {
        return Err(Forbidden {
            host: url.host_str().unwrap_or_default().to_string(),
            addr: ip,
        });
    }
    Ok(())
}

/// Finds a `Forbidden` anywhere in an error's source chain.
pub fn find_forbidden<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a Forbidden> {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(f) = err.downcast_ref::<Forbidden>() {
            return Some(f);
        }
        cur = err.source();
    }
    None
}

/// A resolver that drops forbidden addresses and fails when none is left.
#[derive(Debug, Clone)]
pub struct GuardedResolver;

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let lookup = host.clone();
            let addrs: Vec<SocketAddr> =
                tokio::task::spawn_blocking(move || (lookup.as_str(), 0).to_socket_addrs())
                    .await
                    .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)??
                    .collect();
            let allowed = filter_addrs(&host, addrs)?;
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// Keeps the allowed addresses; an answer made only of forbidden ones is an error.
pub fn filter_addrs(host: &str, addrs: Vec<SocketAddr>) -> Result<Vec<SocketAddr>, Forbidden> {
    let first_forbidden = addrs.iter().find(|a| is_forbidden(a.ip())).map(|a| a.ip());
    let allowed: Vec<SocketAddr> = addrs
        .into_iter()
        .filter(|a| !is_forbidden(a.ip()))
        .collect();
    match (allowed.is_empty(), first_forbidden) {
        (true, Some(addr)) => Err(Forbidden {
            host: host.to_string(),
            addr,
        }),
        _ => Ok(allowed),
    }
}

/// Redirect policy: at most 10 hops, never to a forbidden IP literal.
pub fn redirect_policy(allow_link_local: bool) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        if attempt.previous().len() >= 10 {
            return attempt.error("too many redirects (more than 10)");
        }
        match check_url(attempt.url(), allow_link_local) {
            Ok(()) => attempt.follow(),
            Err(f) => attempt.error(f),
        }
    })
}

/// Applies the guard (unless allowed) to a reqwest client builder.
pub fn guard(builder: reqwest::ClientBuilder, allow_link_local: bool) -> reqwest::ClientBuilder {
    let builder = builder.redirect(redirect_policy(allow_link_local));
    if allow_link_local {
        builder
    } else {
        builder.dns_resolver(Arc::new(GuardedResolver))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forbidden_addresses() {
        for a in [
            "169.254.169.254",
            "169.254.0.1",
            "fd00:ec2::254",
            "fe80::1",
            "::ffff:169.254.169.254",
            // Found beyond link-local: Alibaba's metadata, and link-local inside IPv6 through
            // NAT64, 6to4 and the deprecated IPv4-compatible form.
            "100.100.100.200",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
            "::169.254.169.254",
        ] {
            assert!(is_forbidden(ip(a)), "{a} should be refused");
        }
        for a in [
            "127.0.0.1",
            "10.0.0.1",
            "::1",
            "8.8.8.8",
            "fd00:ec2::253",
            "100.100.100.201",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(!is_forbidden(ip(a)), "{a} should be allowed");
        }
    }

    #[test]
    fn resolution_keeps_allowed_and_refuses_only_forbidden() {
        let meta: SocketAddr = "169.254.169.254:0".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert_eq!(filter_addrs("h", vec![meta, local]).unwrap(), vec![local]);
        let err = filter_addrs("metadata.internal", vec![meta]).unwrap_err();
        assert!(err.to_string().contains("metadata.internal"));
    }

    #[test]
    fn url_literals() {
        let u = Url::parse("http://169.254.169.254/latest/meta-data").unwrap();
        assert!(check_url(&u, false).is_err());
        assert!(check_url(&u, true).is_ok());
        let u = Url::parse("http://[fd00:ec2::254]/").unwrap();
        assert!(check_url(&u, false).is_err());
        let u = Url::parse("http://example.com/").unwrap();
        assert!(check_url(&u, false).is_ok());
    }
}
