//! `hako registry serve` and `hako registry gc` as a user runs them: address on stdout,
//! a blob pushed over HTTP, SIGTERM ends the server cleanly, gc honours --config/--dry-run.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};

fn http(addr: &str, request: &str, body: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[test]
fn serve_push_sigterm_then_gc() {
    let dir = tempfile::Builder::new()
        .prefix("hako-regcli")
        .tempdir()
        .unwrap();
    let root = dir.path().join("root");
    let mut child = Command::new(env!("CARGO_BIN_EXE_hako"))
        .arg("--root")
        .arg(&root)
        .args(["registry", "serve", "--addr", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Kill the server even if an assertion below fails.
    struct Guard(std::process::Child);
    impl Drop for Guard {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let mut guard = Guard(child);
    let addr = line.trim().rsplit(' ').next().unwrap().to_string();
    assert!(
        line.starts_with("hako registry listening on 127.0.0.1:"),
        "{line}"
    );

    let resp = http(
        &addr,
        &format!("GET /v2/ HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
        b"",
    );
    assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    assert!(resp
        .to_ascii_lowercase()
        .contains("docker-distribution-api-version: registry/2.0"));

    let blob = b"a blob nobody references";
    let digest = format!("sha256:{}", sha256_hex(blob));
    let resp = http(
        &addr,
        &format!(
            "POST /v2/cli/test/blobs/uploads/?digest={digest} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            blob.len()
        ),
        blob,
    );
    assert!(resp.starts_with("HTTP/1.1 201"), "{resp}");

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(guard.0.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let status = guard.0.wait().unwrap();
    assert!(status.success(), "registry exited with {status} on SIGTERM");

    // Default grace period: the fresh blob is kept.
    let out = Command::new(env!("CARGO_BIN_EXE_hako"))
        .arg("--root")
        .arg(&root)
        .args(["registry", "gc", "--dry-run"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("would delete 0 manifests, 0 blobs"), "{text}");

    // A config without grace: dry run reports it, the real run deletes it.
    let config = dir.path().join("registry.toml");
    std::fs::write(
        &config,
        format!("root = {:?}\ngc_grace_secs = 0\n", root.join("registry")),
    )
    .unwrap();
    let gc = |extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_hako"))
            .args(["registry", "gc", "--config"])
            .arg(&config)
            .args(extra)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let text = gc(&["--dry-run"]);
    assert!(
        text.contains(&format!("would delete blob {digest}")),
        "{text}"
    );
    let text = gc(&[]);
    assert!(text.contains(&format!("deleted blob {digest}")), "{text}");
    let text = gc(&["--dry-run"]);
    assert!(text.contains("would delete 0 manifests, 0 blobs"), "{text}");
}
