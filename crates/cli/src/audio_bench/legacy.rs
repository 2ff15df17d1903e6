//! The C++ WebRTC audio processing of Debian 12 (`libwebrtc-audio-processing-dev`,
//! 0.3: the legacy echo canceller, not AEC3), as a stage of the room bench, for the
//! library decision (0011). Built only with `--features webrtc-legacy`.

use chingu_media::processing::{BLOCK, ProcessingSettings};
use chingu_media::room::EchoStage;
use webrtc_audio_processing as wap;

pub struct Legacy {
    processor: wap::Processor,
    buf: Vec<f32>,
}

impl Legacy {
    /// Echo cancellation (delay-agnostic, extended filter: it finds the delay itself),
    /// noise suppression (high) and adaptive digital gain control as `settings` ask.
    pub fn new(settings: ProcessingSettings) -> Self {
        let init = wap::InitializationConfig {
            num_capture_channels: 1,
            num_render_channels: 1,
            ..Default::default()
        };
        let mut processor = wap::Processor::new(&init).expect("WebRTC audio processing");
        processor.set_config(wap::Config {
            echo_cancellation: settings.echo_cancellation.then_some(wap::EchoCancellation {
                suppression_level: wap::EchoCancellationSuppressionLevel::High,
                enable_extended_filter: true,
                enable_delay_agnostic: true,
                stream_delay_ms: None,
            }),
            gain_control: settings.gain_control.then_some(wap::GainControl {
                mode: wap::GainControlMode::AdaptiveDigital,
                target_level_dbfs: 3,
                compression_gain_db: 9,
                enable_limiter: true,
            }),
            noise_suppression: settings.noise_suppression.then_some(wap::NoiseSuppression {
                suppression_level: wap::NoiseSuppressionLevel::High,
            }),
            enable_high_pass_filter: settings.any(),
            ..Default::default()
        });
        Self {
            processor,
            buf: vec![0.0; BLOCK],
        }
    }
}

impl EchoStage for Legacy {
    fn far_end(&mut self, far: &[i16]) {
        for block in far.chunks_exact(BLOCK) {
            for (b, &s) in self.buf.iter_mut().zip(block) {
                *b = f32::from(s) / 32768.0;
            }
            let _ = self.processor.process_render_frame(&mut self.buf);
        }
    }

    fn near_end(&mut self, near: &mut [i16]) {
        for block in near.chunks_exact_mut(BLOCK) {
            for (b, &s) in self.buf.iter_mut().zip(block.iter()) {
                *b = f32::from(s) / 32768.0;
            }
            let _ = self.processor.process_capture_frame(&mut self.buf);
            for (s, &b) in block.iter_mut().zip(&self.buf) {
                *s = (b * 32768.0).round().clamp(-32768.0, 32767.0) as i16;
            }
        }
    }
}
