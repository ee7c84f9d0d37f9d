//! Docker CLI compatibility (issue 14) with real containers and images:
//! `save` to standard output and through non-regular files, docker's exit
//! codes and messages, `ps` filters, and the management-command forms.

mod common;
mod dockerapi_common;
mod engine_common;
mod registry_peers;

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::process::{Command, Output};

use engine_common::Root;

fn hako(r: &Root) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_hako"));
    c.arg("--root").arg(r.root());
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// The member names of a tar archive.
fn tar_members(bytes: &[u8]) -> Vec<String> {
    let mut names: Vec<String> = tar::Archive::new(bytes)
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// The archive a save wrote loads into a fresh root as `busybox`.
fn loads(archive: &Path) {
    let other = Root::new();
    other.ok(&["rmi", "busybox"]);
    other.ok(&["load", "-i", archive.to_str().unwrap()]);
    other.ok(&["image", "inspect", "busybox"]);
}

#[test]
fn save_writes_to_stdout_and_through_non_regular_files() {
    let r = Root::new();
    let reference = r.dir().join("ref.tar");
    r.ok(&["save", "-o", reference.to_str().unwrap(), "busybox"]);
    let expected = tar_members(&fs::read(&reference).unwrap());
    assert!(
        expected.contains(&"manifest.json".to_string()),
        "{expected:?}"
    );

    // No -o, stdout a pipe: the archive goes there (docker's `save IMG | gzip`).
    let cwd = tempfile::tempdir().unwrap();
    for args in [&["save", "busybox"][..], &["save", "-o", "-", "busybox"]] {
        let out = hako(&r)
            .args(args)
            .current_dir(cwd.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        assert_eq!(tar_members(&out.stdout), expected, "{args:?}");
        let piped = r.dir().join("piped.tar");
        fs::write(&piped, &out.stdout).unwrap();
        loads(&piped);
    }
    // `-o -` wrote no file named "-".
    assert_eq!(fs::read_dir(cwd.path()).unwrap().count(), 0);

    // A symlink to the process's stdout (what /dev/stdout is) stays a
    // symlink; the archive goes to the file stdout is.
    let link = r.dir().join("stdout-link");
    std::os::unix::fs::symlink("/proc/self/fd/1", &link).unwrap();
    let dest = r.dir().join("dest.tar");
    let out = hako(&r)
        .args(["save", "-o", link.to_str().unwrap(), "busybox"])
        .stdout(fs::File::create(&dest).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(tar_members(&fs::read(&dest).unwrap()), expected);

    // A FIFO is written into, not replaced.
    let fifo = r.dir().join("fifo");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
    let reader = {
        let fifo = fifo.clone();
        std::thread::spawn(move || fs::read(fifo).unwrap())
    };
    let out = r.run(&["save", "-o", fifo.to_str().unwrap(), "busybox"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(tar_members(&reader.join().unwrap()), expected);
    assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap_or(-1)
}

#[test]
fn exit_codes_and_messages_are_dockers() {
    let r = Root::new();
    // rm -f of a missing container: said on stderr, exit 0; without -f, 1.
    let out = r.run(&["rm", "-f", "nosuchctr"]);
    assert_eq!(code(&out), 0, "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("nosuchctr"));
    assert_eq!(code(&r.run(&["rm", "nosuchctr"])), 1);

    // Errors outside `run` exit 1, `run`'s own 125.
    for args in [
        &["stop", "nosuchctr"][..],
        &["start", "nosuchctr"],
        &["inspect", "nosuchctr"],
        &["logs", "nosuchctr"],
        &["exec", "nosuchctr", "true"],
        &["container", "stop", "nosuchctr"],
    ] {
        let out = r.run(args);
        assert_eq!(code(&out), 1, "{args:?}: {}", text(&out.stderr));
        let err = text(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains("nosuchctr"), "{args:?}: {err}");
    }
    assert_eq!(
        code(&r.run(&["run", "--rm", "-u", "nosuchuser", "busybox", "true"])),
        125
    );

    // exec of a missing or non-executable command: 127 / 126, as `run`.
    r.ok(&["run", "-d", "--name", "ex", "busybox", "sleep", "60"]);
    for (cmd, want) in [
        ("nosuchcmd", 127),
        ("/no/such/file", 127),
        ("/etc/passwd", 126),
        ("/etc", 126),
    ] {
        let out = r.run(&["exec", "ex", cmd]);
        assert_eq!(code(&out), want, "exec {cmd}: {}", text(&out.stderr));
        assert!(text(&out.stderr).contains(cmd), "{}", text(&out.stderr));
        let out = r.run(&["run", "--rm", "busybox", cmd]);
        assert_eq!(code(&out), want, "run {cmd}: {}", text(&out.stderr));
    }
    // A command's own exit status is still its own.
    assert_eq!(code(&r.run(&["exec", "ex", "sh", "-c", "exit 3"])), 3);
    assert_eq!(code(&r.run(&["exec", "ex", "sh", "-c", "exit 127"])), 127);

    // inspect ok nope: ok printed, nope fails.
    let out = r.run(&["inspect", "ex", "nope"]);
    assert_eq!(code(&out), 1);
    let found: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(found[0]["Name"], "/ex");
    assert!(text(&out.stderr).contains("nope"), "{}", text(&out.stderr));
    let out = r.run(&["inspect", "-f", "{{.Name}}", "nope", "ex"]);
    assert_eq!(code(&out), 1);
    assert_eq!(text(&out.stdout), "/ex\n");
}

fn names(r: &Root, filters: &[&str]) -> Vec<String> {
    let mut args = vec!["ps", "-a", "--format", "{{.Names}}"];
    for f in filters {
        args.push("-f");
        args.push(f);
    }
    let mut v: Vec<String> = r.ok(&args).lines().map(String::from).collect();
    v.sort();
    v
}

#[test]
fn ps_name_filter_is_a_regex_and_publish_expose_size_work() {
    let r = Root::new();
    r.ok(&[
        "create",
        "--name",
        "web",
        "-p",
        "18080:80",
        "-p",
        "18053:53/udp",
        "busybox",
        "true",
    ]);
    r.ok(&[
        "create", "--name", "web2", "--expose", "9000", "busybox", "true",
    ]);
    r.ok(&["create", "--name", "myweb", "busybox", "true"]);
    assert_eq!(names(&r, &["name=web"]), ["myweb", "web", "web2"]);
    assert_eq!(names(&r, &["name=^web$"]), ["web"]);
    assert_eq!(names(&r, &["name=^/web"]), ["web", "web2"]);
    assert_eq!(names(&r, &["name=web[0-9]$"]), ["web2"]);
    let out = r.run(&["ps", "-f", "name=(web"]);
    assert_eq!(code(&out), 1);
    assert_eq!(
        text(&out.stderr).lines().count(),
        1,
        "{}",
        text(&out.stderr)
    );

    // publish: the container port (range, protocol; tcp by default).
    assert_eq!(names(&r, &["publish=80"]), ["web"]);
    assert_eq!(names(&r, &["publish=80/tcp"]), ["web"]);
    assert!(names(&r, &["publish=80/udp"]).is_empty());
    assert_eq!(names(&r, &["publish=50-60/udp"]), ["web"]);
    assert!(names(&r, &["publish=9000"]).is_empty());
    // expose: exposed or published.
    assert_eq!(names(&r, &["expose=8000-9000"]), ["web2"]);
    assert_eq!(names(&r, &["expose=80"]), ["web"]);
    for bad in ["publish=http", "publish=90-80", "expose=80/icmp"] {
        let out = r.run(&["ps", "-f", bad]);
        assert_eq!(code(&out), 1, "{bad}");
        assert!(text(&out.stderr).contains(bad), "{}", text(&out.stderr));
    }

    // -s: the writable layer, and with the image ("virtual").
    r.ok(&[
        "run",
        "--name",
        "writer",
        "busybox",
        "dd",
        "if=/dev/zero",
        "of=/big",
        "bs=1000",
        "count=2000",
    ]);
    let sizes = r.ok(&[
        "ps",
        "-a",
        "-s",
        "-f",
        "name=^writer$",
        "--format",
        "{{.Size}}",
    ]);
    let (rw, virt) = sizes
        .trim()
        .split_once(" (virtual ")
        .unwrap_or_else(|| panic!("{sizes}"));
    assert!(rw.starts_with("2") && rw.ends_with("MB"), "{sizes}");
    assert!(virt.ends_with("MB)"), "{sizes}");
    let table = r.ok(&["ps", "-a", "-s", "-f", "name=^writer$"]);
    let header = table.lines().next().unwrap();
    assert!(header.trim_end().ends_with("SIZE"), "{table}");
    let row = table.lines().nth(1).unwrap();
    assert!(row.contains(sizes.trim()), "{table}");
}

#[test]
fn management_command_forms_and_inspect_of_any_object() {
    let r = Root::new();
    assert_eq!(
        r.ok(&["container", "run", "--rm", "busybox", "echo", "hi"]),
        "hi\n"
    );
    r.ok(&["container", "create", "--name", "box", "busybox", "true"]);
    for ls in ["ls", "list", "ps"] {
        assert_eq!(
            r.ok(&["container", ls, "-a", "--format", "{{.Names}}"]),
            "box\n",
            "container {ls}"
        );
    }
    let v: serde_json::Value =
        serde_json::from_str(&r.ok(&["container", "inspect", "box"])).unwrap();
    assert_eq!(v[0]["Name"], "/box");
    // Exit codes stay docker's through the group.
    r.ok(&["container", "start", "box"]);
    r.ok(&[
        "container",
        "run",
        "-d",
        "--name",
        "up",
        "busybox",
        "sleep",
        "60",
    ]);
    assert_eq!(code(&r.run(&["container", "exec", "up", "nosuchcmd"])), 127);
    assert_eq!(
        code(&r.run(&[
            "container",
            "run",
            "--rm",
            "-u",
            "nobody9",
            "busybox",
            "true"
        ])),
        125
    );
    assert_eq!(r.ok(&["container", "rm", "-f", "up"]), "up\n");
    r.ok(&["container", "wait", "box"]);
    assert!(r
        .ok(&["container", "prune", "-f"])
        .contains("Deleted Containers:"));
    assert_eq!(r.ok(&["container", "ls", "-a", "-q"]), "");

    // history at the top level and under image.
    let top = r.ok(&["history", "busybox"]);
    assert!(top.starts_with("IMAGE"), "{top}");
    assert_eq!(top, r.ok(&["image", "history", "busybox"]));

    // image build.
    let ctx = r.dir().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN echo built > /built\n",
    )
    .unwrap();
    r.ok(&[
        "image",
        "build",
        "-q",
        "-t",
        "localhost/built:1",
        ctx.to_str().unwrap(),
    ]);
    assert_eq!(
        r.ok(&["run", "--rm", "localhost/built:1", "cat", "/built"]),
        "built\n"
    );

    // system events is events.
    let ev = r.ok(&[
        "system",
        "events",
        "--since",
        "0",
        "--until",
        "0s",
        "--filter",
        "event=create",
        "--format",
        "{{.Actor.Attributes.name}}",
    ]);
    assert_eq!(
        ev,
        r.ok(&[
            "events",
            "--since",
            "0",
            "--until",
            "0s",
            "--filter",
            "event=create",
            "--format",
            "{{.Actor.Attributes.name}}"
        ])
    );
    assert!(ev.lines().any(|l| l == "box"), "{ev}");

    // inspect falls back to images, networks and volumes; --type narrows.
    r.ok(&["volume", "create", "vol1"]);
    r.ok(&["network", "create", "net1"]);
    let kind = |what: &str, typ: Option<&str>| -> serde_json::Value {
        let mut args = vec!["inspect"];
        if let Some(t) = typ {
            args.extend(["--type", t]);
        }
        args.push(what);
        serde_json::from_str::<serde_json::Value>(&r.ok(&args)).unwrap()[0].clone()
    };
    assert!(kind("busybox", None)["RepoTags"].is_array());
    assert!(kind("busybox", Some("image"))["RepoTags"].is_array());
    assert_eq!(kind("net1", None)["Name"], "net1");
    assert_eq!(kind("net1", Some("network"))["Name"], "net1");
    assert_eq!(
        kind("vol1", None)["Mountpoint"]
            .as_str()
            .map(|m| m.contains("vol1")),
        Some(true)
    );
    assert_eq!(kind("vol1", Some("volume"))["Name"], "vol1");
    // A container named like an image wins, as in docker.
    r.ok(&["create", "--name", "net1", "busybox", "true"]);
    assert_eq!(kind("net1", None)["Name"], "/net1");
    assert_eq!(kind("net1", Some("network"))["Name"], "net1");
    let out = r.run(&["inspect", "--type", "volume", "busybox"]);
    assert_eq!(code(&out), 1);
    assert!(
        text(&out.stderr).contains("no such volume busybox"),
        "{}",
        text(&out.stderr)
    );
    let out = r.run(&["inspect", "--type", "plugin", "busybox"]);
    assert_ne!(code(&out), 0);
    r.ok(&["rm", "net1"]);
    r.ok(&["network", "rm", "net1"]);
}

#[test]
fn image_pull_and_push_are_pull_and_push() {
    let r = Root::new();
    let reg = registry_peers::Server::docker_registry(None);
    let name = format!("{}/mgmt/busybox:1", reg.host());
    r.ok(&["tag", "busybox", &name]);
    r.ok(&["image", "push", &name]);
    let other = Root::new();
    other.ok(&["image", "pull", &name]);
    assert_eq!(
        other.ok(&["run", "--rm", &name, "echo", "pulled"]),
        "pulled\n"
    );
}

#[test]
fn go_templates_and_tables_in_every_list_command() {
    let r = Root::new();
    r.ok(&[
        "create", "--name", "t1", "-l", "tier=web", "busybox", "true",
    ]);
    r.ok(&["create", "--name", "t2", "busybox", "true"]);
    // ps: range, if/else, len, upper, .Label, printf, pipelines.
    assert_eq!(
        r.ok(&["ps", "-a", "--format", "{{if eq .Names \"t1\"}}{{.Names | upper}} {{.Label \"tier\"}}{{else}}{{printf \"%-4s|\" .Names}}{{end}}"]),
        "t2  |\nT1 web\n"
    );
    assert_eq!(
        r.ok(&[
            "ps",
            "-a",
            "-f",
            "name=t1",
            "--format",
            "{{range split .Labels \",\"}}[{{.}}]{{end}} {{len .Names}}"
        ]),
        "[tier=web] 2\n"
    );
    let table = r.ok(&[
        "ps",
        "-a",
        "--format",
        "table {{.Names}}\\t{{.Label \"tier\"}}\\t{{.State}}",
    ]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        ["NAMES", "STATE"],
        "{table}"
    );
    assert_eq!(lines.len(), 3, "{table}");
    // docker's CreatedAt: "2024-01-02 03:04:05 +0000 UTC".
    let created = r.ok(&["ps", "-a", "-f", "name=t1", "--format", "{{.CreatedAt}}"]);
    let re = regex::Regex::new(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+0000 UTC\n$").unwrap();
    assert!(re.is_match(&created), "{created}");

    // images: docker's keys, one JSON object per line, templates, tables,
    // a positional REPOSITORY[:TAG], -a and before/since.
    r.ok(&["tag", "busybox", "localhost/other:2"]);
    let img = r.ok(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(img, "busybox:latest\nlocalhost/other:2\n", "{img}");
    for l in r.ok(&["images", "--format", "json"]).lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        for k in [
            "ID",
            "Repository",
            "Tag",
            "CreatedSince",
            "CreatedAt",
            "Size",
            "Digest",
        ] {
            assert!(v.get(k).is_some(), "{k} missing in {l}");
        }
    }
    assert_eq!(
        r.ok(&["images", "localhost/other", "--format", "{{.Tag}}"]),
        "2\n"
    );
    assert_eq!(
        r.ok(&[
            "images",
            "-a",
            "busybox:latest",
            "--format",
            "{{.Repository}}"
        ]),
        "busybox\n"
    );
    let t = r.ok(&[
        "images",
        "--format",
        "table {{.Repository}}\\t{{.ID}}\\t{{.CreatedSince}}",
    ]);
    assert_eq!(
        t.lines()
            .next()
            .unwrap()
            .split("   ")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>(),
        ["REPOSITORY", "IMAGE ID", "CREATED"],
        "{t}"
    );
    // An image imported later is "since" the first one, not "before" it.
    let tar = r.dir().join("busybox.tar");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    r.ok(&["import", tar.to_str().unwrap(), "localhost/newer:1"]);
    assert_eq!(
        r.ok(&[
            "images",
            "-f",
            "since=busybox",
            "--format",
            "{{.Repository}}"
        ]),
        "localhost/newer\n"
    );
    assert_eq!(
        r.ok(&[
            "images",
            "-f",
            "before=localhost/newer:1",
            "--format",
            "{{.Repository}}"
        ]),
        "busybox\nlocalhost/other\n"
    );

    // volume ls and network ls: templates and tables (volume ls refused "table").
    r.ok(&["volume", "create", "-l", "k=v", "tv"]);
    assert_eq!(
        r.ok(&["volume", "ls", "--format", "{{.Name}} {{.Driver}}"]),
        "tv local\n"
    );
    let vt = r.ok(&["volume", "ls", "--format", "table {{.Name}}\\t{{.Driver}}"]);
    assert_eq!(vt, "VOLUME NAME   DRIVER\ntv            local\n");
    assert_eq!(
        r.ok(&["volume", "ls"]),
        "DRIVER    VOLUME NAME\nlocal     tv\n"
    );
    let nt = r.ok(&["network", "ls", "--format", "{{.Name}}"]);
    assert!(
        nt.lines().any(|l| l == "bridge") && nt.lines().any(|l| l == "none"),
        "{nt}"
    );
    assert!(r
        .ok(&["network", "ls", "--format", "table {{.Name}}"])
        .starts_with("NAME\n"));

    // stats and events print "table" templates as tables, not literally.
    r.ok(&["run", "-d", "--name", "st", "busybox", "sleep", "60"]);
    let st = r.ok(&[
        "stats",
        "--no-stream",
        "--format",
        "table {{.Name}}\\t{{.PIDs}}",
        "st",
    ]);
    let mut st = st.lines();
    assert_eq!(
        st.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["NAME", "PIDS"]
    );
    assert_eq!(
        st.next().unwrap().split_whitespace().collect::<Vec<_>>(),
        ["st", "1"]
    );
    let ev = r.ok(&[
        "events",
        "--since",
        "0",
        "--until",
        "0s",
        "--filter",
        "event=create",
        "--format",
        "table {{.Type}}\\t{{.Actor.Attributes.name}}",
    ]);
    let mut ev = ev.lines();
    assert!(ev.next().unwrap().starts_with("TYPE"));
    assert!(ev.any(|l| l.split_whitespace().collect::<Vec<_>>() == ["container", "t1"]));
    // history and system df.
    let h = r.ok(&["history", "--format", "{{.ID}}|{{.Size}}", "busybox"]);
    assert!(h.lines().next().unwrap().contains('|'), "{h}");
    let h = r.ok(&[
        "history",
        "--format",
        "table {{.ID}}\t{{.CreatedBy}}",
        "busybox",
    ]);
    assert_eq!(
        h.lines()
            .next()
            .unwrap()
            .split("   ")
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>(),
        ["IMAGE", "CREATED BY"]
    );
    let df = r.ok(&["system", "df", "--format", "{{.Type}}"]);
    assert_eq!(df, "Images\nContainers\nLocal Volumes\nBuild Cache\n");
    // A bad template is one line naming it.
    let out = r.run(&["ps", "--format", "{{range .Names}"]);
    assert_eq!(code(&out), 1);
    assert_eq!(text(&out.stderr).lines().count(), 1);
}

/// hako with stdin on a terminal (a pty whose master gets `answer`).
fn on_terminal(r: &Root, args: &[&str], answer: &[u8]) -> Output {
    use std::io::Write;
    let pty = nix::pty::openpty(None, None).unwrap();
    let mut master = fs::File::from(pty.master);
    master.write_all(answer).unwrap();
    let out = hako(r)
        .args(args)
        .stdin(std::process::Stdio::from(pty.slave))
        .output()
        .unwrap();
    drop(master);
    out
}

#[test]
fn prune_filters_prompts_and_reclaimed_space() {
    let r = Root::new();
    r.ok(&["create", "--name", "pa", "-l", "tier=a", "busybox", "true"]);
    r.ok(&["create", "--name", "pb", "busybox", "true"]);
    r.ok(&["network", "create", "--label", "x=1", "na"]);
    r.ok(&["network", "create", "nb"]);

    // network ls --filter.
    let nets = |f: &str| r.ok(&["network", "ls", "-f", f, "--format", "{{.Name}}"]);
    assert_eq!(nets("name=na"), "na\n");
    assert_eq!(nets("label=x=1"), "na\n");
    let custom = nets("type=custom");
    assert!(
        custom.contains("na\n") && custom.contains("nb\n") && !custom.contains("none"),
        "{custom}"
    );
    let builtin = nets("type=builtin");
    assert!(
        builtin.contains("none\n") && !builtin.contains("na\n"),
        "{builtin}"
    );
    assert_eq!(
        r.ok(&["network", "ls", "-q", "-f", "name=nb"])
            .lines()
            .count(),
        1
    );
    let out = r.run(&["network", "ls", "-f", "colour=red"]);
    assert_eq!(code(&out), 1);
    assert_eq!(text(&out.stderr).lines().count(), 1);

    // On a terminal a prune asks; "n" keeps everything.
    let out = on_terminal(&r, &["container", "prune"], b"n\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("Are you sure you want to continue? [y/N]"));
    assert_eq!(names(&r, &[]), ["pa", "pb"]);

    // Filters: until (nothing is that old), label, label!.
    r.ok(&[
        "container",
        "prune",
        "-f",
        "--filter",
        "until=2000-01-01T00:00:00Z",
    ]);
    assert_eq!(names(&r, &[]), ["pa", "pb"]);
    r.ok(&["container", "prune", "-f", "--filter", "label=tier=a"]);
    assert_eq!(names(&r, &[]), ["pb"]);
    r.ok(&["create", "--name", "pc", "-l", "tier=c", "busybox", "true"]);
    r.ok(&["container", "prune", "-f", "--filter", "label!=tier"]);
    assert_eq!(names(&r, &[]), ["pc"]);
    // "y" on the terminal goes ahead.
    let out = on_terminal(&r, &["container", "prune", "--filter", "until=0s"], b"y\n");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(names(&r, &[]).is_empty());

    let out = r.run(&["network", "prune", "-f", "--filter", "label=x=1"]);
    assert!(text(&out.stdout).contains("na"), "{}", text(&out.stdout));
    assert!(nets("name=nb").contains("nb"));
    for bad in ["until=soon", "dangling=true"] {
        let out = r.run(&["network", "prune", "-f", "--filter", bad]);
        assert_eq!(code(&out), 1);
        assert!(text(&out.stderr).contains(bad), "{}", text(&out.stderr));
    }
    r.ok(&["network", "rm", "nb"]);

    // image prune says what it gave back.
    let out = r.ok(&["image", "prune", "-f"]);
    assert_eq!(out, "Total reclaimed space: 0B\n");
}

#[test]
fn flags_stop_signal_cidfile_label_file_binds_exec_env_file_privileged_stats_all_log_local() {
    let r = Root::new();
    // stop -s / restart -s: the given signal first (the trap answers it).
    let trap = "trap 'echo got-int; exit 3' INT; while true; do sleep 0.1; done";
    r.ok(&["run", "-d", "--name", "sig", "busybox", "sh", "-c", trap]);
    let out = r.run(&["stop", "-s", "NOSUCHSIG", "sig"]);
    assert_eq!(code(&out), 1);
    assert!(
        text(&out.stderr).contains("invalid signal"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        r.ok(&["restart", "-s", "SIGINT", "-t", "20", "sig"]),
        "sig\n"
    );
    assert!(r.ok(&["logs", "sig"]).contains("got-int"));
    assert_eq!(r.inspect("sig")["State"]["Running"], true);
    r.ok(&["stop", "--signal", "INT", "-t", "20", "sig"]);
    let st = r.inspect("sig");
    assert_eq!(st["State"]["ExitCode"], 3, "{st}");

    // --cidfile: the id written; an existing file refused before creating.
    let cid = r.dir().join("cid");
    r.ok(&[
        "create",
        "--cidfile",
        cid.to_str().unwrap(),
        "--name",
        "c1",
        "busybox",
        "true",
    ]);
    assert_eq!(
        fs::read_to_string(&cid).unwrap(),
        r.inspect("c1")["Id"].as_str().unwrap()
    );
    let out = r.run(&[
        "run",
        "--cidfile",
        cid.to_str().unwrap(),
        "--name",
        "c2",
        "busybox",
        "true",
    ]);
    assert_eq!(code(&out), 125);
    assert!(
        text(&out.stderr).contains("exists"),
        "{}",
        text(&out.stderr)
    );
    assert!(r.state_of("c2").is_none());

    // --label-file, with -l winning.
    let lf = r.dir().join("labels");
    fs::write(&lf, "# team labels\na=1\n\nb=2\n").unwrap();
    r.ok(&[
        "create",
        "--label-file",
        lf.to_str().unwrap(),
        "-l",
        "b=3",
        "--name",
        "lab",
        "busybox",
        "true",
    ]);
    let labels = &r.inspect("lab")["Config"]["Labels"];
    assert_eq!(
        (labels["a"].as_str(), labels["b"].as_str()),
        (Some("1"), Some("3")),
        "{labels}"
    );

    // -v ./dir:/x binds the caller's directory.
    let cwd = tempfile::tempdir().unwrap();
    fs::create_dir(cwd.path().join("data")).unwrap();
    fs::write(cwd.path().join("data/f"), "rel\n").unwrap();
    let out = hako(&r)
        .args([
            "run",
            "--rm",
            "-v",
            "./data:/x:ro",
            "busybox",
            "cat",
            "/x/f",
        ])
        .current_dir(cwd.path())
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "rel\n", "{}", text(&out.stderr));

    // --log-driver local: readable, docker's local defaults; others refused.
    r.ok(&[
        "run",
        "--log-driver",
        "local",
        "--name",
        "lg",
        "busybox",
        "echo",
        "hi",
    ]);
    assert_eq!(r.ok(&["logs", "lg"]), "hi\n");
    let lc = &r.inspect("lg")["HostConfig"]["LogConfig"];
    assert_eq!(
        (lc["Type"].as_str(), lc["Config"]["max-size"].as_str()),
        (Some("local"), Some("20m")),
        "{lc}"
    );
    let out = r.run(&["run", "--log-driver", "syslog", "busybox", "true"]);
    assert_eq!(code(&out), 125);
    assert_eq!(text(&out.stderr).lines().count(), 1);

    // exec --env-file.
    let ef = r.dir().join("env");
    fs::write(&ef, "FROM_FILE=yes\n").unwrap();
    r.ok(&["run", "-d", "--name", "ex", "busybox", "sleep", "60"]);
    assert_eq!(
        r.ok(&[
            "exec",
            "--env-file",
            ef.to_str().unwrap(),
            "ex",
            "sh",
            "-c",
            "echo $FROM_FILE"
        ]),
        "yes\n"
    );
    // exec --privileged: every capability, as a privileged container's.
    let all = r.ok(&[
        "run",
        "--rm",
        "--privileged",
        "busybox",
        "grep",
        "CapEff",
        "/proc/self/status",
    ]);
    let plain = r.ok(&["exec", "ex", "grep", "CapEff", "/proc/self/status"]);
    assert_ne!(plain, all);
    assert_eq!(
        r.ok(&[
            "exec",
            "--privileged",
            "ex",
            "grep",
            "CapEff",
            "/proc/self/status"
        ]),
        all
    );
    // stats -a: stopped containers too, at zero.
    let st = r.ok(&[
        "stats",
        "--no-stream",
        "-a",
        "--format",
        "{{.Name}} {{.PIDs}}",
    ]);
    assert!(st.lines().any(|l| l == "c1 0"), "{st}");
    assert!(st.lines().any(|l| l == "ex 1"), "{st}");
    assert!(!r
        .ok(&["stats", "--no-stream", "--format", "{{.Name}}"])
        .contains("c1"));
}

#[test]
fn cpu_quota_period_and_memory_reservation_reach_the_cgroup() {
    let r = Root::new();
    let out = r.ok(&[
        "run", "--rm", "--name", "q", "--cpu-quota", "50000", "--cpu-period", "100000",
        "-m", "64m", "--memory-reservation", "32m", "busybox", "sh", "-c",
        "cat /sys/fs/cgroup/cpu.max 2>/dev/null || cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us; \
         cat /sys/fs/cgroup/memory.low 2>/dev/null || cat /sys/fs/cgroup/memory/memory.soft_limit_in_bytes",
    ]);
    let words: Vec<&str> = out.split_whitespace().collect();
    assert_eq!(words, ["50000", "100000", "33554432"], "{out}");
    r.ok(&[
        "create",
        "--name",
        "qc",
        "--cpu-quota",
        "20000",
        "--memory-reservation",
        "8m",
        "busybox",
        "true",
    ]);
    let h = &r.inspect("qc")["HostConfig"];
    assert_eq!(
        (h["CpuQuota"].as_i64(), h["MemoryReservation"].as_i64()),
        (Some(20000), Some(8 << 20)),
        "{h}"
    );
    for (args, want) in [
        (
            &["--cpus", "1", "--cpu-quota", "5000"][..],
            "conflicting options",
        ),
        (&["--cpu-period", "10"], "--cpu-period"),
        (&["--cpu-quota", "10"], "--cpu-quota"),
        (
            &["-m", "16m", "--memory-reservation", "32m"],
            "memory reservation",
        ),
    ] {
        let mut a = vec!["run", "--rm"];
        a.extend_from_slice(args);
        a.extend(["busybox", "true"]);
        let out = r.run(&a);
        assert_eq!(code(&out), 125, "{args:?}");
        let err = text(&out.stderr);
        assert!(
            err.contains(want) && err.lines().count() == 1,
            "{args:?}: {err}"
        );
    }
}

#[test]
fn run_platform_checks_the_stored_image() {
    let r = Root::new();
    let own = r.ok(&[
        "image",
        "inspect",
        "-f",
        "{{.Os}}/{{.Architecture}}",
        "busybox",
    ]);
    let own = own.trim();
    assert_eq!(
        r.ok(&["run", "--rm", "--platform", own, "busybox", "echo", "ok"]),
        "ok\n"
    );
    let other = if own.ends_with("arm64") {
        "linux/amd64"
    } else {
        "linux/arm64"
    };
    for verb in ["run", "create"] {
        let out = r.run(&[verb, "--platform", other, "busybox", "true"]);
        assert_eq!(code(&out), 125, "{verb}");
        let err = text(&out.stderr);
        assert!(
            err.contains("does not match the specified platform") && err.contains(other),
            "{err}"
        );
    }
    assert!(r.ps_all().is_empty());
    let out = r.run(&["create", "--platform", "nonsense", "busybox"]);
    assert_eq!(code(&out), 125);
    assert_eq!(text(&out.stderr).lines().count(), 1);
}

#[test]
fn oom_kill_disable_and_blkio_weight() {
    let r = Root::new();
    let v1 = std::path::Path::new("/sys/fs/cgroup/memory/memory.oom_control").exists();
    let out = r.run(&[
        "run",
        "--rm",
        "-m",
        "64m",
        "--oom-kill-disable",
        "busybox",
        "sh",
        "-c",
        "cat /sys/fs/cgroup/memory/memory.oom_control",
    ]);
    if v1 {
        assert!(
            text(&out.stdout).contains("oom_kill_disable 1"),
            "{}{}",
            text(&out.stdout),
            text(&out.stderr)
        );
    } else {
        // cgroup v2 has no switch for it: a one-line error.
        assert_eq!(
            text(&out.stderr).lines().count(),
            1,
            "{}",
            text(&out.stderr)
        );
    }
    r.ok(&[
        "create",
        "--name",
        "o",
        "--oom-kill-disable",
        "busybox",
        "true",
    ]);
    assert_eq!(r.inspect("o")["HostConfig"]["OomKillDisable"], true);

    // --blkio-weight: applied where the host has a weighted scheduler, else
    // one clear line and nothing created.
    let blkio = std::path::Path::new("/sys/fs/cgroup/blkio");
    let out = r.run(&[
        "run", "--rm", "--name", "bw", "--blkio-weight", "300", "busybox", "sh", "-c",
        "cat /sys/fs/cgroup/blkio/blkio.weight 2>/dev/null || cat /sys/fs/cgroup/blkio/blkio.bfq.weight 2>/dev/null || cat /sys/fs/cgroup/io.bfq.weight 2>/dev/null || cat /sys/fs/cgroup/io.weight",
    ]);
    let lacking = blkio.is_dir()
        && !blkio.join("blkio.weight").exists()
        && !blkio.join("blkio.bfq.weight").exists();
    if lacking {
        assert_eq!(code(&out), 125);
        let err = text(&out.stderr);
        assert!(
            err.contains("no blkio.weight") && err.lines().count() == 1,
            "{err}"
        );
        assert!(r.state_of("bw").is_none());
    } else if out.status.success() {
        assert!(text(&out.stdout).contains("300"), "{}", text(&out.stdout));
    } else {
        assert_eq!(
            text(&out.stderr).lines().count(),
            1,
            "{}",
            text(&out.stderr)
        );
    }
    let out = r.run(&["run", "--rm", "--blkio-weight", "5", "busybox", "true"]);
    assert_eq!(code(&out), 125);
    assert!(text(&out.stderr).contains("between 10 and 1000"));
}

#[test]
fn system_df_verbose_lists_each_object() {
    let r = Root::new();
    r.ok(&["volume", "create", "dfv"]);
    r.ok(&["create", "--name", "dfc", "-v", "dfv:/d", "busybox", "true"]);
    let out = r.ok(&["system", "df", "-v"]);
    let sections: Vec<&str> = out
        .lines()
        .filter(|l| l.ends_with(':') || l.starts_with("Build cache usage"))
        .collect();
    assert_eq!(
        sections,
        [
            "Images space usage:",
            "Containers space usage:",
            "Local Volumes space usage:",
            "Build cache usage: 0B"
        ],
        "{out}"
    );
    let row = |first: &str| -> Vec<String> {
        out.lines()
            .find(|l| l.starts_with(first))
            .unwrap_or_else(|| panic!("{first} in {out}"))
            .split("   ")
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect()
    };
    let img = row("busybox ");
    assert_eq!(
        (img[1].as_str(), img.last().unwrap().as_str()),
        ("latest", "1"),
        "{img:?}"
    );
    let c = row(&r.inspect("dfc")["Id"].as_str().unwrap()[..12]);
    assert_eq!(
        (c[2].as_str(), c[3].as_str(), c.last().unwrap().as_str()),
        ("\"true\"", "1", "dfc"),
        "{c:?}"
    );
    assert_eq!(row("dfv "), ["dfv", "1", "0B"]);
    let out = r.run(&["system", "df", "-v", "--format", "json"]);
    assert_eq!(code(&out), 1);
}

#[test]
fn login_without_a_registry_says_which_it_uses() {
    let r = Root::new();
    let auth = r.dir().join("auth.json");
    let out = hako(&r)
        .args([
            "login",
            "-u",
            "alice",
            "--password-stdin",
            "--authfile",
            auth.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = text(&out.stderr);
    // Named before anything is asked or sent; the empty password stops it here.
    assert!(
        err.lines().next().unwrap_or_default().contains("docker.io"),
        "{err}"
    );
    assert_eq!(code(&out), 1, "{err}");
    assert!(
        err.contains("logging in to docker.io: a password is required"),
        "{err}"
    );
    assert!(!auth.exists());
}

#[test]
fn cgroupns_host_and_private() {
    let r = Root::new();
    let host_ns = fs::read_link("/proc/self/ns/cgroup").unwrap();
    let host_ns = host_ns.to_str().unwrap();
    let show = "readlink /proc/self/ns/cgroup; grep pids /proc/self/cgroup";
    for runtime in ["hako-runtime", "runc"] {
        let out = r.ok(&[
            "run",
            "--rm",
            "--runtime",
            runtime,
            "--cgroupns",
            "host",
            "busybox",
            "sh",
            "-c",
            show,
        ]);
        let mut lines = out.lines();
        assert_eq!(lines.next(), Some(host_ns), "{out}");
        assert!(lines.next().unwrap().contains("/hako/"), "{out}");
        let out = r.ok(&[
            "run",
            "--rm",
            "--runtime",
            runtime,
            "--cgroupns",
            "private",
            "busybox",
            "sh",
            "-c",
            show,
        ]);
        let mut lines = out.lines();
        assert_ne!(lines.next(), Some(host_ns), "{out}");
        // Its own cgroup is the root of its view.
        assert!(lines.next().unwrap().ends_with(":/"), "{out}");
    }
    r.ok(&[
        "create",
        "--name",
        "cn",
        "--cgroupns",
        "private",
        "busybox",
        "true",
    ]);
    assert_eq!(r.inspect("cn")["HostConfig"]["CgroupnsMode"], "private");
    let out = r.run(&["run", "--rm", "--cgroupns", "shared", "busybox", "true"]);
    assert_eq!(code(&out), 125);
    assert_eq!(text(&out.stderr).lines().count(), 1);
}

#[test]
fn device_maps_a_host_device_with_its_permissions() {
    let r = Root::new();
    // loop-control is outside docker's default device allow-list.
    assert!(!r
        .ok(&[
            "run",
            "--rm",
            "busybox",
            "sh",
            "-c",
            "ls /dev/loop-control 2>&1 || true"
        ])
        .starts_with("/dev/loop-control\n"));
    let out = r.ok(&[
        "run", "--rm", "--device", "/dev/loop-control", "busybox", "sh", "-c",
        "ls -l /dev/loop-control && dd if=/dev/loop-control of=/dev/null count=0 2>/dev/null && echo opened",
    ]);
    assert!(
        out.starts_with("c") && out.contains("10, 237") && out.ends_with("opened\n"),
        "{out}"
    );
    // Another path, read only: opening it for writing is refused by the cgroup
    // (under runc: hako-runtime allows rwm on every listed device, see
    // docs/engine.md).
    let out = r.run(&[
        "run", "--rm", "--runtime", "runc", "--device", "/dev/loop-control:/dev/lc:r", "busybox", "sh", "-c",
        "dd if=/dev/lc of=/dev/null count=0 2>/dev/null && echo read-ok; dd if=/dev/zero of=/dev/lc count=0 2>&1 || echo write-refused",
    ]);
    let t = text(&out.stdout);
    assert!(
        t.starts_with("read-ok\n")
            && t.contains("Operation not permitted")
            && t.ends_with("write-refused\n"),
        "{t}"
    );
    for (dev, want) in [
        ("/dev/nope", "no such device on the host"),
        ("/etc/passwd", "not a character or block device"),
        ("dev/null", "absolute"),
        ("/dev/null:/n:rwx", "permissions"),
    ] {
        let out = r.run(&["run", "--rm", "--device", dev, "busybox", "true"]);
        assert_eq!(code(&out), 125, "{dev}");
        let err = text(&out.stderr);
        assert!(
            err.contains(want) && err.lines().count() == 1,
            "{dev}: {err}"
        );
    }
    assert!(r.ps_all().is_empty());
}

/// Removes a cgroup directory from every hierarchy on drop (what
/// `--cgroup-parent` leaves, as docker's).
struct CgroupDirs(String);

impl Drop for CgroupDirs {
    fn drop(&mut self) {
        for h in fs::read_dir("/sys/fs/cgroup")
            .into_iter()
            .flatten()
            .flatten()
        {
            let _ = fs::remove_dir(h.path().join(&self.0));
        }
        let _ = fs::remove_dir(Path::new("/sys/fs/cgroup").join(&self.0));
    }
}

#[test]
fn cgroup_parent_places_the_container() {
    let r = Root::new();
    let parent = format!("hako-test-parent-{}", std::process::id());
    let _cleanup = CgroupDirs(parent.clone());
    let out = r.ok(&[
        "run",
        "--rm",
        "--name",
        "cgp",
        "--cgroup-parent",
        &format!("/{parent}"),
        "busybox",
        "sh",
        "-c",
        "grep -E '(pids|memory):|^0::' /proc/self/cgroup",
    ]);
    assert!(
        out.lines().all(|l| l.contains(&format!(":/{parent}/"))),
        "{out}"
    );
    assert!(!out.is_empty());
    r.ok(&[
        "create",
        "--name",
        "cgc",
        "--cgroup-parent",
        &parent,
        "busybox",
        "true",
    ]);
    assert_eq!(
        r.inspect("cgc")["HostConfig"]["CgroupParent"],
        parent.as_str()
    );
    for bad in ["/", "../escape", "a/./b", "a b"] {
        let out = r.run(&["create", "--cgroup-parent", bad, "busybox", "true"]);
        assert_eq!(code(&out), 125, "{bad}");
        assert_eq!(text(&out.stderr).lines().count(), 1);
    }
}

#[test]
fn logs_details_shows_the_log_opt_attributes() {
    let r = Root::new();
    // json-file's `labels` and `env` log opts name what `logs --details`
    // prints before each line (sorted, query-escaped), as docker's.
    r.ok(&[
        "run",
        "--name",
        "ld",
        "--label",
        "app=web app",
        "-e",
        "REGION=eu",
        "--log-opt",
        "labels=app,missing",
        "--log-opt",
        "env=REGION",
        "busybox",
        "echo",
        "hi",
    ]);
    assert_eq!(
        r.ok(&["logs", "--details", "ld"]),
        "REGION=eu,app=web+app hi\n"
    );
    assert_eq!(r.ok(&["logs", "ld"]), "hi\n");
    let stamped = r.ok(&["logs", "--details", "-t", "ld"]);
    let (time, rest) = stamped.split_once(' ').unwrap();
    assert!(time.contains('T') && time.ends_with('Z'), "{stamped}");
    assert_eq!(rest, "REGION=eu,app=web+app hi\n");
    // No attributes: the line still gets docker's leading space.
    r.ok(&["run", "--name", "plain", "busybox", "echo", "hi"]);
    assert_eq!(r.ok(&["logs", "--details", "plain"]), " hi\n");
    let out = r.run(&[
        "create",
        "--log-opt",
        "labels=a",
        "--log-driver",
        "local",
        "busybox",
    ]);
    assert!(!out.status.success());
    let e = text(&out.stderr);
    assert!(
        e.contains("unknown log opt \"labels\" for the local driver"),
        "{e}"
    );
}

#[test]
fn image_and_system_prune_take_docker_filters() {
    let r = Root::new();
    let ctx = r.dir().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    for (tag, keep) in [("kept", "yes"), ("gone", "no")] {
        fs::write(
            ctx.join("Dockerfile"),
            format!("FROM busybox\nLABEL keep={keep}\n"),
        )
        .unwrap();
        r.ok(&["build", "-q", "-t", tag, ctx.to_str().unwrap()]);
    }
    let has = |img: &str| r.run(&["image", "inspect", img]).status.success();
    // Nothing was created before 2000.
    let out = r.ok(&[
        "image",
        "prune",
        "-a",
        "-f",
        "--filter",
        "until=2000-01-01T00:00:00Z",
    ]);
    assert!(!out.contains("deleted:"), "{out}");
    assert!(has("kept") && has("gone") && has("busybox"));
    let out = r.ok(&["image", "prune", "-a", "-f", "--filter", "label=keep=no"]);
    assert!(out.contains("deleted: sha256:"), "{out}");
    assert!(has("kept") && !has("gone") && has("busybox"));
    // label!=: busybox has no `keep` label.
    r.ok(&["image", "prune", "-a", "-f", "--filter", "label!=keep"]);
    assert!(has("kept") && !has("busybox"));

    // system prune: the filter reaches containers and images.
    r.ok(&[
        "create", "--name", "c-yes", "--label", "keep=yes", "kept", "true",
    ]);
    // Image labels are container labels too (as docker): c-no overrides it.
    r.ok(&[
        "create", "--name", "c-no", "--label", "keep=no", "kept", "true",
    ]);
    let out = r.ok(&["system", "prune", "-f", "--filter", "label=keep=yes"]);
    assert!(out.contains("Deleted Containers:"), "{out}");
    let names: Vec<String> = r.ps_all().into_iter().map(|(n, _, _)| n).collect();
    assert_eq!(names, ["c-no"]);
    r.ok(&["rm", "c-no"]);
    r.ok(&[
        "system",
        "prune",
        "-a",
        "-f",
        "--filter",
        "label=keep=other",
    ]);
    assert!(has("kept"));
    r.ok(&["system", "prune", "-a", "-f", "--filter", "label=keep"]);
    assert!(!has("kept"));
    for (args, want) in [
        (
            vec!["system", "prune", "-f", "--volumes", "--filter", "until=1h"],
            "invalid filter \"until=1h\"",
        ),
        (
            vec!["image", "prune", "-f", "--filter", "dangling=true"],
            "invalid filter \"dangling=true\"",
        ),
    ] {
        let out = r.run(&args);
        assert!(!out.status.success());
        let e = text(&out.stderr);
        assert!(e.contains(want) && e.trim().lines().count() == 1, "{e}");
    }
}

/// Every file under `dir` whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap().flatten() {
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                // The container's own filesystem is not its log.
                if e.file_name() != "rootfs"
                    && e.file_name() != "upper"
                    && e.file_name() != "merged"
                {
                    stack.push(e.path());
                }
            } else if ft.is_file() {
                let bytes = fs::read(e.path()).unwrap_or_default();
                if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    found.push(e.path().display().to_string());
                }
            }
        }
    }
    found
}

/// `--log-driver none`: no log on disk, `logs` refuses as docker does, but a
/// foreground `run` and `attach` still get the output live (the monitor
/// relays it without a file). `--log-driver json-file` explicitly is the default.
#[test]
fn log_driver_none_keeps_no_log_but_attached_clients_see_the_output() {
    use std::io::BufRead;
    let r = Root::new();
    let out = r.run(&[
        "run",
        "--name",
        "fg",
        "--log-driver",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo out-$((40+2)); echo err-line >&2; exit 4",
    ]);
    assert_eq!(code(&out), 4, "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out-42\n");
    assert!(
        text(&out.stderr).contains("err-line"),
        "{}",
        text(&out.stderr)
    );
    let fg = r.inspect("fg");
    assert_eq!(fg["HostConfig"]["LogConfig"]["Type"], "none", "{fg}");
    assert_eq!(fg["LogPath"], "", "{fg}");
    let dir = r.root().join("containers").join(fg["Id"].as_str().unwrap());
    assert!(!dir.join("container.log").exists());
    // The output is nowhere under the container's directory (its command is,
    // in config.json: the needle is what the shell computed).
    assert_eq!(files_containing(&dir, "out-42"), Vec::<String>::new());
    // docker's refusal, in one line, exit 1.
    let logs_refused = |name: &str| {
        let out = r.run(&["logs", name]);
        let e = text(&out.stderr);
        assert_eq!(code(&out), 1, "{e}");
        assert!(
            e.contains("configured logging driver does not support reading"),
            "{e}"
        );
        assert_eq!(e.lines().count(), 1, "{e}");
    };
    logs_refused("fg");

    // A detached one: attach (a pipe, not a terminal) sees its output live.
    let ticker = "i=0; while true; do echo tick-$i; i=$((i+1)); sleep 0.2; done";
    r.ok(&[
        "run",
        "-d",
        "--name",
        "bg",
        "--log-driver",
        "none",
        "busybox",
        "sh",
        "-c",
        ticker,
    ]);
    let mut attach = hako(&r)
        .args(["attach", "--no-stdin", "bg"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(attach.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let second = lines.next().unwrap().unwrap();
    assert!(
        first.starts_with("tick-") && second.starts_with("tick-"),
        "{first} {second}"
    );
    r.ok(&["kill", "bg"]);
    let st = attach.wait().unwrap();
    assert_eq!(st.code(), Some(137));
    let bg = r.inspect("bg");
    let dir = r.root().join("containers").join(bg["Id"].as_str().unwrap());
    assert_eq!(files_containing(&dir, "tick-1"), Vec::<String>::new());
    logs_refused("bg");

    // Options are refused with none; json-file named explicitly keeps a log.
    let out = r.run(&[
        "run",
        "--log-driver",
        "none",
        "--log-opt",
        "max-size=1m",
        "busybox",
        "true",
    ]);
    assert_eq!(code(&out), 125);
    assert!(
        text(&out.stderr).contains("none driver"),
        "{}",
        text(&out.stderr)
    );
    r.ok(&[
        "run",
        "--name",
        "jf",
        "--log-driver",
        "json-file",
        "--log-opt",
        "max-size=1m",
        "--log-opt",
        "max-file=2",
        "busybox",
        "echo",
        "kept",
    ]);
    assert_eq!(r.ok(&["logs", "jf"]), "kept\n");
    assert_eq!(
        r.inspect("jf")["HostConfig"]["LogConfig"]["Config"]["max-file"],
        "2"
    );
}

/// The same through the Engine API with the real docker CLI:
/// `HostConfig.LogConfig.Type=none` is taken, `docker run` still shows the
/// output (attached through the monitor), `docker logs` gets docker's refusal.
#[test]
fn log_driver_none_through_the_engine_api() {
    let r = Root::new();
    let s = dockerapi_common::Service::start(&r);
    let out = s.docker(&[
        "run",
        "--name",
        "quiet",
        "--log-driver",
        "none",
        "busybox",
        "sh",
        "-c",
        "echo api-$((40+2))",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "api-42\n");
    assert_eq!(
        s.ok(&["inspect", "-f", "{{.HostConfig.LogConfig.Type}}", "quiet"])
            .trim(),
        "none"
    );
    let e = s.fails(&["logs", "quiet"]);
    assert!(
        e.contains("configured logging driver does not support reading"),
        "{e}"
    );
    let dir = r
        .root()
        .join("containers")
        .join(r.inspect("quiet")["Id"].as_str().unwrap());
    assert_eq!(files_containing(&dir, "api-42"), Vec::<String>::new());
}

/// `docker build --cache-from IMAGE` (the classic builder) through the
/// Engine API: on a fresh store with the cache image loaded, every step is
/// "Using cache" and the image has the cache image's layers.
#[test]
fn docker_build_cache_from_through_the_engine_api() {
    let first = Root::new();
    let ctx = first.dir().join("ctx");
    fs::create_dir_all(&ctx).unwrap();
    fs::write(
        ctx.join("Dockerfile"),
        "FROM busybox\nRUN cat /proc/sys/kernel/random/uuid > /id\nCOPY a.txt /a.txt\n",
    )
    .unwrap();
    fs::write(ctx.join("a.txt"), "a\n").unwrap();
    first.ok(&["build", "-q", "-t", "app:1", ctx.to_str().unwrap()]);
    let archive = first.dir().join("app.tar");
    first.ok(&["save", "-o", archive.to_str().unwrap(), "busybox", "app:1"]);

    let second = Root::new();
    second.ok(&["rmi", "busybox"]);
    second.ok(&["load", "-i", archive.to_str().unwrap()]);
    let s = dockerapi_common::Service::start(&second);
    let ctx_arg = ctx.to_str().unwrap();
    let out = s.ok(&["build", "--cache-from", "app:1", "-t", "again:1", ctx_arg]);
    assert_eq!(out.matches("Using cache").count(), 2, "{out}");
    let layers =
        |r: &Root, i: &str| r.ok(&["image", "inspect", "-f", "{{json .RootFS.Layers}}", i]);
    assert_eq!(layers(&second, "again:1"), layers(&first, "app:1"));
    // Without it, the same fresh store runs the steps.
    let out = s.ok(&["build", "--no-cache", "-t", "third:1", ctx_arg]);
    assert_eq!(out.matches("Using cache").count(), 0, "{out}");
}
