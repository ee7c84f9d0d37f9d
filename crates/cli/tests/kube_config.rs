//! ConfigMaps, Secrets and the kubelet's volumes (issue 18, configuration and storage),
//! driven by the real kubectl against `hako kube up` in a temp root (API server, CRI,
//! kubelet, scheduler), with busybox pulled from a `hako registry` on 127.0.0.1. Every
//! test tears down what it started, also when it fails.

mod engine_common;
mod kube_cluster;
mod kube_common;

use std::process::{Command, Stdio};

use kube_cluster::Cluster;
use serde_json::Value;

impl Cluster {
    /// `kubectl exec POD -- sh -c SCRIPT`: its stdout, or None when it failed.
    fn sh(&self, pod: &str, script: &str) -> Option<String> {
        let out = self.run(&["exec", pod, "--", "sh", "-c", script], None);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn running(&self, name: &str) -> Value {
        self.wait_pod(name, "Running", |p| p["status"]["phase"] == "Running")
    }

    /// The first running pod with label app=`app`.
    fn pod_of(&self, app: &str) -> String {
        self.wait(&format!("a running pod of {app}"), || {
            let l = format!("app={app}");
            let pods = self.try_json(&["get", "pods", "-l", &l])?;
            pods["items"]
                .as_array()?
                .iter()
                .find(|p| p["status"]["phase"] == "Running")
                .and_then(|p| p["metadata"]["name"].as_str().map(str::to_string))
        })
    }

    /// The warning events' messages with `reason`.
    fn events(&self, reason: &str) -> Vec<String> {
        let sel = format!("reason={reason}");
        self.try_json(&["get", "events", "--field-selector", &sel])
            .and_then(|e| e["items"].as_array().cloned())
            .into_iter()
            .flatten()
            .filter_map(|e| e["message"].as_str().map(str::to_string))
            .collect()
    }

    /// The waiting state (reason, message) of the pod's first container.
    fn waiting(&self, name: &str) -> Option<(String, String)> {
        let p = self.pod(name);
        let w = &p["status"]["containerStatuses"][0]["state"]["waiting"];
        Some((
            w["reason"].as_str()?.to_string(),
            w["message"].as_str().unwrap_or("").to_string(),
        ))
    }
}

#[test]
fn configmap_env_and_files_follow_kubectl_apply_but_subpath_does_not() {
    let c = Cluster::up(&[]);
    let cm = |greeting: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: app-config}}\ndata:\n  greeting: {greeting}\n  color: blue\n  bad-name: x\n")
    };
    c.apply(&cm("hello"));
    c.apply(&format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
      containers:
      - name: c
        image: {img}
        command: ["sleep", "100000"]
        env:
        - name: GREETING
          valueFrom: {{configMapKeyRef: {{name: app-config, key: greeting}}}}
        - name: ABSENT
          valueFrom: {{configMapKeyRef: {{name: nope, key: x, optional: true}}}}
        - name: BOTH
          value: "$(GREETING)-$(CFG_color)"
        envFrom:
        - {{prefix: CFG_, configMapRef: {{name: app-config}}}}
        volumeMounts:
        - {{name: cfg, mountPath: /etc/cfg}}
        - {{name: cfg, mountPath: /etc/greeting, subPath: greeting}}
        - {{name: picked, mountPath: /etc/picked}}
      volumes:
      - name: cfg
        configMap: {{name: app-config}}
      - name: picked
        configMap:
          name: app-config
          defaultMode: 0600
          items: [{{key: color, path: sub/colour}}]
"#,
        img = c.image
    ));
    let pod = c.pod_of("web");
    let env = c.sh(&pod, "env").unwrap();
    for want in [
        "GREETING=hello",
        "CFG_color=blue",
        "CFG_greeting=hello",
        "BOTH=hello-blue",
    ] {
        assert!(env.lines().any(|l| l == want), "{want} not in env:\n{env}");
    }
    assert!(
        !env.contains("ABSENT"),
        "an optional missing ref sets nothing: {env}"
    );
    // "CFG_bad-name" is a valid name; a key that is not: checked below with a bad prefix.
    assert_eq!(c.sh(&pod, "cat /etc/cfg/greeting").unwrap(), "hello");
    assert_eq!(c.sh(&pod, "cat /etc/greeting").unwrap(), "hello");
    // The atomic writer's layout: keys are symlinks through ..data to a timestamped dir.
    let layout = c
        .sh(&pod, "readlink /etc/cfg/greeting; readlink /etc/cfg/..data")
        .unwrap();
    let mut lines = layout.lines();
    assert_eq!(lines.next(), Some("..data/greeting"), "{layout}");
    assert!(lines.next().unwrap().starts_with("..20"), "{layout}");
    assert_eq!(
        c.sh(
            &pod,
            "stat -L -c %a /etc/picked/sub/colour; cat /etc/picked/sub/colour; echo; ls /etc/picked"
        )
        .unwrap(),
        "600\nblue\nsub\n"
    );
    // Read-only, as upstream mounts ConfigMap volumes.
    assert!(c.sh(&pod, "touch /etc/cfg/new").is_none());

    c.apply(&cm("bye"));
    c.wait("the file to change in the running pod", || {
        (c.sh(&pod, "cat /etc/cfg/greeting")? == "bye").then_some(())
    });
    // The subPath mount and the environment keep what the container started with.
    assert_eq!(c.sh(&pod, "cat /etc/greeting").unwrap(), "hello");
    assert!(c
        .sh(&pod, "env")
        .unwrap()
        .lines()
        .any(|l| l == "GREETING=hello"));
    assert_eq!(
        c.pod(&pod)["status"]["containerStatuses"][0]["restartCount"],
        0
    );
}

