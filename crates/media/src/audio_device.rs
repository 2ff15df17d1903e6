//! Microphones and speakers through cpal, each owned by one dedicated thread for its
//! life. Callbacks convert between the device's format (any rate, any channel count) and
//! 48 kHz mono i16 through a lock-free ring buffer; they never block, lock, log or
//! allocate. A full (microphone) or empty (speaker) ring is counted, not waited on.
//! A device error, such as unplugging, ends the stream with a [`DeviceEvent`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{FromSample, Sample, SampleFormat, SizedSample};

use crate::MediaError;
use crate::processing::FarEndSender;
use crate::resample::LinearResampler;
use crate::tone::SAMPLE_RATE;

/// Ring capacity: 500 ms at 48 kHz. Generous for jitter, bounded for latency.
const RING_SAMPLES: usize = 24_000;

/// A device as the user picks it. `id` is stable across runs where the host allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioDeviceInfo {
    pub id: String,
    pub name: String,
    pub is_default: bool,
}

/// What happened to an open device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceEvent {
    /// The stream stopped (device unplugged, server gone, ...). Nothing more will come.
    Ended { reason: String },
}

/// Counters a device thread keeps.
#[derive(Debug, Default)]
pub struct DeviceStats {
    /// Samples dropped because the ring was full (microphone) or missing because it was
    /// empty (speaker).
    pub overruns: AtomicU64,
    pub underruns: AtomicU64,
    pub callbacks: AtomicU64,
    /// Errors the stream went on after (xruns, a rerouted default device, transient
    /// backend failures).
    pub glitches: AtomicU64,
}

/// Whether a stream error ends the stream. cpal reports xruns, reroutes of the default
/// device, refused real-time priority and transient backend failures through the same
/// callback, and its ALSA worker keeps the stream running after them (PulseAudio's ALSA
/// plugin returns EIO from `snd_pcm_avail_delay` now and then, and the next period plays
/// fine): those are counted. Only a device or host that is gone, a stream that must be
/// rebuilt, or a refused permission ends it.
fn ends_stream(err: &cpal::Error) -> bool {
    use cpal::ErrorKind as K;
    matches!(
        err.kind(),
        K::DeviceNotAvailable | K::HostUnavailable | K::StreamInvalidated | K::PermissionDenied
    )
}

/// ALSA's global configuration and PulseAudio's ALSA plugin are not safe to open or close
/// streams from several threads at once: concurrently opened streams were seen failing
/// with EIO ("snd_pcm_avail_delay") right after starting. Every open, close and
/// enumeration holds this lock.
static DEVICE_LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn device_lock() -> std::sync::MutexGuard<'static, ()> {
    DEVICE_LOCK
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn device_err(err: impl std::fmt::Display) -> MediaError {
    MediaError::Device(err.to_string())
}

fn list(input: bool) -> Result<Vec<AudioDeviceInfo>, MediaError> {
    let _lock = device_lock();
    let host = cpal::default_host();
    let default_id = if input {
        host.default_input_device()
    } else {
        host.default_output_device()
    }
    .and_then(|d| d.id().ok());
    let devices = if input {
        host.input_devices()
    } else {
        host.output_devices()
    }
    .map_err(device_err)?;
    Ok(devices
        .filter_map(|device| {
            let id = device.id().ok()?;
            let name = device
                .description()
                .map(|d| d.name().to_owned())
                .unwrap_or_else(|_| id.to_string());
            Some(AudioDeviceInfo {
                is_default: Some(&id) == default_id.as_ref(),
                id: id.to_string(),
                name,
            })
        })
        .collect())
}

pub fn input_devices() -> Result<Vec<AudioDeviceInfo>, MediaError> {
    list(true)
}

pub fn output_devices() -> Result<Vec<AudioDeviceInfo>, MediaError> {
    list(false)
}

fn find(input: bool, id: Option<&str>) -> Result<cpal::Device, MediaError> {
    let host = cpal::default_host();
    let kind = if input { "microphone" } else { "speaker" };
    match id {
        None => if input {
            host.default_input_device()
        } else {
            host.default_output_device()
        }
        .ok_or(MediaError::NoDevice(kind)),
        Some(wanted) => {
            let parsed: cpal::DeviceId =
                wanted.parse().map_err(|_| MediaError::DeviceNotFound {
                    kind,
                    id: wanted.to_owned(),
                })?;
            host.device_by_id(&parsed)
                .ok_or(MediaError::DeviceNotFound {
                    kind,
                    id: wanted.to_owned(),
                })
        }
    }
}

