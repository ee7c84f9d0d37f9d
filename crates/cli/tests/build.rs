//! `hako build`: real builds as root in temp roots, FROM a busybox image
//! imported at test time. Each Dockerfile's result is checked by its file
//! tree (exported with `--output type=local`), its config and its history;
//! cache hits and misses are counted from `--progress plain`; one corpus
//! is compared with Debian's `buildah bud`.

mod engine_common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use engine_common::Root;
use serde_json::Value;

/// A build context directory with files.
fn context(root: &Root, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let dir = root.dir().join(name);
    for (path, content) in files {
        let p = dir.join(path);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, content).unwrap();
    }
    dir
}

fn build(root: &Root, ctx: &Path, args: &[&str]) -> Output {
    let mut a = vec!["build", "--progress", "plain"];
    a.extend_from_slice(args);
    a.push(ctx.to_str().unwrap());
    root.run(&a)
}

/// Build, require success; returns (image id, progress).
fn build_ok(root: &Root, ctx: &Path, args: &[&str]) -> (String, String) {
    let out = build(root, ctx, args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "build failed: {err}");
    (
        String::from_utf8(out.stdout).unwrap().trim().to_string(),
        err,
    )
}

fn build_err(root: &Root, ctx: &Path, args: &[&str]) -> String {
    let out = build(root, ctx, args);
    assert!(!out.status.success(), "build should fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every entry of a tree: type+mode, owner, and content (files) or target (links).
fn tree(dir: &Path) -> BTreeMap<String, String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        let mut entries: Vec<_> = fs::read_dir(dir).unwrap().map(|e| e.unwrap()).collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let rel = format!("/{}", p.strip_prefix(base).unwrap().display());
            let m = fs::symlink_metadata(&p).unwrap();
            let kind = if m.file_type().is_symlink() {
                format!("link {}", fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                "dir".to_string()
            } else if m.is_file() {
                let data = fs::read(&p).unwrap();
                if data.len() <= 64 {
                    format!("file {:?}", String::from_utf8_lossy(&data))
                } else {
                    format!("file {} bytes", data.len())
                }
            } else {
                "other".to_string()
            };
            let mode = if m.file_type().is_symlink() {
                String::new()
            } else {
                format!(" {:o}", m.permissions().mode() & 0o7777)
            };
            out.insert(rel, format!("{kind}{mode} {}:{}", m.uid(), m.gid()));
            if m.is_dir() {
                walk(base, &p, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The tree without busybox's applet links (they are the base image's).
fn own_tree(dir: &Path) -> BTreeMap<String, String> {
    tree(dir)
        .into_iter()
        .filter(|(k, _)| !k.starts_with("/bin/"))
        .collect()
}

fn local(root: &Root, ctx: &Path, name: &str, args: &[&str]) -> (PathBuf, String) {
    let dest = root.dir().join(name);
    let spec = format!("type=local,dest={}", dest.display());
    let mut a = vec!["-o", spec.as_str()];
    a.extend_from_slice(args);
    let (_, progress) = build_ok(root, ctx, &a);
    (dest, progress)
}

fn inspect(root: &Root, image: &str) -> Value {
    let v: Value = serde_json::from_str(&root.ok(&["image", "inspect", image])).unwrap();
    v[0].clone()
}

/// Steps of a plain progress: (name, cached).
fn steps(progress: &str) -> Vec<(String, bool)> {
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut out: Vec<(String, bool)> = Vec::new();
    for l in progress.lines() {
        let Some(rest) = l.strip_prefix('#') else {
            continue;
        };
        let (id, what) = rest.split_once(' ').unwrap_or((rest, ""));
        if what.starts_with('[') {
            names.insert(id.to_string(), what.to_string());
        } else if what == "CACHED" {
            out.push((names[id].clone(), true));
        } else if what.starts_with("DONE") && !names[id].contains(" FROM ") {
            out.push((names[id].clone(), false));
        }
    }
    out
}

fn history(root: &Root, image: &str) -> Vec<String> {
    let out = root.ok(&["image", "history", "--format", "json", image]);
    let v: Vec<Value> = serde_json::from_str(&out).unwrap();
    v.iter()
        .map(|h| h["createdBy"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn metadata_instructions_config_and_history() {
    let root = Root::new();
    let ctx = context(
        &root,
        "ctx",
        &[(
            "Dockerfile",
            r#"# syntax=docker/dockerfile:1
ARG BASE=busybox
FROM ${BASE} AS base
MAINTAINER someone@example.com
ENV A=1 B="two words" \
    C=${A}-x
ENV LEGACY value with spaces
LABEL org.example.name="demo app" version=$A
EXPOSE 80 53/udp 8000-8001
VOLUME ["/data", "/cache"]
VOLUME /logs
USER user:user
STOPSIGNAL SIGINT
SHELL ["/bin/sh", "-eu", "-c"]
HEALTHCHECK --interval=5s --timeout=2s --retries=4 CMD test -e /etc/passwd
ONBUILD RUN echo triggered
WORKDIR /srv
WORKDIR app
ENTRYPOINT ["/bin/sh", "-c"]
CMD echo ${A} $B
"#,
        )],
    );
    let (id, _) = build_ok(&root, &ctx, &["-t", "meta:1", "--label", "extra=yes"]);
    assert!(id.starts_with("sha256:"), "{id}");
    let cfg = inspect(&root, "meta:1")["Config"].clone();
    let env: Vec<&str> = cfg["Env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(env.contains(&"A=1"), "{env:?}");
    assert!(env.contains(&"B=two words"), "{env:?}");
    // All pairs of one ENV see the environment before it.
    assert!(env.contains(&"C=-x"), "{env:?}");
    assert!(env.contains(&"LEGACY=value with spaces"), "{env:?}");
    assert_eq!(cfg["Labels"]["org.example.name"], "demo app");
    assert_eq!(cfg["Labels"]["version"], "1");
    assert_eq!(cfg["Labels"]["extra"], "yes");
    let ports: Vec<&String> = cfg["ExposedPorts"].as_object().unwrap().keys().collect();
    assert_eq!(ports, ["53/udp", "80/tcp", "8000/tcp", "8001/tcp"]);
    let vols: Vec<&String> = cfg["Volumes"].as_object().unwrap().keys().collect();
    assert_eq!(vols, ["/cache", "/data", "/logs"]);
    assert_eq!(cfg["User"], "user:user");
    assert_eq!(cfg["WorkingDir"], "/srv/app");
    assert_eq!(cfg["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
    assert_eq!(
        cfg["Cmd"],
        serde_json::json!(["/bin/sh", "-eu", "-c", "echo ${A} $B"])
    );
    // The raw config carries what OCI's lacks.
    let store_cfg = config_json(&root, &id);
    let c = &store_cfg["config"];
    assert_eq!(c["StopSignal"], "SIGINT");
    assert_eq!(c["Shell"], serde_json::json!(["/bin/sh", "-eu", "-c"]));
    assert_eq!(c["OnBuild"], serde_json::json!(["RUN echo triggered"]));
    assert_eq!(
        c["Healthcheck"],
        serde_json::json!({"Test": ["CMD-SHELL", "test -e /etc/passwd"], "Interval": 5_000_000_000i64, "Timeout": 2_000_000_000i64, "Retries": 4})
    );
    assert_eq!(store_cfg["author"], "someone@example.com");
    let h = history(&root, "meta:1");
    let expected_tail = [
        "MAINTAINER someone@example.com",
        "ENV A=1 B=two words C=-x",
        "ENV LEGACY=value with spaces",
        "LABEL org.example.name=demo app version=1",
        "EXPOSE map[53/udp:{} 80/tcp:{} 8000/tcp:{} 8001/tcp:{}]",
        "VOLUME [/data /cache]",
        "VOLUME [/logs]",
        "USER user:user",
        "STOPSIGNAL SIGINT",
        "SHELL [/bin/sh -eu -c]",
        "HEALTHCHECK [\"CMD-SHELL\" \"test -e /etc/passwd\"]",
        "ONBUILD RUN echo triggered",
        "WORKDIR /srv",
        "WORKDIR /srv/app",
        "ENTRYPOINT [\"/bin/sh\" \"-c\"]",
        "CMD [\"/bin/sh\" \"-eu\" \"-c\" \"echo ${A} $B\"]",
    ];
    // `image history` lists newest first.
    let mut got: Vec<String> = h.into_iter().rev().collect();
    got.remove(0); // the base image's import
    assert_eq!(got, expected_tail);

    // ONBUILD triggers run in a build FROM the image, then leave its config.
    let child = context(
        &root,
        "child",
        &[(
            "Dockerfile",
            "FROM meta:1\nUSER root\nRUN test -d /srv/app\n",
        )],
    );
    let (child_id, progress) = build_ok(&root, &child, &["-t", "child"]);
    assert!(progress.contains("triggered"), "{progress}");
    assert!(config_json(&root, &child_id)["config"]["OnBuild"].is_null());
}

/// The stored image config of an image id.
fn config_json(root: &Root, id: &str) -> Value {
    let hex = id.trim_start_matches("sha256:");
    let p = root.root().join("blobs/sha256").join(hex);
    serde_json::from_slice(&fs::read(p).unwrap()).unwrap()
}

#[test]
fn copy_add_semantics_and_dockerignore() {
    let root = Root::new();
    let ctx = context(
        &root,
        "ctx",
        &[
            (
                "Dockerfile",
                r#"FROM busybox
WORKDIR /w
COPY f.txt .
COPY f.txt renamed.txt
COPY dir /w/d/
COPY *.md /docs/
COPY --chown=user:user --chmod=0640 f.txt /home/user/owned
COPY --chown=1000 dir /o/
COPY --chmod=u+x,go-r f.txt /symbolic
COPY --chmod=a=rX dir /rx/
COPY link.txt /linked
ADD archive.tar /unpacked/
ADD archive.tar.gz /unpacked-gz
ADD archive.tar.zst /unpacked-zst/
COPY <<EOF <<'RAW' /hd/
value=$HOME
EOF
raw=$HOME
RAW
COPY . /all/
USER user
WORKDIR /made/by/user
"#,
            ),
            ("f.txt", "f\n"),
            ("dir/one", "1\n"),
            ("dir/sub/two", "2\n"),
            ("a.md", "a\n"),
            ("b.md", "b\n"),
            ("ignored.log", "no\n"),
            ("logs/keep.log", "keep\n"),
            ("logs/drop.log", "drop\n"),
            (".dockerignore", "*.log\nlogs/*\n!logs/keep.log\n"),
        ],
    );
    std::os::unix::fs::symlink("f.txt", ctx.join("link.txt")).unwrap();
    fs::set_permissions(ctx.join("dir/sub"), fs::Permissions::from_mode(0o750)).unwrap();
    // Tar archives for ADD, made with tar(1).
    let src = root.dir().join("tarsrc");
    fs::create_dir_all(src.join("t")).unwrap();
    fs::write(src.join("t/in-tar"), "tar\n").unwrap();
    for (name, flag) in [
        ("archive.tar", "-cf"),
        ("archive.tar.gz", "-czf"),
        ("archive.tar.zst", "--zstd -cf"),
    ] {
        let st = Command::new("tar")
            .args(flag.split(' '))
            .args([
                ctx.join(name).to_str().unwrap(),
                "-C",
                src.to_str().unwrap(),
                "--owner=5",
                "--group=6",
                "--numeric-owner",
                "t",
            ])
            .status()
            .unwrap();
        assert!(st.success());
    }
    let (out, _) = local(&root, &ctx, "out", &[]);
    let t = own_tree(&out);
    let get = |p: &str| {
        t.get(p)
            .cloned()
            .unwrap_or_else(|| panic!("{p} missing: {t:#?}"))
    };
    assert_eq!(get("/w/f.txt"), "file \"f\\n\" 644 0:0");
    assert_eq!(get("/w/renamed.txt"), "file \"f\\n\" 644 0:0");
    // A directory source copies its contents, keeping modes.
    assert_eq!(get("/w/d/one"), "file \"1\\n\" 644 0:0");
    assert_eq!(get("/w/d/sub"), "dir 750 0:0");
    assert_eq!(get("/w/d/sub/two"), "file \"2\\n\" 644 0:0");
    assert!(!t.contains_key("/w/d/dir"));
    assert_eq!(get("/docs/a.md"), "file \"a\\n\" 644 0:0");
    assert_eq!(get("/docs/b.md"), "file \"b\\n\" 644 0:0");
    assert_eq!(get("/home/user/owned"), "file \"f\\n\" 640 1000:1000");
    assert_eq!(get("/o/one"), "file \"1\\n\" 644 1000:1000");
    assert_eq!(get("/o"), "dir 755 1000:1000");
    // Symbolic --chmod, with X for directories only.
    assert_eq!(get("/symbolic"), "file \"f\\n\" 700 0:0");
    assert_eq!(get("/rx/one"), "file \"1\\n\" 444 0:0");
    assert_eq!(get("/rx/sub"), "dir 555 0:0");
    // A symlink source copies what it points at.
    assert_eq!(get("/linked"), "file \"f\\n\" 644 0:0");
    // ADD unpacks local archives, keeping their owners.
    assert_eq!(get("/unpacked/t/in-tar"), "file \"tar\\n\" 644 5:6");
    assert_eq!(get("/unpacked-gz/t/in-tar"), "file \"tar\\n\" 644 5:6");
    assert_eq!(get("/unpacked-zst/t/in-tar"), "file \"tar\\n\" 644 5:6");
    // Heredocs: unquoted ones are expanded, quoted ones are not.
    assert_eq!(get("/hd/EOF"), "file \"value=\\n\" 644 0:0");
    assert_eq!(get("/hd/RAW"), "file \"raw=$HOME\\n\" 644 0:0");
    // .dockerignore with an exception.
    assert!(t.contains_key("/all/f.txt"));
    assert!(!t.contains_key("/all/ignored.log"), "{t:#?}");
    assert!(t.contains_key("/all/logs/keep.log"));
    assert!(!t.contains_key("/all/logs/drop.log"));
    assert_eq!(get("/all/link.txt"), "link f.txt 0:0");
    // Directories WORKDIR creates belong to the USER (as with buildkit).
    assert_eq!(get("/made"), "dir 755 1000:1000");
    assert_eq!(get("/made/by/user"), "dir 755 1000:1000");

    // ADD of an unreachable URL fails clearly.
    let bad = context(
        &root,
        "bad",
        &[(
            "Dockerfile",
            "FROM busybox\nADD http://127.0.0.1:9/nothing.txt /x\n",
        )],
    );
    let e = build_err(&root, &bad, &[]);
    assert!(
        e.contains("ADD: http://127.0.0.1:9/nothing.txt: cannot fetch"),
        "{e}"
    );
}

/// A tar whose one entry has exactly `name` (no checks), with `data`.
fn raw_tar(name: &str, data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let mut b = tar::Builder::new(Vec::new());
    b.append(&h, data).unwrap();
    b.into_inner().unwrap()
}

fn compress(tool: &str, data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    let mut c = Command::new(tool)
        .arg("-c")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = c.stdin.take().unwrap();
    let input = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input).unwrap());
    let out = c.wait_with_output().unwrap();
    writer.join().unwrap();
    assert!(out.status.success(), "{tool} failed");
    out.stdout
}

#[test]
fn add_bzip2_and_xz_archives() {
    let root = Root::new();
    let ctx = context(
        &root,
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM busybox\nADD a.tar.bz2 /bz2/\nADD a.tar.xz /xz/\nADD renamed.bin /magic/\nADD notatar.xz /plain/\n",
            ),
            ("notatar.xz", "not compressed at all\n"),
        ],
    );
    let src = root.dir().join("tarsrc");
    fs::create_dir_all(src.join("t/sub")).unwrap();
    fs::write(src.join("t/in-tar"), "tar\n").unwrap();
    // Incompressible and larger than a bzip2 block, so a truncated copy
    // still starts with whole entries.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let big: Vec<u8> = (0..2 << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    fs::write(src.join("t/sub/big"), big).unwrap();
    std::os::unix::fs::symlink("in-tar", src.join("t/link")).unwrap();
    for (name, flag) in [
        ("a.tar.bz2", "-cjf"),
        ("a.tar.xz", "-cJf"),
        ("renamed.bin", "-cJf"),
    ] {
        let st = Command::new("tar")
            .args([flag, ctx.join(name).to_str().unwrap()])
            .args(["-C", src.to_str().unwrap()])
            .args(["--owner=5", "--group=6", "--numeric-owner", "t"])
            .status()
            .unwrap();
        assert!(st.success());
    }
    let (out, _) = local(&root, &ctx, "out", &[]);
    let t = own_tree(&out);
    let get = |p: &str| {
        t.get(p)
            .cloned()
            .unwrap_or_else(|| panic!("{p} missing: {t:#?}"))
    };
    for dir in ["/bz2", "/xz", "/magic"] {
        assert_eq!(get(&format!("{dir}/t/in-tar")), "file \"tar\\n\" 644 5:6");
        assert_eq!(
            get(&format!("{dir}/t/sub/big")),
            "file 2097152 bytes 644 5:6"
        );
        assert_eq!(get(&format!("{dir}/t/link")), "link in-tar 5:6");
    }
    // A file named like an archive that is none is copied as it is.
    assert_eq!(
        get("/plain/notatar.xz"),
        "file \"not compressed at all\\n\" 644 0:0"
    );

    // Hostile archives: a one-line error naming the file, before anything lands.
    let evil = root.dir().join("evil");
    fs::create_dir_all(&evil).unwrap();
    fs::write(
        evil.join("escape.tar.xz"),
        compress("xz", &raw_tar("../../escaped", b"x\n")),
    )
    .unwrap();
    fs::write(
        evil.join("escape.tar.bz2"),
        compress("bzip2", &raw_tar("../../escaped", b"x\n")),
    )
    .unwrap();
    let whole = fs::read(ctx.join("a.tar.xz")).unwrap();
    fs::write(evil.join("cut.tar.xz"), &whole[..whole.len() / 2]).unwrap();
    let whole = fs::read(ctx.join("a.tar.bz2")).unwrap();
    fs::write(evil.join("cut.tar.bz2"), &whole[..whole.len() / 2]).unwrap();
    for (file, kind, what) in [
        ("escape.tar.xz", "xz", "'..'"),
        ("escape.tar.bz2", "bzip2", "'..'"),
        ("cut.tar.xz", "xz", ""),
        ("cut.tar.bz2", "bzip2", ""),
    ] {
        fs::write(
            evil.join("Dockerfile"),
            format!("FROM busybox\nADD {file} /into/\n"),
        )
        .unwrap();
        let e = build_err(&root, &evil, &[]);
        let line = e
            .lines()
            .find(|l| l.starts_with("Error: "))
            .unwrap_or_else(|| panic!("{file}: no error line: {e}"));
        assert!(
            line.contains(&format!("ADD: {file}: unpacking the {kind} archive: "))
                && line.contains(what)
                && !line.contains("layer "),
            "{file}: {e}"
        );
        assert!(!root.dir().join("escaped").exists());
    }
}

#[test]
fn run_layers_whiteouts_and_mounts() {
    let root = Root::new();
    let secret = root.dir().join("token");
    fs::write(&secret, "s3cret").unwrap();
    let ctx = context(
        &root,
        "ctx",
        &[
            (
                "Dockerfile",
                r#"FROM busybox
RUN mkdir -p /gone/deep /keep && echo k > /keep/file && echo x > /gone/deep/x && echo y > /etc/motd
RUN rm -rf /gone /etc/motd && mkdir /keep2 && rm -rf /keep && mkdir /keep && echo new > /keep/only
RUN --mount=type=cache,target=/cache sh -c 'echo run >> /cache/runs; cp /cache/runs /runs-seen'
RUN --mount=type=tmpfs,target=/scratch sh -c 'echo t > /scratch/t && test -f /scratch/t'
RUN --mount=type=bind,source=data,target=/in sh -c 'cat /in/value > /from-bind; ls /in > /bind-ls'
RUN --mount=type=bind,source=data,target=/in,rw sh -c 'echo scribble > /in/value && cat /in/value > /rw-bind'
RUN --mount=type=secret,id=token cat /run/secrets/token > /secret-len && wc -c < /run/secrets/token > /secret-len
RUN --network=none sh -c 'ip link 2>/dev/null | grep -c UP > /net-up || true; ls /sys/class/net > /netdevs'
RUN <<EOF
echo from-heredoc > /heredoc
EOF
RUN <<EOF
#!/bin/sh
echo "script $0" > /script
EOF
RUN cat <<EOF > /via-shell
piped
EOF
"#,
            ),
            ("data/value", "bound\n"),
            ("data/secret.key", "hidden\n"),
            (".dockerignore", "data/*.key\n"),
        ],
    );
    let sec = format!("id=token,src={}", secret.display());
    let (out, _) = local(&root, &ctx, "out", &["--secret", &sec]);
    let t = own_tree(&out);
    assert!(!t.contains_key("/gone"), "{t:#?}");
    assert!(!t.contains_key("/etc/motd"));
    assert_eq!(t["/keep/only"], "file \"new\\n\" 644 0:0");
    assert!(
        !t.contains_key("/keep/file"),
        "opaque directory lost: {t:#?}"
    );
    assert_eq!(t["/runs-seen"], "file \"run\\n\" 644 0:0");
    assert!(
        !t.contains_key("/cache"),
        "cache mount point leaked: {t:#?}"
    );
    assert!(!t.contains_key("/scratch"), "tmpfs mount point leaked");
    assert!(!t.contains_key("/in"));
    assert_eq!(t["/from-bind"], "file \"bound\\n\" 644 0:0");
    assert_eq!(t["/rw-bind"], "file \"scribble\\n\" 644 0:0");
    // Bind mounts of the context see it through .dockerignore.
    assert_eq!(t["/bind-ls"], "file \"value\\n\" 644 0:0");
    // The context itself is untouched.
    assert_eq!(
        fs::read_to_string(ctx.join("data/value")).unwrap(),
        "bound\n"
    );
    assert_eq!(t["/secret-len"], "file \"6\\n\" 644 0:0");
    assert!(!t.contains_key("/run/secrets/token"));
    assert_eq!(t["/netdevs"], "file \"lo\\n\" 644 0:0");
    assert_eq!(t["/heredoc"], "file \"from-heredoc\\n\" 644 0:0");
    assert_eq!(t["/script"], "file \"script /dev/pipes/EOF\\n\" 644 0:0");
    assert_eq!(t["/via-shell"], "file \"piped\\n\" 644 0:0");
    // Mount points the runtime needed do not stay in the image.
    for stub in ["/proc", "/sys", "/dev", "/run"] {
        assert!(!t.contains_key(stub), "{stub} stub left: {t:#?}");
    }
    // Cache mounts persist across builds, even with --no-cache.
    let (out2, _) = local(&root, &ctx, "out2", &["--secret", &sec, "--no-cache"]);
    assert_eq!(
        fs::read_to_string(out2.join("runs-seen")).unwrap(),
        "run\nrun\n"
    );
}

#[test]
fn failing_run_shows_output_and_exit_code() {
    let root = Root::new();
    let ctx = context(
        &root,
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN echo before-failing && exit 3\nRUN echo never\n",
        )],
    );
    let e = build_err(&root, &ctx, &[]);
    assert!(e.contains("before-failing"), "{e}");
    assert!(e.contains("exit code 3"), "{e}");
    assert!(!e.contains("never"), "{e}");
    assert!(
        e.lines().last().unwrap().starts_with("Error: "),
        "one error line at the end: {e}"
    );
}

#[test]
fn multi_stage_target_and_parallel_stages() {
    let root = Root::new();
    let ctx = context(
        &root,
        "ctx",
        &[(
            "Dockerfile",
            r#"FROM busybox AS a
RUN --mount=type=cache,id=meet,target=/meet sh -c 'touch /meet/a; i=0; while [ ! -e /meet/b ]; do i=$((i+1)); [ $i -gt 300 ] && exit 1; sleep 0.1; done; echo a > /a'
FROM busybox AS b
RUN --mount=type=cache,id=meet,target=/meet sh -c 'touch /meet/b; i=0; while [ ! -e /meet/a ]; do i=$((i+1)); [ $i -gt 300 ] && exit 1; sleep 0.1; done; echo b > /b'
FROM busybox AS broken
RUN exit 1
FROM scratch
COPY --from=a /a /a
COPY --from=1 /b /b
COPY --from=busybox /bin/busybox /bin/busybox
"#,
        )],
    );
    // a and b only finish when they run at the same time; `broken` is not needed.
    let (out, progress) = local(&root, &ctx, "out", &[]);
    assert!(!progress.contains("[broken"), "{progress}");
    let t = tree(&out);
    assert_eq!(t["/a"], "file \"a\\n\" 644 0:0");
    assert_eq!(t["/b"], "file \"b\\n\" 644 0:0");
    assert!(t.contains_key("/bin/busybox"));
    assert_eq!(t.len(), 4, "{t:#?}");
    // --target builds the named stage (and what it needs) only.
    let (_, progress) = build_ok(
        &root,
        &ctx,
        &["--target", "b", "-t", "only-b", "--no-cache"],
    );
    assert!(!progress.contains("[a "), "{progress}");
    let e = build_err(&root, &ctx, &["--target", "broken"]);
    assert!(e.contains("exit code 1"), "{e}");
    let e = build_err(&root, &ctx, &["--target", "nope"]);
    assert!(e.contains("target stage \"nope\" not found"), "{e}");
}

#[test]
fn cache_hits_and_misses() {
    let root = Root::new();
    let ctx = context(
        &root,
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY one /one\nRUN cat /one > /one-copy\nARG LEVEL=1\nCOPY two /two\nRUN echo $LEVEL > /level\nCOPY <<EOF /hd\nbody1\nEOF\nRUN date +%s%N > /stamp\n",
            ),
            ("one", "1\n"),
            ("two", "2\n"),
        ],
    );
    let (id1, p1) = build_ok(&root, &ctx, &["-t", "c:1"]);
    let s1 = steps(&p1);
    assert_eq!(s1.len(), 7, "{p1}");
    assert!(s1.iter().all(|(_, c)| !c), "{p1}");
    // Unchanged: all hits, the very same image.
    let (id2, p2) = build_ok(&root, &ctx, &["-t", "c:1"]);
    assert!(steps(&p2).iter().all(|(_, c)| *c), "{p2}");
    assert_eq!(id1, id2);
    // Touching a file without changing it still hits.
    let now = std::time::SystemTime::now();
    fs::File::options()
        .write(true)
        .open(ctx.join("two"))
        .unwrap()
        .set_modified(now)
        .unwrap();
    let (id3, _) = build_ok(&root, &ctx, &[]);
    assert_eq!(id1, id3);
    // A changed COPY source misses from its step on.
    fs::write(ctx.join("two"), "2 changed\n").unwrap();
    let (_, p4) = build_ok(&root, &ctx, &[]);
    let c4: Vec<bool> = steps(&p4).into_iter().map(|(_, c)| c).collect();
    assert_eq!(c4, [true, true, true, false, false, false, false], "{p4}");
    // A build arg change misses where it is used (the RUN after ARG).
    let (_, p5) = build_ok(&root, &ctx, &["--build-arg", "LEVEL=2"]);
    let c5: Vec<bool> = steps(&p5).into_iter().map(|(_, c)| c).collect();
    assert_eq!(c5, [true, true, true, true, false, false, false], "{p5}");
    // A changed heredoc misses from its step.
    let df = fs::read_to_string(ctx.join("Dockerfile")).unwrap();
    fs::write(ctx.join("Dockerfile"), df.replace("body1", "body2")).unwrap();
    let (_, p6) = build_ok(&root, &ctx, &[]);
    let c6: Vec<bool> = steps(&p6).into_iter().map(|(_, c)| c).collect();
    assert_eq!(c6, [true, true, true, true, true, false, false], "{p6}");
    // --no-cache: nothing hits.
    let (_, p7) = build_ok(&root, &ctx, &["--no-cache"]);
    assert!(steps(&p7).iter().all(|(_, c)| !c), "{p7}");
    // Pruning keeps entries whose layers exist; -a removes them all.
    let out = root.ok(&["builder", "prune"]);
    assert!(out.starts_with("Removed 0 cache entries"), "{out}");
    let (_, p8) = build_ok(&root, &ctx, &[]);
    assert!(steps(&p8).iter().all(|(_, c)| *c), "{p8}");
    let out = root.ok(&["builder", "prune", "-a"]);
    assert!(!out.starts_with("Removed 0 cache entries"), "{out}");
    let (_, p9) = build_ok(&root, &ctx, &[]);
    assert!(steps(&p9).iter().all(|(_, c)| !c), "{p9}");
}

#[test]
fn bad_input_fails_before_any_step() {
    let root = Root::new();
    let cases: &[(&str, &str)] = &[
        (
            "FROM busybox\nRUN true\n  FOO bar\n",
            "Dockerfile:3:3: unknown instruction FOO: \"FOO bar\"",
        ),
        (
            "FROM busybox\nCOPY --bogus=1 a b\n",
            "Dockerfile:2:1: unknown flag --bogus for COPY",
        ),
        (
            "FROM busybox\nRUN true\nCOPY missing.txt /x\n",
            "Dockerfile:3: COPY: source \"missing.txt\" not found in the build context",
        ),
        (
            "FROM busybox AS a\nCOPY --from=b /x /x\nFROM busybox AS b\nCOPY --from=a /y /y\n",
            "stages depend on each other in a cycle: b -> a -> b",
        ),
        (
            "FROM busybox\nCOPY --from=7 /x /x\n",
            "Dockerfile:2:1: --from=7: there is no stage 7",
        ),
        ("FROM busybox\nENV A=${B\n", "Dockerfile:2:1: missing '}'"),
        (
            "FROM busybox\nRUN <<EOF\necho\n",
            "Dockerfile:2:1: unterminated heredoc <<EOF",
        ),
        (
            "FROM busybox\nSHELL /bin/sh -c\n",
            "Dockerfile:2:1: SHELL requires a JSON array",
        ),
        (
            "FROM 127.0.0.1:9/not-here\nRUN true\n",
            "pulling image 127.0.0.1:9/not-here",
        ),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let ctx = context(&root, &format!("bad{i}"), &[("Dockerfile", text)]);
        let out = root.run(&[
            "build",
            "--progress",
            "plain",
            "--insecure-registry",
            "127.0.0.1:9",
            ctx.to_str().unwrap(),
        ]);
        let e = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{text}");
        assert!(e.contains(want), "{text}\nwanted {want}\ngot {e}");
        if i != 5 {
            // Only substitution happens as steps run; the rest is found up front.
            assert!(!e.contains("#1 "), "a step ran before the error: {e}");
        }
        let others: Vec<&str> = e.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(others.len(), 1, "one error line: {e}");
    }
}

#[test]
fn outputs_iidfile_and_reproducible_builds() {
    let root = Root::new();
    let ctx = context(
        &root,
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox\nCOPY f /f\nRUN echo built > /built && touch /new\nLABEL stage=final\n",
        ), ("f", "f\n")],
    );
    let iid = root.dir().join("iid");
    let (id, _) = build_ok(
        &root,
        &ctx,
        &["-t", "out:1", "--iidfile", iid.to_str().unwrap()],
    );
    assert_eq!(fs::read_to_string(&iid).unwrap(), id);
    assert_eq!(inspect(&root, "out:1")["Id"].as_str().unwrap(), id);
    let run = root.ok(&["run", "--rm", "out:1", "cat", "/built"]);
    assert_eq!(run, "built\n");

    let oci = root.dir().join("oci.tar");
    let spec = format!("type=oci,dest={}", oci.display());
    build_ok(&root, &ctx, &["-o", &spec]);
    let list = Command::new("tar").arg("-tf").arg(&oci).output().unwrap();
    let names = String::from_utf8_lossy(&list.stdout);
    assert!(
        names.contains("index.json") && names.contains("oci-layout"),
        "{names}"
    );

    let docker = root.dir().join("docker.tar");
    let spec = format!("type=docker-archive,dest={}", docker.display());
    build_ok(&root, &ctx, &["-t", "arch:1", "-o", &spec]);
    let list = Command::new("tar")
        .arg("-tf")
        .arg(&docker)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&list.stdout).contains("manifest.json"));
    // The archive loads back as the same image.
    let root2 = Root::new();
    root2.ok(&["load", "-i", docker.to_str().unwrap()]);
    assert_eq!(inspect(&root2, "arch:1")["Id"].as_str().unwrap(), id);

    // SOURCE_DATE_EPOCH: two uncached builds give the same image.
    let a = build_ok(
        &root,
        &ctx,
        &["--no-cache", "--build-arg", "SOURCE_DATE_EPOCH=1700000000"],
    )
    .0;
    let b = build_ok(
        &root,
        &ctx,
        &["--no-cache", "--build-arg", "SOURCE_DATE_EPOCH=1700000000"],
    )
    .0;
    assert_eq!(a, b);
    assert_eq!(config_json(&root, &a)["created"], "2023-11-14T22:13:20Z");
}

