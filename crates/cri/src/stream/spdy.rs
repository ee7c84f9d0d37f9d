//! SPDY/3.1 framing, as Kubernetes' remote command and port-forward
//! clients speak it after an HTTP `Upgrade: SPDY/3.1` (kubelet, kubectl,
//! crictl through client-go's spdystream). No SPDY crate exists; this is
//! the part of draft-mbelshe-httpbis-spdy-00 (SPDY/3) plus 3.1's
//! session-level WINDOW_UPDATE that those peers use: the frames, the
//! zlib-compressed header blocks with the protocol's preset dictionary,
//! and an async [`Session`] (a reader task and a shared writer) usable on
//! either side of a connection, so hako's kubelet can reuse it.
//!
//! Flow control: spdystream neither sends nor honours WINDOW_UPDATE, so
//! windows are ignored here as well (frames are decoded and dropped).

use std::sync::{Arc, LazyLock};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Mutex};

/// The SPDY version spoken.
pub const VERSION: u16 = 3;
/// The HTTP Upgrade token.
pub const UPGRADE: &str = "SPDY/3.1";
/// The largest frame payload (24-bit length).
pub const MAX_PAYLOAD: usize = (1 << 24) - 1;

const SYN_STREAM: u16 = 1;
const SYN_REPLY: u16 = 2;
const RST_STREAM: u16 = 3;
const SETTINGS: u16 = 4;
const PING: u16 = 6;
const GOAWAY: u16 = 7;
const HEADERS: u16 = 8;
const WINDOW_UPDATE: u16 = 9;

const FLAG_FIN: u8 = 0x01;
const FLAG_UNIDIRECTIONAL: u8 = 0x02;

/// RST_STREAM status codes (SPDY/3 2.6.3).
pub mod rst {
    pub const PROTOCOL_ERROR: u32 = 1;
    pub const INVALID_STREAM: u32 = 2;
    pub const REFUSED_STREAM: u32 = 3;
    pub const CANCEL: u32 = 5;
    pub const INTERNAL_ERROR: u32 = 6;
}

/// Header names (lower case, as SPDY requires) and values; a name may
/// repeat (SPDY joins its values with NUL on the wire).
pub type Headers = Vec<(String, String)>;

/// The value of header `name` (names are lower case on the wire).
pub fn header<'a>(headers: &'a Headers, name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// One SPDY frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    SynStream {
        stream_id: u32,
        associated_to: u32,
        priority: u8,
        fin: bool,
        unidirectional: bool,
        headers: Headers,
    },
    SynReply {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    RstStream {
        stream_id: u32,
        status: u32,
    },
    /// (flags, id, value) entries.
    Settings(Vec<(u8, u32, u32)>),
    Ping(u32),
    GoAway {
        last_good_stream_id: u32,
        status: u32,
    },
    Headers {
        stream_id: u32,
        fin: bool,
        headers: Headers,
    },
    WindowUpdate {
        stream_id: u32,
        delta: u32,
    },
    Data {
        stream_id: u32,
        fin: bool,
        data: Vec<u8>,
    },
}

/// A malformed frame or header block: the session ends.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("SPDY protocol error: {0}")]
    Protocol(String),
    #[error("SPDY connection: {0}")]
    Io(#[from] std::io::Error),
}

fn protocol(what: impl Into<String>) -> Error {
    Error::Protocol(what.into())
}

/// SPDY/3's zlib dictionary for header blocks (the draft's 2.6.10.1):
/// length-prefixed common header names, then common values.
static DICTIONARY: LazyLock<Vec<u8>> = LazyLock::new(|| {
    const WORDS: &[&str] = &[
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
    ];
    const TAIL: &str = concat!(
        "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
        "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
        "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented",
        "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
        "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,",
        "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=",
        "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0."
    );
    let mut d = Vec::with_capacity(1423);
    for w in WORDS {
        d.extend_from_slice(&(w.len() as u32).to_be_bytes());
        d.extend_from_slice(w.as_bytes());
    }
    d.extend_from_slice(TAIL.as_bytes());
    d
});

/// Writes frames; its zlib stream spans the connection's header blocks.
pub struct Encoder {
    zlib: Compress,
}

impl Default for Encoder {
    fn default() -> Self {
        Encoder::new()
    }
}

impl Encoder {
    pub fn new() -> Encoder {
        let mut zlib = Compress::new(Compression::default(), true);
        zlib.set_dictionary(&DICTIONARY)
            .expect("a fresh zlib stream takes a dictionary");
        Encoder { zlib }
    }

