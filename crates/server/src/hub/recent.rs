//! What each device did recently: its last calls (what a report, rating or block may
//! name — kept per device, so they survive a reconnect), which of them it reported, and
//! how many reports it filed in the last day. Sans-IO like the hub; forgets on a timer.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use chingu_proto::CallId;

use crate::ids::Identity;

/// Calls a device can still report, rate or block: its last few...
pub(super) const RECENT_CALLS: usize = 8;
/// ...started within this time.
pub(super) const CALL_MEMORY: Duration = Duration::from_secs(60 * 60);
/// The window of a device's report budget.
pub(super) const REPORT_WINDOW: Duration = Duration::from_secs(24 * 60 * 60);

#[derive(Debug)]
struct Call {
    call_id: CallId,
    peer: Identity,
    started: Instant,
    reported: bool,
}

#[derive(Debug, Default)]
struct History {
    calls: VecDeque<Call>,
    /// Reports filed since `window_start`.
    reports: u32,
    window_start: Option<Instant>,
}

impl History {
    fn forget_old(&mut self, now: Instant) {
        self.calls
            .retain(|c| now.saturating_duration_since(c.started) < CALL_MEMORY);
        if self
            .window_start
            .is_some_and(|start| now.saturating_duration_since(start) >= REPORT_WINDOW)
        {
            self.window_start = None;
            self.reports = 0;
        }
    }

    fn is_empty(&self) -> bool {
        self.calls.is_empty() && self.window_start.is_none()
    }
}

/// Why a report was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ReportRefusal {
    /// Not one of the device's recent calls.
    UnknownCall,
    /// This call was already reported by this device.
    AlreadyReported,
    /// The device's reports for the day are spent.
    OverBudget,
}

/// Every device's recent calls and report budget.
#[derive(Debug, Default)]
pub(super) struct RecentCalls {
    by_device: HashMap<Identity, History>,
    /// When to look at a device's history again to forget what is old, in time order.
    reviews: VecDeque<(Instant, Identity)>,
}

impl RecentCalls {
    /// `device` started `call_id` with `peer`.
    pub(super) fn remember(
        &mut self,
        device: Identity,
        call_id: CallId,
        peer: Identity,
        now: Instant,
    ) {
        let history = self.by_device.entry(device).or_default();
        if history.calls.len() == RECENT_CALLS {
            history.calls.pop_front();
        }
        history.calls.push_back(Call {
            call_id,
            peer,
            started: now,
            reported: false,
        });
        self.reviews.push_back((now + CALL_MEMORY, device));
    }

    /// The peer of one of `device`'s recent calls.
    pub(super) fn peer(&self, device: Identity, call_id: &CallId) -> Option<Identity> {
        self.call(device, call_id).map(|c| c.peer)
    }

    /// Whether `call_id` is `device`'s latest call.
    pub(super) fn is_latest(&self, device: Identity, call_id: &CallId) -> bool {
        self.by_device
            .get(&device)
            .and_then(|h| h.calls.back())
            .is_some_and(|c| &c.call_id == call_id)
    }

    fn call(&self, device: Identity, call_id: &CallId) -> Option<&Call> {
        self.by_device
            .get(&device)?
            .calls
            .iter()
            .find(|c| &c.call_id == call_id)
    }

    /// Takes a report by `device` about `call_id`: once per call, at most `per_day` in
    /// [`REPORT_WINDOW`]. Returns the reported device.
    pub(super) fn report(
        &mut self,
        device: Identity,
        call_id: &CallId,
        per_day: u32,
        now: Instant,
    ) -> Result<Identity, ReportRefusal> {
        let history = self
            .by_device
            .get_mut(&device)
            .ok_or(ReportRefusal::UnknownCall)?;
        history.forget_old(now);
        let call = history
            .calls
            .iter_mut()
            .find(|c| &c.call_id == call_id)
            .ok_or(ReportRefusal::UnknownCall)?;
        if call.reported {
            return Err(ReportRefusal::AlreadyReported);
        }
        if history.window_start.is_some() && history.reports >= per_day {
            return Err(ReportRefusal::OverBudget);
        }
        call.reported = true;
        let peer = call.peer;
        if history.window_start.is_none() {
            history.window_start = Some(now);
            self.reviews.push_back((now + REPORT_WINDOW, device));
        }
        history.reports += 1;
        Ok(peer)
    }

    /// Forgets calls older than [`CALL_MEMORY`] and report windows over a day old.
    pub(super) fn handle_timeout(&mut self, now: Instant) {
        while let Some(&(due, device)) = self.reviews.front() {
            if due > now {
                break;
            }
            self.reviews.pop_front();
            if let Some(history) = self.by_device.get_mut(&device) {
                history.forget_old(now);
                if history.is_empty() {
                    self.by_device.remove(&device);
                }
            }
        }
    }

    pub(super) fn poll_timeout(&self) -> Option<Instant> {
        self.reviews.front().map(|&(due, _)| due)
    }

    /// Devices remembered now.
    #[cfg(test)]
    pub(super) fn devices(&self) -> usize {
        self.by_device.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> Identity {
        Identity([n; 16])
    }

    fn call(n: u32) -> CallId {
        CallId(format!("c{n}"))
    }

    #[test]
    fn a_device_keeps_its_last_calls_for_an_hour() {
        let t0 = Instant::now();
        let mut recent = RecentCalls::default();
        for n in 0..10 {
            recent.remember(id(1), call(n), id(2), t0);
        }
        assert_eq!(recent.peer(id(1), &call(0)), None, "only the last 8");
        assert_eq!(recent.peer(id(1), &call(9)), Some(id(2)));
        assert!(recent.is_latest(id(1), &call(9)));
        recent.handle_timeout(t0 + CALL_MEMORY);
        assert_eq!(
            recent.peer(id(1), &call(9)),
            None,
            "forgotten after an hour"
        );
        assert_eq!(recent.devices(), 0, "and the device with them");
    }

    #[test]
    fn one_report_per_call_and_a_daily_budget() {
        let t0 = Instant::now();
        let mut recent = RecentCalls::default();
        for n in 0..3 {
            recent.remember(id(1), call(n), id(2), t0);
        }
        assert_eq!(recent.report(id(1), &call(0), 2, t0), Ok(id(2)));
        assert_eq!(
            recent.report(id(1), &call(0), 2, t0),
            Err(ReportRefusal::AlreadyReported)
        );
        assert_eq!(recent.report(id(1), &call(1), 2, t0), Ok(id(2)));
        assert_eq!(
            recent.report(id(1), &call(2), 2, t0),
            Err(ReportRefusal::OverBudget)
        );
        assert_eq!(
            recent.report(id(1), &call(7), 2, t0),
            Err(ReportRefusal::UnknownCall)
        );
        // The calls are forgotten after an hour; the budget is kept for the day.
        let later = t0 + CALL_MEMORY;
        recent.handle_timeout(later);
        recent.remember(id(1), call(8), id(3), later);
        assert_eq!(
            recent.report(id(1), &call(8), 2, later),
            Err(ReportRefusal::OverBudget)
        );
        let next_day = t0 + REPORT_WINDOW;
        recent.remember(id(1), call(9), id(3), next_day);
        assert_eq!(recent.report(id(1), &call(9), 2, next_day), Ok(id(3)));
    }
}