/// Paths buildah (1.28) leaves behind as mount points of its RUN containers.
const BUILDAH_STUBS: &[&str] = &[
    "/dev",
    "/proc",
    "/sys",
    "/run",
    "/etc/hostname",
    "/etc/hosts",
    "/etc/resolv.conf",
];

#[test]
fn same_tree_as_buildah() {
    // CI installs buildah (scripts/install-deps.sh): a missing peer is a broken install.
    assert!(
        Command::new("buildah").arg("--version").output().is_ok(),
        "buildah is not installed: run scripts/install-deps.sh"
    );
    let root = Root::new();
    // Debian's buildah 1.28 has no heredocs; the corpus avoids them.
    let corpus: &[(&str, &str)] = &[
        (
            "copy-run",
            "FROM busybox\nENV GREETING=hello\nWORKDIR /app\nCOPY f.txt ./\nCOPY dir /app/d/\nCOPY --chown=user:user f.txt /home/user/f\nRUN echo \"$GREETING\" > out.txt && rm /etc/group && mkdir -p /opt/x && ln -s /app/out.txt /opt/link\nUSER user\nCMD [\"cat\", \"/app/out.txt\"]\n",
        ),
        (
            "multi-stage",
            "FROM busybox AS build\nARG N=3\nRUN mkdir /out && for i in $(seq $N); do echo $i > /out/$i; done && chmod 600 /out/2\nFROM busybox\nCOPY --from=build /out /result/\nCOPY --chmod=755 f.txt /usr/local/bin/tool\nRUN rm -rf /tmp && mkdir /tmp && chmod 1777 /tmp && touch /tmp/.keep\n",
        ),
        (
            "config",
            "FROM busybox\nENV A=1 B=\"two words\"\nLABEL x=y\nEXPOSE 80 53/udp\nVOLUME /data\nWORKDIR /srv\nUSER user\nSTOPSIGNAL SIGINT\nENTRYPOINT [\"/bin/sh\",\"-c\"]\nCMD [\"echo hi\"]\n",
        ),
        (
            "deletes-links-opaque",
            "FROM busybox\nRUN rm /bin/vi /etc/group && mkdir -p /a/b && touch /a/b/c && echo h > /hard\nRUN rm -rf /a && mkdir /a && echo x > /a/y && ln /a/y /a/z && ln -s ../hard /a/rel && mkfifo /a/fifo\nRUN mkdir /real && ln -s /real /linkdir\nCOPY f.txt g.txt /linkdir/\nCOPY --chown=1000:1000 dir /linkdir/sub/\n",
        ),
        (
            "wildcards-add",
            "FROM busybox\nCOPY *.txt /texts/\nADD t.tar /unpacked/\nADD t.tar.bz2 /unpacked-bz2/\nADD t.tar.xz /unpacked-xz/\nADD t-xz.data /by-magic/\nRUN cd /texts && cat * > /all.txt\nWORKDIR /srv/www\nCOPY dir .\n",
        ),
    ];
    let broot = root.dir().join("buildah");
    let buildah = |args: &[&str]| -> Output {
        Command::new("buildah")
            .arg("--root")
            .arg(broot.join("root"))
            .arg("--runroot")
            .arg(broot.join("run"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .output()
            .unwrap()
    };
    let archive = root.dir().join("busybox-docker.tar");
    root.ok(&["save", "-o", archive.to_str().unwrap(), "busybox"]);
    let out = buildah(&[
        "pull",
        "-q",
        &format!("docker-archive:{}", archive.display()),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (name, df) in corpus {
        let ctx = context(
            &root,
            name,
            &[
                ("Dockerfile", df),
                ("f.txt", "f\n"),
                ("g.txt", "g\n"),
                ("dir/one", "1\n"),
                ("dir/sub/two", "2\n"),
            ],
        );
        fs::set_permissions(ctx.join("dir/sub"), fs::Permissions::from_mode(0o750)).unwrap();
        let src = root.dir().join(format!("{name}-tar"));
        fs::create_dir_all(src.join("t")).unwrap();
        fs::write(src.join("t/x"), "x\n").unwrap();
        assert!(Command::new("tar")
            .args([
                "-cf",
                ctx.join("t.tar").to_str().unwrap(),
                "-C",
                src.to_str().unwrap(),
                "t"
            ])
            .status()
            .unwrap()
            .success());
        // Compressed copies: ADD finds the compression by its magic bytes, not the name.
        for (file, tool) in [
            ("t.tar.bz2", "bzip2"),
            ("t.tar.xz", "xz"),
            ("t-xz.data", "xz"),
        ] {
            let out = Command::new(tool)
                .args(["-c", ctx.join("t.tar").to_str().unwrap()])
                .output()
                .unwrap();
            assert!(out.status.success());
            fs::write(ctx.join(file), out.stdout).unwrap();
        }
        let (ours, _) = local(&root, &ctx, &format!("{name}-hako"), &[]);
        let theirs = root.dir().join(format!("{name}-buildah"));
        let out = buildah(&[
            "bud",
            "--isolation",
            "chroot",
            "--pull-never",
            "-o",
            &format!("type=local,dest={}", theirs.display()),
            ctx.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "buildah {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let strip = |t: BTreeMap<String, String>| -> BTreeMap<String, String> {
            t.into_iter()
                .filter(|(k, _)| !BUILDAH_STUBS.contains(&k.as_str()))
                .collect()
        };
        let (a, b) = (strip(tree(&ours)), strip(tree(&theirs)));
        let only_ours: Vec<_> = a.iter().filter(|(k, v)| b.get(*k) != Some(v)).collect();
        let only_theirs: Vec<_> = b.iter().filter(|(k, v)| a.get(*k) != Some(v)).collect();
        assert!(
            only_ours.is_empty() && only_theirs.is_empty(),
            "{name}: hako differs from buildah\nhako: {only_ours:#?}\nbuildah: {only_theirs:#?}"
        );
        // The image configs agree too (buildah adds its version label).
        let tag = format!("cmp-{name}");
        let (id, _) = build_ok(&root, &ctx, &["-t", &tag]);
        let out = buildah(&[
            "bud",
            "-q",
            "--isolation",
            "chroot",
            "--pull-never",
            "-t",
            &tag,
            ctx.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "buildah {name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = buildah(&["inspect", "--type", "image", &tag]);
        let theirs: Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut theirs = theirs["OCIv1"]["config"].clone();
        if let Some(l) = theirs.get_mut("Labels").and_then(Value::as_object_mut) {
            l.remove("io.buildah.version");
            if l.is_empty() {
                theirs.as_object_mut().unwrap().remove("Labels");
            }
        }
        let ours = config_json(&root, &id)["config"].clone();
        assert_eq!(ours, theirs, "{name}: image config differs from buildah's");
    }
}

#[test]
fn args_scoping_proxies_and_platform() {
    let root = Root::new();
    let ctx = context(
        &root,
        "ctx",
        &[(
            "Dockerfile",
            r#"ARG IMAGE=busybox
ARG VERSION=1.0
FROM $IMAGE AS first
ARG VERSION
ARG ONLY_FIRST=first
ARG TARGETARCH
RUN echo "$VERSION $ONLY_FIRST $TARGETARCH $HTTP_PROXY" > /args
FROM first
RUN echo "[$VERSION][$ONLY_FIRST]" > /second
ENV FROM_ENV=env
ARG FROM_ENV=arg
RUN echo $FROM_ENV > /env-wins
"#,
        )],
    );
    let (out, progress) = local(
        &root,
        &ctx,
        "out",
        &[
            "--build-arg",
            "VERSION=2.0",
            "--build-arg",
            "HTTP_PROXY=http://proxy.invalid:3128",
            "--build-arg",
            "UNUSED=1",
        ],
    );
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    };
    assert_eq!(
        fs::read_to_string(out.join("args")).unwrap(),
        format!("2.0 first {arch} http://proxy.invalid:3128\n")
    );
    // ARGs are per stage: the second stage has declared none.
    assert_eq!(fs::read_to_string(out.join("second")).unwrap(), "[][]\n");
    assert_eq!(fs::read_to_string(out.join("env-wins")).unwrap(), "env\n");
    assert!(
        progress.contains("WARNING: build args not consumed by any stage: UNUSED"),
        "{progress}"
    );
    // Proxies stay out of the history.
    let (id, _) = build_ok(
        &root,
        &ctx,
        &[
            "--build-arg",
            "HTTP_PROXY=http://proxy.invalid:3128",
            "-t",
            "args",
        ],
    );
    let h = history(&root, "args").join("\n");
    assert!(!h.contains("proxy.invalid"), "{h}");
    // ARG has an empty-layer history entry with its declaration, as with buildkit.
    assert!(
        h.contains("ARG ONLY_FIRST=first") && h.contains("ARG VERSION\n"),
        "{h}"
    );
    assert!(h.contains("RUN |3 ONLY_FIRST=first TARGETARCH="), "{h}");
    assert!(id.starts_with("sha256:"));
    // Automatic platform args work in FROM --platform and, declared, in stages.
    let plat = context(
        &root,
        "platform",
        &[(
            "Dockerfile",
            "FROM --platform=$BUILDPLATFORM busybox AS b\nARG TARGETOS TARGETARCH\nRUN echo $TARGETOS/$TARGETARCH > /p\nFROM --platform=${TARGETPLATFORM} busybox\nCOPY --from=b /p /p\n",
        )],
    );
    let (pout, _) = local(&root, &plat, "plat-out", &[]);
    assert_eq!(
        fs::read_to_string(pout.join("p")).unwrap(),
        format!("linux/{arch}\n")
    );
}

/// Debian's busybox-static:arm64 binary (scripts/install-deps.sh puts it there).
const ARM64_BUSYBOX: &str = "/usr/local/share/hako/test/busybox-arm64";

/// Whether this kernel runs arm64 programs (natively or through binfmt_misc).
fn runs_arm64() -> bool {
    Command::new(ARM64_BUSYBOX)
        .arg("true")
        .status()
        .is_ok_and(|s| s.success())
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        a => a,
    }
}

/// The error line of a failed build's output.
fn error_line(e: &str) -> String {
    e.lines()
        .find(|l| l.starts_with("Error: "))
        .unwrap_or_else(|| panic!("no error line: {e}"))
        .to_string()
}

#[test]
fn foreign_platforms() {
    let root = Root::new();
    // An arm64 busybox image, built FROM scratch for linux/arm64 (no RUN: nothing executes).
    assert!(
        Path::new(ARM64_BUSYBOX).is_file(),
        "{ARM64_BUSYBOX} missing: run scripts/install-deps.sh"
    );
    let rootfs = root.dir().join("arm64-rootfs");
    fs::create_dir_all(rootfs.join("bin")).unwrap();
    fs::copy(ARM64_BUSYBOX, rootfs.join("bin/busybox")).unwrap();
    for applet in ["sh", "uname", "echo", "cat", "true"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(applet)).unwrap();
    }
    let ctx = context(
        &root,
        "arm64",
        &[(
            "Dockerfile",
            "FROM scratch\nADD rootfs.tar /\nARG TARGETPLATFORM TARGETARCH TARGETVARIANT BUILDPLATFORM\nLABEL target=$TARGETPLATFORM arch=$TARGETARCH variant=[$TARGETVARIANT] build=$BUILDPLATFORM\nCMD [\"/bin/sh\"]\n",
        )],
    );
    let st = Command::new("tar")
        .args(["-cf", ctx.join("rootfs.tar").to_str().unwrap()])
        .args(["-C", rootfs.to_str().unwrap(), "--numeric-owner", "bin"])
        .status()
        .unwrap();
    assert!(st.success());
    let (id, _) = build_ok(
        &root,
        &ctx,
        &["--platform", "linux/arm64", "-t", "bb-arm64"],
    );
    let cfg = config_json(&root, &id);
    assert_eq!(cfg["architecture"], "arm64", "{cfg}");
    assert_eq!(cfg["os"], "linux");
    let labels = &cfg["config"]["Labels"];
    assert_eq!(labels["target"], "linux/arm64", "{cfg}");
    assert_eq!(labels["arch"], "arm64");
    assert_eq!(labels["variant"], "[]");
    assert_eq!(labels["build"], format!("linux/{}", host_arch()));
    // Aliases normalise: aarch64 is arm64 (the same image, from the cache).
    let (again, progress) = build_ok(&root, &ctx, &["--platform", "linux/aarch64"]);
    assert_eq!(again, id, "{progress}");
    // Variants reach the config and the args.
    let (v7, _) = build_ok(&root, &ctx, &["--platform", "linux/arm/v7"]);
    let cfg = config_json(&root, &v7);
    assert_eq!(
        (
            &cfg["architecture"],
            &cfg["variant"],
            &cfg["config"]["Labels"]["variant"]
        ),
        (&"arm".into(), &"v7".into(), &"[v7]".into()),
        "{cfg}"
    );
    let e = build_err(&root, &ctx, &["--platform", "windows/amd64"]);
    assert!(error_line(&e).contains("only linux"), "{e}");

    // RUN in a stage for a platform this kernel cannot execute: one line, before any step.
    let handlers = ["s390x", "ppc64le", "riscv64", "mips64el"];
    if let Some(arch) = handlers
        .iter()
        .find(|a| !Path::new(&format!("/proc/sys/fs/binfmt_misc/qemu-{a}")).exists())
    {
        let arch = if *arch == "mips64el" {
            "mips64le"
        } else {
            arch
        };
        let bad = context(
            &root,
            "norun",
            &[
                (
                    "Dockerfile",
                    &format!("FROM alpine AS unused\nFROM --platform=linux/{arch} scratch AS odd\nCOPY f /f\nRUN /f\n"),
                ),
                ("f", "#!/bin/sh\n"),
            ],
        );
        let e = build_err(&root, &bad, &[]);
        let line = error_line(&e);
        assert!(
            line.contains(&format!(
                "Dockerfile:4: RUN in stage odd: platform linux/{arch} cannot run on this linux/{} host (",
                host_arch()
            )) && !e.contains("#1 "),
            "{e}"
        );
    }

    // RUN for arm64: through qemu-user-static when binfmt_misc has it, else a clear error.
    let run = context(
        &root,
        "run-arm64",
        &[(
            "Dockerfile",
            "FROM bb-arm64\nARG TARGETPLATFORM BUILDPLATFORM\nRUN uname -m > /m && echo \"$TARGETPLATFORM on $BUILDPLATFORM\" > /p\n",
        )],
    );
    if runs_arm64() {
        let (out, _) = local(&root, &run, "run-out", &["--platform", "linux/arm64"]);
        assert_eq!(fs::read_to_string(out.join("m")).unwrap(), "aarch64\n");
        assert_eq!(
            fs::read_to_string(out.join("p")).unwrap(),
            format!("linux/arm64 on linux/{}\n", host_arch())
        );
        let (id, _) = build_ok(&root, &run, &["--platform", "linux/arm64"]);
        assert_eq!(config_json(&root, &id)["architecture"], "arm64");
    } else {
        let e = build_err(&root, &run, &["--platform", "linux/arm64"]);
        assert!(
            error_line(&e).contains("RUN in stage stage-0: platform linux/arm64 cannot run"),
            "{e}"
        );
    }
    // Without --platform the stored arm64 image does not serve a linux/amd64 build.
    let e = build_err(&root, &run, &[]);
    assert!(
        error_line(&e).contains(&format!(
            "image bb-arm64 was found but is for linux/arm64, not linux/{}",
            host_arch()
        )),
        "{e}"
    );
    // FROM --platform picks the image per stage; the result is the target's.
    let mixed = context(
        &root,
        "mixed",
        &[(
            "Dockerfile",
            "FROM --platform=linux/arm64 bb-arm64 AS tools\nFROM --platform=$BUILDPLATFORM busybox AS b\nARG TARGETARCH\nRUN echo $TARGETARCH > /t\nFROM scratch\nCOPY --from=tools /bin/busybox /arm64-busybox\nCOPY --from=b /t /t\n",
        )],
    );
    let (id, _) = build_ok(&root, &mixed, &["--platform", "linux/arm64", "-t", "mixed"]);
    assert_eq!(config_json(&root, &id)["architecture"], "arm64");
    let (out, _) = local(&root, &mixed, "mixed-out", &["--platform", "linux/arm64"]);
    assert_eq!(fs::read_to_string(out.join("t")).unwrap(), "arm64\n");

    // Several platforms in one build: an index, each platform's image in it.
    let host = host_arch();
    let multi = context(
        &root,
        "multi",
        &[(
            "Dockerfile",
            "FROM scratch\nARG TARGETARCH\nCOPY bin-$TARGETARCH /bin/busybox\n",
        )],
    );
    fs::copy("/bin/busybox", multi.join(format!("bin-{host}"))).unwrap();
    fs::copy(ARM64_BUSYBOX, multi.join("bin-arm64")).unwrap();
    let both = format!("linux/arm64,linux/{host}");
    let iid = root.dir().join("multi.iid");
    let (index_id, _) = build_ok(
        &root,
        &multi,
        &[
            "--platform",
            &both,
            "-t",
            "multi",
            "--iidfile",
            iid.to_str().unwrap(),
        ],
    );
    assert_eq!(fs::read_to_string(&iid).unwrap(), index_id);
    let index = config_json(&root, &index_id);
    let plats: Vec<String> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            format!("{}/{}", m["platform"]["os"], m["platform"]["architecture"]).replace('"', "")
        })
        .collect();
    assert_eq!(plats, ["linux/arm64".to_string(), format!("linux/{host}")]);
    // The tag names this machine's image; the other is found through the index.
    assert_eq!(inspect(&root, "multi")["Architecture"], host);
    let on_multi = context(
        &root,
        "on-multi",
        &[("Dockerfile", "FROM multi\nLABEL on=multi\n")],
    );
    let (id, _) = build_ok(&root, &on_multi, &["--platform", "linux/arm64"]);
    assert_eq!(config_json(&root, &id)["architecture"], "arm64");
    let (out, _) = local(&root, &multi, "multi-out", &["--platform", &both]);
    assert_eq!(
        fs::read(out.join("linux_arm64/bin/busybox")).unwrap(),
        fs::read(ARM64_BUSYBOX).unwrap()
    );
    assert_eq!(
        fs::read(out.join(format!("linux_{host}/bin/busybox"))).unwrap(),
        fs::read("/bin/busybox").unwrap()
    );
    let oci = format!("type=oci,dest={}", root.dir().join("m.tar").display());
    let e = build_err(&root, &multi, &["--platform", &both, "-o", &oci]);
    assert!(error_line(&e).contains("not supported yet"), "{e}");

    // A multi-platform index in a registry: the base is pulled for the
    // build's platform.
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_hako"))
        .arg("--root")
        .arg(root.dir().join("registry"))
        .args(["registry", "serve", "--addr", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _registry = Kill(child);
    let addr = line.trim().rsplit(' ').next().unwrap().to_string();
    let mut manifests = Vec::new();
    for (image, arch) in [("busybox", host_arch()), ("bb-arm64", "arm64")] {
        let dest = format!("{addr}/multi:{arch}");
        let digest = root.ok(&["push", "-q", "--dest", &dest, image]);
        let digest = digest.trim().to_string();
        let size = fs::metadata(
            root.root()
                .join("blobs/sha256")
                .join(digest.trim_start_matches("sha256:")),
        )
        .unwrap()
        .len();
        manifests.push(serde_json::json!({
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": digest, "size": size,
            "platform": {"os": "linux", "architecture": arch},
        }));
    }
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": manifests,
    });
    let index_file = root.dir().join("index.json");
    fs::write(&index_file, serde_json::to_vec(&index).unwrap()).unwrap();
    let st = Command::new("curl")
        .args(["-sf", "-X", "PUT", "-H"])
        .arg("Content-Type: application/vnd.oci.image.index.v1+json")
        .arg("--data-binary")
        .arg(format!("@{}", index_file.display()))
        .arg(format!("http://{addr}/v2/multi/manifests/1"))
        .status()
        .unwrap();
    assert!(st.success(), "PUT of the index");
    let remote = format!("{addr}/multi:1");
    let pulled = context(
        &root,
        "pulled",
        &[(
            "Dockerfile",
            &format!("FROM {remote}\nCOPY --from={remote} /bin/busybox /copied\n"),
        )],
    );
    // In a fresh store: pulled for arm64 (the index's arm64 manifest) ...
    let other = Root::new();
    let (id, _) = build_ok(&other, &pulled, &["--platform", "linux/arm64"]);
    assert_eq!(config_json(&other, &id)["architecture"], "arm64");
    let (out, _) = local(
        &other,
        &pulled,
        "pulled-out",
        &["--platform", "linux/arm64"],
    );
    assert_eq!(
        fs::read(out.join("copied")).unwrap(),
        fs::read(ARM64_BUSYBOX).unwrap()
    );
    // ... then for this machine: the same name, selected again from the index.
    let (id, _) = build_ok(&other, &pulled, &[]);
    assert_eq!(config_json(&other, &id)["architecture"], host_arch());
    let (out, _) = local(&other, &pulled, "pulled-host", &[]);
    assert_eq!(
        fs::read(out.join("copied")).unwrap(),
        fs::read("/bin/busybox").unwrap()
    );
}

/// A child process killed on drop.
struct Kill(std::process::Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn add_url_and_base_image_pulled_from_a_registry() {
    use std::io::BufRead;
    let root = Root::new();
    // A registry (hako registry serve) holding busybox.
    let mut child = Command::new(env!("CARGO_BIN_EXE_hako"))
        .arg("--root")
        .arg(root.dir().join("registry"))
        .args(["registry", "serve", "--addr", "127.0.0.1:0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let _registry = Kill(child);
    let addr = line.trim().rsplit(' ').next().unwrap().to_string();
    let remote = format!("{addr}/tools/busybox:1");
    root.ok(&[
        "push",
        "--insecure-registry",
        &addr,
        "--dest",
        &remote,
        "busybox",
    ]);
    // A web server for ADD.
    let www = root.dir().join("www");
    fs::create_dir_all(&www).unwrap();
    fs::write(www.join("hello.txt"), "from the web\n").unwrap();
    let port = free_port();
    let web = Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ])
        .current_dir(&www)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _web = Kill(web);
    engine_common::wait_for("the web server", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let df = format!(
        "FROM {remote}\nADD http://127.0.0.1:{port}/hello.txt /web/\nRUN cat /web/hello.txt > /copied\n"
    );
    let ctx = context(&root, "ctx", &[("Dockerfile", &df)]);
    // A fresh root: the base image is pulled because it is missing.
    let fresh = root.dir().join("fresh");
    let run = |args: &[&str]| -> Output {
        Command::new(env!("CARGO_BIN_EXE_hako"))
            .arg("--root")
            .arg(&fresh)
            .args(["build", "--progress", "plain", "--insecure-registry", &addr])
            .args(args)
            .arg(&ctx)
            .output()
            .unwrap()
    };
    let dest = root.dir().join("out");
    let out = run(&["-o", &format!("type=local,dest={}", dest.display())]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fs::read_to_string(dest.join("copied")).unwrap(),
        "from the web\n"
    );
    let m = fs::metadata(dest.join("web/hello.txt")).unwrap();
    assert_eq!(m.permissions().mode() & 0o777, 0o600);
    // ADD --checksum verifies the download.
    let sum = {
        use sha2::Digest;
        let d = sha2::Sha256::digest(b"from the web\n");
        d.iter().map(|b| format!("{b:02x}")).collect::<String>()
    };
    for (sum, ok) in [
        (sum.as_str(), true),
        (
            "0000000000000000000000000000000000000000000000000000000000000000",
            false,
        ),
    ] {
        let df = format!(
            "FROM {remote}\nADD --checksum=sha256:{sum} http://127.0.0.1:{port}/hello.txt /sum\n"
        );
        let c = context(&root, &format!("sum-{ok}"), &[("Dockerfile", &df)]);
        let out = Command::new(env!("CARGO_BIN_EXE_hako"))
            .arg("--root")
            .arg(&fresh)
            .args(["build", "--insecure-registry", &addr])
            .arg(&c)
            .output()
            .unwrap();
        let e = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.success(), ok, "{e}");
        if !ok {
            assert!(e.contains("checksum mismatch: expected sha256:0000"), "{e}");
        }
    }
    // Unchanged download: cached; changed: missed from the ADD on.
    let out = run(&["--pull"]);
    let p = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{p}");
    assert!(steps(&p).iter().all(|(_, c)| *c), "{p}");
    fs::write(www.join("hello.txt"), "changed\n").unwrap();
    let out = run(&[]);
    let p = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(steps(&p).iter().all(|(_, c)| !c), "{p}");
}

#[test]
fn copy_exclude() {
    let root = Root::new();
    let ctx = context(
        &root,
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM busybox AS src\nCOPY tree /tree/\nFROM scratch\nCOPY --exclude=*.log --exclude=cache tree /ctx/\nCOPY --exclude=*.md *.md *.txt /top/\nCOPY --from=src --exclude=*.txt /tree /from/\n",
            ),
            ("tree/a.txt", "a"),
            ("tree/b.log", "b"),
            ("tree/cache/c.txt", "c"),
            ("tree/deep/d.log", "d"),
            ("x.md", "x"),
            ("y.txt", "y"),
        ],
    );
    let df = fs::read_to_string(ctx.join("Dockerfile")).unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        format!("{df}COPY --parents tree/deep/d.log tree/./cache /parents/\n"),
    )
    .unwrap();
    let (out, _) = local(&root, &ctx, "out", &[]);
    let names: Vec<String> = tree(&out).into_keys().collect();
    assert_eq!(
        names,
        [
            "/ctx",
            "/ctx/a.txt",
            "/ctx/deep",
            "/ctx/deep/d.log",
            "/from",
            "/from/b.log",
            "/from/cache",
            "/from/cache/c.txt",
            "/from/deep",
            "/from/deep/d.log",
            "/parents",
            "/parents/cache",
            "/parents/cache/c.txt",
            "/parents/tree",
            "/parents/tree/deep",
            "/parents/tree/deep/d.log",
            "/top",
            "/top/y.txt"
        ]
    );
    // Patterns follow .dockerignore rules: `*.txt` does not reach into directories.
}