/// The device's default format with ~10 ms periods where the device allows a choice.
/// Left to its default, PulseAudio's ALSA plugin hands capture over in ~2 s bursts
/// (measured here), which adds seconds of latency and overflows any sane ring.
fn low_latency(config: &cpal::SupportedStreamConfig) -> cpal::StreamConfig {
    let mut stream: cpal::StreamConfig = (*config).into();
    if let cpal::SupportedBufferSize::Range { min, max } = *config.buffer_size() {
        let ten_ms = (config.sample_rate() / 100).clamp(min, max);
        stream.buffer_size = cpal::BufferSize::Fixed(ten_ms);
    }
    stream
}

/// A device, its stream settings and its native sample format.
struct Prepared {
    device: cpal::Device,
    config: cpal::StreamConfig,
    format: SampleFormat,
    rate: u32,
    channels: u16,
}

fn prepare(input: bool, id: Option<&str>) -> Result<Prepared, MediaError> {
    let device = find(input, id)?;
    let supported = if input {
        device.default_input_config()
    } else {
        device.default_output_config()
    }
    .map_err(device_err)?;
    Ok(Prepared {
        config: low_latency(&supported),
        format: supported.sample_format(),
        rate: supported.sample_rate(),
        channels: supported.channels(),
        device,
    })
}

/// Calls `$build::<T>(args)` with the Rust sample type of a device's native format.
macro_rules! with_sample_type {
    ($format:expr, $build:ident ( $($arg:expr),* )) => {
        match $format {
            SampleFormat::F32 => $build::<f32>($($arg),*),
            SampleFormat::I16 => $build::<i16>($($arg),*),
            SampleFormat::I32 => $build::<i32>($($arg),*),
            SampleFormat::U8 => $build::<u8>($($arg),*),
            other => Err(MediaError::Device(format!("unsupported sample format {other}"))),
        }
    };
}

/// A running device thread: stops and joins on drop.
#[derive(Debug)]
struct DeviceThread {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    events: mpsc::Receiver<DeviceEvent>,
}

impl Drop for DeviceThread {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
        if let Some(handle) = self.handle.take() {
            handle.thread().unpark();
            let _ = handle.join();
        }
    }
}

/// Starts the thread that owns the stream (cpal streams are not `Send` on every host,
/// so the stream is built, played and dropped on that one thread).
fn spawn_device<F>(name: &str, build: F) -> Result<DeviceThread, MediaError>
where
    F: FnOnce(mpsc::SyncSender<DeviceEvent>) -> Result<cpal::Stream, MediaError> + Send + 'static,
{
    let stop = Arc::new(AtomicBool::new(false));
    let (events_tx, events) = mpsc::sync_channel(8);
    let (ready_tx, ready_rx) = mpsc::sync_channel(1);
    let thread_stop = Arc::clone(&stop);
    let handle = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let stream =
                match build(events_tx).and_then(|s| s.play().map(|()| s).map_err(device_err)) {
                    Ok(stream) => stream,
                    Err(err) => {
                        let _ = ready_tx.send(Err(err));
                        return;
                    }
                };
            let _ = ready_tx.send(Ok(()));
            while !thread_stop.load(Relaxed) {
                std::thread::park_timeout(Duration::from_millis(200));
            }
            let _lock = device_lock();
            drop(stream);
        })
        .map_err(device_err)?;
    let thread = DeviceThread {
        stop,
        handle: Some(handle),
        events,
    };
    match ready_rx.recv() {
        Ok(Ok(())) => Ok(thread),
        Ok(Err(err)) => Err(err),
        Err(_) => Err(MediaError::Device(
            "the device thread ended while opening".into(),
        )),
    }
}

/// A microphone delivering 48 kHz mono.
#[derive(Debug)]
pub struct Microphone {
    ring: rtrb::Consumer<i16>,
    pub stats: Arc<DeviceStats>,
    pub device_rate: u32,
    pub device_channels: u16,
    thread: DeviceThread,
}

