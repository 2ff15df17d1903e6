//! One direction of a simulated network path, sans-IO: a packet and the time in, the time
//! it arrives (or that it is lost) out. Deterministic for a seed.
//!
//! In order: random loss (independent, or bursty by a Gilbert–Elliott chain), then a
//! bottleneck that serialises packets at the current rate behind a drop-tail queue of
//! bounded delay, then the one-way delay plus jitter. Without reordering a packet never
//! overtakes the one before it (jitter then only bunches packets up, as on a real link);
//! with it, each packet's jitter is its own.

use std::time::Duration;

/// Bursty loss: a good and a bad state; every packet in the bad state is lost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GilbertElliott {
    /// Chance per packet of going from good to bad.
    pub enter: f64,
    /// Chance per packet of going from bad to good (1 / mean burst length).
    pub leave: f64,
}

impl GilbertElliott {
    /// The long-run fraction of packets lost.
    pub fn mean_loss(&self) -> f64 {
        self.enter / (self.enter + self.leave)
    }
}

/// The bottleneck rate from `at` on (measured from the start of the run).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateStep {
    pub at: Duration,
    /// Bits per second; `None` is unlimited.
    pub bps: Option<u64>,
}

/// What one direction does to packets.
#[derive(Debug, Clone, PartialEq)]
pub struct LinkConfig {
    /// The rate over time, sorted by `at`; empty is unlimited.
    pub rate: Vec<RateStep>,
    /// The longest a packet may wait in the bottleneck's queue; beyond, it is dropped.
    pub queue: Duration,
    /// Independent random loss, 0..1.
    pub loss: f64,
    pub burst: Option<GilbertElliott>,
    pub delay: Duration,
    /// Each packet's delay varies uniformly by up to this much either way.
    pub jitter: Duration,
    pub reorder: bool,
}

impl Default for LinkConfig {
    fn default() -> Self {
        Self {
            rate: Vec::new(),
            queue: Duration::from_millis(300),
            loss: 0.0,
            burst: None,
            delay: Duration::ZERO,
            jitter: Duration::ZERO,
            reorder: false,
        }
    }
}

impl LinkConfig {
    /// The rate in effect `elapsed` into the run.
    pub fn rate_at(&self, elapsed: Duration) -> Option<u64> {
        self.rate
            .iter()
            .take_while(|s| s.at <= elapsed)
            .last()
            .and_then(|s| s.bps)
    }

    pub fn is_clean(&self) -> bool {
        self.rate.iter().all(|s| s.bps.is_none())
            && self.loss == 0.0
            && self.burst.is_none()
            && self.delay.is_zero()
            && self.jitter.is_zero()
    }
}

/// What happened to one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Arrives this long after the start of the run.
    Deliver(Duration),
    Lost,
    /// The bottleneck's queue was full.
    QueueFull,
}

/// Counts per direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LinkCounts {
    pub packets: u64,
    pub bytes: u64,
    pub lost: u64,
    pub queue_full: u64,
    pub delivered: u64,
    pub delivered_bytes: u64,
}

/// splitmix64: small, fast, and the same sequence on every platform for a seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One direction's state.
#[derive(Debug, Clone)]
pub struct Link {
    config: LinkConfig,
    rng: Rng,
    bad: bool,
    /// When the bottleneck finishes sending what it holds.
    busy_until: Duration,
    /// The latest arrival so far (no reordering: nothing arrives before it).
    last_arrival: Duration,
    pub counts: LinkCounts,
}

impl Link {
    pub fn new(config: LinkConfig, seed: u64) -> Self {
        Self {
            config,
            rng: Rng::new(seed),
            bad: false,
            busy_until: Duration::ZERO,
            last_arrival: Duration::ZERO,
            counts: LinkCounts::default(),
        }
    }

    pub fn config(&self) -> &LinkConfig {
        &self.config
    }