#[test]
fn locked_cache_mounts_take_turns() {
    let root = Root::new();
    // Two stages in parallel: each would fail if the other held the mount at the same time.
    let run = "RUN --mount=type=cache,id=turns,sharing=locked,target=/c sh -c 'mkdir /c/busy && sleep 1 && rmdir /c/busy && echo ok > /done'";
    let df = format!(
        "FROM busybox AS one\n{run}\nFROM busybox AS two\n{run}\nFROM scratch\nCOPY --from=one /done /one\nCOPY --from=two /done /two\n"
    );
    let ctx = context(&root, "ctx", &[("Dockerfile", &df)]);
    let (out, _) = local(&root, &ctx, "out", &[]);
    assert_eq!(fs::read_to_string(out.join("one")).unwrap(), "ok\n");
    assert_eq!(fs::read_to_string(out.join("two")).unwrap(), "ok\n");
}

#[test]
fn dockerfile_from_stdin_and_other_names() {
    use std::io::Write;
    let root = Root::new();
    let ctx = context(
        &root,
        "ctx",
        &[
            ("f", "f\n"),
            ("build/dev.Dockerfile", "FROM busybox\nCOPY f /dev-f\n"),
            ("build/dev.Dockerfile.dockerignore", "f\n"),
        ],
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_hako"))
        .arg("--root")
        .arg(root.root())
        .args(["build", "-q", "-t", "from-stdin", "-f", "-"])
        .arg(&ctx)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"FROM busybox\nCOPY f /stdin-f\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        root.ok(&["run", "--rm", "from-stdin", "cat", "/stdin-f"]),
        "f\n"
    );
    // A Dockerfile elsewhere uses its own NAME.dockerignore, which excludes f here.
    let df = ctx.join("build/dev.Dockerfile");
    let e = build_err(&root, &ctx, &["-f", df.to_str().unwrap()]);
    assert!(
        e.contains("source \"f\" not found in the build context"),
        "{e}"
    );
}

