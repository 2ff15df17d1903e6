//! The simulator's links applied to IP packets the kernel hands over (NFQUEUE), for
//! `chingu-cli shape` and `chingu-cli beside`: every UDP flow — one source address and
//! port towards one destination — crosses its own [`Link`], so in a namespace where both
//! peers of a call live, each direction of the call gets the scenario's link, whichever
//! stack made the call. Sans-IO: [`FlowShaper::packet`] says what becomes of a packet,
//! [`super::nfqueue`] holds it until then.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::Scenario;
use super::link::{Fate, Link, LinkConfig, LinkCounts};

/// One direction of one conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Flow {
    pub from: SocketAddrV4,
    pub to: SocketAddrV4,
}

/// Why a scenario cannot be applied per flow.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum FlowError {
    #[error(
        "{0:?} impairs its two directions differently; the kernel's packets carry no \
         direction (which peer is A), so give a scenario that is the same both ways \
         (say rate=1M rather than up.rate=1M)"
    )]
    NotSymmetric(String),
}

/// What a shaper did, summed over its flows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShapeCounts {
    /// UDP flows seen.
    pub flows: u64,
    /// Over every flow's link.
    #[serde(flatten)]
    pub links: LinkCounts,
    /// Packets that were not IPv4 UDP, let through untouched.
    pub passed: u64,
}

/// A [`Link`] per UDP flow, each from the scenario's settings and its own seed.
#[derive(Debug)]
pub struct FlowShaper {
    config: LinkConfig,
    seed: u64,
    flows: HashMap<Flow, Link>,
    passed: u64,
}

impl FlowShaper {
    pub fn new(scenario: &Scenario) -> Result<Self, FlowError> {
        if scenario.up != scenario.down {
            return Err(FlowError::NotSymmetric(scenario.name.clone()));
        }
        Ok(Self {
            config: scenario.up.clone(),
            seed: scenario.seed,
            flows: HashMap::new(),
            passed: 0,
        })
    }

    /// An IP packet (as the kernel queued it) entering the network `now` into the run.
    pub fn packet(&mut self, now: Duration, packet: &[u8]) -> Fate {
        let Some(flow) = udp_flow(packet) else {
            self.passed += 1;
            return Fate::Deliver(now);
        };
        let next = self.flows.len() as u64;
        let (config, seed) = (&self.config, self.seed);
        self.flows
            .entry(flow)
            .or_insert_with(|| Link::new(config.clone(), flow_seed(seed, next)))
            .send(now, packet.len())
    }

    pub fn counts(&self) -> ShapeCounts {
        let mut sum = ShapeCounts {
            flows: self.flows.len() as u64,
            passed: self.passed,
            ..ShapeCounts::default()
        };
        for link in self.flows.values() {
            let c = link.counts;
            sum.links.packets += c.packets;
            sum.links.bytes += c.bytes;
            sum.links.lost += c.lost;
            sum.links.queue_full += c.queue_full;
            sum.links.delivered += c.delivered;
            sum.links.delivered_bytes += c.delivered_bytes;
        }
        sum
    }
}

