//! Video frames from the engine to the webview.
//!
//! Each stream (the peer's video, the local preview) is a [`Feed`]: a newest-wins slot
//! the engine's decoding or capture thread writes into. The webview reads it over a
//! loopback WebSocket (the transport chosen by measurement,
//! docs/decisions/0007-video-transport.md): `ws://127.0.0.1:<port>/<stream>?token=<t>&w=<shown width>`,
//! where the port and the per-session random token come from the `video_endpoint`
//! command, so only this app's page can connect. The server sends one frame, then waits
//! for the page's acknowledgement (the width it now shows the stream at, as text)
//! before sending the next: at most one frame in flight, and a slow page skips frames
//! rather than queueing them.
//!
//! A frame on the wire is a 32-byte little-endian header followed by the I420 planes:
//!
//! | offset | type | field |
//! |---|---|---|
//! | 0 | u32 | width |
//! | 4 | u32 | height |
//! | 8 | u32 | sequence number (wraps) |
//! | 12 | u32 | frames dropped so far (written while the previous one was unread) |
//! | 16 | f64 | capture time, ms since the Unix epoch |
//! | 24 | f64 | time the frame reached the feed, ms since the Unix epoch |
//!
//! then `width*height` bytes of Y, and `width*height/4` bytes each of U and V.
//! Frames are box-downscaled by a power of two when the webview shows them at half the
//! size or less (the preview inset), so it never receives more pixels than it draws.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use chingu_media::I420Frame;
use chingu_media::frame::now_us;
use chingu_media::latest::Latest;
use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::http::StatusCode;

pub const HEADER_LEN: usize = 32;
/// How long the server waits for a new frame before checking the connection again.
const POLL: Duration = Duration::from_secs(1);
/// A page that has not acknowledged a frame this long is reported in the log (once per
/// frame): a picture stuck in the page looks like a frozen call to the user.
const ACK_WARN: Duration = Duration::from_secs(2);
/// The largest downscale factor (a 1080p frame for a 240-pixel inset).
const MAX_SCALE: usize = 8;

/// One video stream's newest frame, serialized and ready to send: a newest-wins
/// [`Latest`] slot plus a sequence number the sender waits on.
#[derive(Debug)]
pub struct Feed {
    slot: Latest<Vec<u8>>,
    /// The width the webview shows this stream at (0: unknown, send full size).
    shown_width: AtomicUsize,
    seq: watch::Sender<u32>,
}

impl Default for Feed {
    fn default() -> Self {
        Self {
            slot: Latest::new(),
            shown_width: AtomicUsize::new(0),
            seq: watch::Sender::new(0),
        }
    }
}

impl Feed {
    /// Stores `frame` as the newest one, replacing an unread one (counted as dropped).
    /// Called on the decoding or capture thread: copies once, never blocks on the
    /// webview, and holds the slot's lock only to swap buffers (the copy happens
    /// outside it, so the sender never waits on a frame being written).
    pub fn push(&self, frame: &I420Frame) {
        let ready_ms = now_us() as f64 / 1000.0;
        let mut buf = self.slot.take_buffer().unwrap_or_default();
        let dropped = u32::try_from(self.slot.replaced()).unwrap_or(u32::MAX);
        let scale = scale_for(
            frame.width(),
            frame.height(),
            self.shown_width.load(Relaxed),
        );
        let (w, h) = (frame.width() / scale, frame.height() / scale);
        buf.clear();
        buf.reserve(HEADER_LEN + w * h * 3 / 2);
        let seq = self.seq.borrow().wrapping_add(1);
        buf.extend_from_slice(&(w as u32).to_le_bytes());
        buf.extend_from_slice(&(h as u32).to_le_bytes());
        buf.extend_from_slice(&seq.to_le_bytes());
        buf.extend_from_slice(&dropped.to_le_bytes());
        buf.extend_from_slice(&(frame.capture_us as f64 / 1000.0).to_le_bytes());
        buf.extend_from_slice(&ready_ms.to_le_bytes());
        downscale_into(&frame.y, frame.width(), frame.height(), scale, &mut buf);
        let (cw, ch) = (frame.width() / 2, frame.height() / 2);
        downscale_into(&frame.u, cw, ch, scale, &mut buf);
        downscale_into(&frame.v, cw, ch, scale, &mut buf);
        self.slot.put(buf);
        self.seq.send_replace(seq);
    }

