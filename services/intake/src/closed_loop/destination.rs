//! Where a webhook may point: a public address. A URL whose host is (or resolves to)
//! a loopback, private, link-local, shared (CGNAT), unique-local, multicast or
//! unspecified address is refused, unless an administrator allow-listed that host
//! (`CARELOOP_WEBHOOK_ALLOWED_HOSTS`): otherwise a hospital token could make careloop
//! probe ports inside its own network. The check runs when the webhook is configured
//! and again before every delivery, which is then sent to the address checked (a DNS
//! answer that changes in between cannot redirect it).

use std::net::{IpAddr, SocketAddr};

/// Whether `ip` is an address on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80)
        }
    }
}

/// The URL's host and port, when it is an http(s) URL.
fn host_port(url: &str) -> Result<(String, u16), String> {
    let parsed = reqwest::Url::parse(url).map_err(|_| "url is not a URL".to_string())?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err("url must be an http(s) URL".into());
    }
    let host = parsed
        .host_str()
        .ok_or_else(|| "url has no host".to_string())?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| "url has no port".to_string())?;
    Ok((host, port))
}

/// The address a delivery to `url` goes to: its host resolved, every address public
/// (or the host allow-listed). The refusal says why without echoing what the host
/// resolved to.
pub async fn resolve(url: &str, allowed: &[String]) -> Result<(String, SocketAddr), String> {
    let (host, port) = host_port(url)?;
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((host.as_str(), port))
            .await
            .map_err(|_| "url's host does not resolve".to_string())?
            .collect(),
    };
    let first = *addrs
        .first()
        .ok_or_else(|| "url's host does not resolve".to_string())?;
    let allow_listed = allowed.iter().any(|a| a.eq_ignore_ascii_case(&host));
    if !allow_listed && addrs.iter().any(|a| !is_public(a.ip())) {
        return Err(
            "url points at a loopback, private or link-local address; webhooks go to public addresses unless an administrator allow-lists the host (CARELOOP_WEBHOOK_ALLOWED_HOSTS)"
                .into(),
        );
    }
    Ok((host, first))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_public_addresses_unless_allow_listed() {
        for url in [
            "http://127.0.0.1:5432/x",
            "http://localhost/x",
            "http://10.1.2.3/",
            "http://192.168.0.1/",
            "http://172.16.0.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://100.64.0.1/",
            "http://0.0.0.0/",
            "http://[::1]/",
            "http://[fe80::1]/",
            "http://[fd00::1]/",
            "http://[::ffff:127.0.0.1]/",
        ] {
            assert!(resolve(url, &[]).await.is_err(), "{url}");
        }
        assert!(resolve("ftp://8.8.8.8/", &[]).await.is_err());
        assert!(resolve("https://8.8.8.8/hook", &[]).await.is_ok());
        let allowed = vec!["127.0.0.1".to_string()];
        let (_, addr) = resolve("http://127.0.0.1:9/hook", &allowed).await.unwrap();
        assert_eq!(addr, "127.0.0.1:9".parse().unwrap());
    }
}
