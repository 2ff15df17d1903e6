//! Recovery without keyframes, sans-IO, both sides.
//!
//! The receiver ([`Mending`]) names frames by what both ends compute
//! (`h264_syntax::fingerprint`): it confirms each frame that made a long-term picture,
//! and when a lost reference picture stops the picture it asks the sender to recover from
//! the last frame it decoded, before it asks for a keyframe.
//!
//! The sender ([`SentFrames`]) knows the frames it sent since its last IDR by those names,
//! so that feedback turns into what the encoder needs (its IDR's `idr_pic_id` and
//! `frame_num`s). A name not among them — a frame of an earlier stream, from before an
//! IDR the receiver may not have — is answered with a keyframe, never with a picture that
//! refers to something the receiver lacks.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use chingu_media::h264_syntax::{self, HeaderReader};

use crate::packets::PictureFeedback;

/// Frames remembered (20 s at 30 fps): feedback about an older one is stale.
const KEPT: usize = 600;

/// One frame we sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sent {
    name: u32,
    frame_num: u32,
    /// The `frame_num` of the picture it made long-term.
    marked: Option<u32>,
    /// It is an IDR, with this `idr_pic_id`.
    idr_pic_id: Option<u32>,
}

impl Sent {
    pub(crate) fn frame_num(&self) -> u32 {
        self.frame_num
    }

    pub(crate) fn is_idr(&self) -> bool {
        self.idr_pic_id.is_some()
    }
}

/// What to do with a piece of feedback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Tell the encoder the receiver has long-term picture `frame_num`.
    Confirm { idr_pic_id: u32, frame_num: u32 },
    /// Ask the encoder to recover from a picture the receiver has.
    Recover {
        idr_pic_id: u32,
        last_correct: u32,
        current: u32,
    },
    /// The receiver's pictures are not of this stream: only a keyframe helps.
    Keyframe,
    /// Nothing (a confirmation of a frame we no longer know).
    Nothing,
}

#[derive(Debug, Default)]
pub(crate) struct SentFrames {
    reader: HeaderReader,
    idr_pic_id: Option<u32>,
    frames: VecDeque<Sent>,
}

impl SentFrames {
    /// Reads an encoded frame (keeping its parameter sets) without noting it as sent.
    pub(crate) fn read(&mut self, annex_b: &[u8]) -> Option<Sent> {
        let (info, header) = self.reader.first_slice(annex_b)?;
        let header = header?;
        let marked = header.long_term_marked(self.reader.sps()?);
        Some(Sent {
            name: h264_syntax::fingerprint(annex_b)?,
            frame_num: info.frame_num,
            marked,
            idr_pic_id: header.idr_pic_id,
        })
    }

    /// A frame left for the peer. An IDR begins a new stream: what came before is
    /// forgotten.
    pub(crate) fn record(&mut self, sent: Sent) {
        if let Some(id) = sent.idr_pic_id {
            self.idr_pic_id = Some(id);
            self.frames.clear();
        }
        if self.idr_pic_id.is_none() {
            return;
        }
        if self.frames.len() == KEPT {
            self.frames.pop_front();
        }
        self.frames.push_back(sent);
    }

    /// A new encoder: nothing sent so far belongs to its stream.
    pub(crate) fn reset(&mut self) {
        self.idr_pic_id = None;
        self.frames.clear();
    }

    /// The stream's `idr_pic_id` and the `frame_num` of the last frame sent.
    pub(crate) fn last(&self) -> Option<(u32, u32)> {
        Some((self.idr_pic_id?, self.frames.back()?.frame_num))
    }

    fn find(&self, name: u32) -> Option<&Sent> {
        self.frames.iter().rev().find(|f| f.name == name)
    }

    pub(crate) fn answer(&self, feedback: PictureFeedback) -> Answer {
        let Some(idr_pic_id) = self.idr_pic_id else {
            return match feedback {
                PictureFeedback::LongTermDecoded { .. } => Answer::Nothing,
                PictureFeedback::Recover { .. } => Answer::Keyframe,
            };
        };
        match feedback {
            PictureFeedback::LongTermDecoded { frame } => {
                match self.find(frame).and_then(|f| f.marked) {
                    Some(frame_num) => Answer::Confirm {
                        idr_pic_id,
                        frame_num,
                    },
                    None => Answer::Nothing,
                }
            }
            PictureFeedback::Recover {
                last_decoded,
                current,
            } => match (self.find(last_decoded), self.frames.back()) {
                (Some(last), Some(newest)) => Answer::Recover {
                    idr_pic_id,
                    last_correct: last.frame_num,
                    current: self.find(current).unwrap_or(newest).frame_num,
                },
                _ => Answer::Keyframe,
            },
        }
    }
}