    /// Drops the unread frame, if any (a call ended: its last picture must not open the
    /// next one).
    pub fn clear(&self) {
        self.slot.clear();
    }

    /// Sets the width the webview shows this stream at.
    pub fn set_shown_width(&self, width: usize) {
        self.shown_width.store(width, Relaxed);
    }

    /// Waits up to `wait` for a frame other than `after` (the sequence number the
    /// caller last drew) and takes it.
    pub async fn next(&self, after: u32, wait: Duration) -> Option<Vec<u8>> {
        let mut changed = self.seq.subscribe();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if *changed.borrow_and_update() != after
                && let Some(frame) = self.slot.take()
            {
                return Some(frame);
            }
            match tokio::time::timeout_at(deadline, changed.changed()).await {
                Ok(Ok(())) => {}
                // Timed out, or the feed is gone.
                Ok(Err(_)) | Err(_) => return None,
            }
        }
    }
}

/// The two streams the call screen shows.
#[derive(Debug, Default)]
pub struct VideoHub {
    pub remote: Feed,
    pub local: Feed,
}

impl VideoHub {
    pub fn feed(&self, name: &str) -> Option<&Feed> {
        match name {
            "remote" => Some(&self.remote),
            "local" => Some(&self.local),
            _ => None,
        }
    }

    /// The engine's sinks for both streams.
    pub fn sinks(
        self: &Arc<Self>,
    ) -> (
        chingu_engine::pipeline::VideoSink,
        chingu_engine::pipeline::VideoSink,
    ) {
        let remote = Arc::clone(self);
        let local = Arc::clone(self);
        (
            Arc::new(move |frame, _| remote.remote.push(frame)),
            Arc::new(move |frame, _| local.local.push(frame)),
        )
    }
}

/// Where the page connects for video.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, specta::Type)]
pub struct VideoEndpoint {
    /// `ws://127.0.0.1:<port>`
    pub url: String,
    /// Random, per app run; every connection must present it.
    pub token: String,
}

/// A connection request: `/<stream>?token=<token>&w=<shown width>`.
#[derive(Debug, Default, PartialEq)]
struct Query {
    stream: String,
    token: String,
    width: Option<usize>,
}

impl Query {
    /// Unknown or malformed parameters are ignored (a missing token is refused later).
    fn parse(path_and_query: &str) -> Self {
        let (path, query) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        let mut parsed = Self {
            stream: path.trim_start_matches('/').to_owned(),
            ..Self::default()
        };
        for pair in query.split('&') {
            let Some((key, value)) = pair.split_once('=') else {
                continue;
            };
            match key {
                "token" => parsed.token = value.to_owned(),
                "w" => parsed.width = parse_width(value),
                _ => {}
            }
        }
        parsed
    }
}

fn parse_width(text: &str) -> Option<usize> {
    text.trim().parse().ok().filter(|w| *w > 0 && *w <= 16384)
}

/// Compares without an early exit, so response timing does not reveal a prefix.
fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// Starts the video server on a loopback port; it runs until the runtime stops.
pub async fn serve(hub: Arc<VideoHub>) -> std::io::Result<VideoEndpoint> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
    let port = listener.local_addr()?.port();
    let token = chingu_engine::ids::secret_hex::<16>()?;
    let endpoint = VideoEndpoint {
        url: format!("ws://127.0.0.1:{port}"),
        token: token.clone(),
    };
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(connection(Arc::clone(&hub), stream, token.clone()));
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!("video server: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(endpoint)
}

