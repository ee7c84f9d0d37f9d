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
