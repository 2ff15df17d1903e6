//! The PROXY protocol, version 1 (the text form HAProxy defined and nginx's `stream`
//! module sends with `proxy_protocol on`): a TLS-terminating proxy in front of the
//! server opens each connection with one line naming the client, so per-address
//! admission and rate limits apply to the client, not to the proxy. Only connections
//! from the configured `trusted_proxies` are read this way; a header that is missing,
//! malformed or too slow closes the connection.
//!
//! ```text
//! PROXY TCP4 198.51.100.7 203.0.113.1 51234 443\r\n
//! PROXY TCP6 2001:db8::7 2001:db8::1 51234 443\r\n
//! PROXY UNKNOWN\r\n            (the proxy's own health checks: keep the proxy's address)
//! ```

use std::net::{IpAddr, SocketAddr};

use tokio::io::AsyncReadExt;

/// The longest v1 header, CRLF included (the specification's limit).
pub(crate) const MAX_HEADER_BYTES: usize = 107;

/// Why a header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProxyHeaderError {
    #[error("no PROXY header (the connection did not start with `PROXY `)")]
    Missing,
    #[error("PROXY header longer than {MAX_HEADER_BYTES} bytes")]
    TooLong,
    #[error("malformed PROXY header: {0}")]
    Malformed(&'static str),
    #[error("connection closed before the PROXY header ended")]
    Closed,
    #[error("reading the PROXY header: {0}")]
    Io(String),
}

/// Parses one header line (without or with its CRLF). `Ok(None)`: `UNKNOWN`, the
/// connection is the proxy's own.
pub(crate) fn parse(line: &[u8]) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let line = line.strip_suffix(b"\r\n").unwrap_or(line);
    let text = std::str::from_utf8(line).map_err(|_| ProxyHeaderError::Malformed("not ASCII"))?;
    let mut fields = text.split(' ');
    if fields.next() != Some("PROXY") {
        return Err(ProxyHeaderError::Missing);
    }
    let family = fields
        .next()
        .ok_or(ProxyHeaderError::Malformed("no protocol"))?;
    if family == "UNKNOWN" {
        return Ok(None);
    }
    let want_v4 = match family {
        "TCP4" => true,
        "TCP6" => false,
        _ => {
            return Err(ProxyHeaderError::Malformed(
                "protocol is not TCP4, TCP6 or UNKNOWN",
            ));
        }
    };
    let mut next = |what: &'static str| fields.next().ok_or(ProxyHeaderError::Malformed(what));
    let source: IpAddr = next("no source address")?
        .parse()
        .map_err(|_| ProxyHeaderError::Malformed("bad source address"))?;
    let destination: IpAddr = next("no destination address")?
        .parse()
        .map_err(|_| ProxyHeaderError::Malformed("bad destination address"))?;
    let port = |s: &str| -> Result<u16, ProxyHeaderError> {
        // Decimal without sign or leading zeros, as the specification asks.
        if s.is_empty()
            || (s.len() > 1 && s.starts_with('0'))
            || !s.bytes().all(|b| b.is_ascii_digit())
        {
            return Err(ProxyHeaderError::Malformed("bad port"));
        }
        s.parse()
            .map_err(|_| ProxyHeaderError::Malformed("bad port"))
    };
    let source_port = port(next("no source port")?)?;
    port(next("no destination port")?)?;
    if fields.next().is_some() {
        return Err(ProxyHeaderError::Malformed("trailing fields"));
    }
    if source.is_ipv4() != want_v4 || destination.is_ipv4() != want_v4 {
        return Err(ProxyHeaderError::Malformed(
            "address family does not match the protocol",
        ));
    }
    Ok(Some(SocketAddr::new(source, source_port)))
}

/// Reads the header from the start of `stream`, byte by byte so that nothing after it is
/// consumed. The caller bounds the time.
pub(crate) async fn read<S: tokio::io::AsyncRead + Unpin>(
    stream: &mut S,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let mut line = Vec::with_capacity(MAX_HEADER_BYTES);
    loop {
        let byte = match stream.read_u8().await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                return Err(ProxyHeaderError::Closed);
            }
            Err(e) => return Err(ProxyHeaderError::Io(e.to_string())),
        };
        line.push(byte);
        if line.len() <= 6 && !b"PROXY ".starts_with(&line) {
            return Err(ProxyHeaderError::Missing);
        }
        if line.ends_with(b"\r\n") {
            return parse(&line);
        }
        if line.len() >= MAX_HEADER_BYTES {
            return Err(ProxyHeaderError::TooLong);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp4_and_tcp6_name_the_client() {
        assert_eq!(
            parse(b"PROXY TCP4 198.51.100.7 203.0.113.1 51234 443\r\n"),
            Ok(Some("198.51.100.7:51234".parse().unwrap()))
        );
        assert_eq!(
            parse(b"PROXY TCP6 2001:db8::7 2001:db8::1 51234 443\r\n"),
            Ok(Some("[2001:db8::7]:51234".parse().unwrap()))
        );
        assert_eq!(parse(b"PROXY UNKNOWN\r\n"), Ok(None));
        assert_eq!(parse(b"PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"), Ok(None));
    }

    #[test]
    fn bad_headers_are_refused() {
        for bad in [
            &b"GET / HTTP/1.1\r\n"[..],
            b"PROXY\r\n",
            b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n",
            b"PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
            b"PROXY TCP6 1.2.3.4 ::1 1 2\r\n",
            b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n",
            b"PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n",
            b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\xff\r\n",
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[tokio::test]
    async fn reading_stops_at_the_header_and_leaves_the_request() {
        let mut input: &[u8] =
            b"PROXY TCP4 198.51.100.7 203.0.113.1 51234 443\r\nGET / HTTP/1.1\r\n";
        let client = read(&mut input).await.unwrap();
        assert_eq!(client, Some("198.51.100.7:51234".parse().unwrap()));
        assert_eq!(input, b"GET / HTTP/1.1\r\n");
    }

    #[tokio::test]
    async fn a_connection_without_a_header_fails_at_once_and_a_long_one_is_cut() {
        let mut http: &[u8] = b"GET / HTTP/1.1\r\n";
        assert_eq!(read(&mut http).await, Err(ProxyHeaderError::Missing));
        assert_eq!(
            http.len(),
            b"GET / HTTP/1.1\r\n".len() - 1,
            "one byte read, not more"
        );
        let long = format!("PROXY TCP4 {}\r\n", "1".repeat(200));
        assert_eq!(
            read(&mut long.as_bytes()).await,
            Err(ProxyHeaderError::TooLong)
        );
        assert_eq!(
            read(&mut &b"PROXY TCP4 1.2"[..]).await,
            Err(ProxyHeaderError::Closed)
        );
    }
}