/// One page connection: checks the stream and token in the handshake, then sends
/// frames one at a time, each after the previous one's acknowledgement.
async fn connection(hub: Arc<VideoHub>, stream: tokio::net::TcpStream, token: String) {
    let mut query = Query::default();
    // The Err type is tungstenite's handshake callback signature.
    #[allow(clippy::result_large_err)]
    let check = |request: &Request, response: Response| {
        let path = request.uri().path_and_query().map_or("", |p| p.as_str());
        query = Query::parse(path);
        let refuse = |status, why: &str| {
            let mut refused = ErrorResponse::new(Some(why.to_owned()));
            *refused.status_mut() = status;
            refused
        };
        if !same_token(&query.token, &token) {
            Err(refuse(StatusCode::FORBIDDEN, "bad token"))
        } else if hub.feed(&query.stream).is_none() {
            Err(refuse(StatusCode::NOT_FOUND, "no such video stream"))
        } else {
            Ok(response)
        }
    };
    let handshake = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::accept_hdr_async(stream, check),
    );
    let Ok(Ok(mut ws)) = handshake.await else {
        return;
    };
    let Some(feed) = hub.feed(&query.stream) else {
        return;
    };
    if let Some(width) = query.width {
        feed.set_shown_width(width);
    }
    tracing::debug!(stream = query.stream, width = ?query.width, "video: page connected");
    let mut after = 0;
    loop {
        let frame = tokio::select! {
            frame = feed.next(after, POLL) => frame,
            // The page closed (or sent something while no frame was out).
            message = ws.next() => match message {
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => None,
                _ => return,
            },
        };
        let Some(frame) = frame else {
            tracing::debug!(
                stream = query.stream,
                after,
                newest = *feed.seq.borrow(),
                "video: no new frame to send for {POLL:?}"
            );
            continue;
        };
        after = u32::from_le_bytes([frame[8], frame[9], frame[10], frame[11]]);
        if ws.send(Message::Binary(frame.into())).await.is_err() {
            return;
        }
        // Wait for the acknowledgement: the width the page shows this stream at.
        let mut slow = false;
        loop {
            let message = match tokio::time::timeout(ACK_WARN, ws.next()).await {
                Ok(message) => message,
                Err(_) => {
                    if !std::mem::replace(&mut slow, true) {
                        tracing::warn!(
                            stream = query.stream,
                            frame = after,
                            "video: the page has not drawn a frame in {ACK_WARN:?}"
                        );
                    }
                    continue;
                }
            };
            match message {
                Some(Ok(Message::Text(text))) => {
                    if let Some(width) = parse_width(&text) {
                        feed.set_shown_width(width);
                    }
                    break;
                }
                Some(Ok(Message::Binary(_))) => break,
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
            }
        }
    }
}

/// The power-of-two factor that brings a `width` x `height` frame down to no less than
/// `shown` pixels wide, keeping both chroma dimensions whole.
fn scale_for(width: usize, height: usize, shown: usize) -> usize {
    let mut scale = 1;
    while scale < MAX_SCALE
        && shown > 0
        && width / (scale * 2) >= shown
        && width.is_multiple_of(scale * 4)
        && height.is_multiple_of(scale * 4)
    {
        scale *= 2;
    }
    scale
}