/// Recovery requests sent for one stop of the picture before a keyframe is asked for
/// instead (the sender may have no long-term picture, or the answers are lost).
const RECOVERY_ASKS: u32 = 3;
/// How often the last long-term picture decoded is confirmed again (the confirmation
/// may be lost, and the sender marks no new one until it has it).
const CONFIRM_AGAIN: Duration = Duration::from_secs(1);

/// What the receiver asks for when the picture cannot go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ask {
    Keyframe,
    Feedback(PictureFeedback),
}

/// The receiver's side.
#[derive(Debug)]
pub(crate) struct Mending {
    /// Only a keyframe will do: nothing decoded yet, or the decoder itself failed.
    keyframe_only: bool,
    /// The last frame given to the decoder, and the newest one held back since.
    last_decoded: Option<u32>,
    newest: Option<u32>,
    /// Recovery requests sent since the picture stopped.
    asked: u32,
    /// The last frame that made a long-term picture, and when we said so.
    mark: Option<(u32, Instant)>,
}

impl Default for Mending {
    fn default() -> Self {
        Self {
            keyframe_only: true,
            last_decoded: None,
            newest: None,
            asked: 0,
            mark: None,
        }
    }
}

impl Mending {
    /// What to ask for now that the picture is stopped (a request is due);
    /// `peer_recovers` when the peer takes picture feedback.
    pub(crate) fn ask(&mut self, peer_recovers: bool) -> Ask {
        match self.last_decoded {
            Some(last_decoded)
                if peer_recovers && !self.keyframe_only && self.asked < RECOVERY_ASKS =>
            {
                self.asked += 1;
                Ask::Feedback(PictureFeedback::Recover {
                    last_decoded,
                    current: self.newest.unwrap_or(last_decoded),
                })
            }
            _ => Ask::Keyframe,
        }
    }

    /// Whether a frame that refers to a long-term picture may mend the picture (not
    /// when only a keyframe will do).
    pub(crate) fn takes_recovery(&self) -> bool {
        !self.keyframe_only
    }

    /// The decoder itself lost the picture (or never had one): only a keyframe helps.
    pub(crate) fn keyframe_only(&mut self) {
        self.keyframe_only = true;
    }

    /// A frame `name` was held back while the picture is stopped.
    pub(crate) fn held_back(&mut self, name: Option<u32>) {
        if name.is_some() {
            self.newest = name;
        }
    }

    /// A frame `name` went to the decoder (`marked`: it made a long-term picture), and
    /// the picture goes on. Returns the confirmation to send, if any.
    pub(crate) fn decoded(
        &mut self,
        name: Option<u32>,
        marked: bool,
        now: Instant,
    ) -> Option<PictureFeedback> {
        self.keyframe_only = false;
        self.asked = 0;
        self.newest = None;
        self.last_decoded = name;
        let frame = name.filter(|_| marked)?;
        self.mark = Some((frame, now));
        Some(PictureFeedback::LongTermDecoded { frame })
    }

    /// The confirmation of the last long-term picture again, when it is due.
    pub(crate) fn confirm_again(&mut self, now: Instant) -> Option<PictureFeedback> {
        let (frame, at) = self.mark.as_mut()?;
        if now.saturating_duration_since(*at) < CONFIRM_AGAIN {
            return None;
        }
        *at = now;
        Some(PictureFeedback::LongTermDecoded { frame: *frame })
    }

