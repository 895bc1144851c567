//! Who is on the other end of the connection: the socket's peer, or, when that peer is a
//! trusted reverse proxy (`server.trusted_proxies`), the last `X-Forwarded-For` hop that no
//! trusted proxy added. A client cannot pick its own address by sending the header.

use std::future::{Ready, ready};
use std::net::IpAddr;

use actix_web::{FromRequest, HttpRequest, dev::Payload, web};

use crate::error::AppError;
use crate::state::AppState;

/// The client's address, for rate limits, lock-outs and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub IpAddr);

impl std::fmt::Display for ClientAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// The client behind `peer`: `peer` itself unless it is trusted, else the right-most hop of
/// `forwarded_for` (comma-separated, each proxy appending) that is not trusted. A malformed hop
/// ends the walk at the last trusted address, which is then the client. An IPv4 client seen
/// through an IPv6 socket (`::ffff:a.b.c.d`) is its IPv4 address.
pub fn client_address(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpAddr]) -> IpAddr {
    let peer = peer.to_canonical();
    if !trusted.contains(&peer) {
        return peer;
    }
    let mut client = peer;
    for hop in forwarded_for.unwrap_or("").rsplit(',').map(str::trim).filter(|h| !h.is_empty()) {
        match hop.parse::<IpAddr>().map(|address| address.to_canonical()) {
            Ok(address) => {
                client = address;
                if !trusted.contains(&address) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client
}

impl FromRequest for ClientAddr {
    type Error = AppError;
    type Future = Ready<Result<Self, AppError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(peer) = req.peer_addr().map(|a| a.ip()) else {
            return ready(Err(AppError::internal("a request without a peer address")));
        };
        let trusted = req
            .app_data::<web::Data<AppState>>()
            .map(|state| state.settings.server.trusted_proxies.as_slice())
            .unwrap_or_default();
        let forwarded = req.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok());
        ready(Ok(ClientAddr(client_address(peer, forwarded, trusted))))
    }
}

#[cfg(test)]
mod tests {
    use super::client_address;
    use std::net::IpAddr;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_header_counts_only_from_a_trusted_proxy() {
        let proxy = [ip("10.0.0.1")];
        assert_eq!(client_address(ip("203.0.113.9"), Some("1.2.3.4"), &proxy), ip("203.0.113.9"));
        assert_eq!(client_address(ip("10.0.0.1"), Some("1.2.3.4"), &proxy), ip("1.2.3.4"));
        assert_eq!(client_address(ip("10.0.0.1"), None, &proxy), ip("10.0.0.1"));
    }

    #[test]
    fn an_ipv4_client_on_an_ipv6_socket_is_its_ipv4_address() {
        assert_eq!(client_address(ip("::ffff:203.0.113.9"), None, &[]), ip("203.0.113.9"));
        let proxy = [ip("10.0.0.1")];
        assert_eq!(client_address(ip("::ffff:10.0.0.1"), Some("::ffff:1.2.3.4"), &proxy), ip("1.2.3.4"));
    }

    #[test]
    fn a_client_sent_hop_to_the_left_is_ignored() {
        let proxies = [ip("10.0.0.1"), ip("10.0.0.2")];
        assert_eq!(
            client_address(ip("10.0.0.1"), Some("6.6.6.6, 198.51.100.7, 10.0.0.2"), &proxies),
            ip("198.51.100.7")
        );
        assert_eq!(client_address(ip("10.0.0.1"), Some("6.6.6.6, junk"), &proxies), ip("10.0.0.1"));
    }
}