#[test]
fn build_checks() {
    let root = Root::new();
    let text = "FROM busybox as Build\nCMD echo hi\n";
    let ctx = context(&root, "warn", &[("Dockerfile", text)]);
    let (_, progress) = build_ok(&root, &ctx, &[]);
    assert!(
        progress.contains("WARNING: ")
            && progress.contains(":1: FromAsCasing: 'as' and 'FROM' keywords' casing do not match"),
        "{progress}"
    );
    assert!(progress.contains(":2: JSONArgsRecommended"), "{progress}");
    let strict = format!("# check=error=true;skip=StageNameCasing\n{text}");
    let ctx = context(&root, "strict", &[("Dockerfile", &strict)]);
    let e = build_err(&root, &ctx, &[]);
    assert!(
        e.contains("2 build check(s) failed (check=error=true): FromAsCasing, JSONArgsRecommended"),
        "{e}"
    );
    assert!(!e.contains("#1 "), "{e}");
    // UndefinedVar: `$X`/`${X}` of nothing ENV or ARG defines; defaults are fine.
    let ctx = context(
        &root,
        "undef",
        &[(
            "Dockerfile",
            "FROM busybox\nARG DEFINED=1\nENV A=$UNDEF B=${WITH_DEFAULT:-ok} C=$DEFINED\n",
        )],
    );
    let (_, progress) = build_ok(&root, &ctx, &[]);
    assert!(
        progress.contains(":3: UndefinedVar: Usage of undefined variable '$UNDEF'"),
        "{progress}"
    );
    assert_eq!(progress.matches("UndefinedVar").count(), 1, "{progress}");
    let quiet = format!("# check=skip=all\n{text}");
    let ctx = context(&root, "quiet", &[("Dockerfile", &quiet)]);
    let (_, progress) = build_ok(&root, &ctx, &[]);
    assert!(!progress.contains("WARNING"), "{progress}");
}

