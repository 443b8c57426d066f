//! Who is asking, and over what: the peer address, or what a trusted proxy says about the
//! original client. Forwarded headers from anyone else are ignored.

use std::net::{IpAddr, SocketAddr};

use axum::extract::ConnectInfo;
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Uri};
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
    /// the authority (host, and port when not the scheme's default) the client asked for:
    /// HTTP/2's `:authority` (the request URI's), else HTTP/1.1's `Host`, or a trusted proxy's
    /// `X-Forwarded-Host`
    pub host: Option<String>,
}

impl ClientInfo {
    /// The origin the client's page was loaded from if it is ours: `https://host:port` or
    /// `http://...`, in the form a browser writes in `Origin`.
    pub fn origin(&self) -> Option<Origin> {
        let scheme = if self.https { "https" } else { "http" };
        Origin::parse(&format!("{scheme}://{}", self.host.as_deref()?))
    }
}

/// A web origin (scheme, lower-case host, port), compared as browsers do: the scheme's
/// default port is the same as no port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// `scheme://host[:port]`, as in an `Origin` header; None for anything else (`null`, a
    /// path, user info, an unknown scheme, a bad port).
    pub fn parse(text: &str) -> Option<Self> {
        let uri: Uri = text.parse().ok()?;
        let scheme = uri.scheme_str()?.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return None;
        }
        let authority = uri.authority()?;
        // what follows the host: nothing, or ":port" (user info, "a@b", is no origin's)
        let port = match authority.as_str().strip_prefix(authority.host())? {
            "" => default_port,
            rest => rest.strip_prefix(':')?.parse().ok()?,
        };
        Some(Self {
            scheme,
            host: authority.host().to_ascii_lowercase(),
            port,
        })
    }
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
    // HTTP/2 carries the authority in the request URI and no Host header; HTTP/1.1 the reverse
    let host = parts
        .uri
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| header(&parts.headers, "host").map(str::to_string));
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
        parts_for("/", peer, headers)
    }

    fn parts_for(uri: &str, peer: &str, headers: &[(&str, &str)]) -> Parts {
        let mut request = Request::builder().uri(uri);
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

    #[test]
    fn the_authority_comes_from_http2s_uri_or_http1s_host_header() {
        let http2 = client_info(
            &parts_for("https://127.0.0.1:8443/api/v1/login", "127.0.0.1", &[]),
            &[],
        );
        assert_eq!(http2.host.as_deref(), Some("127.0.0.1:8443"));
        let http1 = client_info(&parts("127.0.0.1", &[("host", "lift.local:8080")]), &[]);
        assert_eq!(http1.host.as_deref(), Some("lift.local:8080"));
        assert_eq!(
            http1.origin(),
            Origin::parse("http://LIFT.local:8080"),
            "host names compare without case"
        );
    }

    #[test]
    fn origins_compare_scheme_host_and_port_with_default_ports() {
        let origin = |text| Origin::parse(text).expect(text);
        assert_eq!(
            origin("https://lift.example.org"),
            origin("https://lift.example.org:443")
        );
        assert_eq!(
            origin("http://lift.example.org"),
            origin("http://lift.example.org:80")
        );
        assert_ne!(
            origin("https://lift.example.org"),
            origin("http://lift.example.org")
        );
        assert_ne!(
            origin("https://lift.example.org:8443"),
            origin("https://lift.example.org")
        );
        assert_ne!(
            origin("http://evil.example:8080"),
            origin("http://lift.example.org:8080")
        );
        assert_eq!(origin("https://[::1]:8443"), origin("https://[::1]:8443"));
        assert_ne!(origin("https://[::1]"), origin("https://[::1]:8443"));
        for refused in [
            "null",
            "lift.example.org",
            "ftp://lift.example.org",
            "https://a/b",
            "https://a:x",
            "https://",
            "https://user@a",
        ] {
            assert_eq!(Origin::parse(refused), None, "{refused}");
        }
    }
}