    /// When [`Self::confirm_again`] is next due.
    pub(crate) fn next_confirmation(&self) -> Option<Instant> {
        self.mark.map(|(_, at)| at + CONFIRM_AGAIN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chingu_media::I420Frame;
    use chingu_media::h264::{EncoderSettings, H264Encoder};
    use chingu_media::pattern::TestPattern;

    fn encoded(encoder: &mut H264Encoder, count: u64, from: u64) -> Vec<Vec<u8>> {
        let mut pattern = TestPattern::new();
        let mut frame = I420Frame::new(160, 120).expect("size");
        (from..from + count)
            .map(|i| {
                pattern.draw(&mut frame, i * 33_333);
                let e = encoder.encode(&frame, false).expect("encode");
                e.expect("frame").data.to_vec()
            })
            .collect()
    }

    #[test]
    fn the_receiver_asks_to_recover_a_few_times_then_for_a_keyframe() {
        let t0 = Instant::now();
        let mut mending = Mending::default();
        assert_eq!(mending.ask(true), Ask::Keyframe, "nothing decoded yet");
        assert!(!mending.takes_recovery());
        assert_eq!(
            mending.decoded(Some(1), true, t0),
            Some(PictureFeedback::LongTermDecoded { frame: 1 })
        );
        assert_eq!(mending.decoded(Some(2), false, t0), None);
        mending.held_back(Some(3));
        mending.held_back(None);
        let recover = Ask::Feedback(PictureFeedback::Recover {
            last_decoded: 2,
            current: 3,
        });
        assert_eq!(mending.ask(false), Ask::Keyframe, "a peer without feedback");
        for _ in 0..RECOVERY_ASKS {
            assert_eq!(mending.ask(true), recover);
        }
        assert_eq!(mending.ask(true), Ask::Keyframe, "recovery did not come");
        // Mended by a keyframe: recovery may be asked for again; a decoder failure
        // wants a keyframe whatever the peer takes.
        mending.decoded(Some(4), false, t0);
        assert!(matches!(mending.ask(true), Ask::Feedback(_)));
        mending.keyframe_only();
        assert_eq!(mending.ask(true), Ask::Keyframe);
        // The confirmation is said again each second.
        assert_eq!(mending.confirm_again(t0), None);
        assert_eq!(
            mending.confirm_again(t0 + CONFIRM_AGAIN),
            Some(PictureFeedback::LongTermDecoded { frame: 1 })
        );
        assert_eq!(mending.next_confirmation(), Some(t0 + CONFIRM_AGAIN * 2));
    }

    fn name(frame: &[u8]) -> u32 {
        h264_syntax::fingerprint(frame).expect("name")
    }

    #[test]
    fn feedback_names_frames_of_this_stream_only() {
        let settings = EncoderSettings {
            bitrate_bps: 200_000,
            fps: 30.0,
        };
        let mut encoder = H264Encoder::with_long_term_references(settings).expect("encoder");
        let mut sent = SentFrames::default();
        let first = encoded(&mut encoder, 40, 0);
        for frame in &first {
            let s = sent.read(frame).expect("own frame");
            sent.record(s);
        }
        let idr_pic_id = sent.idr_pic_id.expect("an IDR sent");
        // The IDR is long-term picture 0; a confirmation of it names frame_num 0.
        assert_eq!(
            sent.answer(PictureFeedback::LongTermDecoded {
                frame: name(&first[0])
            }),
            Answer::Confirm {
                idr_pic_id,
                frame_num: 0
            }
        );
        // A frame that marked nothing confirms nothing.
        assert_eq!(
            sent.answer(PictureFeedback::LongTermDecoded {
                frame: name(&first[3])
            }),
            Answer::Nothing
        );
        let recover = sent.answer(PictureFeedback::Recover {
            last_decoded: name(&first[10]),
            current: name(&first[12]),
        });
        assert_eq!(
            recover,
            Answer::Recover {
                idr_pic_id,
                last_correct: 10,
                current: 12
            }
        );
        assert_eq!(sent.last(), Some((idr_pic_id, 39)));
        // A new encoder's stream: the old names mean nothing to it.
        let mut encoder = H264Encoder::with_long_term_references(settings).expect("encoder");
        sent.reset();
        assert_eq!(
            sent.answer(PictureFeedback::Recover {
                last_decoded: name(&first[10]),
                current: name(&first[12]),
            }),
            Answer::Keyframe
        );
        for frame in &encoded(&mut encoder, 5, 100) {
            let s = sent.read(frame).expect("own frame");
            sent.record(s);
        }
        assert_eq!(
            sent.answer(PictureFeedback::Recover {
                last_decoded: name(&first[10]),
                current: name(&first[12]),
            }),
            Answer::Keyframe,
            "a frame from before this stream's IDR"
        );
    }
}