#[test]
fn ssh_agent_mount() {
    let root = Root::new();
    let sock = root.dir().join("agent.sock");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let ctx = context(
        &root,
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN --mount=type=ssh test -S \"$SSH_AUTH_SOCK\" && echo $SSH_AUTH_SOCK > /sock\n",
        )],
    );
    let spec = format!("default={}", sock.display());
    let (out, _) = local(&root, &ctx, "out", &["--ssh", &spec]);
    assert_eq!(
        fs::read_to_string(out.join("sock")).unwrap(),
        "/run/buildkit/ssh_agent.0\n"
    );
    assert!(
        !out.join("run").exists(),
        "the mount point stayed in the image"
    );
    let e = build_err(&root, &ctx, &[]);
    assert!(
        e.contains("ssh agent default is required but not given"),
        "{e}"
    );
}

#[test]
fn add_git_repository() {
    let root = Root::new();
    let repos = root.dir().join("repos");
    let repo = repos.join("app.git");
    fs::create_dir_all(repo.join("sub")).unwrap();
    fs::write(repo.join("README"), "readme\n").unwrap();
    fs::write(repo.join("sub/file"), "in sub\n").unwrap();
    let git = |args: &[&str]| {
        let out = Command::new("git")
            .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
            .args(args)
            .current_dir(&repo)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "one"]);
    git(&["tag", "v1"]);
    let port = free_port();
    let daemon = Command::new("git")
        .args([
            "daemon",
            "--export-all",
            "--reuseaddr",
            "--listen=127.0.0.1",
        ])
        .arg(format!("--port={port}"))
        .arg(format!("--base-path={}", repos.display()))
        .arg(&repos)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _daemon = Kill(daemon);
    engine_common::wait_for("git daemon", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let url = format!("git://127.0.0.1:{port}/app.git");
    let df = format!(
        "FROM busybox\nADD {url} /whole/\nADD {url}#v1:sub /sub/\nADD --keep-git-dir {url}#main /kept/\n"
    );
    let ctx = context(&root, "ctx", &[("Dockerfile", &df)]);
    let (out, _) = local(&root, &ctx, "out", &[]);
    let t = own_tree(&out);
    assert_eq!(t["/whole/README"], "file \"readme\\n\" 644 0:0");
    assert_eq!(t["/whole/sub/file"], "file \"in sub\\n\" 644 0:0");
    assert!(!t.contains_key("/whole/.git"));
    assert_eq!(t["/sub/file"], "file \"in sub\\n\" 644 0:0");
    assert!(t.contains_key("/kept/.git/HEAD"), "{t:#?}");
    // Unchanged repository: cached; a new commit: missed.
    let (_, p) = build_ok(&root, &ctx, &[]);
    assert!(steps(&p).iter().all(|(_, c)| *c), "{p}");
    fs::write(repo.join("README"), "changed\n").unwrap();
    git(&["commit", "-q", "-am", "two"]);
    let (_, p) = build_ok(&root, &ctx, &[]);
    let c: Vec<bool> = steps(&p).into_iter().map(|(_, c)| c).collect();
    // (the second step's tag did not move, but its parent did)
    assert_eq!(c, [false, false, false], "{p}");
    // A repository as the build context (its Dockerfile inside, -f relative to it).
    fs::create_dir_all(repo.join("docker")).unwrap();
    fs::write(
        repo.join("docker/Dockerfile"),
        "FROM busybox\nCOPY README /from-git-context\n",
    )
    .unwrap();
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "dockerfile"]);
    let dest = root.dir().join("git-context-out");
    let out = root.run(&[
        "build",
        "-o",
        &format!("type=local,dest={}", dest.display()),
        "-f",
        "docker/Dockerfile",
        &url,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        fs::read_to_string(dest.join("from-git-context")).unwrap(),
        "changed\n"
    );
    let bad = context(
        &root,
        "bad",
        &[(
            "Dockerfile",
            &format!("FROM busybox\nADD git://127.0.0.1:{port}/nope.git /x/\n"),
        )],
    );
    let e = build_err(&root, &bad, &[]);
    assert!(
        e.contains("ADD: git://") && e.contains("git fetch failed"),
        "{e}"
    );
}

#[test]
fn copy_link_makes_an_independent_layer() {
    let root = Root::new();
    let ctx = context(
        &root,
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY --link --chown=user f /etc/linked\nRUN test -f /etc/passwd && stat -c %U /etc/linked > /owner\n",
            ),
            ("f", "f\n"),
        ],
    );
    let (id, _) = build_ok(&root, &ctx, &["-t", "linked"]);
    let cfg = config_json(&root, &id);
    let diff_ids = cfg["rootfs"]["diff_ids"].as_array().unwrap();
    let copy_layer = diff_ids[diff_ids.len() - 2].as_str().unwrap();
    let blob = root
        .root()
        .join("blobs/sha256")
        .join(copy_layer.trim_start_matches("sha256:"));
    let list = Command::new("tar").arg("-tvf").arg(&blob).output().unwrap();
    let list = String::from_utf8_lossy(&list.stdout);
    let names: Vec<&str> = list
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap())
        .collect();
    // Only what the COPY adds: no copied-up parent metadata, nothing of the base.
    assert_eq!(names, ["etc", "etc/linked"], "{list}");
    assert!(list.lines().nth(1).unwrap().contains("1000/1000"), "{list}");
    assert_eq!(
        root.ok(&["run", "--rm", "linked", "cat", "/owner"]),
        "user\n"
    );
}

