//! `chingu-cli shape`: the kernel's UDP packets through a [`FlowShaper`]. An iptables rule
//! (`-j NFQUEUE --queue-num N`) hands every matching packet to this process, which holds
//! it until its link says it arrives and then lets it go on (or drops it). Needs root
//! (`CAP_NET_ADMIN`); run inside the network namespace whose packets it shapes.
//!
//! Fails closed: without `--queue-bypass` on the rule, packets queued while no shaper is
//! bound are dropped, so a shaper that dies shows as a broken call, not as a clean one.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use nfq::{Message, Queue, Verdict};

use super::Scenario;
use super::flows::{FlowShaper, ShapeCounts};
use super::link::Fate;

/// How long the loop sleeps when no packet is waiting (the precision of every delay).
const POLL: Duration = Duration::from_micros(500);
/// Packets the kernel may hold for this queue before it drops new ones.
const KERNEL_QUEUE: u32 = 8192;

/// A packet waiting for its time.
struct Held {
    at: Duration,
    order: u64,
    message: Message,
}

impl PartialEq for Held {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.order) == (other.at, other.order)
    }
}
impl Eq for Held {}
impl PartialOrd for Held {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Held {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.at, self.order).cmp(&(other.at, other.order))
    }
}

/// Shapes queue `queue_num` by `scenario` until `stop` is set; `ready` is called once the
/// queue is bound. Packets still held at the stop are let go.
pub fn run(
    scenario: &Scenario,
    queue_num: u16,
    stop: &Arc<AtomicBool>,
    ready: impl FnOnce(),
) -> anyhow::Result<ShapeCounts> {
    let mut shaper = FlowShaper::new(scenario)?;
    let mut queue = Queue::open().context("opening a netfilter queue socket (needs root)")?;
    queue
        .bind(queue_num)
        .with_context(|| format!("binding netfilter queue {queue_num}"))?;
    queue
        .set_queue_max_len(queue_num, KERNEL_QUEUE)
        .context("sizing the netfilter queue")?;
    queue.set_nonblocking(true);
    ready();
    let start = Instant::now();
    let mut held: BinaryHeap<Reverse<Held>> = BinaryHeap::new();
    let mut order = 0u64;
    while !stop.load(Ordering::Relaxed) {
        loop {
            let mut message = match queue.recv() {
                Ok(message) => message,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e).context("reading the netfilter queue"),
            };
            let now = start.elapsed();
            match shaper.packet(now, message.get_payload()) {
                Fate::Deliver(at) if at <= now => {
                    message.set_verdict(Verdict::Accept);
                    queue.verdict(message).context("passing a packet on")?;
                }
                Fate::Deliver(at) => {
                    message.set_verdict(Verdict::Accept);
                    order += 1;
                    held.push(Reverse(Held { at, order, message }));
                }
                Fate::Lost | Fate::QueueFull => {
                    message.set_verdict(Verdict::Drop);
                    queue.verdict(message).context("dropping a packet")?;
                }
            }
        }
        let now = start.elapsed();
        while held.peek().is_some_and(|Reverse(h)| h.at <= now) {
            let Some(Reverse(h)) = held.pop() else { break };
            queue.verdict(h.message).context("passing a packet on")?;
        }
        std::thread::sleep(POLL);
    }
    for Reverse(h) in held.into_sorted_vec().into_iter().rev() {
        queue.verdict(h.message).context("passing a packet on")?;
    }
    Ok(shaper.counts())
}