impl Microphone {
    /// Opens `id` (from [`input_devices`]) or the default microphone. The calling thread
    /// is the one [`Self::read_timeout`] wakes: open and read on the same thread.
    pub fn open(id: Option<&str>) -> Result<Self, MediaError> {
        let reader = std::thread::current();
        let _lock = device_lock();
        let opened = prepare(true, id)?;
        let (producer, ring) = rtrb::RingBuffer::new(RING_SAMPLES);
        let stats = Arc::new(DeviceStats::default());
        let thread_stats = Arc::clone(&stats);
        let (rate, channels) = (opened.rate, opened.channels);
        let thread = spawn_device("chingu-mic", move |events| {
            let Prepared {
                device,
                config,
                format,
                ..
            } = opened;
            with_sample_type!(
                format,
                build_input(&device, &config, producer, thread_stats, events, reader)
            )
        })?;
        Ok(Self {
            ring,
            stats,
            device_rate: rate,
            device_channels: channels,
            thread,
        })
    }

    /// Takes exactly `out.len()` samples if that many are buffered.
    pub fn read(&mut self, out: &mut [i16]) -> bool {
        let Ok(chunk) = self.ring.read_chunk(out.len()) else {
            return false;
        };
        let (a, b) = chunk.as_slices();
        out[..a.len()].copy_from_slice(a);
        out[a.len()..].copy_from_slice(b);
        chunk.commit_all();
        true
    }

    /// Like [`Self::read`], but waits up to `timeout` for enough samples: the device's
    /// callback wakes the thread that opened the microphone after each buffer.
    pub fn read_timeout(&mut self, out: &mut [i16], timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.read(out) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            // A wake-up meant for someone else, or one that came before enough samples,
            // only costs another look at the ring.
            std::thread::park_timeout(left);
        }
    }

    /// Samples waiting to be read.
    pub fn buffered(&self) -> usize {
        self.ring.slots()
    }

    pub fn poll_event(&self) -> Option<DeviceEvent> {
        self.thread.events.try_recv().ok()
    }
}

fn build_input<T>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    mut ring: rtrb::Producer<i16>,
    stats: Arc<DeviceStats>,
    events: mpsc::SyncSender<DeviceEvent>,
    reader: std::thread::Thread,
) -> Result<cpal::Stream, MediaError>
where
    T: SizedSample,
    f32: FromSample<T>,
{
    let channels = usize::from(config.channels.max(1));
    let mut resampler = LinearResampler::new(config.sample_rate, SAMPLE_RATE);
    let error_stats = Arc::clone(&stats);
    let data = move |data: &[T], _: &cpal::InputCallbackInfo| {
        stats.callbacks.fetch_add(1, Relaxed);
        for frame in data.chunks_exact(channels) {
            let mono = frame.iter().map(|s| f32::from_sample(*s)).sum::<f32>() / channels as f32;
            resampler.push(mono, |y| {
                let sample = (y.clamp(-1.0, 1.0) * f32::from(i16::MAX)) as i16;
                if ring.push(sample).is_err() {
                    stats.overruns.fetch_add(1, Relaxed);
                }
            });
        }
        // Lock-free (an atomic and, if the reader sleeps, one futex wake): fine here.
        reader.unpark();
    };
    let error = move |err: cpal::Error| {
        if ends_stream(&err) {
            let _ = events.try_send(DeviceEvent::Ended {
                reason: err.to_string(),
            });
        } else {
            error_stats.glitches.fetch_add(1, Relaxed);
        }
    };
    device
        .build_input_stream(*config, data, error, None)
        .map_err(device_err)
}

/// A speaker fed with 48 kHz mono; plays silence when nothing is queued.
#[derive(Debug)]
pub struct Speaker {
    ring: rtrb::Producer<i16>,
    pub stats: Arc<DeviceStats>,
    pub device_rate: u32,
    pub device_channels: u16,
    thread: DeviceThread,
}

impl Speaker {
    /// Opens `id` (from [`output_devices`]) or the default speaker.
    pub fn open(id: Option<&str>) -> Result<Self, MediaError> {
        Self::open_with_far_end(id, None)
    }

