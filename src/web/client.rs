//! Who is asking, and over what: the peer address, or what a trusted proxy says about the
//! original client. Forwarded headers from anyone else are ignored.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue};
use ipnet::IpNet;

/// Marks requests that arrived over TLS on our own listener.
#[derive(Clone, Copy, Debug)]
pub struct ServedOverTls;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientInfo {
    /// the client's address as far as we can trust it ("unknown" without a socket)
    pub address: String,
    /// whether the client's own connection is HTTPS
    pub https: bool,
    /// the host the client asked for
    pub host: Option<String>,
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v: &HeaderValue| v.to_str().ok())
}

pub fn client_info(parts: &Parts, trusted: &[IpNet]) -> ClientInfo {
    let peer: Option<IpAddr> = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let direct_tls = parts.extensions.get::<ServedOverTls>().is_some();
    let host = header(&parts.headers, "host").map(str::to_string);
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));

    match peer {
        Some(peer) if is_trusted(&peer) => {
            // X-Forwarded-For lists every hop; the last one not ours is the client.
            let forwarded_for = header(&parts.headers, "x-forwarded-for")
                .into_iter()
                .flat_map(|v| v.split(','))
                .filter_map(|a| a.trim().parse::<IpAddr>().ok())
                .rev()
                .find(|ip| !is_trusted(ip));
            let proto = header(&parts.headers, "x-forwarded-proto").map(|p| {
                p.split(',')
                    .next()
                    .unwrap_or("")
                    .trim()
                    .eq_ignore_ascii_case("https")
            });
            ClientInfo {
                address: forwarded_for.unwrap_or(peer).to_string(),
                https: proto.unwrap_or(direct_tls),
                host: header(&parts.headers, "x-forwarded-host")
                    .map(|h| h.split(',').next().unwrap_or("").trim().to_string())
                    .or(host),
            }
        }
        Some(peer) => ClientInfo {
            address: peer.to_string(),
            https: direct_tls,
            host,
        },
        None => ClientInfo {
            address: "unknown".into(),
            https: direct_tls,
            host,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Request;

    fn parts(peer: &str, headers: &[(&str, &str)]) -> Parts {
        let mut request = Request::builder().uri("/");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let (mut parts, ()) = request.body(()).expect("request").into_parts();
        let addr: SocketAddr = format!("{peer}:5000").parse().expect("addr");
        parts.extensions.insert(ConnectInfo(addr));
        parts
    }

    #[test]
    fn forwarded_headers_count_only_from_a_trusted_proxy() {
        let trusted: Vec<IpNet> = vec!["127.0.0.1/32".parse().expect("net")];
        let headers = [
            ("host", "127.0.0.1:8080"),
            ("x-forwarded-for", "203.0.113.9, 127.0.0.1"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "lift.example.org"),
        ];
        let via_proxy = client_info(&parts("127.0.0.1", &headers), &trusted);
        assert_eq!(via_proxy.address, "203.0.113.9");
        assert!(via_proxy.https);
        assert_eq!(via_proxy.host.as_deref(), Some("lift.example.org"));

        let forged = client_info(&parts("198.51.100.7", &headers), &trusted);
        assert_eq!(forged.address, "198.51.100.7");
        assert!(!forged.https);
        assert_eq!(forged.host.as_deref(), Some("127.0.0.1:8080"));
    }
}
