//! Exec: `POST /containers/{id}/exec` records an instance,
//! `POST /exec/{id}/start` runs it (detached, or attached on a hijacked
//! connection, with a TTY or with pipes), `GET /exec/{id}/json` tells its
//! state and exit code, `POST /exec/{id}/resize` sizes its terminal.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, Request, State as St};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use hako_engine::{ExecOptions, Status};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::containers::{find, json_body, wants_upgrade};
use crate::error::{printable, ApiError, ApiResult};
use crate::hijack::{self, Input};
use crate::params::Params;
use crate::server::State;
use crate::stream;

pub fn routes() -> Router<State> {
    Router::new()
        .route("/containers/{id}/exec", post(create))
        .route("/exec/{id}/start", post(start))
        .route("/exec/{id}/json", get(inspect))
        .route("/exec/{id}/resize", post(resize))
}

/// One exec instance (docker keeps them while the container lives).
pub struct ExecInstance {
    pub id: String,
    pub container: String,
    pub opts: ExecOptions,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    pub running: bool,
    pub started: bool,
    pub exit_code: Option<i32>,
    pub pid: i32,
    /// The pty master of a TTY exec, for resizes.
    pub master: Option<Arc<OwnedFd>>,
    /// `DetachKeys` of the create body (docker's default when empty).
    pub detach_keys: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct CreateBody {
    attach_stdin: bool,
    attach_stdout: bool,
    attach_stderr: bool,
    tty: bool,
    cmd: Option<Vec<String>>,
    env: Option<Vec<String>>,
    working_dir: String,
    user: String,
    privileged: bool,
    console_size: Option<Vec<u16>>,
    detach_keys: String,
}

async fn create(St(s): St<State>, Path(id): Path<String>, body: Bytes) -> ApiResult<Response> {
    let b: CreateBody = json_body("creating an exec instance", &body)?;
    let cmd = b.cmd.unwrap_or_default();
    if cmd.is_empty() {
        return Err(ApiError::bad_request("No exec command specified"));
    }
    if !b.detach_keys.is_empty() {
        crate::attach::detach_matcher(Some(&b.detach_keys))?;
    }
    let c = s
        .blocking(move |s, engine| {
            prune(s, engine);
            find(engine, &id)
        })
        .await?;
    if c.state.status != Status::Running {
        return Err(ApiError::conflict(format!(
            "container {} is not running",
            c.id
        )));
    }
    let exec_id = hako_engine::names::new_id();
    let inst = ExecInstance {
        id: exec_id.clone(),
        container: c.id.clone(),
        opts: ExecOptions {
            cmd,
            env: b.env.unwrap_or_default(),
            user: (!b.user.is_empty()).then_some(b.user),
            workdir: (!b.working_dir.is_empty()).then_some(b.working_dir),
            interactive: b.attach_stdin,
            tty: b.tty,
            detach: false,
            console_size: b
                .console_size
                .filter(|v| v.len() == 2 && v[0] > 0 && v[1] > 0)
                .map(|v| (v[0], v[1])),
            privileged: b.privileged,
        },
        attach_stdout: b.attach_stdout,
        attach_stderr: b.attach_stderr,
        running: false,
        started: false,
        exit_code: None,
        pid: 0,
        master: None,
        detach_keys: b.detach_keys,
    };
    s.execs
        .lock()
        .expect("exec lock")
        .insert(exec_id.clone(), Arc::new(Mutex::new(inst)));
    Ok((StatusCode::CREATED, Json(json!({"Id": exec_id}))).into_response())
}

/// The instance `id`, 404 when unknown or when its container is gone
/// (docker forgets a container's execs with it; the container may have been
/// removed by `hako rm` or `--rm`, not through this service).
async fn instance(s: &State, id: &str) -> ApiResult<Arc<Mutex<ExecInstance>>> {
    let missing = || ApiError::not_found(format!("No such exec instance: {}", printable(id)));
    let inst = s
        .execs
        .lock()
        .expect("exec lock")
        .get(id)
        .cloned()
        .ok_or_else(missing)?;
    let container = inst.lock().expect("exec lock").container.clone();
    let gone_now = s
        .blocking(move |_, engine| Ok(gone(engine, &container)))
        .await?;
    if gone_now {
        let container = inst.lock().expect("exec lock").container.clone();
        forget_container(s, &container);
        return Err(missing());
    }
    Ok(inst)
}

/// Whether container `id` is no more (other errors: assume it is there).
fn gone(engine: &hako_engine::Engine, id: &str) -> bool {
    matches!(engine.get(id), Err(hako_engine::Error::NotFound { .. }))
}

/// Drop the exec instances of a removed container.
pub fn forget_container(s: &State, container: &str) {
    s.execs
        .lock()
        .expect("exec lock")
        .retain(|_, i| i.lock().map(|i| i.container != container).unwrap_or(false));
}

/// Drop the instances of every container that is gone (on each exec
/// create, so a long-running service does not keep them all).
fn prune(s: &State, engine: &hako_engine::Engine) {
    let containers: Vec<String> = {
        let m = s.execs.lock().expect("exec lock");
        let mut v: Vec<String> = m
            .values()
            .filter_map(|i| i.lock().ok().map(|i| i.container.clone()))
            .collect();
        v.sort();
        v.dedup();
        v
    };
    for c in containers {
        if gone(engine, &c) {
            forget_container(s, &c);
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct StartBody {
    detach: bool,
    tty: Option<bool>,
    console_size: Option<Vec<u16>>,
}

async fn start(St(s): St<State>, Path(id): Path<String>, mut req: Request) -> ApiResult<Response> {
    let inst = instance(&s, &id).await?;
    let upgrade = wants_upgrade(req.headers());
    let on_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let body = axum::body::to_bytes(req.into_body(), 1 << 20)
        .await
        .map_err(|_| ApiError::bad_request("starting an exec: the request body is too large"))?;
    let b: StartBody = if body.is_empty() {
        StartBody::default()
    } else {
        json_body("starting an exec", &body)?
    };
    let (container, mut opts, want_out, want_err, detach_keys) = {
        let mut i = inst.lock().expect("exec lock");
        if i.started {
            return Err(ApiError::conflict(format!(
                "exec {} has already been started",
                i.id
            )));
        }
        i.started = true;
        i.running = true;
        (
            i.container.clone(),
            i.opts.clone(),
            i.attach_stdout,
            i.attach_stderr,
            i.detach_keys.clone(),
        )
    };
    if let Some(t) = b.tty {
        opts.tty = t;
    }
    if let Some(v) = b
        .console_size
        .filter(|v| v.len() == 2 && v[0] > 0 && v[1] > 0)
    {
        opts.console_size = Some((v[0], v[1]));
    }
    if b.detach {
        opts.detach = true;
        opts.interactive = false;
        let inst2 = inst.clone();
        let r = s
            .blocking(move |_, engine| {
                if opts.tty {
                    let t = engine.exec_tty(&container, &opts)?;
                    t.detach();
                } else {
                    engine.exec(&container, &opts)?;
                }
                Ok(())
            })
            .await;
        let mut i = inst2.lock().expect("exec lock");
        i.running = false;
        if r.is_err() {
            i.exit_code = Some(126);
        }
        r?;
        return Ok(StatusCode::OK.into_response());
    }
    let tty = opts.tty;
    // As docker: the detach sequence is read from a terminal's input only.
    let detach = if tty && opts.interactive {
        Some(crate::attach::detach_matcher(
            Some(detach_keys.as_str()).filter(|k| !k.is_empty()),
        )?)
    } else {
        None
    };
    let (out_tx, out_rx) = mpsc::channel::<Bytes>(16);
    let (in_tx, in_rx) = std::sync::mpsc::channel::<Input>();
    // Start it before answering, so a command that cannot run is a
    // docker-shaped error, not a dropped connection.
    let st = s.clone();
    let inst2 = inst.clone();
    let started = s
        .blocking(move |_, engine| {
            if tty {
                let t = engine.exec_tty(&container, &opts)?;
                let master =
                    Arc::new(t.master.try_clone().map_err(|e| {
                        ApiError::internal(format!("sharing an exec's terminal: {e}"))
                    })?);
                inst2.lock().expect("exec lock").master = Some(master);
                Ok(Running::Tty(t))
            } else {
                Ok(Running::Piped(engine.exec_piped(&container, &opts)?))
            }
        })
        .await;
    let running = match started {
        Ok(r) => r,
        Err(e) => {
            let mut i = inst.lock().expect("exec lock");
            i.running = false;
            i.exit_code = Some(126);
            return Err(e);
        }
    };
    let waiter = {
        let inst = inst.clone();
        tokio::task::spawn_blocking(move || {
            let code = run(running, want_out, want_err, &out_tx, in_rx);
            {
                let mut i = inst.lock().expect("exec lock");
                i.running = false;
                i.exit_code = Some(code);
                i.master = None;
            }
            // Only now does the client's stream end: its inspect that
            // follows sees the exit code.
            drop(out_tx);
            drop(st);
        })
    };
    let body_out = on_upgrade;
    match body_out {
        Some(on_upgrade) => {
            tokio::spawn(async move {
                // A client that leaves leaves the process running to its
                // end, as docker's (its output is drained, not kept).
                hijack::relay(on_upgrade, out_rx, Some(in_tx), detach, || {}).await;
                let _ = waiter.await;
            });
            Ok(hijack::response(true, tty))
        }
        None => {
            // An old client: the output as the body.
            let (tx, body) = stream::channel();
            drop(in_tx);
            tokio::spawn(async move {
                let mut rx = out_rx;
                while let Some(b) = rx.recv().await {
                    if !tx.send_async(b).await {
                        break;
                    }
                }
            });
            let mut r = hijack::response(false, tty);
            *r.body_mut() = axum::body::Body::new(body);
            Ok(r)
        }
    }
}

enum Running {
    Tty(hako_engine::ExecTty),
    Piped(hako_engine::ExecPiped),
}

/// Relay a started exec until it ends; its exit code.
fn run(
    running: Running,
    want_out: bool,
    want_err: bool,
    out: &mpsc::Sender<Bytes>,
    input: std::sync::mpsc::Receiver<Input>,
) -> i32 {
    match running {
        Running::Tty(t) => {
            let (Ok(reader), Ok(writer)) = (t.master.try_clone(), t.master.try_clone()) else {
                return t.wait().unwrap_or(126);
            };
            std::thread::spawn(move || {
                let mut w = std::fs::File::from(writer);
                for i in input {
                    match i {
                        Input::Data(d) => {
                            if w.write_all(&d).is_err() {
                                break;
                            }
                        }
                        // A terminal's end of input is its EOF character.
                        Input::Eof => {}
                    }
                }
            });
            let out2 = out.clone();
            let pump = std::thread::spawn(move || {
                let mut r = std::fs::File::from(reader);
                let mut buf = [0u8; 16 * 1024];
                loop {
                    match r.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        // A client gone (or detached): keep draining, so the
                        // process never blocks on a full terminal.
                        Ok(n) => {
                            if want_out {
                                let _ = out2.blocking_send(Bytes::copy_from_slice(&buf[..n]));
                            }
                        }
                    }
                }
            });
            // The master stays open in `t` until the process ends: the pump
            // reads until the terminal's last writer (the process) is gone.
            let code = t.wait().unwrap_or_else(|e| e.exit_code());
            let _ = pump.join();
            code
        }
        Running::Piped(mut p) => {
            let stdin = p.child.stdin.take();
            let stdout = p.child.stdout.take();
            let stderr = p.child.stderr.take();
            if let Some(mut w) = stdin {
                std::thread::spawn(move || {
                    for i in input {
                        match i {
                            Input::Data(d) => {
                                if w.write_all(&d).is_err() {
                                    break;
                                }
                            }
                            Input::Eof => break,
                        }
                    }
                });
            }
            let pump = |r: Option<Box<dyn Read + Send>>, which: u8, want: bool| {
                let out = out.clone();
                std::thread::spawn(move || {
                    let Some(mut r) = r else { return };
                    let mut buf = [0u8; 16 * 1024];
                    loop {
                        match r.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if want
                                    && out
                                        .blocking_send(Bytes::from(stream::frame(which, &buf[..n])))
                                        .is_err()
                                {
                                    // Keep draining: the process must not block on a full pipe.
                                    continue;
                                }
                            }
                        }
                    }
                })
            };
            let a = pump(
                stdout.map(|s| Box::new(s) as Box<dyn Read + Send>),
                stream::STDOUT,
                want_out,
            );
            let b = pump(
                stderr.map(|s| Box::new(s) as Box<dyn Read + Send>),
                stream::STDERR,
                want_err,
            );
            let _ = a.join();
            let _ = b.join();
            p.wait().unwrap_or_else(|e| e.exit_code())
        }
    }
}

async fn inspect(St(s): St<State>, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let inst = instance(&s, &id).await?;
    let i = inst.lock().expect("exec lock");
    Ok(Json(json!({
        "ID": i.id,
        "Running": i.running,
        "ExitCode": i.exit_code,
        "ProcessConfig": {
            "tty": i.opts.tty,
            "entrypoint": i.opts.cmd.first(),
            "arguments": i.opts.cmd.iter().skip(1).collect::<Vec<_>>(),
            "privileged": i.opts.privileged,
            "user": i.opts.user.clone().unwrap_or_default(),
        },
        "OpenStdin": i.opts.interactive,
        "OpenStdout": i.attach_stdout,
        "OpenStderr": i.attach_stderr,
        "CanRemove": false,
        "ContainerID": i.container,
        "DetachKeys": i.detach_keys,
        "Pid": i.pid,
    })))
}

async fn resize(St(s): St<State>, Path(id): Path<String>, q: Params) -> ApiResult<StatusCode> {
    let inst = instance(&s, &id).await?;
    let (h, w) = (q.int("h")?.unwrap_or(0), q.int("w")?.unwrap_or(0));
    let master = inst.lock().expect("exec lock").master.clone();
    if let Some(m) = master {
        let ws = libc::winsize {
            ws_row: h.clamp(0, 65535) as u16,
            ws_col: w.clamp(0, 65535) as u16,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: TIOCSWINSZ reads a winsize from a valid pointer on an
        // open terminal descriptor we hold.
        unsafe { libc::ioctl(m.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    }
    Ok(StatusCode::CREATED)
}