    /// A packet of `size` bytes entering the link `now` into the run.
    pub fn send(&mut self, now: Duration, size: usize) -> Fate {
        self.counts.packets += 1;
        self.counts.bytes += size as u64;
        let mut lost = self.config.loss > 0.0 && self.rng.unit() < self.config.loss;
        if let Some(ge) = self.config.burst {
            let flip = self.rng.unit();
            self.bad = if self.bad {
                flip >= ge.leave
            } else {
                flip < ge.enter
            };
            lost |= self.bad;
        }
        // Draw the jitter whatever happens, so one packet's fate does not shift the
        // random numbers every later packet gets.
        let spread = self.rng.unit() * 2.0 - 1.0;
        if lost {
            self.counts.lost += 1;
            return Fate::Lost;
        }
        let mut leave = now;
        if let Some(bps) = self.config.rate_at(now) {
            let start = self.busy_until.max(now);
            if start - now > self.config.queue {
                self.counts.queue_full += 1;
                return Fate::QueueFull;
            }
            let serialise = Duration::from_secs_f64(size as f64 * 8.0 / bps.max(1) as f64);
            self.busy_until = start + serialise;
            leave = self.busy_until;
        }
        let jitter = self.config.jitter.as_secs_f64() * spread;
        let delay = (self.config.delay.as_secs_f64() + jitter).max(0.0);
        let mut arrive = leave + Duration::from_secs_f64(delay);
        if !self.config.reorder {
            arrive = arrive.max(self.last_arrival);
        }
        self.last_arrival = self.last_arrival.max(arrive);
        self.counts.delivered += 1;
        self.counts.delivered_bytes += size as u64;
        Fate::Deliver(arrive)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn run(config: LinkConfig, seed: u64, packets: u64, every: Duration) -> Vec<Fate> {
        let mut link = Link::new(config, seed);
        (0..packets)
            .map(|i| link.send(every * i as u32, 1000))
            .collect()
    }

    #[test]
    fn a_clean_link_delivers_everything_at_once() {
        let fates = run(LinkConfig::default(), 1, 100, ms(1));
        for (i, fate) in fates.iter().enumerate() {
            assert_eq!(*fate, Fate::Deliver(ms(i as u64)));
        }
    }

    #[test]
    fn the_same_seed_gives_the_same_fates_and_another_seed_others() {
        let config = LinkConfig {
            loss: 0.2,
            jitter: ms(20),
            delay: ms(50),
            ..LinkConfig::default()
        };
        let a = run(config.clone(), 7, 2000, ms(2));
        assert_eq!(a, run(config.clone(), 7, 2000, ms(2)));
        assert_ne!(a, run(config, 8, 2000, ms(2)));
    }

    #[test]
    fn random_loss_is_near_its_rate() {
        let config = LinkConfig {
            loss: 0.2,
            ..LinkConfig::default()
        };
        let lost = run(config, 3, 20_000, ms(1))
            .iter()
            .filter(|f| **f == Fate::Lost)
            .count();
        assert!((3_600..4_400).contains(&lost), "{lost} of 20,000");
    }

    #[test]
    fn bursty_loss_comes_in_bursts_of_the_configured_mean() {
        let ge = GilbertElliott {
            enter: 0.02,
            leave: 0.25,
        };
        let config = LinkConfig {
            burst: Some(ge),
            ..LinkConfig::default()
        };
        let fates = run(config, 5, 50_000, ms(1));
        let lost = fates.iter().filter(|f| **f == Fate::Lost).count();
        let bursts = fates
            .windows(2)
            .filter(|w| w[0] != Fate::Lost && w[1] == Fate::Lost)
            .count();
        let mean_loss = lost as f64 / fates.len() as f64;
        let mean_burst = lost as f64 / bursts as f64;
        assert!((mean_loss - ge.mean_loss()).abs() < 0.02, "{mean_loss}");
        assert!((3.0..5.0).contains(&mean_burst), "{mean_burst}");
    }

    #[test]
    fn a_bottleneck_paces_packets_at_its_rate_and_drops_beyond_its_queue() {
        // 1,000-byte packets every ms (8 Mbit/s) into 1 Mbit/s: each takes 8 ms to send.
        let config = LinkConfig {
            rate: vec![RateStep {
                at: Duration::ZERO,
                bps: Some(1_000_000),
            }],
            queue: ms(100),
            ..LinkConfig::default()
        };
        let fates = run(config, 1, 1000, ms(1));
        assert_eq!(fates[0], Fate::Deliver(ms(8)));
        assert_eq!(fates[1], Fate::Deliver(ms(16)));
        let delivered: Vec<Duration> = fates
            .iter()
            .filter_map(|f| match f {
                Fate::Deliver(at) => Some(*at),
                _ => None,
            })
            .collect();
        // One packet per 8 ms over the second, plus the 100 ms the queue held at the end
        // (125 + 12.5); the rest found the queue full.
        assert!(
            (135..=140).contains(&delivered.len()),
            "{}",
            delivered.len()
        );
        for pair in delivered.windows(2) {
            assert!(pair[1] - pair[0] >= ms(8) - Duration::from_micros(1));
        }
        // No packet waited longer than the queue allows (plus its own sending time).
        for (i, fate) in fates.iter().enumerate() {
            if let Fate::Deliver(at) = fate {
                assert!(*at - ms(i as u64) <= ms(108) + Duration::from_micros(1));
            }
        }
    }

    #[test]
    fn rate_steps_take_effect_at_their_time() {
        let config = LinkConfig {
            rate: vec![
                RateStep {
                    at: Duration::ZERO,
                    bps: Some(8_000_000),
                },
                RateStep {
                    at: Duration::from_secs(1),
                    bps: Some(800_000),
                },
                RateStep {
                    at: Duration::from_secs(2),
                    bps: None,
                },
            ],
            ..LinkConfig::default()
        };
        assert_eq!(config.rate_at(ms(999)), Some(8_000_000));
        assert_eq!(config.rate_at(ms(1000)), Some(800_000));
        assert_eq!(config.rate_at(ms(2500)), None);
        let mut link = Link::new(config, 1);
        assert_eq!(link.send(ms(0), 1000), Fate::Deliver(ms(1)));
        assert_eq!(link.send(ms(1000), 1000), Fate::Deliver(ms(1010)));
        assert_eq!(link.send(ms(3000), 1000), Fate::Deliver(ms(3000)));
    }

    #[test]
    fn jitter_without_reordering_keeps_order_and_with_it_does_not() {
        let config = LinkConfig {
            delay: ms(50),
            jitter: ms(30),
            ..LinkConfig::default()
        };
        let arrivals = |fates: Vec<Fate>| -> Vec<Duration> {
            fates
                .into_iter()
                .map(|f| match f {
                    Fate::Deliver(at) => at,
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        let ordered = arrivals(run(config.clone(), 9, 1000, ms(2)));
        assert!(ordered.windows(2).all(|w| w[0] <= w[1]));
        for (i, at) in ordered.iter().enumerate() {
            let sent = ms(2 * i as u64);
            assert!(*at >= sent + ms(20));
        }
        let reordered = arrivals(run(
            LinkConfig {
                reorder: true,
                ..config
            },
            9,
            1000,
            ms(2),
        ));
        assert!(reordered.windows(2).any(|w| w[0] > w[1]));
        for (i, at) in reordered.iter().enumerate() {
            let sent = ms(2 * i as u64);
            assert!(*at >= sent + ms(20) && *at <= sent + ms(80));
        }
    }
}
