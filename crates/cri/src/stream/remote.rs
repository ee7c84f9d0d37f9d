//! Exec and Attach behind the streaming URLs, whatever the wire protocol
//! (SPDY or websocket): the protocol side turns the client's streams into
//! [`Input`]s and sends [`Output`]s; the end is a Kubernetes `Status` on
//! the error stream (v4: JSON, `NonZeroExitCode` with the `ExitCode` cause
//! for a failed command, as kubelet writes it).

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;

use k8s_cri::v1 as cri;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::server::State;

/// What the client sends.
#[derive(Debug)]
pub(crate) enum Input {
    Stdin(Vec<u8>),
    /// The client closed its stdin.
    StdinEof,
    /// The terminal's new size.
    Resize {
        width: u16,
        height: u16,
    },
}

/// What goes to the client.
#[derive(Debug)]
pub(crate) enum Output {
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
}

/// Which streams a session has (from the CRI request).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Streams {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
    pub tty: bool,
}

/// How a session ended.
#[derive(Debug)]
pub(crate) enum End {
    /// Exec: the command's exit code.
    Exited(i32),
    /// Attach: the container stopped or the client left.
    Done,
    /// It could not be run (one line).
    Failed(String),
}

impl End {
    /// The v4 error-stream `Status` (JSON), as kubelet's remote command
    /// server writes it.
    pub(crate) fn status(&self, cmd: &[String]) -> Vec<u8> {
        let v = match self {
            End::Exited(0) | End::Done => json!({"metadata": {}, "status": "Success"}),
            End::Exited(code) => json!({
                "metadata": {},
                "status": "Failure",
                "message": format!(
                    "command terminated with non-zero exit code: error executing command {cmd:?}, exit code {code}"
                ),
                "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]},
            }),
            End::Failed(message) => json!({
                "metadata": {},
                "status": "Failure",
                "message": message,
                "reason": "InternalError",
                "code": 500,
            }),
        };
        v.to_string().into_bytes()
    }
}

/// A session to run: exec or attach, from the token's request.
#[derive(Debug, Clone)]
pub(crate) enum Remote {
    Exec(cri::ExecRequest),
    Attach(cri::AttachRequest),
}

impl Remote {
    pub(crate) fn streams(&self) -> Streams {
        match self {
            Remote::Exec(r) => Streams {
                stdin: r.stdin,
                stdout: r.stdout,
                stderr: r.stderr && !r.tty,
                tty: r.tty,
            },
            Remote::Attach(r) => Streams {
                stdin: r.stdin,
                stdout: r.stdout,
                stderr: r.stderr && !r.tty,
                tty: r.tty,
            },
        }
    }

    pub(crate) fn cmd(&self) -> Vec<String> {
        match self {
            Remote::Exec(r) => r.cmd.clone(),
            Remote::Attach(_) => Vec::new(),
        }
    }

    /// Run the session until the command (exec) or the connection to the
    /// container (attach) ends and every output has been handed to `out`.
    pub(crate) async fn run(
        self,
        state: Arc<State>,
        input: mpsc::Receiver<Input>,
        out: mpsc::Sender<Output>,
    ) -> End {
        let r = match self {
            Remote::Exec(r) if r.tty => exec_tty(state, r, input, out).await,
            Remote::Exec(r) => exec_pipes(state, r, input, out).await,
            Remote::Attach(r) => attach(state, r, input, out).await,
        };
        r.unwrap_or_else(|e| End::Failed(crate::error::one_line(&e)))
    }
}

/// Exec without a terminal: `hako exec [-i] ID CMD` with pipes (the same
/// path as ExecSync), its exit code being the command's.
async fn exec_pipes(
    state: Arc<State>,
    r: cri::ExecRequest,
    mut input: mpsc::Receiver<Input>,
    out: mpsc::Sender<Output>,
) -> Result<End, String> {
    use std::process::Stdio;
    let mut cmd = tokio::process::Command::new(&state.hako);
    cmd.arg("--root").arg(&state.root).arg("exec");
    if r.stdin {
        cmd.arg("-i");
    }
    cmd.arg(&r.container_id)
        .args(&r.cmd)
        .stdin(if r.stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("exec in container {}: {e}", r.container_id))?;
    let mut stdin = child.stdin.take();
    let feeder = tokio::spawn(async move {
        while let Some(i) = input.recv().await {
            match i {
                Input::Stdin(b) => {
                    if let Some(s) = stdin.as_mut() {
                        if s.write_all(&b).await.is_err() {
                            stdin = None;
                        }
                    }
                }
                Input::StdinEof => stdin = None,
                Input::Resize { .. } => {}
            }
        }
    });
    let pump = |mut from: Box<dyn tokio::io::AsyncRead + Unpin + Send>,
                wanted: bool,
                wrap: fn(Vec<u8>) -> Output,
                out: mpsc::Sender<Output>| {
        tokio::spawn(async move {
            let mut buf = vec![0u8; 32 * 1024];
            loop {
                match from.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) if wanted => {
                        if out.send(wrap(buf[..n].to_vec())).await.is_err() {
                            break;
                        }
                    }
                    Ok(_) => {}
                }
            }
        })
    };
    let o = pump(
        Box::new(child.stdout.take().expect("piped")),
        r.stdout,
        Output::Stdout,
        out.clone(),
    );
    let e = pump(
        Box::new(child.stderr.take().expect("piped")),
        r.stderr,
        Output::Stderr,
        out,
    );
    let status = child
        .wait()
        .await
        .map_err(|e| format!("exec in container {}: {e}", r.container_id))?;
    feeder.abort();
    let _ = o.await;
    let _ = e.await;
    use std::os::unix::process::ExitStatusExt;
    Ok(End::Exited(status.code().unwrap_or_else(|| {
        128 + status.signal().unwrap_or(libc::SIGKILL)
    })))
}