#[test]
fn run_mounts_from_stages_and_images() {
    let root = Root::new();
    let ctx = context(
        &root,
        "ctx",
        &[(
            "Dockerfile",
            r#"FROM busybox AS tools
RUN mkdir -p /opt/tools && echo tool > /opt/tools/t
FROM busybox
RUN --mount=type=bind,from=tools,source=/opt/tools,target=/mnt/tools cat /mnt/tools/t > /from-stage
RUN --mount=type=bind,from=busybox,target=/mnt/bb test -x /mnt/bb/bin/busybox && echo yes > /from-image
RUN --mount=type=bind,from=tools,source=/opt,target=/mnt/rw,rw sh -c 'echo scratch > /mnt/rw/tools/t && cat /mnt/rw/tools/t > /rw-seen'
RUN --mount=type=bind,from=tools,source=/opt,target=/mnt/again cat /mnt/again/tools/t > /after-rw
RUN --mount=type=cache,target=/c,uid=1000,gid=1000,mode=0700 stat -c '%u:%g %a' /c > /cache-owner
RUN --mount=type=tmpfs,target=/t,size=1m df -k /t | tail -1 | awk '{print $2}' > /tmpfs-size
RUN --mount=type=cache,id=seeded,target=/c,from=tools,source=/opt/tools cat /c/t > /seeded
"#,
        )],
    );
    let (out, _) = local(&root, &ctx, "out", &[]);
    let read = |p: &str| fs::read_to_string(out.join(p)).unwrap();
    assert_eq!(read("from-stage"), "tool\n");
    assert_eq!(read("from-image"), "yes\n");
    // rw binds of a stage write to a throwaway copy.
    assert_eq!(read("rw-seen"), "scratch\n");
    assert_eq!(read("after-rw"), "tool\n");
    assert_eq!(read("cache-owner"), "1000:1000 700\n");
    assert_eq!(read("tmpfs-size"), "1024\n");
    // A new cache mount starts from=stage's files.
    assert_eq!(read("seeded"), "tool\n");
    assert!(!out.join("mnt").exists(), "mount points left in the image");
}

#[test]
fn runc_runs_the_steps_too() {
    assert!(
        Path::new("/usr/sbin/runc").exists(),
        "runc is not installed: run scripts/install-deps.sh"
    );
    let root = Root::new();
    let ctx = context(
        &root,
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN chmod 1777 /tmp && echo $HOME > /root-home\nUSER user\nRUN id -u > /tmp/uid && id -G > /tmp/groups && echo $HOME > /tmp/home\nUSER root\nRUN rm /etc/group && mkdir -p /opt/made && mv /tmp/uid /tmp/groups /tmp/home /opt/made/\n",
        )],
    );
    let (ours, _) = local(&root, &ctx, "hako-runtime", &[]);
    let (theirs, _) = local(&root, &ctx, "runc", &["--runtime", "runc", "--no-cache"]);
    assert_eq!(tree(&ours), tree(&theirs));
    assert_eq!(
        fs::read_to_string(ours.join("opt/made/uid")).unwrap(),
        "1000\n"
    );
    // HOME comes from the user's passwd entry, as with docker.
    let home = fs::read_to_string(ours.join("opt/made/home")).unwrap();
    assert_eq!(home, "/home/user\n");
    assert_eq!(
        fs::read_to_string(ours.join("root-home")).unwrap(),
        "/root\n"
    );
}

#[test]
fn context_from_standard_input() {
    use std::io::Write;
    let root = Root::new();
    let run = |args: &[&str], input: &[u8]| -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_hako"))
            .arg("--root")
            .arg(root.root())
            .arg("build")
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        child.wait_with_output().unwrap()
    };
    // A tar (gzip) holding the context and its Dockerfile.
    let ctx = context(
        &root,
        "ctx",
        &[
            ("Dockerfile", "FROM busybox\nCOPY data /data\n"),
            ("data", "from tar\n"),
        ],
    );
    let tgz = root.dir().join("ctx.tar.gz");
    assert!(Command::new("tar")
        .args([
            "-czf",
            tgz.to_str().unwrap(),
            "-C",
            ctx.to_str().unwrap(),
            "."
        ])
        .status()
        .unwrap()
        .success());
    let out = run(&["-q", "-t", "from-tar", "-"], &fs::read(&tgz).unwrap());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        root.ok(&["run", "--rm", "from-tar", "cat", "/data"]),
        "from tar\n"
    );
    // A lone Dockerfile: an empty context.
    let out = run(
        &["-q", "-t", "lone", "-"],
        b"FROM busybox\nRUN echo lone > /lone\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(root.ok(&["run", "--rm", "lone", "cat", "/lone"]), "lone\n");
    // An http(s) URL of a tar.
    let www = root.dir().join("www");
    fs::create_dir_all(&www).unwrap();
    fs::copy(&tgz, www.join("ctx.tar.gz")).unwrap();
    let port = free_port();
    let web = Command::new("python3")
        .args([
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            &port.to_string(),
        ])
        .current_dir(&www)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let _web = Kill(web);
    engine_common::wait_for("the web server", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    let url = format!("http://127.0.0.1:{port}/ctx.tar.gz");
    root.ok(&["build", "-q", "-t", "from-url", &url]);
    assert_eq!(
        root.ok(&["run", "--rm", "from-url", "cat", "/data"]),
        "from tar\n"
    );
    let out = run(&["-f", "-", "-"], b"");
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot both come from standard input"));
}

#[test]
fn run_security_insecure_needs_the_entitlement() {
    let root = Root::new();
    let ctx = context(
        &root,
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN grep CapEff /proc/self/status > /sandbox\nRUN --security=insecure grep CapEff /proc/self/status > /insecure\n",
        )],
    );
    let e = build_err(&root, &ctx, &[]);
    assert!(
        e.contains("Dockerfile:3:1: RUN --security=insecure needs --allow security.insecure"),
        "{e}"
    );
    assert!(!e.contains("#1 "), "{e}");
    let (out, _) = local(&root, &ctx, "out", &["--allow", "security.insecure"]);
    let caps = |f: &str| {
        let s = fs::read_to_string(out.join(f)).unwrap();
        u64::from_str_radix(s.split_whitespace().nth(1).unwrap(), 16).unwrap()
    };
    // docker's default set is 14 capabilities; insecure has them all.
    assert_eq!(caps("sandbox").count_ones(), 14);
    assert!(caps("insecure").count_ones() > 30);
}

#[test]
fn run_steps_get_dockers_capability_sets() {
    let root = Root::new();
    // RUN set only the bounding, effective and permitted sets: the
    // runtime-spec defaults filled the inheritable and ambient ones, so a
    // RUN as a non-root USER had ambient capabilities (docker gives none).
    let ctx = context(
        &root,
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN mkdir -m 1777 /out && grep ^Cap /proc/self/status > /out/root\n\
             USER 65534\nRUN grep ^Cap /proc/self/status > /out/user\n",
        )],
    );
    let (out, _) = local(&root, &ctx, "out", &[]);
    let caps = |f: &str| -> BTreeMap<String, u64> {
        fs::read_to_string(out.join("out").join(f))
            .unwrap()
            .lines()
            .map(|l| {
                let (k, v) = l.split_once(':').unwrap();
                (k.to_string(), u64::from_str_radix(v.trim(), 16).unwrap())
            })
            .collect()
    };
    let (r, u) = (caps("root"), caps("user"));
    // docker's default set of 14 for root, nothing inherited or ambient.
    for set in ["CapBnd", "CapEff", "CapPrm"] {
        assert_eq!(r[set].count_ones(), 14, "root {set}: {r:?}");
    }
    assert_eq!((r["CapInh"], r["CapAmb"]), (0, 0), "root: {r:?}");
    // A non-root user: the bounding set only.
    assert_eq!(u["CapBnd"], r["CapBnd"], "user: {u:?}");
    for set in ["CapEff", "CapPrm", "CapInh", "CapAmb"] {
        assert_eq!(u[set], 0, "user {set}: {u:?}");
    }
}

#[test]
fn compressed_layers() {
    let root = Root::new();
    let ctx = context(
        &root,
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY f /f\nRUN echo ran > /ran\n",
            ),
            ("f", "f\n"),
        ],
    );
    for (alg, media) in [
        ("gzip", "application/vnd.oci.image.layer.v1.tar+gzip"),
        ("zstd", "application/vnd.oci.image.layer.v1.tar+zstd"),
    ] {
        let tag = format!("c-{alg}");
        build_ok(&root, &ctx, &["--compression", alg, "-t", &tag]);
        let digest = inspect(&root, &tag)["Digest"].as_str().unwrap().to_string();
        let manifest: Value = serde_json::from_slice(
            &fs::read(
                root.root()
                    .join("blobs/sha256")
                    .join(digest.trim_start_matches("sha256:")),
            )
            .unwrap(),
        )
        .unwrap();
        let layers = manifest["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 3, "{manifest}");
        for l in &layers[1..] {
            assert_eq!(l["mediaType"], media, "{manifest}");
        }
        assert_eq!(
            root.ok(&["run", "--rm", &tag, "cat", "/ran", "/f"]),
            "ran\nf\n"
        );
    }
    // The image exports and loads elsewhere with its compressed layers.
    let archive = root.dir().join("c.tar");
    root.ok(&["save", "-o", archive.to_str().unwrap(), "c-gzip"]);
    let other = Root::new();
    other.ok(&["load", "-i", archive.to_str().unwrap()]);
    assert_eq!(other.ok(&["run", "--rm", "c-gzip", "cat", "/ran"]), "ran\n");
}