    fn header_block(&mut self, headers: &Headers) -> Result<Vec<u8>, Error> {
        // Values of a repeated name are joined with NUL, in order.
        let mut merged: Vec<(String, String)> = Vec::new();
        for (n, v) in headers {
            let n = n.to_ascii_lowercase();
            match merged.iter_mut().find(|(m, _)| *m == n) {
                Some((_, mv)) => {
                    mv.push('\0');
                    mv.push_str(v);
                }
                None => merged.push((n, v.clone())),
            }
        }
        let mut raw = Vec::new();
        raw.extend_from_slice(&(merged.len() as u32).to_be_bytes());
        for (n, v) in &merged {
            raw.extend_from_slice(&(n.len() as u32).to_be_bytes());
            raw.extend_from_slice(n.as_bytes());
            raw.extend_from_slice(&(v.len() as u32).to_be_bytes());
            raw.extend_from_slice(v.as_bytes());
        }
        let mut out = Vec::with_capacity(raw.len() + 64);
        let start = self.zlib.total_in();
        loop {
            let done = (self.zlib.total_in() - start) as usize;
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(256));
            }
            self.zlib
                .compress_vec(&raw[done..], &mut out, FlushCompress::Sync)
                .map_err(|e| protocol(format!("compressing headers: {e}")))?;
            // A sync flush is complete once zlib left output room unused.
            if (self.zlib.total_in() - start) as usize == raw.len() && out.len() < out.capacity() {
                break;
            }
        }
        Ok(out)
    }

    /// The wire bytes of `frame`.
    pub fn encode(&mut self, frame: &Frame) -> Result<Vec<u8>, Error> {
        let control = |kind: u16, flags: u8, body: Vec<u8>| -> Result<Vec<u8>, Error> {
            if body.len() > MAX_PAYLOAD {
                return Err(protocol("frame too large"));
            }
            let mut b = Vec::with_capacity(8 + body.len());
            b.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
            b.extend_from_slice(&kind.to_be_bytes());
            b.push(flags);
            b.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
            b.extend_from_slice(&body);
            Ok(b)
        };
        let fin = |f: bool| if f { FLAG_FIN } else { 0 };
        match frame {
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                fin: f,
                unidirectional,
                headers,
            } => {
                let mut body = Vec::new();
                body.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                body.extend_from_slice(&(associated_to & 0x7fff_ffff).to_be_bytes());
                body.push((priority & 0x7) << 5);
                body.push(0); // slot
                body.extend_from_slice(&self.header_block(headers)?);
                let flags = fin(*f)
                    | if *unidirectional {
                        FLAG_UNIDIRECTIONAL
                    } else {
                        0
                    };
                control(SYN_STREAM, flags, body)
            }
            Frame::SynReply {
                stream_id,
                fin: f,
                headers,
            }
            | Frame::Headers {
                stream_id,
                fin: f,
                headers,
            } => {
                let mut body = Vec::new();
                body.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                body.extend_from_slice(&self.header_block(headers)?);
                let kind = if matches!(frame, Frame::SynReply { .. }) {
                    SYN_REPLY
                } else {
                    HEADERS
                };
                control(kind, fin(*f), body)
            }
            Frame::RstStream { stream_id, status } => {
                let mut body = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
                body.extend_from_slice(&status.to_be_bytes());
                control(RST_STREAM, 0, body)
            }
            Frame::Settings(entries) => {
                let mut body = (entries.len() as u32).to_be_bytes().to_vec();
                for (flags, id, value) in entries {
                    body.push(*flags);
                    body.extend_from_slice(&id.to_be_bytes()[1..]);
                    body.extend_from_slice(&value.to_be_bytes());
                }
                control(SETTINGS, 0, body)
            }
            Frame::Ping(id) => control(PING, 0, id.to_be_bytes().to_vec()),
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                let mut body = (last_good_stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
                body.extend_from_slice(&status.to_be_bytes());
                control(GOAWAY, 0, body)
            }
            Frame::WindowUpdate { stream_id, delta } => {
                let mut body = (stream_id & 0x7fff_ffff).to_be_bytes().to_vec();
                body.extend_from_slice(&(delta & 0x7fff_ffff).to_be_bytes());
                control(WINDOW_UPDATE, 0, body)
            }
            Frame::Data {
                stream_id,
                fin: f,
                data,
            } => {
                if data.len() > MAX_PAYLOAD {
                    return Err(protocol("data frame too large"));
                }
                let mut b = Vec::with_capacity(8 + data.len());
                b.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                b.push(fin(*f));
                b.extend_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
                b.extend_from_slice(data);
                Ok(b)
            }
        }
    }
}