    /// Opens a speaker whose device callback pushes every sample it takes (48 kHz mono,
    /// silence where the ring ran dry) into `far_end` as it hands it to the device: the
    /// echo canceller's reference, timed by the device's own clock. A reference pushed by
    /// whoever writes to the speaker would be early by however much happens to be queued,
    /// which varies from one frame to the next (measured: AEC3's delay estimate jumping
    /// 112 → 140 ms mid-call, the echo coming back meanwhile).
    pub fn open_with_far_end(
        id: Option<&str>,
        far_end: Option<FarEndSender>,
    ) -> Result<Self, MediaError> {
        let _lock = device_lock();
        let opened = prepare(false, id)?;
        let (ring, consumer) = rtrb::RingBuffer::new(RING_SAMPLES);
        let stats = Arc::new(DeviceStats::default());
        let thread_stats = Arc::clone(&stats);
        let (rate, channels) = (opened.rate, opened.channels);
        let thread = spawn_device("chingu-speaker", move |events| {
            let Prepared {
                device,
                config,
                format,
                ..
            } = opened;
            with_sample_type!(
                format,
                build_output(&device, &config, consumer, far_end, thread_stats, events)
            )
        })?;
        Ok(Self {
            ring,
            stats,
            device_rate: rate,
            device_channels: channels,
            thread,
        })
    }

    /// Queues samples; returns how many fit (the rest would exceed the ring's 500 ms).
    pub fn write(&mut self, samples: &[i16]) -> usize {
        let n = samples.len().min(self.ring.slots());
        if let Ok(mut chunk) = self.ring.write_chunk(n) {
            let (a, b) = chunk.as_mut_slices();
            let split = a.len();
            a.copy_from_slice(&samples[..split]);
            b.copy_from_slice(&samples[split..n]);
            chunk.commit_all();
        }
        n
    }

    /// Samples queued and not yet taken by the device.
    pub fn queued(&self) -> usize {
        RING_SAMPLES - self.ring.slots()
    }

    pub fn poll_event(&self) -> Option<DeviceEvent> {
        self.thread.events.try_recv().ok()
    }
}

fn build_output<T>(
    device: &cpal::Device,
    config: &cpal::StreamConfig,
    mut ring: rtrb::Consumer<i16>,
    mut far_end: Option<FarEndSender>,
    stats: Arc<DeviceStats>,
    events: mpsc::SyncSender<DeviceEvent>,
) -> Result<cpal::Stream, MediaError>
where
    T: SizedSample + FromSample<f32>,
{
    let channels = usize::from(config.channels.max(1));
    // What the device took, gathered for the far end and pushed in batches.
    let mut taken = [0i16; 240];
    let mut taken_len = 0usize;
    // From 48 kHz to the device rate; holds the next converted sample between frames.
    let mut resampler = LinearResampler::new(SAMPLE_RATE, config.sample_rate);
    let mut pending: [f32; 8] = [0.0; 8];
    let (mut pending_len, mut pending_at) = (0usize, 0usize);
    let error_stats = Arc::clone(&stats);
    let data = move |data: &mut [T], _: &cpal::OutputCallbackInfo| {
        stats.callbacks.fetch_add(1, Relaxed);
        for frame in data.chunks_exact_mut(channels) {
            while pending_at == pending_len {
                pending_len = 0;
                pending_at = 0;
                let sample = ring.pop().unwrap_or_else(|_| {
                    stats.underruns.fetch_add(1, Relaxed);
                    0
                });
                if let Some(far_end) = far_end.as_mut() {
                    taken[taken_len] = sample;
                    taken_len += 1;
                    if taken_len == taken.len() {
                        far_end.push(&taken);
                        taken_len = 0;
                    }
                }
                let input = f32::from(sample) / f32::from(i16::MAX);
                resampler.push(input, |y| {
                    if pending_len < pending.len() {
                        pending[pending_len] = y;
                        pending_len += 1;
                    }
                });
            }
            let value = T::from_sample(pending[pending_at]);
            pending_at += 1;
            frame.fill(value);
        }
        if let Some(far_end) = far_end.as_mut()
            && taken_len > 0
        {
            far_end.push(&taken[..taken_len]);
            taken_len = 0;
        }
    };
    let error = move |err: cpal::Error| {
        if ends_stream(&err) {
            let _ = events.try_send(DeviceEvent::Ended {
                reason: err.to_string(),
            });
        } else {
            error_stats.glitches.fetch_add(1, Relaxed);
        }
    };
    device
        .build_output_stream(*config, data, error, None)
        .map_err(device_err)
}