#[test]
fn built_images_run_in_podman() {
    assert!(
        Command::new("podman").arg("--version").output().is_ok(),
        "podman is not installed: run scripts/install-deps.sh"
    );
    let root = Root::new();
    let ctx = context(
        &root,
        "ctx",
        &[
            (
                "Dockerfile",
                "FROM busybox\nCOPY msg /msg\nRUN echo built >> /msg\nENV WHO=podman\nCMD [\"sh\", \"-c\", \"cat /msg; echo $WHO\"]\n",
            ),
            ("msg", "copied\n"),
        ],
    );
    build_ok(&root, &ctx, &["-t", "localhost/for-podman:1"]);
    let archive = root.dir().join("for-podman.tar");
    root.ok(&[
        "save",
        "-o",
        archive.to_str().unwrap(),
        "localhost/for-podman:1",
    ]);
    let podman = |args: &[&str]| -> Output {
        Command::new("podman")
            .arg("--root")
            .arg(root.dir().join("podman-root"))
            .arg("--runroot")
            .arg(root.dir().join("podman-run"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .output()
            .unwrap()
    };
    let out = podman(&["load", "-q", "-i", archive.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Debian's crun refuses this machine's hybrid cgroups; runc runs it.
    let out = podman(&["run", "--rm", "--runtime", "runc", "localhost/for-podman:1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "copied\nbuilt\npodman\n"
    );
}

/// `hako build` with TMPDIR set, stdin from `input`; killed after 60 s so a
/// hang fails the test instead of stalling it.
fn build_with_input(root: &Root, tmpdir: &Path, args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_hako"))
        .arg("--root")
        .arg(root.root())
        .arg("build")
        .args(args)
        .env("TMPDIR", tmpdir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let watchdog = std::thread::spawn(move || {
        if rx.recv_timeout(std::time::Duration::from_secs(60)).is_err() {
            // SAFETY: kill(2) of our own child's pid, which is not reaped yet.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    });
    let out = child.wait_with_output().unwrap();
    drop(tx);
    watchdog.join().unwrap();
    out
}

/// The scratch directories `hako build` made in `tmpdir`.
fn scratch_dirs(tmpdir: &Path) -> Vec<String> {
    fs::read_dir(tmpdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("hako-context-"))
        .collect()
}

#[test]
fn context_files_stay_inside_the_context() {
    use std::os::unix::fs::symlink;
    let root = Root::new();
    let tmpdir = root.dir().join("tmp");
    fs::create_dir_all(&tmpdir).unwrap();
    // A host file a hostile context points at: it must never be read.
    let secret = root.dir().join("secret");
    fs::write(&secret, "SECRETLINE:$6$hash:19000\n").unwrap();
    let must_refuse = |out: &Output, what: &str, why: &str| {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: the build should fail");
        assert!(err.contains(why), "{what}: {err}");
        assert!(!err.contains("SECRETLINE"), "{what}: leaked: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{what}: {err}");
    };
    let escape = "a symbolic link leads outside the build context";
    // A directory context whose Dockerfile is an absolute or relative link out.
    for (name, target) in [
        ("abs", secret.to_str().unwrap().to_string()),
        ("rel", "../secret".to_string()),
    ] {
        let ctx = context(&root, &format!("ctx-{name}"), &[("data", "x")]);
        symlink(&target, ctx.join("Dockerfile")).unwrap();
        must_refuse(&build(&root, &ctx, &["-q"]), name, escape);
        // The same with -f naming it inside the context.
        let f = ctx.join("Dockerfile");
        must_refuse(
            &build(&root, &ctx, &["-q", "-f", f.to_str().unwrap()]),
            name,
            escape,
        );
    }
    // A .dockerignore (or Dockerfile.dockerignore) that leads out.
    for ignore in [".dockerignore", "Dockerfile.dockerignore"] {
        let ctx = context(
            &root,
            &format!("ign{ignore}"),
            &[("Dockerfile", "FROM busybox\n")],
        );
        symlink(&secret, ctx.join(ignore)).unwrap();
        must_refuse(&build(&root, &ctx, &["-q"]), ignore, escape);
    }
    // A FIFO or a device as the Dockerfile is refused, not opened.
    let ctx = context(&root, "fifo", &[("data", "x")]);
    nix::unistd::mkfifo(
        &ctx.join("Dockerfile"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let out = build_with_input(&root, &tmpdir, &["-q", ctx.to_str().unwrap()], b"");
    must_refuse(&out, "fifo", "not a regular file");
    let ctx = context(&root, "dev", &[("data", "x")]);
    symlink("/dev/zero", ctx.join("Dockerfile")).unwrap();
    must_refuse(&build(&root, &ctx, &["-q"]), "dev", escape);
    let out = build_with_input(
        &root,
        &tmpdir,
        &["-q", "-f", "/dev/zero", ctx.to_str().unwrap()],
        b"",
    );
    must_refuse(&out, "-f /dev/zero", "not a regular file");
    // A link that stays inside the context is followed.
    let ctx = context(
        &root,
        "inside",
        &[
            ("sub/Dockerfile.real", "FROM busybox\nCOPY data /data\n"),
            ("data", "in\n"),
        ],
    );
    symlink("sub/Dockerfile.real", ctx.join("Dockerfile")).unwrap();
    build_ok(&root, &ctx, &["-q", "-t", "inside"]);
    // A tar context on standard input whose Dockerfile links out.
    let t = context(&root, "tarctx", &[("data", "x")]);
    symlink(&secret, t.join("Dockerfile")).unwrap();
    let tar = root.dir().join("tarctx.tar");
    assert!(Command::new("tar")
        .args(["-cf", tar.to_str().unwrap(), "-C", t.to_str().unwrap(), "."])
        .status()
        .unwrap()
        .success());
    let out = build_with_input(&root, &tmpdir, &["-q", "-"], &fs::read(&tar).unwrap());
    must_refuse(&out, "tar", escape);
    // Nothing of the builds is left in TMPDIR.
    assert_eq!(scratch_dirs(&tmpdir), Vec::<String>::new());
}

#[test]
fn killed_build_leaves_no_context_directory() {
    use std::io::Write;
    let root = Root::new();
    let tmpdir = root.dir().join("tmp");
    fs::create_dir_all(&tmpdir).unwrap();
    // Killed while it reads its context from standard input.
    let mut child = Command::new(env!("CARGO_BIN_EXE_hako"))
        .arg("--root")
        .arg(root.root())
        .args(["build", "-q", "-"])
        .env("TMPDIR", &tmpdir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"FROM busybox\n").unwrap();
    engine_common::wait_for("the build's context directory", || {
        !scratch_dirs(&tmpdir).is_empty()
    });
    let left = scratch_dirs(&tmpdir);
    child.kill().unwrap();
    child.wait().unwrap();
    drop(stdin);
    assert_eq!(scratch_dirs(&tmpdir), left, "SIGKILL cannot clean up");
    // The next build removes it (its owner is gone) and its own.
    let out = build_with_input(&root, &tmpdir, &["-q", "-"], b"FROM busybox\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(scratch_dirs(&tmpdir), Vec::<String>::new());
}

/// The one line a failed build printed; the build must have exited (not died
/// of a signal such as SIGABRT from a stack overflow).
fn one_line_failure(out: &Output) -> String {
    use std::os::unix::process::ExitStatusExt;
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.signal(), None, "killed by a signal: {err:.300}");
    assert!(!out.status.success(), "the build should fail: {err:.300}");
    let line = error_line(&err);
    assert!(line.len() < 1000, "a short error: {line:.300}");
    line
}

#[test]
fn expansion_bombs_fail_in_one_line() {
    let root = Root::new();
    let tmpdir = root.dir().join("tmp");
    fs::create_dir_all(&tmpdir).unwrap();
    let nest = |n: usize| "${a:-".repeat(n) + "x" + &"}".repeat(n);
    // 4000 nested defaults: a stack overflow aborted the build.
    for (name, text) in [
        ("env", format!("FROM busybox\nENV X={}\n", nest(4000))),
        ("arg", format!("ARG X={}\nFROM busybox\n", nest(4000))),
        ("label", format!("FROM busybox\nLABEL X={}\n", nest(4000))),
    ] {
        let out = build_with_input(&root, &tmpdir, &["-q", "-"], text.as_bytes());
        let line = one_line_failure(&out);
        assert!(line.contains("nested more than 64 deep"), "{name}: {line}");
    }
    // 64 levels are fine.
    let ok = format!("FROM busybox\nENV X={}\n", nest(64));
    let out = build_with_input(&root, &tmpdir, &["-q", "-t", "nest64", "-"], ok.as_bytes());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let env = inspect(&root, "nest64")["Config"]["Env"].to_string();
    assert!(env.contains("\"X=x\""), "{env}");
    // Values that double from line to line: memory grew without bound.
    for kw in ["ENV", "ARG"] {
        let mut text = format!("FROM busybox\n{kw} e0=x\n");
        for i in 0..40 {
            text.push_str(&format!("{kw} e{}=${{e{i}}}${{e{i}}}\n", i + 1));
        }
        let out = build_with_input(&root, &tmpdir, &["-q", "-"], text.as_bytes());
        let line = one_line_failure(&out);
        assert!(
            line.contains("variable expansion larger than 1 MiB"),
            "{kw}: {line}"
        );
        // The 21st line is the first whose value passes 1 MiB.
        assert!(line.contains(":23:"), "{kw}: {line}");
    }
}

#[test]
fn many_instructions_build_in_linear_time() {
    let root = Root::new();
    // 10 000 ENV and 10 000 LABEL lines (each step stored the whole stage
    // state, so N lines cost O(N²) and took minutes), 2 000 ARG lines, 100
    // nested WORKDIRs and one 1 500 levels deep (every level was resolved
    // from the root, O(depth³)).
    let mut df = String::from("FROM busybox AS main\n");
    for i in 0..2000 {
        df.push_str(&format!("ARG a{i}=v{i}\n"));
    }
    for i in 0..10_000 {
        df.push_str(&format!("ENV e{i}=v{i}\nLABEL l{i}=${{e{i}}}\n"));
    }
    df.push_str("ENV e5=five\n");
    for _ in 0..100 {
        df.push_str("WORKDIR d\n");
    }
    let deep = "/w".repeat(1500);
    df.push_str(&format!(
        "WORKDIR {deep}\nRUN test -d . && echo $e9999 $a1999 > /out\n\
         FROM scratch AS out\nCOPY --from=main /out /out\nFROM main\n"
    ));
    let ctx = context(&root, "many", &[("Dockerfile", &df)]);
    let (id, _) = build_ok(&root, &ctx, &["-q", "-t", "many"]);
    let cfg = inspect(&root, "many");
    let env = cfg["Config"]["Env"].as_array().unwrap();
    assert!(env.len() > 10_000, "{}", env.len());
    assert!(env.contains(&Value::from("e5=five")));
    assert!(env.contains(&Value::from("e9999=v9999")));
    assert_eq!(cfg["Config"]["Labels"]["l4242"], "v4242");
    assert_eq!(cfg["Config"]["WorkingDir"], deep.as_str());
    // What the RUN wrote, exported through a small stage.
    let out = root.dir().join("many-out");
    let spec = format!("type=local,dest={}", out.display());
    build_ok(&root, &ctx, &["-q", "--target", "out", "-o", &spec]);
    assert_eq!(
        fs::read_to_string(out.join("out")).unwrap(),
        "v9999 v1999\n"
    );
    // An unchanged rebuild hits every step and gives the same image.
    let (again, progress) = build_ok(&root, &ctx, &["-t", "many"]);
    assert_eq!(again.lines().last(), Some(id.as_str()));
    let s = steps(&progress);
    assert!(s.len() > 22_000, "{}", s.len());
    assert!(s.iter().all(|(_, cached)| *cached), "all cached");
}

/// Pids of live processes whose command line is exactly `args`.
fn pids_running(args: &[&str]) -> Vec<i32> {
    let want: Vec<u8> = args
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == want))
        .filter(|pid| engine_common::pid_alive(*pid as i64))
        .collect()
}

/// Mount points under `dir`.
fn mounts_under(dir: &Path) -> Vec<String> {
    let d = dir.to_string_lossy().into_owned();
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m.starts_with(&d))
        .collect()
}

/// Kills what a failed test left running (the step's process).
struct KillAll(Vec<String>);

impl Drop for KillAll {
    fn drop(&mut self) {
        let args: Vec<&str> = self.0.iter().map(String::as_str).collect();
        for pid in pids_running(&args) {
            // SAFETY: kill(2) of a process this test started (by its unique command line).
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

#[test]
fn killed_build_stops_its_run_step() {
    let root = Root::new();
    // A step that runs until something stops it, with a command line no
    // other process has.
    let secs = format!("{}", 900_000 + std::process::id() % 90_000);
    let sleep = ["sleep", secs.as_str()];
    let _cleanup = KillAll(sleep.iter().map(|s| s.to_string()).collect());
    let ctx = context(
        &root,
        "forever",
        &[("Dockerfile", &format!("FROM busybox\nRUN sleep {secs}\n"))],
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_hako"))
        .arg("--root")
        .arg(root.root())
        .args(["build", "-q"])
        .arg(&ctx)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    engine_common::wait_for("the RUN step", || !pids_running(&sleep).is_empty());
    let work = root.root().join("build/work");
    assert!(
        !mounts_under(&work).is_empty(),
        "the step's overlay is mounted"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    // The step dies with the build, and its overlay goes.
    engine_common::wait_for("the RUN step to stop", || pids_running(&sleep).is_empty());
    engine_common::wait_for("the step's overlay to be unmounted", || {
        mounts_under(&work).is_empty()
    });
    // What is left (the step directory) goes with the next build or prune.
    let out = root.ok(&["builder", "prune"]);
    assert!(out.contains("1 leftover step directories"), "{out}");
    assert_eq!(fs::read_dir(&work).unwrap().count(), 0);
}

#[test]
fn base_images_are_leased_while_builds_use_them() {
    let root = Root::new();
    // A base with one name (so rmi would delete it).
    let base = context(
        &root,
        "lease-base",
        &[("Dockerfile", "FROM busybox\nRUN echo base > /base\n")],
    );
    build_ok(&root, &base, &["-q", "-t", "leasebase"]);
    // A build that uses it and waits in a RUN until the test lets it go.
    let secs = format!("{}", 800_000 + std::process::id() % 90_000);
    let sleep = ["sleep", secs.as_str()];
    let _cleanup = KillAll(sleep.iter().map(|s| s.to_string()).collect());
    let ctx = context(
        &root,
        "lease-child",
        &[(
            "Dockerfile",
            &format!("FROM leasebase\nRUN sleep {secs} || true\nRUN cat /base > /child\n"),
        )],
    );
    let child = Command::new(env!("CARGO_BIN_EXE_hako"))
        .arg("--root")
        .arg(root.root())
        .args(["build", "-q", "-t", "leased-child"])
        .arg(&ctx)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let build_pid = child.id();
    let child = Kill(child);
    engine_common::wait_for("the RUN step", || !pids_running(&sleep).is_empty());
    // rmi of the leased base: refused in one line naming the image and the build.
    let out = root.run(&["rmi", "leasebase"]);
    assert!(!out.status.success(), "rmi of a leased image must fail");
    let err = String::from_utf8_lossy(&out.stderr);
    // One line says why (rmi then sums up its failures, as docker's).
    let why: Vec<&str> = err.lines().filter(|l| l.contains("is in use")).collect();
    assert_eq!(why.len(), 1, "{err}");
    assert!(
        why[0].contains("image leasebase")
            && why[0].contains(&format!("hako build (pid {build_pid})")),
        "{err}"
    );
    assert!(root.ok(&["images"]).contains("leasebase"));
    // rmi -f removes the name (podman's force), but the content stays for
    // the build: it waits for the build's store lock to collect.
    let rmi_f = Command::new(env!("CARGO_BIN_EXE_hako"))
        .arg("--root")
        .arg(root.root())
        .args(["rmi", "-f", "leasebase"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    engine_common::wait_for("rmi -f to remove the record", || {
        !root.ok(&["images"]).contains("leasebase")
    });
    // Let the build go on: it finishes with the base's layers.
    for pid in pids_running(&sleep) {
        // SAFETY: kill(2) of the step's process, found by its unique command line.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let mut child = child;
    let out = std::mem::replace(&mut child.0, Command::new("true").spawn().unwrap())
        .wait_with_output()
        .unwrap();
    assert!(
        out.status.success(),
        "the build must not lose its base: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rmi_out = rmi_f.wait_with_output().unwrap();
    assert!(
        rmi_out.status.success(),
        "{}",
        String::from_utf8_lossy(&rmi_out.stderr)
    );
    assert_eq!(
        root.ok(&["run", "--rm", "leased-child", "cat", "/child"]),
        "base\n"
    );
    // The build's leases went with it.
    let leases = root.root().join("leases");
    let left: Vec<_> = fs::read_dir(&leases)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

/// The number of layers of an image.
fn layer_count(root: &Root, image: &str) -> usize {
    inspect(root, image)["RootFS"]["Layers"]
        .as_array()
        .map_or(0, Vec::len)
}

#[test]
fn workdirs_are_layers_made_without_mounting_their_parents() {
    let root = Root::new();
    let base = layer_count(&root, "busybox");
    // Each WORKDIR that creates a directory is a layer. It was made on an
    // overlay of all the parent layers, so N nested WORKDIRs cost ~N³ and
    // the 501st layer failed (overlayfs stacks at most 500 lower layers).
    let mut df = String::from("FROM busybox\nUSER 1000\n");
    for i in 0..520 {
        df.push_str(&format!("WORKDIR /s{i}\n"));
    }
    let ctx = context(&root, "many", &[("Dockerfile", &df)]);
    let (id, _) = build_ok(&root, &ctx, &["-t", "many"]);
    assert_eq!(layer_count(&root, "many"), base + 520);
    let (again, progress) = build_ok(&root, &ctx, &["-t", "many"]);
    assert_eq!(again.lines().last(), Some(id.as_str()));
    assert!(steps(&progress).iter().all(|(_, cached)| *cached));

    // What the WORKDIRs make: nested ones, a symlink on the way (resolved
    // inside the root filesystem), a deleted directory made again, the
    // owner from a passwd entry a later layer added, no layer for a
    // directory that exists.
    // A symlink climbing out stays in the root filesystem too.
    let escape = format!("hako-wd-escape-{}", std::process::id());
    let mut df = format!(
        "FROM busybox\n\
         RUN mkdir -p /real/base && ln -s /real /lnk && ln -s ../../../.. /up \
         && rm -rf /home/user && echo app:x:2000:2001::/:/bin/sh >> /etc/passwd\n\
         USER app\n\
         WORKDIR /lnk/base/sub\n\
         WORKDIR /up/{escape}\n\
         WORKDIR /home/user/x\n\
         WORKDIR /tmp\n",
    );
    for _ in 0..60 {
        df.push_str("WORKDIR n\n");
    }
    df.push_str("WORKDIR /etc\n");
    let ctx = context(&root, "tree", &[("Dockerfile", &df)]);
    let (dest, _) = local(&root, &ctx, "tree-out", &[]);
    let t = own_tree(&dest);
    let get = |p: &str| t.get(p).cloned().unwrap_or_else(|| format!("{p} missing"));
    assert_eq!(get("/lnk"), "link /real 0:0");
    assert_eq!(get("/real/base"), "dir 755 0:0");
    assert_eq!(get("/real/base/sub"), "dir 755 2000:2001");
    assert_eq!(get(&format!("/{escape}")), "dir 755 2000:2001");
    assert!(!Path::new("/").join(&escape).exists());
    assert_eq!(get("/home/user"), "dir 755 2000:2001");
    assert_eq!(get("/home/user/x"), "dir 755 2000:2001");
    assert_eq!(get("/tmp"), "dir 755 0:0");
    let deepest = format!("/tmp{}", "/n".repeat(60));
    assert_eq!(get(&deepest), "dir 755 2000:2001");
    assert!(!t.contains_key(&format!("{deepest}/n")));
    assert_eq!(get("/etc/passwd").split(' ').next(), Some("file"));
    // RUN, four WORKDIRs, 59 more nested ones; none for /tmp and /etc.
    build_ok(&root, &ctx, &["-q", "-t", "tree"]);
    assert_eq!(layer_count(&root, "tree"), base + 64);
    let cfg = inspect(&root, "tree");
    assert_eq!(cfg["Config"]["WorkingDir"], "/etc");
}

/// docker build's `--add-host`, `--shm-size`, `--ulimit` and `--network` reach
/// every RUN step (a step's own `RUN --network` still wins); bad values are
/// refused in one line before anything runs.
#[test]
fn build_flags_shape_every_run_step() {
    let root = Root::new();
    let ctx = context(
        &root,
        "ctx",
        &[(
            "Dockerfile",
            "FROM busybox\nRUN mkdir /out && (grep -E 'db\\.test|gw\\.test' /etc/hosts || true) > /out/hosts\n\
             RUN df -k /dev/shm | tail -n 1 > /out/shm && ulimit -n > /out/nofile-soft && ulimit -Hn > /out/nofile-hard\n\
             RUN ls /sys/class/net > /out/links\n\
             RUN --network=default ls /sys/class/net > /out/links-default\n",
        )],
    );
    let (out, _) = local(
        &root,
        &ctx,
        "out",
        &[
            "--add-host",
            "db.test:10.1.2.3",
            "--add-host",
            "gw.test:host-gateway",
            "--shm-size",
            "128m",
            "--ulimit",
            "nofile=1000:2000",
            "--network",
            "none",
        ],
    );
    let read = |f: &str| fs::read_to_string(out.join("out").join(f)).unwrap();
    // --network none: only the loopback, and no host entries.
    assert_eq!(read("hosts"), "");
    assert_eq!(read("links").split_whitespace().collect::<Vec<_>>(), ["lo"]);
    assert_eq!(
        read("links-default").split_whitespace().collect::<Vec<_>>(),
        ["lo"],
        "RUN --network=default is the build's network"
    );
    assert_eq!(read("nofile-soft").trim(), "1000");
    assert_eq!(read("nofile-hard").trim(), "2000");
    let shm_kib: u64 = read("shm")
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(shm_kib, 128 * 1024);

    // With a network: the entries are in /etc/hosts, after the host's own.
    let (out, _) = local(
        &root,
        &ctx,
        "out2",
        &[
            "--add-host",
            "db.test:10.1.2.3",
            "--add-host",
            "gw.test:host-gateway",
        ],
    );
    let hosts = fs::read_to_string(out.join("out/hosts")).unwrap();
    assert_eq!(hosts, "10.1.2.3\tdb.test\n127.0.0.1\tgw.test\n");
    let shm_kib: u64 = fs::read_to_string(out.join("out/shm"))
        .unwrap()
        .split_whitespace()
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(shm_kib, 64 * 1024, "docker's default /dev/shm");
    assert!(
        fs::read_to_string(out.join("out/links"))
            .unwrap()
            .lines()
            .count()
            > 1,
        "the default network is the host's"
    );

    for (args, msg) in [
        (&["--network", "bridge0"][..], "--network \"bridge0\""),
        (
            &["--add-host", "nocolon"][..],
            "invalid --add-host \"nocolon\"",
        ),
        (&["--ulimit", "nofile=x"][..], "invalid --ulimit"),
        (&["--shm-size", "lots"][..], "--shm-size \"lots\""),
    ] {
        let err = build_err(&root, &ctx, args);
        assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        assert!(err.contains(msg), "{args:?}: {err}");
    }
}

/// `--build-context NAME=PATH` for `COPY --from=NAME` (a directory read like
/// the context, its content in the cache key) and
/// `NAME=docker-image://REF` for `FROM NAME` and `COPY --from=NAME`.
#[test]
fn named_build_contexts_for_copy_from_and_from() {
    let r = Root::new();
    let extra = context(
        &r,
        "extra",
        &[("conf/app.txt", "from-extra\n"), ("top.txt", "top\n")],
    );
    // An image only a named context reaches: "base" is not in the store.
    let base_ctx = context(
        &r,
        "base-ctx",
        &[("Dockerfile", "FROM busybox\nRUN echo in-base > /base.txt\n")],
    );
    build_ok(&r, &base_ctx, &["-t", "localbase:v1"]);
    let ctx = context(
        &r,
        "ctx",
        &[(
            "Dockerfile",
            "FROM base\nCOPY --from=extra conf/app.txt /app.txt\nCOPY --from=extra . /all/\nCOPY --from=base /base.txt /again.txt\n",
        )],
    );
    let extra_arg = format!("extra={}", extra.display());
    let args = [
        "--build-context",
        extra_arg.as_str(),
        "--build-context",
        "base=docker-image://localbase:v1",
    ];
    let (dest, _) = local(&r, &ctx, "out", &args);
    for (path, want) in [
        ("app.txt", "from-extra\n"),
        ("all/top.txt", "top\n"),
        ("all/conf/app.txt", "from-extra\n"),
        ("base.txt", "in-base\n"),
        ("again.txt", "in-base\n"),
    ] {
        assert_eq!(fs::read_to_string(dest.join(path)).unwrap(), want, "{path}");
    }

    // Cached while the directory is unchanged; a change is a miss.
    let mut a = vec!["-t", "named:1"];
    a.extend_from_slice(&args);
    build_ok(&r, &ctx, &a);
    let (_, p) = build_ok(&r, &ctx, &a);
    assert!(steps(&p).iter().all(|(_, cached)| *cached), "{p}");
    fs::write(extra.join("conf/app.txt"), "changed\n").unwrap();
    let (_, p) = build_ok(&r, &ctx, &a);
    let s = steps(&p);
    assert!(
        s.iter().any(|(n, c)| n.contains("conf/app.txt") && !c),
        "{p}"
    );

    // Without the contexts the names are images that are not there.
    let e = build_err(&r, &ctx, &[]);
    assert!(e.contains("base"), "{e}");
    // FROM a directory context, and malformed contexts: one-line refusals.
    let from_dir = context(&r, "from-dir", &[("Dockerfile", "FROM extra\n")]);
    let e = build_err(&r, &from_dir, &["--build-context", extra_arg.as_str()]);
    assert!(e.contains("FROM extra") && e.contains("directory"), "{e}");
    for bad in [
        "noequals",
        "x=oci-layout:///tmp/l",
        "x=/nonexistent-dir-hako",
        "x=docker-image://",
    ] {
        let e = build_err(&r, &ctx, &["--build-context", bad]);
        assert!(e.contains("invalid --build-context"), "{bad}: {e}");
        assert_eq!(e.trim().lines().count(), 1, "{e}");
    }
}

/// `--cache-from IMAGE` (docker's classic builder): on a store with no build
/// cache, a loaded image whose history matches gives every step as a cache
/// hit, with the same layers and the same image; without it the steps run.
#[test]
fn cache_from_a_loaded_image_reuses_its_layers() {
    let first = Root::new();
    let files = [
        (
            "Dockerfile",
            "FROM busybox\nENV STAGE=one\nRUN cat /proc/sys/kernel/random/uuid > /id\nCOPY a.txt /a.txt\nWORKDIR /w\nRUN cat /proc/sys/kernel/random/uuid > /w/id2\n",
        ),
        ("a.txt", "a\n"),
    ];
    let ctx = context(&first, "ctx", &files);
    let (id, _) = build_ok(&first, &ctx, &["-q", "-t", "app:1"]);
    let archive = first.dir().join("app.tar");
    first.ok(&["save", "-o", archive.to_str().unwrap(), "busybox", "app:1"]);
    let layers = |r: &Root, image: &str| inspect(r, image)["RootFS"]["Layers"].clone();
    let want = layers(&first, "app:1");

    // A fresh store: the same base and the cache image loaded, no build cache.
    let second = Root::new();
    second.ok(&["rmi", "busybox"]);
    second.ok(&["load", "-i", archive.to_str().unwrap()]);
    let ctx2 = context(&second, "ctx", &files);
    let (id2, p) = build_ok(&second, &ctx2, &["-t", "again:1", "--cache-from", "app:1"]);
    let s = steps(&p);
    assert_eq!(s.len(), 5, "{p}");
    assert!(s.iter().all(|(_, cached)| *cached), "{p}");
    assert_eq!(layers(&second, "again:1"), want);
    let short = |i: &str| {
        i.trim_start_matches("sha256:")
            .chars()
            .take(12)
            .collect::<String>()
    };
    assert_eq!(
        short(inspect(&second, "again:1")["Id"].as_str().unwrap()),
        short(&id)
    );
    let _ = id2;

    // A changed file: hits up to it, then the steps run (new layers).
    fs::write(ctx2.join("a.txt"), "b\n").unwrap();
    let (_, p) = build_ok(
        &second,
        &ctx2,
        &["--no-cache", "-t", "third:1", "--cache-from", "app:1"],
    );
    assert!(
        steps(&p).iter().all(|(_, cached)| !cached),
        "--no-cache takes no hit: {p}"
    );
    let third = Root::new();
    third.ok(&["rmi", "busybox"]);
    third.ok(&["load", "-i", archive.to_str().unwrap()]);
    let ctx3 = context(&third, "ctx", &files);
    fs::write(ctx3.join("a.txt"), "b\n").unwrap();
    let (_, p) = build_ok(&third, &ctx3, &["-t", "third:1", "--cache-from", "app:1"]);
    let s = steps(&p);
    let hits: Vec<bool> = s.iter().map(|(_, c)| *c).collect();
    assert_eq!(hits, [true, true, false, false, false], "{p}");
    let got = layers(&third, "third:1");
    assert_eq!(got.as_array().unwrap()[..2], want.as_array().unwrap()[..2]);
    assert_ne!(got[2], want[2]);
    assert_ne!(got[3], want[3]);

    // Without --cache-from nothing is a hit on a fresh store; a buildkit
    // cache export is refused in one line; a missing image is only said.
    let fourth = Root::new();
    fourth.ok(&["rmi", "busybox"]);
    fourth.ok(&["load", "-i", archive.to_str().unwrap()]);
    let ctx4 = context(&fourth, "ctx", &files);
    let (_, p) = build_ok(&fourth, &ctx4, &["--cache-from", "nosuch:image"]);
    assert!(steps(&p).iter().all(|(_, cached)| !cached), "{p}");
    assert!(p.contains("--cache-from nosuch:image"), "{p}");
    let e = build_err(
        &fourth,
        &ctx4,
        &["--cache-from", "type=registry,ref=localhost/x:cache"],
    );
    assert!(
        e.contains("--cache-from") && e.contains("type=registry"),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1, "{e}");
}