/// Reads frames; its zlib stream spans the connection's header blocks.
pub struct Decoder {
    zlib: Decompress,
}

impl Default for Decoder {
    fn default() -> Self {
        Decoder::new()
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

impl Decoder {
    pub fn new() -> Decoder {
        Decoder {
            zlib: Decompress::new(true),
        }
    }

    fn inflate(&mut self, input: &[u8]) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(input.len() * 4 + 256);
        let start = self.zlib.total_in();
        loop {
            let done = (self.zlib.total_in() - start) as usize;
            if out.capacity() - out.len() < 256 {
                out.reserve(out.capacity().max(1024));
            }
            match self
                .zlib
                .decompress_vec(&input[done..], &mut out, FlushDecompress::Sync)
            {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.zlib
                        .set_dictionary(&DICTIONARY)
                        .map_err(|e| protocol(format!("header dictionary: {e}")))?;
                    continue;
                }
                Err(e) => return Err(protocol(format!("decompressing headers: {e}"))),
            }
            if (self.zlib.total_in() - start) as usize == input.len() && out.len() < out.capacity()
            {
                break;
            }
            if out.len() > MAX_PAYLOAD * 4 {
                return Err(protocol("header block too large"));
            }
        }
        Ok(out)
    }

    fn header_block(&mut self, compressed: &[u8]) -> Result<Headers, Error> {
        let raw = self.inflate(compressed)?;
        let bad = || protocol("truncated header block");
        let mut at = 0usize;
        let mut take = |n: usize| -> Result<&[u8], Error> {
            let s = raw.get(at..at + n).ok_or_else(bad)?;
            at += n;
            Ok(s)
        };
        let count = be32(take(4)?) as usize;
        let mut headers = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            let n = be32(take(4)?) as usize;
            let name = String::from_utf8_lossy(take(n)?).to_ascii_lowercase();
            let n = be32(take(4)?) as usize;
            let value = String::from_utf8_lossy(take(n)?).into_owned();
            for v in value.split('\0') {
                headers.push((name.clone(), v.to_string()));
            }
        }
        Ok(headers)
    }

    /// Take one whole frame from the front of `buf`, if it holds one.
    /// Unknown control frames are skipped (as the draft asks).
    pub fn decode(&mut self, buf: &mut Vec<u8>) -> Result<Option<Frame>, Error> {
        loop {
            if buf.len() < 8 {
                return Ok(None);
            }
            let len = u32::from_be_bytes([0, buf[5], buf[6], buf[7]]) as usize;
            if buf.len() < 8 + len {
                return Ok(None);
            }
            let head: [u8; 8] = buf[..8].try_into().expect("8 bytes");
            let body: Vec<u8> = buf[8..8 + len].to_vec();
            buf.drain(..8 + len);
            let flags = head[4];
            let fin = flags & FLAG_FIN != 0;
            if head[0] & 0x80 == 0 {
                return Ok(Some(Frame::Data {
                    stream_id: be32(&head) & 0x7fff_ffff,
                    fin,
                    data: body,
                }));
            }
            let version = u16::from_be_bytes([head[0] & 0x7f, head[1]]);
            if version != VERSION {
                return Err(protocol(format!("unsupported version {version}")));
            }
            let kind = u16::from_be_bytes([head[2], head[3]]);
            let short = |n: usize| {
                if body.len() < n {
                    Err(protocol(format!("control frame {kind} too short")))
                } else {
                    Ok(())
                }
            };
            let frame = match kind {
                SYN_STREAM => {
                    short(10)?;
                    Frame::SynStream {
                        stream_id: be32(&body) & 0x7fff_ffff,
                        associated_to: be32(&body[4..]) & 0x7fff_ffff,
                        priority: body[8] >> 5,
                        fin,
                        unidirectional: flags & FLAG_UNIDIRECTIONAL != 0,
                        headers: self.header_block(&body[10..])?,
                    }
                }
                SYN_REPLY | HEADERS => {
                    short(4)?;
                    let stream_id = be32(&body) & 0x7fff_ffff;
                    let headers = self.header_block(&body[4..])?;
                    if kind == SYN_REPLY {
                        Frame::SynReply {
                            stream_id,
                            fin,
                            headers,
                        }
                    } else {
                        Frame::Headers {
                            stream_id,
                            fin,
                            headers,
                        }
                    }
                }
                RST_STREAM => {
                    short(8)?;
                    Frame::RstStream {
                        stream_id: be32(&body) & 0x7fff_ffff,
                        status: be32(&body[4..]),
                    }
                }
                SETTINGS => {
                    short(4)?;
                    let n = be32(&body) as usize;
                    short(4 + n.saturating_mul(8))?;
                    Frame::Settings(
                        (0..n)
                            .map(|i| {
                                let e = &body[4 + i * 8..];
                                (e[0], be32(e) & 0xff_ffff, be32(&e[4..]))
                            })
                            .collect(),
                    )
                }
                PING => {
                    short(4)?;
                    Frame::Ping(be32(&body))
                }
                GOAWAY => {
                    short(4)?;
                    Frame::GoAway {
                        last_good_stream_id: be32(&body) & 0x7fff_ffff,
                        status: if body.len() >= 8 { be32(&body[4..]) } else { 0 },
                    }
                }
                WINDOW_UPDATE => {
                    short(8)?;
                    Frame::WindowUpdate {
                        stream_id: be32(&body) & 0x7fff_ffff,
                        delta: be32(&body[4..]) & 0x7fff_ffff,
                    }
                }
                _ => continue,
            };
            return Ok(Some(frame));
        }
    }
}

