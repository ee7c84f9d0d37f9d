//! `hako system service` for the Docker Engine API suites: the service on a
//! socket in a test root's directory (its log beside it), the real docker CLI
//! 28 pointed at it with a client configuration of its own, and raw HTTP on
//! the socket for what a CLI never sends. Stopped on drop, also when a test
//! fails. Needs `mod engine_common;` beside it.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::engine_common::Root;

pub const DOCKER: &str = "/usr/local/bin/docker";

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

pub struct Service {
    pub child: Child,
    pub sock: PathBuf,
    /// DOCKER_CONFIG: the docker CLI's own state (`docker login`), out of the user's.
    pub config: tempfile::TempDir,
}

impl Service {
    pub fn start(r: &Root) -> Service {
        let sock = r.dir().join("docker.sock");
        let child = Command::new(env!("CARGO_BIN_EXE_hako"))
            .arg("--root")
            .arg(r.root())
            .args(["system", "service", "--time", "0", "--socket"])
            .arg(&sock)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(r.dir().join("service.log")).unwrap())
            .spawn()
            .unwrap();
        let s = Service {
            child,
            sock,
            config: tempfile::tempdir().unwrap(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while UnixStream::connect(&s.sock).is_err() {
            assert!(Instant::now() < deadline, "the service never listened");
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    pub fn host(&self) -> String {
        format!("unix://{}", self.sock.display())
    }

    /// docker against this service (the classic builder: BuildKit sessions are refused).
    pub fn docker_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(DOCKER);
        c.env("DOCKER_HOST", self.host())
            .env("DOCKER_CONFIG", self.config.path())
            .env("DOCKER_BUILDKIT", "0")
            .env_remove("DOCKER_CONTEXT")
            .args(args);
        c
    }

    pub fn docker(&self, args: &[&str]) -> Output {
        self.docker_cmd(args).stdin(Stdio::null()).output().unwrap()
    }

    /// Run docker, require success, return stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            out.status.success(),
            "docker {args:?} failed ({}): {}{}",
            out.status,
            text(&out.stdout),
            text(&out.stderr)
        );
        text(&out.stdout)
    }

    /// Run docker, require failure, return stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.docker(args);
        assert!(
            !out.status.success(),
            "docker {args:?} should fail: {}",
            text(&out.stdout)
        );
        text(&out.stderr)
    }

    /// One raw request on the socket, read to the end: (status, head, body).
    pub fn raw(
        &self,
        method: &str,
        path: &str,
        content_type: &str,
        body: Option<&[u8]>,
    ) -> (u16, String, String) {
        let mut s = UnixStream::connect(&self.sock).unwrap();
        let mut req = format!("{method} {path} HTTP/1.1\r\nHost: d\r\nConnection: close\r\n");
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: {content_type}\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        s.write_all(req.as_bytes()).unwrap();
        s.write_all(body.unwrap_or_default()).unwrap();
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).unwrap();
        let resp = text(&resp);
        let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((&resp, ""));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, head.to_string(), body.to_string())
    }

    /// A raw JSON request: (status, head, body).
    pub fn http(&self, method: &str, path: &str, body: Option<&str>) -> (u16, String, String) {
        self.raw(method, path, "application/json", body.map(str::as_bytes))
    }

    /// A raw request with a tar body (build contexts, archives): (status, body).
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        let (status, _, body) = self.raw(method, path, "application/x-tar", Some(body));
        (status, body)
    }

    /// The service still answers (after a client misbehaved).
    pub fn alive(&self) {
        assert!(self
            .ok(&["version", "--format", "{{.Server.APIVersion}}"])
            .contains("1.47"));
    }

    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.child.id()))
            .unwrap()
            .count()
    }

    pub fn threads(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.child.id()))
            .unwrap()
            .count()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