#[test]
fn missing_refs_wait_with_create_container_config_error_and_bad_keys_are_skipped() {
    let c = Cluster::up(&[]);
    c.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: partial}\ndata: {a: '1', b: '2'}\n");
    let pod = |name: &str, env: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: {}\n    command: [sleep, '100000']\n{env}---\n",
            c.image
        )
    };
    let yaml = [
        pod(
            "no-object",
            "    env:\n    - {name: X, valueFrom: {configMapKeyRef: {name: nope, key: x}}}\n",
        ),
        pod(
            "no-key",
            "    env:\n    - {name: X, valueFrom: {configMapKeyRef: {name: partial, key: zzz}}}\n",
        ),
        pod(
            "no-secret",
            "    envFrom:\n    - secretRef: {name: nothing}\n",
        ),
        pod(
            "bad-names",
            "    envFrom:\n    - {prefix: '1', configMapRef: {name: partial}}\n    - {configMapRef: {name: nope, optional: true}}\n",
        ),
    ]
    .concat();
    c.apply(&yaml);
    for (name, msg) in [
        ("no-object", "configmap \"nope\" not found"),
        (
            "no-key",
            "couldn't find key zzz in ConfigMap default/partial",
        ),
        ("no-secret", "secret \"nothing\" not found"),
    ] {
        let w = c.wait(&format!("{name} to wait"), || {
            c.waiting(name)
                .filter(|(r, _)| r == "CreateContainerConfigError")
        });
        assert_eq!(w.1, msg, "pod {name}");
    }
    // Keys that make no variable name are skipped, with upstream's event.
    c.running("bad-names");
    let env = c.sh("bad-names", "env").unwrap();
    assert!(!env.contains("1a="), "{env}");
    let ev = c.wait("the InvalidEnvironmentVariableNames event", || {
        c.events("InvalidEnvironmentVariableNames")
            .into_iter()
            .next()
    });
    assert_eq!(ev, "Keys [1a, 1b] from the EnvFrom configMap default/partial were skipped since they are considered invalid environment variable names.");
    // Creating the missing object lets the waiting pod start.
    c.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: nope}\ndata: {x: found}\n");
    c.running("no-object");
    assert!(c
        .sh("no-object", "env")
        .unwrap()
        .lines()
        .any(|l| l == "X=found"));
}

