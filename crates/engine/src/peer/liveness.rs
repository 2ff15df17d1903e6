//! Whether media is interrupted: ICE's word, checked against the media itself.
//!
//! webrtc-rs's ICE agent hears from the peer only through STUN: its consent checks on
//! the selected pair (one each way every `KEEPALIVE_INTERVAL`) and their answers. It says
//! the connection is disconnected after `DISCONNECTED_AFTER` without one, however much
//! media arrives meanwhile. On a path that loses 40 % each way a check and its answer
//! both arrive 36 times in 100, so four in a row go unanswered every few seconds: the
//! agent said disconnected twice in a 20 s call (`bench --net loss40,seed=1`) while
//! media flowed, and the ICE restart that followed froze the picture for ~1.2 s.
//!
//! So a silent ICE means media is interrupted only once no RTP has arrived for
//! [`MEDIA_SILENT_AFTER`] either; until then it is watched. A path that really went
//! away (a network change, an outage) stops media and STUN at the same moment, so it is
//! told as quickly as before. An ICE restart under way (the state back to connecting) is
//! still an interruption at once: the path is being replaced.

use std::sync::atomic::Ordering::SeqCst;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::{Duration, Instant};

/// With ICE silent, media counts as interrupted after this long without an RTP packet
/// (audio is a packet every 20 ms, one every 400 ms in DTX; video 15–30 a second).
pub(super) const MEDIA_SILENT_AFTER: Duration = Duration::from_secs(1);

/// How often a silent ICE is checked against the media.
pub(super) const WATCH_INTERVAL: Duration = Duration::from_millis(100);

/// What the connection's state changes and the media say, shared by the event handler,
/// the RTP pumps and the watch that runs while ICE is silent.
#[derive(Debug)]
pub(super) struct Liveness {
    epoch: Instant,
    /// When RTP last arrived: milliseconds after `epoch`, plus one (0: never).
    last_media: AtomicU64,
    /// ICE says disconnected (and has not said connected since).
    ice_silent: AtomicBool,
    /// `Interrupted` was told (until `Restored`).
    interrupted: AtomicBool,
}

/// What to do when ICE goes silent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Silent {
    /// Tell the engine media is interrupted.
    Interrupted,
    /// Media still arrives: watch it ([`Liveness::check`]).
    Watch,
    /// Nothing to do (already told).
    Nothing,
}

/// What a watch finds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Check {
    /// Media went silent too: tell the engine, and stop watching.
    Interrupted,
    /// Keep watching.
    Watching,
    /// ICE is back, or the interruption was told already: stop watching.
    Done,
}

impl Liveness {
    pub(super) fn new(now: Instant) -> Self {
        Self {
            epoch: now,
            last_media: AtomicU64::new(0),
            ice_silent: AtomicBool::new(false),
            interrupted: AtomicBool::new(false),
        }
    }

    /// An RTP packet arrived.
    pub(super) fn media(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.epoch).as_millis() as u64 + 1;
        self.last_media.fetch_max(ms, SeqCst);
    }

    /// How long since RTP last arrived (since the start when none has).
    fn media_silence(&self, now: Instant) -> Duration {
        let since = match self.last_media.load(SeqCst) {
            0 => self.epoch,
            ms => self.epoch + Duration::from_millis(ms - 1),
        };
        now.saturating_duration_since(since)
    }

    /// ICE says the path is silent (disconnected).
    pub(super) fn ice_silent(&self, now: Instant) -> Silent {
        let watched = self.ice_silent.swap(true, SeqCst);
        if self.interrupted.load(SeqCst) || watched {
            Silent::Nothing
        } else if self.media_silence(now) < MEDIA_SILENT_AFTER {
            Silent::Watch
        } else if self.interrupt() {
            Silent::Interrupted
        } else {
            Silent::Nothing
        }
    }

    /// While ICE is silent: whether media has gone silent too.
    pub(super) fn check(&self, now: Instant) -> Check {
        if !self.ice_silent.load(SeqCst) || self.interrupted.load(SeqCst) {
            Check::Done
        } else if self.media_silence(now) < MEDIA_SILENT_AFTER {
            Check::Watching
        } else if self.interrupt() {
            Check::Interrupted
        } else {
            Check::Done
        }
    }

    /// Media is interrupted whatever it looks like (an ICE restart is under way); true
    /// when that is news.
    pub(super) fn interrupt(&self) -> bool {
        !self.interrupted.swap(true, SeqCst)
    }

    /// ICE is connected again; true when an interruption had been told (tell `Restored`).
    pub(super) fn connected(&self) -> bool {
        self.ice_silent.store(false, SeqCst);
        self.interrupted.swap(false, SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_silent_ice_while_media_flows_is_watched_not_told() {
        let t0 = Instant::now();
        let live = Liveness::new(t0);
        live.media(t0 + 1900 * MS);
        assert_eq!(live.ice_silent(t0 + 2000 * MS), Silent::Watch);
        // Media keeps coming: still watching.
        live.media(t0 + 2500 * MS);
        assert_eq!(live.check(t0 + 3000 * MS), Check::Watching);
        // Said again: the watch already runs.
        assert_eq!(live.ice_silent(t0 + 3001 * MS), Silent::Nothing);
        // ICE hears the peer again before media ever stopped: nothing was told.
        assert!(!live.connected());
        assert_eq!(live.check(t0 + 9000 * MS), Check::Done);
    }

    #[test]
    fn media_silent_as_long_as_the_limit_makes_it_an_interruption() {
        let t0 = Instant::now();
        let live = Liveness::new(t0);
        live.media(t0 + 1000 * MS);
        assert_eq!(live.ice_silent(t0 + 1500 * MS), Silent::Watch);
        assert_eq!(live.check(t0 + 1999 * MS), Check::Watching);
        assert_eq!(live.check(t0 + 2000 * MS), Check::Interrupted);
        // Told once; the watch ends.
        assert_eq!(live.check(t0 + 2100 * MS), Check::Done);
        assert_eq!(live.ice_silent(t0 + 2200 * MS), Silent::Nothing);
        // ICE back: restored.
        assert!(live.connected());
        assert!(!live.connected());
    }

    #[test]
    fn a_path_that_went_away_is_told_at_once() {
        let t0 = Instant::now();
        let live = Liveness::new(t0);
        live.media(t0 + 100 * MS);
        // Media and STUN stopped together; ICE says so 2 s later.
        assert_eq!(live.ice_silent(t0 + 2100 * MS), Silent::Interrupted);
        assert!(live.connected());
        // No media ever (a call whose media never started): told at once too.
        let never = Liveness::new(t0);
        assert_eq!(never.ice_silent(t0 + 5000 * MS), Silent::Interrupted);
    }

    #[test]
    fn a_restart_under_way_interrupts_whatever_the_media_says() {
        let t0 = Instant::now();
        let live = Liveness::new(t0);
        live.media(t0 + 1000 * MS);
        assert!(live.interrupt());
        assert!(!live.interrupt());
        assert_eq!(live.ice_silent(t0 + 1001 * MS), Silent::Nothing);
        assert_eq!(live.check(t0 + 1002 * MS), Check::Done);
        assert!(live.connected());
    }

    #[test]
    fn packets_reported_out_of_order_keep_the_newest_arrival() {
        let t0 = Instant::now();
        let live = Liveness::new(t0);
        live.media(t0 + 3000 * MS);
        live.media(t0 + 1000 * MS);
        assert_eq!(live.ice_silent(t0 + 3500 * MS), Silent::Watch);
    }
}
