//! Sending a call's packets through something between the two peers — a network simulator
//! that limits, loses and delays them (`chingu-cli bench --net`, the impairment tests).
//!
//! With a [`MediaRoute`], every host candidate we send names the address the route gives
//! for our socket, and every candidate of the peer is reached through the address the
//! route gives for it; candidates it has no address for (server-reflexive, relay, TCP)
//! are neither sent nor used. Both directions of the call then cross the route, whatever
//! the other peer does. Pure string functions over RFC 8839 candidate lines, tested below.

use std::net::SocketAddr;

/// Something our media can be sent through (see the module docs).
pub trait MediaRoute: Send + Sync + std::fmt::Debug {
    /// The address the peer should send to in order to reach our socket `local`.
    fn advertise(&self, local: SocketAddr) -> Option<SocketAddr>;
    /// The address to send to in order to reach the peer's `remote`.
    fn reach(&self, remote: SocketAddr) -> Option<SocketAddr>;
}

/// `candidate` (with or without `a=`) with its address replaced by `map`'s answer, or
/// `None` if it is not a UDP host candidate or `map` has no address for it.
fn rewrite(candidate: &str, map: impl FnOnce(SocketAddr) -> Option<SocketAddr>) -> Option<String> {
    let prefix = if candidate.starts_with("a=") {
        "a="
    } else {
        ""
    };
    let body = candidate.strip_prefix(prefix)?;
    let mut fields: Vec<String> = body.split_ascii_whitespace().map(str::to_owned).collect();
    // candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type> ...
    if fields.len() < 8
        || !fields[0].starts_with("candidate:")
        || !fields[2].eq_ignore_ascii_case("udp")
        || fields[6] != "typ"
    {
        return None;
    }
    let ip = fields[4].parse().ok()?;
    let port = fields[5].parse().ok()?;
    let to = map(SocketAddr::new(ip, port))?;
    fields[4] = to.ip().to_string();
    fields[5] = to.port().to_string();
    fields[7] = "host".to_owned();
    // The related address would name the real socket.
    fields.truncate(8);
    Some(format!("{prefix}{}", fields.join(" ")))
}

/// One of our candidates as the peer must see it (only host candidates are sent).
pub(super) fn local(route: &dyn MediaRoute, candidate: &str) -> Option<String> {
    let kind = candidate.split_ascii_whitespace().nth(7);
    if kind != Some("host") {
        return None;
    }
    rewrite(candidate, |addr| route.advertise(addr))
}

/// One of the peer's candidates as we must use it.
pub(super) fn remote(route: &dyn MediaRoute, candidate: &str) -> Option<String> {
    rewrite(candidate, |addr| route.reach(addr))
}

/// An SDP with every candidate line passed through `each` (dropped where it says `None`).
pub(super) fn sdp(text: &str, each: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let body = line.trim_end_matches(['\r', '\n']);
        if body.starts_with("a=candidate:") {
            if let Some(kept) = each(body) {
                out.push_str(&kept);
                out.push_str(&line[body.len()..]);
            }
        } else {
            out.push_str(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Shift;

    impl MediaRoute for Shift {
        fn advertise(&self, local: SocketAddr) -> Option<SocketAddr> {
            (local.port() != 9).then(|| SocketAddr::from(([10, 0, 0, 1], local.port() + 1)))
        }
        fn reach(&self, remote: SocketAddr) -> Option<SocketAddr> {
            Some(SocketAddr::from(([10, 0, 0, 2], remote.port() + 2)))
        }
    }

    #[test]
    fn host_candidates_are_advertised_at_the_routes_address() {
        let line = "candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host generation 0";
        assert_eq!(
            local(&Shift, line).as_deref(),
            Some("candidate:1 1 udp 2130706431 10.0.0.1 5001 typ host")
        );
        let with_prefix = format!("a={line}");
        assert!(
            local(&Shift, &with_prefix)
                .unwrap()
                .starts_with("a=candidate:1")
        );
    }

    #[test]
    fn what_the_route_cannot_carry_is_dropped() {
        let srflx = "candidate:2 1 udp 1694498815 203.0.113.5 6000 typ srflx raddr 0.0.0.0 rport 0";
        assert_eq!(local(&Shift, srflx), None);
        let tcp = "candidate:3 1 tcp 1 127.0.0.1 5000 typ host tcptype passive";
        assert_eq!(local(&Shift, tcp), None);
        assert_eq!(
            local(&Shift, "candidate:1 1 udp 1 127.0.0.1 9 typ host"),
            None
        );
        assert_eq!(local(&Shift, "garbage"), None);
        assert_eq!(
            local(&Shift, "candidate:1 1 udp 1 not-an-ip 5 typ host"),
            None
        );
    }

    #[test]
    fn remote_candidates_of_any_type_are_reached_through_the_route() {
        let srflx =
            "candidate:2 1 udp 1694498815 203.0.113.5 6000 typ srflx raddr 10.1.1.1 rport 7";
        assert_eq!(
            remote(&Shift, srflx).as_deref(),
            Some("candidate:2 1 udp 1694498815 10.0.0.2 6002 typ host")
        );
    }

    #[test]
    fn sdp_candidate_lines_are_rewritten_and_the_rest_kept() {
        let text = "v=0\r\na=candidate:1 1 udp 1 127.0.0.1 5000 typ host\r\na=candidate:2 1 udp 1 1.2.3.4 5 typ srflx\r\na=mid:0\r\n";
        assert_eq!(
            sdp(text, |c| local(&Shift, c)),
            "v=0\r\na=candidate:1 1 udp 1 10.0.0.1 5001 typ host\r\na=mid:0\r\n"
        );
    }
}
