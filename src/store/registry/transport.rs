//! Which hosts may be reached how: TLS verified by default, plain HTTP or unverified TLS only for loopback
//! hosts and `--insecure-registry` ones, and the same rule for every URL a registry names (token realms,
//! upload locations), so that no credential or content crosses the network in clear text.

use std::net::IpAddr;

use reqwest::Url;

use super::RegistryClient;
use crate::store::error::StoreError;

impl RegistryClient {
    /// Whether `host` (`name[:port]`) was given with `--insecure-registry`, with or without its port.
    pub(super) fn is_insecure(&self, host: &str) -> bool {
        let name = host_name(host);
        self.settings
            .insecure_registries
            .iter()
            .any(|allowed| allowed == host || allowed == name)
    }

    pub(super) fn may_use_plain_http(&self, host: &str) -> bool {
        is_loopback(host) || self.is_insecure(host)
    }

    /// The client for a host: the one that does not verify TLS only for `--insecure-registry` hosts.
    pub(super) fn client_for(&self, host: &str) -> &reqwest::Client {
        if self.is_insecure(host) {
            &self.unverified
        } else {
            &self.verified
        }
    }

    /// Refuses a URL a registry named (token realm, upload location) that is plain HTTP to a host that may not
    /// be reached that way: credentials and content would cross the network in clear text.
    pub(super) fn require_secure(
        &self,
        registry: &str,
        what: &'static str,
        url: &Url,
    ) -> Result<(), StoreError> {
        if url.scheme() == "https"
            || (url.scheme() == "http" && self.may_use_plain_http(&authority(url)))
        {
            return Ok(());
        }
        Err(StoreError::PlainHttp {
            registry: registry.to_owned(),
            what,
            url: url.to_string(),
        })
    }
}

/// Whether a failed HTTPS attempt failed on the server's certificate. rustls's error reaches us only as the text
/// of the I/O error that carries it (`io::Error::source` skips the error it wraps), so the chain's text is read.
pub(super) fn is_untrusted_certificate(error: &reqwest::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = cause {
        if current.to_string().contains("certificate") {
            return true;
        }
        cause = current.source();
    }
    false
}

/// `host[:port]` of a URL, as registries are named.
pub(super) fn authority(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// The host name of `host[:port]` or `[v6]:port`.
fn host_name(host: &str) -> &str {
    match host.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host.rsplit_once(':').map_or(host, |(name, _)| name),
    }
}

/// Loopback registries may be plain HTTP, like Docker allows: `localhost`, `127.0.0.0/8`, `::1`.
pub fn is_loopback(host: &str) -> bool {
    let name = host_name(host);
    name.eq_ignore_ascii_case("localhost")
        || name.parse::<IpAddr>().is_ok_and(|address| match address {
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or(v6.is_loopback(), |v4| v4.is_loopback()),
            v4 => v4.is_loopback(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts_are_recognised() {
        for host in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.1.2.3",
            "[::1]:5000",
            "[::1]",
            "[::ffff:127.0.0.1]:5000",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "registry.example.com",
            "10.0.0.1:5000",
            "localhost.example.com",
            "[2001:db8::1]:5000",
            "0.0.0.0:5000",
            "[::ffff:10.0.0.1]",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
