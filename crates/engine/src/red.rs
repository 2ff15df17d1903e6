//! Redundant audio (RFC 2198 RED), sans-IO: each audio packet can carry copies of the
//! frames before it, so a frame lost on the way is played from the next packet or the one
//! after. Opus's own FEC carries one low-rate copy; RED carries whole frames, as many as
//! the loss calls for (libwebrtc sends Opus in RED the same way).
//!
//! ```text
//! redundant block header: |F=1| block PT (7) | timestamp offset (14) | block length (10) |
//! primary block header:   |F=0| block PT (7) |
//! then the blocks' data: oldest redundant block first, the primary last
//! ```

use bytes::{BufMut, Bytes};

/// The longest block a header can describe.
pub const MAX_BLOCK: usize = 1023;
/// The largest timestamp offset a header can describe.
pub const MAX_OFFSET: u32 = (1 << 14) - 1;

/// How many earlier frames each audio packet carries at a loss (per mille) the peer
/// reports: none on a clean path (Opus's own FEC covers a stray loss), one from 2 %, two
/// from 10 % (a frame is then lost only if three packets in a row are), three from 25 %.
pub fn copies_for_loss(loss_permille: u32) -> usize {
    match loss_permille {
        0..20 => 0,
        20..100 => 1,
        100..250 => 2,
        _ => MAX_COPIES,
    }
}

/// The most copies a packet carries.
pub const MAX_COPIES: usize = 3;

/// One redundant copy: `offset` RTP ticks before the primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Copy {
    pub offset: u32,
    pub payload_type: u8,
    pub data: Bytes,
}

/// A RED payload taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Red {
    pub primary_payload_type: u8,
    pub primary: Bytes,
    /// Oldest first.
    pub copies: Vec<Copy>,
}

/// Why a RED payload could not be taken apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RedError {
    #[error("RED payload ends inside a block header")]
    TruncatedHeader,
    #[error("RED block lengths run past the payload")]
    TruncatedBlock,
}

/// Appends a RED payload to `out`: `copies` (oldest first, `(offset, data)`) then the
/// primary, all of `payload_type`. A copy that a header cannot describe (too long, too
/// old) is left out.
pub fn encode(payload_type: u8, primary: &[u8], copies: &[(u32, &[u8])], out: &mut Vec<u8>) {
    let pt = payload_type & 0x7f;
    let fits = |(offset, data): &&(u32, &[u8])| *offset <= MAX_OFFSET && data.len() <= MAX_BLOCK;
    for (offset, data) in copies.iter().filter(fits) {
        out.put_u8(0x80 | pt);
        // 14 bits of offset, 10 of length.
        let word = (offset << 10) | data.len() as u32;
        out.put_u8((word >> 16) as u8);
        out.put_u8((word >> 8) as u8);
        out.put_u8(word as u8);
    }
    out.put_u8(pt);
    for (_, data) in copies.iter().filter(fits) {
        out.extend_from_slice(data);
    }
    out.extend_from_slice(primary);
}

/// Takes a RED payload apart; the blocks share `payload`'s memory.
pub fn decode(payload: &Bytes) -> Result<Red, RedError> {
    let mut headers = Vec::new();
    let mut at = 0;
    let primary_payload_type = loop {
        let first = *payload.get(at).ok_or(RedError::TruncatedHeader)?;
        if first & 0x80 == 0 {
            at += 1;
            break first & 0x7f;
        }
        let rest = payload
            .get(at + 1..at + 4)
            .ok_or(RedError::TruncatedHeader)?;
        let word = u32::from(rest[0]) << 16 | u32::from(rest[1]) << 8 | u32::from(rest[2]);
        headers.push((first & 0x7f, word >> 10, (word & 0x3ff) as usize));
        at += 4;
    };
    let mut copies = Vec::with_capacity(headers.len());
    for (payload_type, offset, len) in headers {
        let end = at + len;
        if end > payload.len() {
            return Err(RedError::TruncatedBlock);
        }
        copies.push(Copy {
            offset,
            payload_type,
            data: payload.slice(at..end),
        });
        at = end;
    }
    Ok(Red {
        primary_payload_type,
        primary: payload.slice(at..),
        copies,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_round_trips() {
        let mut out = Vec::new();
        encode(
            111,
            b"now",
            &[(1920, b"two ago"), (960, b"one ago")],
            &mut out,
        );
        // Two 4-byte headers, one 1-byte header, then the data.
        assert_eq!(out.len(), 4 + 4 + 1 + 7 + 7 + 3);
        assert_eq!(out[0], 0x80 | 111);
        let red = decode(&Bytes::from(out)).expect("valid");
        assert_eq!(red.primary_payload_type, 111);
        assert_eq!(&red.primary[..], b"now");
        let copies: Vec<(u32, u8, &[u8])> = red
            .copies
            .iter()
            .map(|c| (c.offset, c.payload_type, &c.data[..]))
            .collect();
        assert_eq!(
            copies,
            vec![(1920, 111, &b"two ago"[..]), (960, 111, &b"one ago"[..])]
        );
    }

    #[test]
    fn without_copies_it_is_one_byte_of_header() {
        let mut out = Vec::new();
        encode(111, b"x", &[], &mut out);
        assert_eq!(out, vec![111, b'x']);
        let red = decode(&Bytes::from(out)).unwrap();
        assert!(red.copies.is_empty());
    }

    #[test]
    fn copies_a_header_cannot_describe_are_left_out() {
        let long = vec![0u8; MAX_BLOCK + 1];
        let mut out = Vec::new();
        encode(
            111,
            b"p",
            &[(MAX_OFFSET + 1, b"old"), (960, &long), (960, b"ok")],
            &mut out,
        );
        let red = decode(&Bytes::from(out)).unwrap();
        assert_eq!(red.copies.len(), 1);
        assert_eq!(&red.copies[0].data[..], b"ok");
        assert_eq!(&red.primary[..], b"p");
    }

    #[test]
    fn garbage_is_an_error_never_a_panic() {
        assert_eq!(decode(&Bytes::new()), Err(RedError::TruncatedHeader));
        assert_eq!(
            decode(&Bytes::from_static(&[0x80 | 111, 0])),
            Err(RedError::TruncatedHeader)
        );
        // A header claiming 1023 bytes of a 6-byte payload.
        assert_eq!(
            decode(&Bytes::from_static(&[0x80 | 111, 0, 0x03, 0xff, 111, 1])),
            Err(RedError::TruncatedBlock)
        );
        let mut x = 0x9e37_79b9u32;
        for len in 0..2000usize {
            let bytes: Vec<u8> = (0..len % 64)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 17;
                    x ^= x << 5;
                    x as u8
                })
                .collect();
            let _ = decode(&Bytes::from(bytes));
        }
    }
}