#[test]
fn secret_downward_api_and_memory_volumes() {
    let c = Cluster::up(&[]);
    c.ok(&[
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=user=admin",
        "--from-literal=pass=s3cret",
    ]);
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: vols
  labels: {{app: vols, tier: one}}
spec:
  terminationGracePeriodSeconds: 1
  securityContext: {{fsGroup: 1234}}
  containers:
  - name: c
    image: {img}
    command: ["sleep", "100000"]
    resources: {{limits: {{memory: 64Mi}}}}
    env:
    - name: PASS
      valueFrom: {{secretKeyRef: {{name: creds, key: pass}}}}
    volumeMounts:
    - {{name: secret, mountPath: /etc/secret}}
    - {{name: info, mountPath: /etc/info}}
    - {{name: mem, mountPath: /scratch}}
    - {{name: all, mountPath: /etc/all}}
  volumes:
  - name: secret
    secret:
      secretName: creds
      defaultMode: 0400
      items: [{{key: user, path: user}}, {{key: pass, path: pass, mode: 0600}}]
  - name: info
    downwardAPI:
      items:
      - {{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}
      - {{path: name, fieldRef: {{fieldPath: metadata.name}}}}
      - {{path: mem, resourceFieldRef: {{containerName: c, resource: limits.memory, divisor: 1Mi}}}}
  - name: mem
    emptyDir: {{medium: Memory, sizeLimit: 16Mi}}
  - name: all
    projected:
      sources:
      - secret: {{name: creds, items: [{{key: user, path: u}}]}}
      - downwardAPI: {{items: [{{path: ns, fieldRef: {{fieldPath: metadata.namespace}}}}]}}
      - configMap: {{name: absent, optional: true}}
"#,
        img = c.image
    ));
    c.running("vols");
    assert!(c
        .sh("vols", "env")
        .unwrap()
        .lines()
        .any(|l| l == "PASS=s3cret"));
    // Modes with the fsGroup's read bit added, the group set, as upstream.
    assert_eq!(
        c.sh(
            "vols",
            "stat -L -c '%a %g' /etc/secret/user /etc/secret/pass; cat /etc/secret/user"
        )
        .unwrap(),
        "440 1234\n640 1234\nadmin"
    );
    let mounts = c.sh("vols", "cat /proc/mounts").unwrap();
    let fs_of = |dir: &str| {
        mounts
            .lines()
            .find(|l| l.split(' ').nth(1) == Some(dir))
            .unwrap_or_else(|| panic!("{dir} not mounted:\n{mounts}"))
            .to_string()
    };
    assert!(
        fs_of("/etc/secret").split(' ').nth(2) == Some("tmpfs"),
        "{mounts}"
    );
    let scratch = fs_of("/scratch");
    assert!(
        scratch.contains(" tmpfs ") && scratch.contains("size=16384k"),
        "{scratch}"
    );
    assert_eq!(
        c.sh("vols", "cat /etc/info/name; echo; cat /etc/info/mem")
            .unwrap(),
        "vols\n64"
    );
    assert_eq!(
        c.sh("vols", "cat /etc/info/labels").unwrap(),
        "app=\"vols\"\ntier=\"one\""
    );
    assert_eq!(
        c.sh("vols", "cat /etc/all/u; echo; cat /etc/all/ns")
            .unwrap(),
        "admin\ndefault"
    );
    // Labels change in place; a Secret change reaches the volume.
    c.ok(&["label", "pod", "vols", "tier=two", "--overwrite"]);
    c.wait("the labels file to change", || {
        c.sh("vols", "cat /etc/info/labels")?
            .contains("tier=\"two\"")
            .then_some(())
    });
    c.apply("apiVersion: v1\nkind: Secret\nmetadata: {name: creds}\nstringData: {user: root, pass: s3cret}\n");
    c.wait("the secret file to change", || {
        (c.sh("vols", "cat /etc/secret/user; cat /etc/all/u")? == "rootroot").then_some(())
    });
    // The tmpfs volumes go with the pod.
    let host_dir = c
        .root
        .root()
        .join("kube/kubelet/pods")
        .join(c.pod("vols")["metadata"]["uid"].as_str().unwrap());
    assert!(host_dir.exists());
    c.ok(&["delete", "pod", "vols", "--wait=true"]);
    c.wait("the pod directory to go", || {
        (!host_dir.exists()).then_some(())
    });
    let host_mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !host_mounts.contains(host_dir.to_str().unwrap()),
        "{host_mounts}"
    );
}

