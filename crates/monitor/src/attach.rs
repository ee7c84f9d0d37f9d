//! The attach socket (`attach.sock` in the bundle, like conmon's): clients
//! (`hako run -i/-t`, `attach`, `start -a`) connect to receive the
//! container's output live and to send its stdin and window size.
//!
//! Frames both ways: one type byte, a 4-byte big-endian length, the payload.
//!   client → monitor: `H` rows,cols (two u16, 0,0: no size) first, `R`
//!   rows,cols on a resize, `I` stdin bytes, `C` close the container's stdin;
//!   monitor → client: `O` stdout bytes, `E` stderr bytes, `X` exit code
//!   (i32) when the run ended, then the connection is closed.
//!
//! Everything is non-blocking and served from the monitor's one poll loop.
//! A client that does not read its output is dropped once [`MAX_BACKLOG`]
//! bytes wait for it: a stuck terminal must not stop the log.

use std::io::{Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::time::Duration;

/// Output bytes queued for one client before it is dropped (the monitor's
/// memory is the per-container cost: it is not spent on a stuck client).
const MAX_BACKLOG: usize = 1 << 20;

pub const HELLO: u8 = b'H';
pub const RESIZE: u8 = b'R';
pub const STDIN: u8 = b'I';
pub const CLOSE_STDIN: u8 = b'C';
pub const STDOUT: u8 = b'O';
pub const STDERR: u8 = b'E';
pub const EXIT: u8 = b'X';

/// What a client asked for.
pub enum Request {
    Resize(u16, u16),
    Stdin(Vec<u8>),
    CloseStdin,
}

struct Client {
    stream: UnixStream,
    input: Vec<u8>,
    output: Vec<u8>,
}

pub struct Server {
    listener: UnixListener,
    clients: Vec<Client>,
}

/// Bind `name` inside directory `dir` through /proc/self/fd: the bundle's
/// path may be longer than a unix socket address allows (108 bytes).
pub fn bind_in(dir: &Path, name: &str) -> std::io::Result<UnixListener> {
    let d = std::fs::File::open(dir)?;
    let short = format!("/proc/self/fd/{}/{name}", d.as_raw_fd());
    let _ = std::fs::remove_file(dir.join(name));
    let l = UnixListener::bind(short)?;
    Ok(l)
}

impl Server {
    pub fn new(dir: &Path) -> std::io::Result<Server> {
        let listener = bind_in(dir, "attach.sock")?;
        // Who may connect may type into the container: its owner only.
        std::fs::set_permissions(
            dir.join("attach.sock"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )?;
        listener.set_nonblocking(true)?;
        Ok(Server {
            listener,
            clients: Vec::new(),
        })
    }

    pub fn listener_fd(&self) -> BorrowedFd<'_> {
        self.listener.as_fd()
    }

    /// Wait (bounded) for the first client of a foreground `run`/`start -a`
    /// and read its hello, so no output is missed and the terminal size is
    /// set before the container starts. None when nobody came.
    pub fn wait_first(&mut self, bound: Duration) -> Option<(u16, u16)> {
        let mut fds = [nix::poll::PollFd::new(
            self.listener.as_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        let ms = bound.as_millis().min(i32::MAX as u128) as i32;
        let ready = nix::poll::poll(
            &mut fds,
            nix::poll::PollTimeout::try_from(ms).unwrap_or(nix::poll::PollTimeout::MAX),
        );
        if !matches!(ready, Ok(n) if n > 0) {
            return None;
        }
        let (mut stream, _) = self.listener.accept().ok()?;
        // The engine sends its hello right after connecting.
        let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
        let mut head = [0u8; 9];
        let size = match stream.read_exact(&mut head) {
            Ok(()) if head[0] == HELLO && head[1..5] == 4u32.to_be_bytes() => Some((
                u16::from_be_bytes([head[5], head[6]]),
                u16::from_be_bytes([head[7], head[8]]),
            )),
            _ => None,
        };
        let _ = stream.set_read_timeout(None);
        if stream.set_nonblocking(true).is_ok() {
            self.clients.push(Client {
                stream,
                input: Vec::new(),
                output: Vec::new(),
            });
        }
        size
    }

    /// Take every waiting connection.
    pub fn accept(&mut self) {
        while let Ok((stream, _)) = self.listener.accept() {
            if stream.set_nonblocking(true).is_ok() {
                self.clients.push(Client {
                    stream,
                    input: Vec::new(),
                    output: Vec::new(),
                });
            }
        }
    }

    /// The clients' descriptors with the events to poll for; `want_input`
    /// false while the container's stdin is backed up.
    pub fn poll_fds(&self, want_input: bool) -> Vec<(BorrowedFd<'_>, nix::poll::PollFlags)> {
        use nix::poll::PollFlags;
        self.clients
            .iter()
            .map(|c| {
                let mut f = PollFlags::empty();
                if want_input {
                    f |= PollFlags::POLLIN;
                }
                if !c.output.is_empty() {
                    f |= PollFlags::POLLOUT;
                }
                (c.stream.as_fd(), f)
            })
            .collect()
    }

    /// Serve client `i` after poll said it is ready: write its backlog,
    /// read its requests. A client that hung up is dropped.
    pub fn serve(&mut self, i: usize, requests: &mut Vec<Request>) {
        let Some(c) = self.clients.get_mut(i) else {
            return;
        };
        let mut alive = flush(c);
        let mut buf = [0u8; 16 * 1024];
        while alive {
            match c.stream.read(&mut buf) {
                Ok(0) => alive = false,
                Ok(n) => c.input.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(_) => alive = false,
            }
        }
        parse(&mut c.input, requests);
        if !alive {
            self.clients.swap_remove(i);
        }
    }

    /// Queue output for every client.
    pub fn broadcast(&mut self, kind: u8, data: &[u8]) {
        if self.clients.is_empty() {
            return;
        }
        self.clients.retain_mut(|c| {
            push_frame(&mut c.output, kind, data);
            flush(c) && c.output.len() <= MAX_BACKLOG
        });
    }

    /// Tell every client the run ended, with its code, and let them go.
    pub fn finish(&mut self, code: i32) {
        for mut c in self.clients.drain(..) {
            push_frame(&mut c.output, EXIT, &code.to_be_bytes());
            // Blocking for the last bytes: the client is waiting for them.
            let _ = c.stream.set_nonblocking(false);
            let _ = c.stream.set_write_timeout(Some(Duration::from_secs(5)));
            let _ = c.stream.write_all(&c.output);
        }
    }
}

/// Write what the socket takes now; false when the client is gone.
fn flush(c: &mut Client) -> bool {
    while !c.output.is_empty() {
        match c.stream.write(&c.output) {
            Ok(0) => return false,
            Ok(n) => {
                c.output.drain(..n);
                // A burst's buffer is given back once written.
                if c.output.is_empty() && c.output.capacity() > 64 * 1024 {
                    c.output = Vec::new();
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(_) => return false,
        }
    }
    true
}

fn push_frame(out: &mut Vec<u8>, kind: u8, data: &[u8]) {
    out.push(kind);
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    out.extend_from_slice(data);
}

/// Take the complete frames out of `input`.
fn parse(input: &mut Vec<u8>, requests: &mut Vec<Request>) {
    let mut at = 0;
    while input.len() - at >= 5 {
        let kind = input[at];
        let len = u32::from_be_bytes([input[at + 1], input[at + 2], input[at + 3], input[at + 4]])
            as usize;
        if input.len() - at - 5 < len {
            break;
        }
        let body = &input[at + 5..at + 5 + len];
        match kind {
            HELLO | RESIZE if len == 4 => {
                let rows = u16::from_be_bytes([body[0], body[1]]);
                let cols = u16::from_be_bytes([body[2], body[3]]);
                if rows > 0 && cols > 0 {
                    requests.push(Request::Resize(rows, cols));
                }
            }
            STDIN => requests.push(Request::Stdin(body.to_vec())),
            CLOSE_STDIN => requests.push(Request::CloseStdin),
            _ => {} // unknown frames are skipped: newer clients stay usable
        }
        at += 5 + len;
    }
    input.drain(..at);
}

/// Set the window size of a pty master (the container sees SIGWINCH).
pub fn resize(master: BorrowedFd, rows: u16, cols: u16) {
    let ws = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize that outlives the call.
    unsafe {
        libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &ws);
    }
}

/// Receive the pty master the runtime sends on the console socket while
/// `runtime create` runs (`child`); None when create ended without sending.
pub fn receive_master(listener: &UnixListener, child: &mut std::process::Child) -> Option<OwnedFd> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    use std::os::fd::FromRawFd;
    let _ = listener.set_nonblocking(true);
    let conn = loop {
        match listener.accept() {
            Ok((c, _)) => break c,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if !matches!(child.try_wait(), Ok(None)) {
                    // Create ended: a connection it made is still queued.
                    break listener.accept().ok()?.0;
                }
                let mut fds = [nix::poll::PollFd::new(
                    listener.as_fd(),
                    nix::poll::PollFlags::POLLIN,
                )];
                // Short naps: create's end is checked between them.
                let _ = nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(50u16));
            }
            Err(_) => return None,
        }
    };
    let _ = conn.set_nonblocking(false);
    let mut buf = [0u8; 4096];
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        conn.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .ok()?;
    for c in msg.cmsgs().ok()? {
        if let ControlMessageOwned::ScmRights(fds) = c {
            if let Some(&fd) = fds.first() {
                // SAFETY: the descriptor was just received and is ours alone.
                return Some(unsafe { OwnedFd::from_raw_fd(fd) });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A directory whose socket path would not fit a socket address.
    fn long_dir(tag: &str) -> std::path::PathBuf {
        let mut d = top(tag);
        for _ in 0..3 {
            d = d.join("a-rather-long-directory-name-like-a-container-id");
        }
        std::fs::create_dir_all(&d).unwrap();
        assert!(d.join("attach.sock").as_os_str().len() > 108);
        d
    }

    fn top(tag: &str) -> std::path::PathBuf {
        std::env::temp_dir().join(format!("hako-attach-{tag}-{}", std::process::id()))
    }

    #[test]
    fn serves_a_client_in_a_long_directory() {
        let dir = long_dir("serve");
        let mut server = Server::new(&dir).unwrap();
        let d = std::fs::File::open(&dir).unwrap();
        let mut client =
            UnixStream::connect(format!("/proc/self/fd/{}/attach.sock", d.as_raw_fd())).unwrap();
        let mut hello = Vec::new();
        push_frame(&mut hello, HELLO, &[0, 30, 0, 100]);
        push_frame(&mut hello, STDIN, b"typed");
        client.write_all(&hello).unwrap();
        assert_eq!(server.wait_first(Duration::from_secs(10)), Some((30, 100)));
        // The rest of what the client sent is served from the poll loop.
        let mut reqs = Vec::new();
        while reqs.is_empty() {
            server.serve(0, &mut reqs);
        }
        assert!(matches!(&reqs[0], Request::Stdin(b) if b == b"typed"));
        server.broadcast(STDOUT, b"out");
        server.broadcast(STDERR, b"err");
        server.finish(7);
        let mut got = Vec::new();
        client.read_to_end(&mut got).unwrap();
        let mut want = Vec::new();
        push_frame(&mut want, STDOUT, b"out");
        push_frame(&mut want, STDERR, b"err");
        push_frame(&mut want, EXIT, &7i32.to_be_bytes());
        assert_eq!(got, want);
        drop(server);
        let _ = std::fs::remove_dir_all(top("serve"));
    }

    #[test]
    fn a_client_that_does_not_read_is_dropped() {
        let dir = long_dir("slow");
        let mut server = Server::new(&dir).unwrap();
        let d = std::fs::File::open(&dir).unwrap();
        let _client =
            UnixStream::connect(format!("/proc/self/fd/{}/attach.sock", d.as_raw_fd())).unwrap();
        let mut fds = [nix::poll::PollFd::new(
            server.listener_fd(),
            nix::poll::PollFlags::POLLIN,
        )];
        nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(10_000u16)).unwrap();
        server.accept();
        assert_eq!(server.clients.len(), 1);
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..(MAX_BACKLOG / chunk.len() + 64) {
            server.broadcast(STDOUT, &chunk);
        }
        assert!(server.clients.is_empty());
        drop(server);
        let _ = std::fs::remove_dir_all(top("slow"));
    }

    #[test]
    fn parses_frames_and_keeps_partial_ones() {
        let mut input = Vec::new();
        push_frame(&mut input, HELLO, &[0, 24, 0, 80]);
        push_frame(&mut input, STDIN, b"hi\n");
        push_frame(&mut input, CLOSE_STDIN, b"");
        input.extend_from_slice(&[STDIN, 0, 0, 0, 9, b'x']);
        let mut reqs = Vec::new();
        parse(&mut input, &mut reqs);
        assert_eq!(reqs.len(), 3);
        assert!(matches!(reqs[0], Request::Resize(24, 80)));
        assert!(matches!(&reqs[1], Request::Stdin(b) if b == b"hi\n"));
        assert!(matches!(reqs[2], Request::CloseStdin));
        assert_eq!(input, vec![STDIN, 0, 0, 0, 9, b'x']);
    }
}
