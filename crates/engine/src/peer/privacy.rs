//! What a stranger may learn of our addresses. Every local candidate and every SDP we
//! send passes through [`CandidatePolicy`]:
//! - host candidates on private, shared (carrier-grade NAT), link-local or unique-local
//!   addresses are not sent at all: they tell a stranger about the user's home network
//!   and are useless across NATs anyway (peers on one LAN meet through their
//!   server-reflexive or relay candidates instead);
//! - loopback host candidates only when the peer was told to use loopback (tests);
//! - the related address of server-reflexive and relay candidates (`raddr`/`rport`: the
//!   private base, or for a relay our public address) is replaced by `0.0.0.0 0`, as
//!   browsers do;
//! - with "Hide my IP" (relay only), nothing but relay candidates.
//!
//! Pure string functions over RFC 8839 candidate lines, tested below.

use std::net::IpAddr;

/// Which local candidates may be sent to the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CandidatePolicy {
    pub relay_only: bool,
    pub allow_loopback: bool,
}

impl CandidatePolicy {
    /// The candidate line as it may be sent, or `None` if it must not be. A line that
    /// cannot be parsed is not sent.
    pub fn filter(&self, candidate: &str) -> Option<String> {
        let prefix = if candidate.starts_with("a=") {
            "a="
        } else {
            ""
        };
        let body = candidate.strip_prefix(prefix)?;
        let mut fields: Vec<&str> = body.split_ascii_whitespace().collect();
        // candidate:<foundation> <component> <transport> <priority> <address> <port> typ <type> ...
        if fields.len() < 8 || !fields[0].starts_with("candidate:") || fields[6] != "typ" {
            return None;
        }
        let kind = fields[7];
        if self.relay_only && kind != "relay" {
            return None;
        }
        if kind == "host" && !self.host_shareable(fields[4]) {
            return None;
        }
        if kind != "host" {
            let mut i = 8;
            while i + 1 < fields.len() {
                match fields[i] {
                    "raddr" => fields[i + 1] = "0.0.0.0",
                    "rport" => fields[i + 1] = "0",
                    _ => {}
                }
                i += 2;
            }
        }
        Some(format!("{prefix}{}", fields.join(" ")))
    }

    /// The SDP with every candidate line filtered.
    pub fn scrub_sdp(&self, sdp: &str) -> String {
        let mut out = String::with_capacity(sdp.len());
        for line in sdp.split_inclusive('\n') {
            let text = line.trim_end_matches(['\r', '\n']);
            if text.starts_with("a=candidate:") {
                if let Some(kept) = self.filter(text) {
                    out.push_str(&kept);
                    out.push_str(&line[text.len()..]);
                }
            } else {
                out.push_str(line);
            }
        }
        out
    }

    fn host_shareable(&self, address: &str) -> bool {
        let Ok(ip) = address.parse::<IpAddr>() else {
            // An mDNS name (`….local`) hides the address already.
            return address.ends_with(".local");
        };
        if ip.is_loopback() {
            return self.allow_loopback;
        }
        is_public(ip)
    }
}

/// Whether `ip` is an address anyone on the internet could use to reach us (and so
/// reveals nothing a server-reflexive candidate would not).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || (a == 100 && (64..128).contains(&b))
                || a == 0
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

#[cfg(test)]
mod tests {
    use super::*;

    const OPEN: CandidatePolicy = CandidatePolicy {
        relay_only: false,
        allow_loopback: false,
    };

    #[test]
    fn private_host_candidates_are_not_sent() {
        for address in [
            "10.1.2.3",
            "172.16.0.9",
            "172.31.255.1",
            "192.168.1.20",
            "100.64.0.1",
            "100.127.255.254",
            "169.254.169.254",
            "127.0.0.1",
            "fd12:3456::1",
            "fe80::1",
            "::1",
            "::ffff:192.168.1.2",
        ] {
            let line = format!("candidate:1 1 udp 2130706431 {address} 50000 typ host");
            assert_eq!(OPEN.filter(&line), None, "{address}");
        }
        for address in ["203.0.113.7", "172.32.0.1", "100.128.0.1", "2001:db8::7"] {
            let line = format!("candidate:1 1 udp 2130706431 {address} 50000 typ host");
            assert_eq!(
                OPEN.filter(&line).as_deref(),
                Some(line.as_str()),
                "{address}"
            );
        }
    }

    #[test]
    fn loopback_only_when_asked_and_mdns_names_pass() {
        let line = "candidate:1 1 udp 2130706431 127.0.0.1 50000 typ host";
        let tests = CandidatePolicy {
            relay_only: false,
            allow_loopback: true,
        };
        assert_eq!(tests.filter(line).as_deref(), Some(line));
        let mdns = "candidate:1 1 udp 2130706431 9b36eaac-bb2e.local 50000 typ host";
        assert_eq!(OPEN.filter(mdns).as_deref(), Some(mdns));
    }

    #[test]
    fn related_addresses_are_hidden() {
        let srflx = "candidate:2 1 udp 1694498815 198.51.100.4 61000 typ srflx raddr 192.168.1.20 rport 50000";
        assert_eq!(
            OPEN.filter(srflx).as_deref(),
            Some("candidate:2 1 udp 1694498815 198.51.100.4 61000 typ srflx raddr 0.0.0.0 rport 0")
        );
        let relay = "candidate:3 1 udp 16777215 203.0.113.1 50100 typ relay raddr 198.51.100.4 rport 61000 generation 0";
        assert_eq!(
            OPEN.filter(relay).as_deref(),
            Some(
                "candidate:3 1 udp 16777215 203.0.113.1 50100 typ relay raddr 0.0.0.0 rport 0 generation 0"
            )
        );
    }

    #[test]
    fn relay_only_sends_nothing_but_relays() {
        let policy = CandidatePolicy {
            relay_only: true,
            allow_loopback: true,
        };
        assert_eq!(
            policy.filter("candidate:1 1 udp 2130706431 203.0.113.7 50000 typ host"),
            None
        );
        assert_eq!(
            policy.filter("candidate:2 1 udp 1694498815 198.51.100.4 61000 typ srflx"),
            None
        );
        assert!(
            policy
                .filter("candidate:3 1 udp 16777215 203.0.113.1 50100 typ relay")
                .is_some()
        );
    }

    #[test]
    fn malformed_lines_are_not_sent() {
        for line in [
            "",
            "candidate:",
            "candidate:1 1 udp 1 1.2.3.4 5 type host",
            "hello",
        ] {
            assert_eq!(OPEN.filter(line), None, "{line:?}");
        }
    }

    #[test]
    fn sdp_candidate_lines_are_filtered_and_the_rest_kept() {
        let sdp = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n\
                   a=candidate:1 1 udp 2130706431 192.168.1.20 50000 typ host\r\n\
                   a=candidate:2 1 udp 1694498815 198.51.100.4 61000 typ srflx raddr 192.168.1.20 rport 50000\r\n\
                   a=end-of-candidates\r\n";
        let out = OPEN.scrub_sdp(sdp);
        assert_eq!(
            out,
            "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\nc=IN IP4 0.0.0.0\r\n\
             a=candidate:2 1 udp 1694498815 198.51.100.4 61000 typ srflx raddr 0.0.0.0 rport 0\r\n\
             a=end-of-candidates\r\n"
        );
    }
}