/// Appends `plane` (`width` x `height`) to `out`, averaged over `scale` x `scale` blocks.
fn downscale_into(plane: &[u8], width: usize, height: usize, scale: usize, out: &mut Vec<u8>) {
    if scale == 1 {
        out.extend_from_slice(&plane[..width * height]);
        return;
    }
    let area = (scale * scale) as u32;
    let mut sums = vec![0u32; width / scale];
    for rows in plane[..width * height].chunks_exact(width * scale) {
        sums.fill(0);
        for row in rows.chunks_exact(width) {
            for (sum, block) in sums.iter_mut().zip(row.chunks_exact(scale)) {
                *sum += block.iter().map(|&p| u32::from(p)).sum::<u32>();
            }
        }
        out.extend(sums.iter().map(|&s| ((s + area / 2) / area) as u8));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(width: usize, height: usize, y: u8) -> I420Frame {
        let mut frame = I420Frame::new(width, height).expect("size");
        frame.y.fill(y);
        frame.capture_us = 1_000_000;
        frame
    }

    fn dims(bytes: &[u8]) -> (u32, u32) {
        let (w, h, ..) = header(bytes);
        (w, h)
    }

    fn header(bytes: &[u8]) -> (u32, u32, u32, u32, f64) {
        let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap());
        let capture = f64::from_le_bytes(bytes[16..24].try_into().unwrap());
        (u32_at(0), u32_at(4), u32_at(8), u32_at(12), capture)
    }

    #[tokio::test]
    async fn a_frame_is_serialized_with_its_header_and_planes() {
        let feed = Feed::default();
        feed.push(&frame(4, 2, 77));
        let bytes = feed.next(0, Duration::ZERO).await.expect("a frame");
        assert_eq!(header(&bytes), (4, 2, 1, 0, 1000.0));
        assert_eq!(bytes.len(), HEADER_LEN + 8 + 2 + 2);
        assert_eq!(&bytes[HEADER_LEN..HEADER_LEN + 8], &[77; 8]);
        assert_eq!(&bytes[HEADER_LEN + 8..], &[128; 4]);
    }

    #[tokio::test]
    async fn the_newest_frame_wins_and_replaced_ones_are_counted() {
        let feed = Feed::default();
        for y in [10, 20, 30] {
            feed.push(&frame(2, 2, y));
        }
        let bytes = feed.next(0, Duration::ZERO).await.expect("a frame");
        let (_, _, seq, dropped, _) = header(&bytes);
        assert_eq!((seq, dropped), (3, 2));
        assert_eq!(bytes[HEADER_LEN], 30);
        // Taken: asking again after it waits for a new one.
        assert!(feed.next(3, Duration::from_millis(10)).await.is_none());
    }

    #[tokio::test]
    async fn a_cleared_feed_waits_for_a_new_frame() {
        let feed = Feed::default();
        feed.push(&frame(2, 2, 9));
        feed.clear();
        assert!(feed.next(0, Duration::from_millis(10)).await.is_none());
        feed.push(&frame(2, 2, 10));
        let bytes = feed.next(0, Duration::ZERO).await.expect("the new frame");
        assert_eq!(bytes[HEADER_LEN], 10);
    }

    #[tokio::test]
    async fn a_waiting_request_gets_the_next_frame() {
        let feed = Arc::new(Feed::default());
        let waiter = tokio::spawn({
            let feed = Arc::clone(&feed);
            async move { feed.next(0, Duration::from_secs(10)).await }
        });
        tokio::task::yield_now().await;
        feed.push(&frame(2, 2, 5));
        let bytes = waiter.await.expect("joined").expect("a frame");
        assert_eq!(header(&bytes).2, 1);
    }

    #[test]
    fn frames_are_scaled_down_to_the_shown_size_by_powers_of_two() {
        assert_eq!(scale_for(1280, 720, 0), 1);
        assert_eq!(scale_for(1280, 720, 1280), 1);
        assert_eq!(scale_for(1280, 720, 700), 1);
        assert_eq!(scale_for(1280, 720, 640), 2);
        assert_eq!(scale_for(1280, 720, 250), 4);
        assert_eq!(scale_for(1280, 720, 1), 8);
        // Chroma must stay whole: 6 rows cannot be halved twice.
        assert_eq!(scale_for(8, 6, 1), 1);
    }

    #[tokio::test]
    async fn a_downscaled_frame_averages_blocks() {
        let feed = Feed::default();
        feed.set_shown_width(2);
        let mut f = frame(4, 4, 0);
        f.y.copy_from_slice(&[
            0, 2, 100, 100, //
            4, 6, 100, 100, //
            9, 9, 255, 255, //
            9, 9, 255, 255,
        ]);
        feed.push(&f);
        let bytes = feed.next(0, Duration::ZERO).await.expect("a frame");
        assert_eq!(dims(&bytes), (2, 2));
        assert_eq!(&bytes[HEADER_LEN..HEADER_LEN + 4], &[3, 100, 9, 255]);
        assert_eq!(bytes.len(), HEADER_LEN + 4 + 1 + 1);
    }

    #[test]
    fn connection_requests_are_parsed_leniently() {
        assert_eq!(Query::parse(""), Query::default());
        assert_eq!(
            Query::parse("/remote?token=ab&w=-3&zzz&w"),
            Query {
                stream: "remote".into(),
                token: "ab".into(),
                width: None
            }
        );
        assert_eq!(
            Query::parse("/local?w=320&token=t"),
            Query {
                stream: "local".into(),
                token: "t".into(),
                width: Some(320)
            }
        );
        assert!(same_token("abc", "abc"));
        assert!(!same_token("abc", "abd"));
        assert!(!same_token("abc", "ab"));
    }

    async fn connect(
        endpoint: &VideoEndpoint,
        path: &str,
    ) -> Result<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        tokio_tungstenite::tungstenite::Error,
    > {
        tokio_tungstenite::connect_async(format!("{}{path}", endpoint.url))
            .await
            .map(|(ws, _)| ws)
    }

    #[tokio::test]
    async fn the_server_refuses_a_wrong_token_or_stream() {
        let endpoint = serve(Arc::new(VideoHub::default())).await.expect("serve");
        assert_eq!(endpoint.token.len(), 32);
        let status = |e: tokio_tungstenite::tungstenite::Error| match e {
            tokio_tungstenite::tungstenite::Error::Http(r) => r.status(),
            other => panic!("{other}"),
        };
        let wrong = connect(&endpoint, "/remote?token=00")
            .await
            .expect_err("refused");
        assert_eq!(status(wrong), StatusCode::FORBIDDEN);
        let none = connect(&endpoint, "/remote").await.expect_err("refused");
        assert_eq!(status(none), StatusCode::FORBIDDEN);
        let path = format!("/secret?token={}", endpoint.token);
        let unknown = connect(&endpoint, &path).await.expect_err("refused");
        assert_eq!(status(unknown), StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn frames_are_sent_one_at_a_time_at_the_shown_size() {
        let hub = Arc::new(VideoHub::default());
        let endpoint = serve(Arc::clone(&hub)).await.expect("serve");
        let path = format!("/remote?token={}&w=640", endpoint.token);
        let mut ws = connect(&endpoint, &path).await.expect("connected");
        let frame_of = |message: Message| match message {
            Message::Binary(bytes) => bytes.to_vec(),
            other => panic!("{other:?}"),
        };
        let receive = async |ws: &mut tokio_tungstenite::WebSocketStream<_>| {
            tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .expect("in time")
                .expect("open")
                .expect("a message")
        };
        // Pushed until the connection has registered the shown width: 1280 is shown
        // at 640, so it arrives halved.
        let pusher = tokio::spawn({
            let hub = Arc::clone(&hub);
            async move {
                for _ in 0..200 {
                    hub.remote.push(&frame(1280, 720, 50));
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        });
        let first = frame_of(receive(&mut ws).await);
        assert_eq!(dims(&first), (640, 360));
        // Nothing more comes before the acknowledgement...
        assert!(
            tokio::time::timeout(Duration::from_millis(100), ws.next())
                .await
                .is_err()
        );
        // ...which also says the stream is now shown at 320.
        ws.send(Message::Text("320".into())).await.expect("ack");
        let mut second = frame_of(receive(&mut ws).await);
        // The frame written before the new width was seen may still be 640 wide.
        if dims(&second).0 == 640 {
            ws.send(Message::Text("320".into())).await.expect("ack");
            second = frame_of(receive(&mut ws).await);
        }
        assert_eq!(dims(&second), (320, 180));
        assert!(header(&second).2 > header(&first).2, "a newer frame");
        pusher.abort();
    }
}