#[test]
fn host_path_types_are_checked_with_upstreams_messages() {
    let c = Cluster::up(&[]);
    let dir = c.root.dir().join("hp");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("file"), "x").unwrap();
    let d = dir.display();
    let pod = |name: &str, path: String, t: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - {{name: c, image: {}, command: [sleep, '100000'], volumeMounts: [{{name: h, mountPath: /h}}]}}\n  volumes:\n  - {{name: h, hostPath: {{path: {path}, type: {t}}}}}\n---\n",
            c.image
        )
    };
    let cases = [
        (
            "not-dir",
            format!("{d}/file"),
            "Directory",
            "is not a directory",
        ),
        ("not-file", format!("{d}"), "File", "is not a file"),
        (
            "not-socket",
            format!("{d}/file"),
            "Socket",
            "is not a socket file",
        ),
        (
            "not-char",
            format!("{d}/file"),
            "CharDevice",
            "is not a character device",
        ),
        (
            "not-block",
            "/dev/null".to_string(),
            "BlockDevice",
            "is not a block device",
        ),
        ("missing-file", format!("{d}/none"), "File", "is not a file"),
    ];
    let ok = [
        ("mk-dir", format!("{d}/newdir/sub"), "DirectoryOrCreate"),
        ("mk-file", format!("{d}/newfile"), "FileOrCreate"),
        ("char", "/dev/null".to_string(), "CharDevice"),
    ];
    let yaml: String = cases
        .iter()
        .map(|(n, p, t, _)| pod(n, p.clone(), t))
        .chain(ok.iter().map(|(n, p, t)| pod(n, p.clone(), t)))
        .collect();
    c.apply(&yaml);
    for (name, path, _, what) in &cases {
        let want = format!(
            "MountVolume.SetUp failed for volume \"h\" : hostPath type check failed: {path} {what}"
        );
        c.wait(&format!("the FailedMount event of {name}"), || {
            c.events("FailedMount").contains(&want).then_some(())
        });
        assert_eq!(c.pod(name)["status"]["phase"], "Pending", "{name}");
    }
    for (name, _, _) in &ok {
        c.running(name);
    }
    assert!(dir.join("newdir/sub").is_dir());
    assert!(dir.join("newfile").is_file());
}