/// Set the size of the terminal whose master is `fd`.
fn set_size(fd: &OwnedFd, width: u16, height: u16) {
    let ws = libc::winsize {
        ws_row: height,
        ws_col: width,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from the pointer, which is valid
    // for the call; the fd is an open pty master.
    unsafe {
        libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws);
    }
}

/// How long a terminal exec waits for the client's first resize.
const FIRST_RESIZE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// Exec with a terminal: the engine's exec_tty hands over the pty master,
/// relayed here (stdin in, output out, resizes as TIOCSWINSZ).
async fn exec_tty(
    state: Arc<State>,
    r: cri::ExecRequest,
    mut input: mpsc::Receiver<Input>,
    out: mpsc::Sender<Output>,
) -> Result<End, String> {
    let root = state.root.clone();
    // A terminal client sends its size first (kubectl, crictl): the process
    // starts with that size, not 0x0 (on which busybox's stty fails). What
    // comes instead of it is kept for the process.
    let mut early = Vec::new();
    let mut console_size = None;
    if let Ok(first) = tokio::time::timeout(FIRST_RESIZE_WAIT, input.recv()).await {
        match first {
            Some(Input::Resize { width, height }) => console_size = Some((height, width)),
            Some(other) => early.push(other),
            None => {}
        }
    }
    let opts = hako_engine::ExecOptions {
        cmd: r.cmd.clone(),
        interactive: r.stdin,
        tty: true,
        console_size,
        ..Default::default()
    };
    let id = r.container_id.clone();
    let tty = tokio::task::spawn_blocking(move || {
        let (engine, _) = crate::sandbox::open(&root).map_err(|e| e.to_string())?;
        engine
            .exec_tty(&id, &opts)
            .map_err(|e| format!("exec in container {id}: {e}"))
    })
    .await
    .map_err(|e| e.to_string())??;
    let master = Arc::new(
        tty.master
            .try_clone()
            .map_err(|e| format!("exec in container {}: {e}", r.container_id))?,
    );
    let reader = {
        let master = master.clone();
        let wanted = r.stdout;
        std::thread::spawn(move || {
            let mut f = std::fs::File::from(master.try_clone().expect("dup of an open fd"));
            let mut buf = vec![0u8; 32 * 1024];
            // EIO once the process (every holder of the terminal) is gone.
            while let Ok(n) = f.read(&mut buf) {
                if n == 0
                    || (wanted
                        && out
                            .blocking_send(Output::Stdout(buf[..n].to_vec()))
                            .is_err())
                {
                    break;
                }
            }
        })
    };
    let writer = {
        let master = master.clone();
        let stdin = r.stdin;
        std::thread::spawn(move || {
            let mut f = std::fs::File::from(master.try_clone().expect("dup of an open fd"));
            let mut early = early.into_iter();
            while let Some(i) = early.next().or_else(|| input.blocking_recv()) {
                let written = match i {
                    Input::Stdin(b) if stdin => f.write_all(&b),
                    // A terminal's end of input is its EOF character.
                    Input::StdinEof if stdin => f.write_all(&[4]),
                    Input::Resize { width, height } => {
                        set_size(&master, width, height);
                        Ok(())
                    }
                    _ => Ok(()),
                };
                if written.is_err() {
                    break;
                }
            }
        })
    };
    let code = tokio::task::spawn_blocking(move || tty.wait())
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("exec in container {}: {e}", r.container_id))?;
    let _ = tokio::task::spawn_blocking(move || reader.join()).await;
    // The writer ends when the protocol side drops its sender.
    drop(writer);
    Ok(End::Exited(code))
}

/// Attach to the container's monitor: its output live, stdin and resizes
/// to it, until the container exits or the client leaves.
async fn attach(
    state: Arc<State>,
    r: cri::AttachRequest,
    mut input: mpsc::Receiver<Input>,
    out: mpsc::Sender<Output>,
) -> Result<End, String> {
    let root = state.root.clone();
    let id = r.container_id.clone();
    let mut a = tokio::task::spawn_blocking(move || {
        let (engine, _) = crate::sandbox::open(&root).map_err(|e| e.to_string())?;
        engine
            .attach_stream(&id, None)
            .map(|(_, a)| a)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())??;
    let mut sender = a.try_clone().map_err(|e| e.to_string())?;
    let (stdout, stderr) = (r.stdout, r.stderr);
    let reader = tokio::task::spawn_blocking(move || {
        use hako_engine::attachment::Event;
        while let Ok(Some(events)) = a.read() {
            for e in events {
                let sent = match e {
                    Event::Stdout(b) if stdout => out.blocking_send(Output::Stdout(b)),
                    Event::Stderr(b) if stderr => out.blocking_send(Output::Stderr(b)),
                    Event::Exit(_) => return,
                    _ => Ok(()),
                };
                if sent.is_err() {
                    return;
                }
            }
        }
    });
    let stdin = r.stdin;
    let writer = std::thread::spawn(move || {
        while let Some(i) = input.blocking_recv() {
            let r = match i {
                Input::Stdin(b) if stdin => sender.send_stdin(&b),
                Input::StdinEof if stdin => sender.close_stdin(),
                Input::Resize { width, height } => sender.resize(height, width),
                _ => Ok(()),
            };
            if r.is_err() {
                break;
            }
        }
    });
    let _ = reader.await;
    drop(writer);
    Ok(End::Done)
}
