//! One policy for every device stream that ends mid-call (camera, microphone, speaker):
//! reopen it a few times with growing waits before telling the user. PulseAudio's ALSA
//! plugin sometimes fails a fresh stream with EIO; a moment later the same device opens
//! fine.

use std::time::Duration;

use chingu_media::MediaError;

use super::config::Device;

/// Reopens per device per call before the failure is reported.
pub(crate) const MAX_REOPENS: u32 = 5;

/// The wait before reopen attempt `attempt` (0-based): 50, 100, 200, 400, 800 ms.
fn delay(attempt: u32) -> Duration {
    Duration::from_millis(50 << attempt.min(4))
}

/// Reopens one device's stream; its attempts are counted over the call (a device that
/// keeps failing is given up on, not reopened forever).
#[derive(Debug)]
pub(crate) struct Reopener {
    device: Device,
    attempts: u32,
}

impl Reopener {
    pub(crate) fn new(device: Device) -> Self {
        Self {
            device,
            attempts: 0,
        }
    }

    /// After the stream ended because of `reason`: tries `open`, waiting before each
    /// attempt, until it works or this call's attempts are spent. Blocks the calling
    /// (device) thread while it waits. The error is what to tell the user.
    pub(crate) fn reopen<T>(
        &mut self,
        reason: &str,
        mut open: impl FnMut() -> Result<T, MediaError>,
    ) -> Result<T, String> {
        while self.attempts < MAX_REOPENS {
            tracing::info!(
                device = %self.device,
                %reason,
                attempt = self.attempts,
                "device stream ended; reopening"
            );
            std::thread::sleep(delay(self.attempts));
            self.attempts += 1;
            match open() {
                Ok(stream) => return Ok(stream),
                Err(e) => tracing::info!(device = %self.device, "reopening failed: {e}"),
            }
        }
        Err(reason.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_grow_and_are_bounded() {
        let waits: Vec<u64> = (0..7).map(|a| delay(a).as_millis() as u64).collect();
        assert_eq!(waits, [50, 100, 200, 400, 800, 800, 800]);
    }

    #[test]
    fn a_device_is_reopened_until_it_works_and_given_up_after_the_budget() {
        let mut reopener = Reopener::new(Device::Microphone);
        let mut tries = 0;
        let opened = reopener.reopen("EIO", || {
            tries += 1;
            if tries < 2 {
                Err(MediaError::Device("still busy".into()))
            } else {
                Ok("stream")
            }
        });
        assert_eq!(opened, Ok("stream"));
        assert_eq!(tries, 2, "failed once, then opened");
        let gone = reopener.reopen("unplugged", || {
            Err::<(), _>(MediaError::NoDevice("microphone"))
        });
        assert_eq!(
            gone,
            Err("unplugged".to_owned()),
            "the rest of the call's attempts fail: reported with what ended the stream"
        );
        assert_eq!(reopener.attempts, MAX_REOPENS);
    }
}