#[test]
fn bad_config_objects_are_refused_with_one_line_and_change_nothing() {
    let c = Cluster::up(&[]);
    let dir = c.root.dir().join("inputs");
    std::fs::create_dir_all(&dir).unwrap();
    // kubectl create round trips.
    std::fs::write(dir.join("app.properties"), "a=1\nb=2\n").unwrap();
    std::fs::write(dir.join("vars.env"), "# comment\nK1=v1\nK2=v2\n").unwrap();
    let f = |n: &str| dir.join(n).display().to_string();
    c.ok(&[
        "create",
        "configmap",
        "rt",
        "--from-literal=lit=eral",
        &format!("--from-file={}", f("app.properties")),
    ]);
    c.ok(&[
        "create",
        "configmap",
        "rt-env",
        &format!("--from-env-file={}", f("vars.env")),
    ]);
    let cm = c.json(&["get", "configmap", "rt"]);
    assert_eq!(cm["data"]["lit"], "eral");
    assert_eq!(cm["data"]["app.properties"], "a=1\nb=2\n");
    let cm = c.json(&["get", "configmap", "rt-env"]);
    assert_eq!(cm["data"], serde_json::json!({"K1": "v1", "K2": "v2"}));
    let key = f("tls.key");
    let crt = f("tls.crt");
    let gen = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=t", "-days", "1",
        ])
        .args(["-keyout", &key, "-out", &crt])
        .output()
        .unwrap();
    assert!(gen.status.success(), "{gen:?}");
    c.ok(&[
        "create", "secret", "tls", "rt-tls", "--cert", &crt, "--key", &key,
    ]);
    c.ok(&[
        "create",
        "secret",
        "docker-registry",
        "rt-reg",
        "--docker-server=r.example",
        "--docker-username=u",
        "--docker-password=p",
    ]);
    c.ok(&[
        "create",
        "secret",
        "generic",
        "rt-gen",
        "--from-literal=k=v",
        &format!("--from-file={}", f("vars.env")),
    ]);
    // coreutils' base64, as a second implementation to compare with.
    let b64 = |s: &str| {
        let mut child = Command::new("base64")
            .arg("-w0")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
        String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
    };
    let s = c.json(&["get", "secret", "rt-tls"]);
    assert_eq!(s["type"], "kubernetes.io/tls");
    assert_eq!(
        s["data"]["tls.crt"],
        b64(&std::fs::read_to_string(&crt).unwrap())
    );
    let s = c.json(&["get", "secret", "rt-reg"]);
    assert_eq!(s["type"], "kubernetes.io/dockerconfigjson");
    assert!(s["data"][".dockerconfigjson"].as_str().unwrap().len() > 10);
    let s = c.json(&["get", "secret", "rt-gen"]);
    assert_eq!(s["data"]["k"], b64("v"));
    assert_eq!(s["data"]["vars.env"], b64("# comment\nK1=v1\nK2=v2\n"));
    c.apply("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: frozen}\nimmutable: true\ndata: {a: '1'}\n");

    let before = |c: &Cluster| {
        let mut v = c.json(&["get", "configmaps,secrets"]);
        for i in v["items"].as_array_mut().unwrap() {
            i["metadata"]["managedFields"] = Value::Null;
        }
        v["items"].clone()
    };
    let snapshot = before(&c);
    std::fs::write(dir.join("big"), vec![b'x'; 1024 * 1024 + 1]).unwrap();
    let refused: [(&[&str], Option<String>, &str); 8] = [
        (
            &["create", "configmap", "big", &format!("--from-file={}", f("big"))],
            None,
            "ConfigMap \"big\" is invalid: []: Too long: must have at most 1048576 bytes",
        ),
        (
            &["apply", "-f", "-"],
            Some("apiVersion: v1\nkind: Secret\nmetadata: {name: b64}\ndata: {k: 'not base64!'}\n".into()),
            "Secret in version \"v1\" cannot be handled as a Secret:",
        ),
        (
            &["apply", "-f", "-"],
            Some("apiVersion: v1\nkind: Secret\nmetadata: {name: tls}\ntype: kubernetes.io/tls\nstringData: {tls.crt: x}\n".into()),
            "Secret \"tls\" is invalid: data[tls.key]: Required value",
        ),
        (
            &["apply", "-f", "-"],
            Some("apiVersion: v1\nkind: Secret\nmetadata: {name: dcj}\ntype: kubernetes.io/dockerconfigjson\nstringData: {other: x}\n".into()),
            "Secret \"dcj\" is invalid: data[.dockerconfigjson]: Required value",
        ),
        (
            &["apply", "-f", "-"],
            Some("apiVersion: v1\nkind: Secret\nmetadata: {name: ba}\ntype: kubernetes.io/basic-auth\nstringData: {other: x}\n".into()),
            // Two causes: kubectl lists them, as it does upstream's.
            "Secret \"ba\" is invalid: \n* data[username]: Required value\n* data[password]: Required value\n",
        ),
        (
            &["apply", "-f", "-"],
            Some("apiVersion: v1\nkind: Secret\nmetadata: {name: ssh}\ntype: kubernetes.io/ssh-auth\nstringData: {other: x}\n".into()),
            "Secret \"ssh\" is invalid: data[ssh-privatekey]: Required value",
        ),
        (
            &["apply", "-f", "-"],
            Some("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: frozen}\nimmutable: true\ndata: {a: '2'}\n".into()),
            "ConfigMap \"frozen\" is invalid: data: Forbidden: field is immutable when `immutable` is set",
        ),
        (
            &["patch", "secret", "rt-gen", "-p", r#"{"type": "kubernetes.io/basic-auth", "data": {"username": "dQ=="}}"#],
            None,
            "Secret \"rt-gen\" is invalid: type: Invalid value: \"kubernetes.io/basic-auth\": field is immutable",
        ),
    ];
    for (args, stdin, want) in refused {
        let out = c.run(args, stdin.as_deref());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(want), "{args:?}: want {want:?}, got {err:?}");
        if !want.contains('\n') {
            assert_eq!(err.trim_end().lines().count(), 1, "{err}");
        }
    }
    assert_eq!(before(&c), snapshot, "a refused write changed the store");
}

