//! Streaming answers: a body fed from a blocking producer through a
//! channel (a producer learns that the client left when a send fails), and
//! docker's multiplexed framing of stdout/stderr without a TTY: 8 bytes
//! (stream 1 or 2, three zeros, the payload's length as big-endian u32)
//! before each payload.

use axum::body::Body;
use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// docker's stream numbers in the frame header.
pub const STDIN: u8 = 0;
pub const STDOUT: u8 = 1;
pub const STDERR: u8 = 2;

/// A payload framed for stream `stream`.
pub fn frame(stream: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + payload.len());
    out.extend_from_slice(&[stream, 0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The sending side of a streamed body.
#[derive(Clone)]
pub struct Sender(mpsc::Sender<Result<Bytes, std::io::Error>>);

impl Sender {
    /// Send from a blocking thread; false once the client is gone.
    pub fn send(&self, data: impl Into<Bytes>) -> bool {
        self.0.blocking_send(Ok(data.into())).is_ok()
    }

    /// Send from async code; false once the client is gone.
    pub async fn send_async(&self, data: impl Into<Bytes>) -> bool {
        self.0.send(Ok(data.into())).await.is_ok()
    }

    /// Whether the client has gone away.
    pub fn closed(&self) -> bool {
        self.0.is_closed()
    }
}

/// A body whose chunks come from the returned sender.
pub fn channel() -> (Sender, Body) {
    let (tx, rx) = mpsc::channel(16);
    (Sender(tx), Body::from_stream(ReceiverStream::new(rx)))
}

/// A request body read from a blocking thread (docker cp's tar, a build
/// context): chunks are passed from an async task through a channel, so
/// nothing is held in memory beyond a few chunks.
pub struct BodyReader {
    rx: mpsc::Receiver<Result<Bytes, std::io::Error>>,
    cur: Bytes,
}

impl BodyReader {
    /// Start pumping `body`; must be called within a tokio runtime.
    pub fn new(body: Body) -> BodyReader {
        use futures_util::StreamExt;
        let (tx, rx) = mpsc::channel(8);
        tokio::spawn(async move {
            let mut s = body.into_data_stream();
            while let Some(chunk) = s.next().await {
                let item = chunk.map_err(std::io::Error::other);
                let failed = item.is_err();
                if tx.send(item).await.is_err() || failed {
                    break;
                }
            }
        });
        BodyReader {
            rx,
            cur: Bytes::new(),
        }
    }
}

impl std::io::Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                None => return Ok(0),
                Some(Ok(b)) => self.cur = b,
                Some(Err(e)) => return Err(e),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        let _ = self.cur.split_to(n);
        Ok(n)
    }
}

/// A writer for a blocking producer whose output is a streamed body.
pub struct BodyWriter(pub Sender);

impl std::io::Write for BodyWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.send(Bytes::copy_from_slice(buf)) {
            Ok(buf.len())
        } else {
            Err(std::io::Error::new(
                std::io::ErrorKind::BrokenPipe,
                "the client went away",
            ))
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