/// What the peer did, as a [`Session`] reports it. PINGs are answered and
/// flow-control frames dropped by the session itself.
#[derive(Debug)]
pub enum Event {
    /// The peer opened a stream.
    Open {
        stream_id: u32,
        headers: Headers,
        fin: bool,
    },
    /// The peer accepted a stream we opened.
    Reply { stream_id: u32, headers: Headers },
    /// Bytes on a stream; `fin`: the peer's half of it is closed.
    Data {
        stream_id: u32,
        data: Vec<u8>,
        fin: bool,
    },
    /// The peer reset a stream.
    Reset { stream_id: u32, status: u32 },
    /// The peer is going away (GOAWAY, EOF or a broken connection).
    Closed,
}

/// The sending half of a session, shared by whatever writes streams.
pub struct Writer<W> {
    inner: Mutex<(W, Encoder)>,
}

impl<W: AsyncWrite + Unpin + Send> Writer<W> {
    /// Send one frame.
    pub async fn send(&self, frame: &Frame) -> Result<(), Error> {
        let mut g = self.inner.lock().await;
        let (w, enc) = &mut *g;
        let bytes = enc.encode(frame)?;
        w.write_all(&bytes).await?;
        w.flush().await?;
        Ok(())
    }

    /// Accept a stream the peer opened.
    pub async fn reply(&self, stream_id: u32, headers: Headers) -> Result<(), Error> {
        self.send(&Frame::SynReply {
            stream_id,
            fin: false,
            headers,
        })
        .await
    }

    /// Open a stream.
    pub async fn open(&self, stream_id: u32, headers: Headers, fin: bool) -> Result<(), Error> {
        self.send(&Frame::SynStream {
            stream_id,
            associated_to: 0,
            priority: 0,
            fin,
            unidirectional: false,
            headers,
        })
        .await
    }

    /// Send bytes on a stream, in frames of at most 32 KiB.
    pub async fn data(&self, stream_id: u32, data: &[u8]) -> Result<(), Error> {
        for chunk in data.chunks(32 * 1024) {
            self.send(&Frame::Data {
                stream_id,
                fin: false,
                data: chunk.to_vec(),
            })
            .await?;
        }
        Ok(())
    }

    /// Close our half of a stream.
    pub async fn fin(&self, stream_id: u32) -> Result<(), Error> {
        self.send(&Frame::Data {
            stream_id,
            fin: true,
            data: Vec::new(),
        })
        .await
    }

    /// Reset a stream.
    pub async fn reset(&self, stream_id: u32, status: u32) -> Result<(), Error> {
        self.send(&Frame::RstStream { stream_id, status }).await
    }

    /// Say goodbye and close the connection's write side.
    pub async fn goaway(&self, last_good_stream_id: u32) -> Result<(), Error> {
        self.send(&Frame::GoAway {
            last_good_stream_id,
            status: 0,
        })
        .await?;
        let mut g = self.inner.lock().await;
        g.0.shutdown().await?;
        Ok(())
    }
}