#[test]
fn projected_service_account_token_authenticates_while_its_pod_exists() {
    let c = Cluster::up(&[]);
    c.ok(&["create", "serviceaccount", "robot"]);
    c.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata: {{name: tok}}
spec:
  terminationGracePeriodSeconds: 1
  serviceAccountName: robot
  containers:
  - name: c
    image: {img}
    command: ["sleep", "100000"]
    volumeMounts: [{{name: api, mountPath: /var/run/secrets/kubernetes.io/serviceaccount}}]
  volumes:
  - name: api
    projected:
      sources:
      - serviceAccountToken: {{path: token, expirationSeconds: 3607}}
      - serviceAccountToken: {{path: other, audience: vault}}
      - downwardAPI: {{items: [{{path: namespace, fieldRef: {{fieldPath: metadata.namespace}}}}]}}
"#,
        img = c.image
    ));
    c.running("tok");
    let dir = "/var/run/secrets/kubernetes.io/serviceaccount";
    let token = c.sh("tok", &format!("cat {dir}/token")).unwrap();
    let other = c.sh("tok", &format!("cat {dir}/other")).unwrap();
    assert_eq!(token.split('.').count(), 3, "not a JWT: {token:?}");
    assert_eq!(
        c.sh("tok", &format!("cat {dir}/namespace")).unwrap(),
        "default"
    );
    // The token is for the API server: kubectl on the host authenticates with it,
    // as the service account's user.
    let with = |t: &str| {
        c.run(
            &[
                "--token",
                t,
                "auth",
                "whoami",
                "-o",
                "jsonpath={.status.userInfo.username}",
            ],
            None,
        )
    };
    let out = with(&token);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "system:serviceaccount:default:robot"
    );
    // RBAC applies to it: nothing until a Role is bound to the account.
    let get = |t: &str| {
        c.run(
            &["--token", t, "get", "serviceaccount", "robot", "-o", "name"],
            None,
        )
    };
    let out = get(&token);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "User \"system:serviceaccount:default:robot\" cannot get resource \"serviceaccounts\""
        ),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    c.ok(&[
        "create",
        "role",
        "sa-reader",
        "--verb=get",
        "--resource=serviceaccounts",
    ]);
    c.ok(&[
        "create",
        "rolebinding",
        "robot-reads",
        "--role=sa-reader",
        "--serviceaccount=default:robot",
    ]);
    let out = get(&token);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "serviceaccount/robot",
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Another audience's token, a forged one, and the token once its pod is gone: 401.
    let mut forged = token.clone();
    forged.insert(token.rfind('.').unwrap() + 1, 'A');
    for t in [other.as_str(), forged.as_str()] {
        let out = with(t);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("Unauthorized"));
    }
    // TokenRequest refuses a too short life, with upstream's message.
    let out = c.run(&["create", "token", "robot", "--duration=1m"], None);
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("may not specify a duration less than 10 minutes"),
        "{out:?}"
    );
    c.ok(&["delete", "pod", "tok", "--wait=true"]);
    let out = with(&token);
    assert!(
        !out.status.success(),
        "the token of a deleted pod still works"
    );
}