/// The n-th flow's seed: the scenario's, mixed with n, so flows draw different numbers.
fn flow_seed(seed: u64, n: u64) -> u64 {
    seed ^ n.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// The flow of an IPv4 packet carrying UDP; `None` for anything else or anything cut
/// short.
pub fn udp_flow(packet: &[u8]) -> Option<Flow> {
    let first = *packet.first()?;
    if first >> 4 != 4 {
        return None;
    }
    let header = usize::from(first & 0x0f) * 4;
    if header < 20 || packet.get(9) != Some(&17) {
        return None;
    }
    let udp = packet.get(header..header + 8)?;
    let addr =
        |at: usize| Ipv4Addr::new(packet[at], packet[at + 1], packet[at + 2], packet[at + 3]);
    let port = |at: usize| u16::from_be_bytes([udp[at], udp[at + 1]]);
    Some(Flow {
        from: SocketAddrV4::new(addr(12), port(0)),
        to: SocketAddrV4::new(addr(16), port(2)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// An IPv4/UDP packet from `from` to `to` with `payload` bytes after the headers.
    fn udp(from: &str, to: &str, payload: usize) -> Vec<u8> {
        let (from, to): (SocketAddrV4, SocketAddrV4) = (from.parse().unwrap(), to.parse().unwrap());
        let mut p = vec![0u8; 28 + payload];
        p[0] = 0x45;
        p[2..4].copy_from_slice(&((28 + payload) as u16).to_be_bytes());
        p[9] = 17;
        p[12..16].copy_from_slice(&from.ip().octets());
        p[16..20].copy_from_slice(&to.ip().octets());
        p[20..22].copy_from_slice(&from.port().to_be_bytes());
        p[22..24].copy_from_slice(&to.port().to_be_bytes());
        p
    }

    #[test]
    fn a_udp_packet_names_its_flow_and_anything_else_none() {
        let p = udp("10.0.0.1:5000", "10.0.0.2:6000", 100);
        assert_eq!(
            udp_flow(&p),
            Some(Flow {
                from: "10.0.0.1:5000".parse().unwrap(),
                to: "10.0.0.2:6000".parse().unwrap(),
            })
        );
        // Options in the IP header move the UDP header.
        let mut long = p.clone();
        long[0] = 0x46;
        long.splice(20..20, [0u8; 4]);
        assert_eq!(udp_flow(&long), udp_flow(&p));
        let mut tcp = p.clone();
        tcp[9] = 6;
        assert_eq!(udp_flow(&tcp), None);
        let mut v6 = p.clone();
        v6[0] = 0x60;
        assert_eq!(udp_flow(&v6), None);
        let mut bad_header = p.clone();
        bad_header[0] = 0x44;
        assert_eq!(udp_flow(&bad_header), None);
        for cut in 0..24 {
            assert_eq!(udp_flow(&p[..cut]), None, "cut at {cut}");
        }
        assert_eq!(udp_flow(&[]), None);
    }

    #[test]
    fn each_direction_of_a_call_gets_its_own_link() {
        // Capped at 80 kbit/s: a 1000-byte packet holds the link for 100 ms.
        let scenario: Scenario = "rate=80k,delay=20ms".parse().unwrap();
        let mut shaper = FlowShaper::new(&scenario).unwrap();
        let there = udp("10.0.0.1:5000", "10.0.0.2:6000", 972);
        let back = udp("10.0.0.2:6000", "10.0.0.1:5000", 972);
        assert_eq!(shaper.packet(ms(0), &there), Fate::Deliver(ms(120)));
        // The other direction does not wait behind the first packet.
        assert_eq!(shaper.packet(ms(0), &back), Fate::Deliver(ms(120)));
        // The same direction does.
        assert_eq!(shaper.packet(ms(0), &there), Fate::Deliver(ms(220)));
        let counts = shaper.counts();
        assert_eq!((counts.flows, counts.links.packets), (2, 3));
        assert_eq!(counts.links.bytes, 3000);
    }

    #[test]
    fn what_is_not_udp_passes_at_once() {
        let scenario: Scenario = "loss=100%".parse().unwrap();
        let mut shaper = FlowShaper::new(&scenario).unwrap();
        let mut tcp = udp("10.0.0.1:5000", "10.0.0.2:6000", 10);
        tcp[9] = 6;
        assert_eq!(shaper.packet(ms(7), &tcp), Fate::Deliver(ms(7)));
        assert_eq!(shaper.packet(ms(7), b"junk"), Fate::Deliver(ms(7)));
        let udp = udp("10.0.0.1:5000", "10.0.0.2:6000", 10);
        assert_eq!(shaper.packet(ms(7), &udp), Fate::Lost);
        let counts = shaper.counts();
        assert_eq!((counts.passed, counts.links.lost), (2, 1));
    }

    #[test]
    fn flows_draw_their_own_numbers_the_same_for_a_seed() {
        let fates = |seed: u64| {
            let scenario: Scenario = format!("loss=30%,seed={seed}").parse().unwrap();
            let mut shaper = FlowShaper::new(&scenario).unwrap();
            let a = udp("10.0.0.1:5000", "10.0.0.2:6000", 100);
            let b = udp("10.0.0.2:6000", "10.0.0.1:5000", 100);
            let mut out = (Vec::new(), Vec::new());
            for i in 0..200 {
                out.0.push(shaper.packet(ms(i), &a));
                out.1.push(shaper.packet(ms(i), &b));
            }
            out
        };
        let (a, b) = fates(3);
        assert_ne!(a, b, "two flows lose different packets");
        assert_eq!((a.clone(), b), fates(3));
        assert_ne!(a, fates(4).0);
    }

    #[test]
    fn a_scenario_that_differs_by_direction_is_refused() {
        let one_way: Scenario = "cap1m".parse().unwrap();
        assert!(matches!(
            FlowShaper::new(&one_way),
            Err(FlowError::NotSymmetric(name)) if name == "cap1m"
        ));
        let both: Scenario = "farloss".parse().unwrap();
        assert!(FlowShaper::new(&both).is_ok());
    }
}