/// A SPDY session over an upgraded connection: a task reads frames and
/// reports [`Event`]s; the [`Writer`] sends.
pub struct Session<W> {
    pub writer: Arc<Writer<W>>,
    pub events: mpsc::Receiver<Event>,
}

/// Start a session on `io` (after the HTTP upgrade). The reading task
/// ends with [`Event::Closed`] when the peer goes.
pub fn session<IO>(io: IO) -> Session<tokio::io::WriteHalf<IO>>
where
    IO: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut r, w) = tokio::io::split(io);
    let writer = Arc::new(Writer {
        inner: Mutex::new((w, Encoder::new())),
    });
    let (tx, events) = mpsc::channel(64);
    let pinger = writer.clone();
    tokio::spawn(async move {
        let mut dec = Decoder::new();
        let mut buf = Vec::with_capacity(64 * 1024);
        let mut chunk = vec![0u8; 64 * 1024];
        'read: loop {
            loop {
                let frame = match dec.decode(&mut buf) {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => {
                        tracing::debug!("SPDY session: {e}");
                        break 'read;
                    }
                };
                let event = match frame {
                    Frame::SynStream {
                        stream_id,
                        fin,
                        headers,
                        ..
                    } => Event::Open {
                        stream_id,
                        headers,
                        fin,
                    },
                    Frame::SynReply {
                        stream_id, headers, ..
                    } => Event::Reply { stream_id, headers },
                    Frame::Data {
                        stream_id,
                        fin,
                        data,
                    } => Event::Data {
                        stream_id,
                        data,
                        fin,
                    },
                    Frame::RstStream { stream_id, status } => Event::Reset { stream_id, status },
                    Frame::Ping(id) => {
                        let _ = pinger.send(&Frame::Ping(id)).await;
                        continue;
                    }
                    Frame::GoAway { .. } => break 'read,
                    Frame::Settings(_) | Frame::WindowUpdate { .. } | Frame::Headers { .. } => {
                        continue
                    }
                };
                if tx.send(event).await.is_err() {
                    return;
                }
            }
            match r.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
        let _ = tx.send(Event::Closed).await;
    });
    Session { writer, events }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_is_spdy3s() {
        // Its length and Adler-32 are what SPDY/3 peers check in the zlib
        // header of the first block.
        assert_eq!(DICTIONARY.len(), 1423);
        let mut z = Compress::new(Compression::default(), true);
        assert_eq!(z.set_dictionary(&DICTIONARY).unwrap(), 0xe3c6_a7c2);
    }

    #[test]
    fn frames_round_trip_with_one_zlib_stream_per_direction() {
        let mut enc = Encoder::new();
        let mut dec = Decoder::new();
        let frames = vec![
            Frame::SynStream {
                stream_id: 1,
                associated_to: 0,
                priority: 2,
                fin: false,
                unidirectional: false,
                headers: vec![
                    ("streamtype".into(), "error".into()),
                    ("port".into(), "80".into()),
                    ("port".into(), "81".into()),
                ],
            },
            Frame::SynReply {
                stream_id: 1,
                fin: false,
                headers: vec![],
            },
            Frame::SynStream {
                stream_id: 3,
                associated_to: 0,
                priority: 0,
                fin: true,
                unidirectional: false,
                headers: vec![("streamtype".into(), "stdout".into())],
            },
            Frame::Data {
                stream_id: 3,
                fin: true,
                data: b"hello".to_vec(),
            },
            Frame::RstStream {
                stream_id: 3,
                status: rst::CANCEL,
            },
            Frame::Settings(vec![(0, 7, 65536)]),
            Frame::Ping(9),
            Frame::WindowUpdate {
                stream_id: 0,
                delta: 1000,
            },
            Frame::GoAway {
                last_good_stream_id: 3,
                status: 0,
            },
        ];
        let mut wire = Vec::new();
        for f in &frames {
            wire.extend(enc.encode(f).unwrap());
        }
        // Fed a byte at a time: frames come out whole, in order.
        let mut buf = Vec::new();
        let mut got = Vec::new();
        for b in wire {
            buf.push(b);
            while let Some(f) = dec.decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        assert_eq!(got, frames);
    }

    #[test]
    fn a_bad_version_is_a_protocol_error() {
        let mut buf = vec![0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1];
        let e = Decoder::new().decode(&mut buf).unwrap_err();
        assert_eq!(e.to_string(), "SPDY protocol error: unsupported version 2");
    }
}