#[test]
fn service_account_admission_mounts_kube_api_access_into_pods() {
    let c = Cluster::up(&[]);
    c.ok(&["create", "serviceaccount", "default"]);
    c.ok(&["create", "serviceaccount", "quiet"]);
    c.apply("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: optout}\nautomountServiceAccountToken: false\n");
    let pod = |name: &str, extra: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  terminationGracePeriodSeconds: 1\n{extra}  containers:\n  - {{name: c, image: {}, command: [sleep, '100000']}}\n---\n",
            c.image
        )
    };
    c.apply(
        &[
            pod("api", ""),
            pod("no-mount", "  automountServiceAccountToken: false\n"),
            pod("opted-out", "  serviceAccountName: optout\n"),
        ]
        .concat(),
    );
    let p = c.pod("api");
    assert_eq!(p["spec"]["serviceAccountName"], "default");
    let vol = &p["spec"]["volumes"][0];
    assert!(
        vol["name"]
            .as_str()
            .unwrap()
            .starts_with("kube-api-access-"),
        "{vol}"
    );
    let m = &p["spec"]["containers"][0]["volumeMounts"][0];
    assert_eq!(
        m["mountPath"],
        "/var/run/secrets/kubernetes.io/serviceaccount"
    );
    assert_eq!(m["readOnly"], true);
    for name in ["no-mount", "opted-out"] {
        assert!(c.pod(name)["spec"]["volumes"].is_null(), "{name}");
    }
    c.running("api");
    let dir = "/var/run/secrets/kubernetes.io/serviceaccount";
    let token = c.sh("api", &format!("cat {dir}/token")).unwrap();
    assert_eq!(
        c.sh("api", &format!("cat {dir}/namespace")).unwrap(),
        "default"
    );
    let ca = c.sh("api", &format!("cat {dir}/ca.crt")).unwrap();
    let kubeconfig = std::fs::read_to_string(c.kubeconfig()).unwrap();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    // The CA in the pod is the cluster's: kubectl trusts the server with it alone, and
    // the pod's token authenticates.
    let ca_file = c.dir().join("pod-ca.crt");
    std::fs::write(&ca_file, &ca).unwrap();
    let server = kubeconfig
        .lines()
        .find_map(|l| l.trim().strip_prefix("server: "))
        .unwrap()
        .to_string();
    let out = Command::new("/usr/bin/kubectl")
        .args([
            "--kubeconfig",
            "/dev/null",
            "--server",
            &server,
            "--token",
            &token,
        ])
        .arg("--certificate-authority")
        .arg(&ca_file)
        .args([
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("system:serviceaccount:"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn immutable_configmap_is_read_once() {
    let c = Cluster::up(&[]);
    let cms = |v: &str| {
        format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: frozen}}\nimmutable: true\ndata: {{v: {v}}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: fluid}}\ndata: {{v: {v}}}\n")
    };
    c.apply(&cms("one"));
    c.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: ro}}\nspec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: c\n    image: {}\n    command: [sleep, '100000']\n    volumeMounts: [{{name: f, mountPath: /frozen}}, {{name: m, mountPath: /fluid}}]\n  volumes:\n  - {{name: f, configMap: {{name: frozen}}}}\n  - {{name: m, configMap: {{name: fluid}}}}\n",
        c.image
    ));
    c.running("ro");
    assert_eq!(c.sh("ro", "cat /frozen/v /fluid/v").unwrap(), "oneone");
    // An immutable object can only be replaced: delete both, create them anew.
    c.ok(&["delete", "configmap", "frozen", "fluid"]);
    c.apply(&cms("two"));
    // Both volumes are written in the same sync from the same reads: once the mutable
    // one shows "two", a sync has seen the new objects, and the immutable one was not
    // read again.
    c.wait("the mutable ConfigMap's file to change", || {
        (c.sh("ro", "cat /fluid/v")? == "two").then_some(())
    });
    assert_eq!(c.sh("ro", "cat /frozen/v").unwrap(), "one");
}
