//! RUN: the command (exec or shell form, heredocs), the build args in its
//! environment and history, its mounts, and the container it runs in.

use std::collections::HashMap;
use std::fs;
use std::path::Path;

use crate::error::{Error, IoContext, Result};
use crate::executor::{Cx, Done, Scope, DEFAULT_PATH, PROXY_ARGS};
use crate::fsops;
use crate::parser::{Args, Instruction};
use crate::run;
use crate::state::State;

impl Cx<'_> {
    pub(crate) fn run_step(
        &self,
        name: &str,
        ins: &Instruction,
        st: &mut State,
        key: &mut String,
        scope: &Scope,
        deps: &HashMap<usize, Done>,
    ) -> Result<()> {
        // Heredocs: a lone `<<EOF` runs its body (a script when it has a
        // shebang); otherwise the shell gets the heredocs with the command.
        let mut script: Option<(String, String)> = None;
        let argv: Vec<String> = match &ins.args {
            Args::Exec(v) => v.clone(),
            Args::Shell(s) if !ins.heredocs.is_empty() => {
                let lone = ins.heredocs.len() == 1 && {
                    let h = &ins.heredocs[0];
                    let t = s.trim().trim_start_matches("<<").trim_start_matches('-');
                    t.trim_matches(|c| c == '"' || c == '\'') == h.name
                };
                let mut v = self.shell(st);
                if lone {
                    let h = &ins.heredocs[0];
                    if h.body.starts_with("#!") {
                        script = Some((h.name.clone(), h.body.clone()));
                        v = vec![format!("/dev/pipes/{}", h.name)];
                    } else {
                        v.push(h.body.clone());
                    }
                } else {
                    let mut full = s.clone();
                    full.push('\n');
                    for h in &ins.heredocs {
                        full.push_str(&h.body);
                        full.push_str(&h.name);
                        full.push('\n');
                    }
                    v.push(full);
                }
                v
            }
            Args::Shell(_) => self.command_of(st, ins),
        };
        // ONBUILD triggers escape the up-front check: the same check here.
        let plat = crate::executor::state_platform(st);
        if let Err(why) = crate::platform::can_run(&plat) {
            let stage = name
                .trim_start_matches('[')
                .split(' ')
                .next()
                .unwrap_or_default();
            return Err(Error::Invalid(crate::executor::cannot_run(
                stage, &plat, &why,
            )));
        }
        if argv.is_empty() {
            return Err(Error::Invalid("RUN needs a command".into()));
        }
        // Build args in scope reach the process and, except proxies, the history.
        let mut arg_env: Vec<(String, String)> = Vec::new();
        for (k, v) in &scope.args {
            if st.config.env_get(k).is_none() {
                arg_env.push((k.clone(), v.clone()));
            }
        }
        for p in PROXY_ARGS {
            if let Some(v) = self.opts.build_args.get(*p) {
                if !scope.args.contains_key(*p) {
                    arg_env.push((p.to_string(), v.clone()));
                }
                self.used_args
                    .lock()
                    .expect("args lock")
                    .insert(p.to_string());
            }
        }
        let shown: Vec<String> = arg_env
            .iter()
            .filter(|(k, _)| !PROXY_ARGS.contains(&k.as_str()))
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let prefix = if shown.is_empty() {
            String::new()
        } else {
            format!("|{} {} ", shown.len(), shown.join(" "))
        };
        let desc = format!("RUN {prefix}{} # buildkit", argv.join(" "));
        // A step's own --network wins over the build's.
        let network = match ins.flag("network").and_then(|f| f.value.clone()) {
            Some(n) if n != "default" => n,
            _ if !self.opts.run.network.is_empty() => self.opts.run.network.clone(),
            _ => "default".into(),
        };
        let mounts = crate::mounts::parse_all(self, ins, st, scope, deps)?;
        let insecure = ins.flag("security").and_then(|f| f.value.as_deref()) == Some("insecure");
        let mut inputs = Vec::new();
        inputs.extend_from_slice(format!("network={network}\n").as_bytes());
        if insecure {
            inputs.extend_from_slice(b"security=insecure\n");
        }
        for m in &mounts {
            inputs.extend_from_slice(m.key.as_bytes());
            inputs.push(b'\n');
        }
        let step_name = name.to_string();
        let shown_cmd = argv.join(" ");
        let config = st.config.clone();
        self.layer(name, st, key, desc, &inputs, false, |o, id, t| {
            let rootfs = &o.rootfs;
            let cwd = if config.working_dir.is_empty() {
                "/".to_string()
            } else {
                config.working_dir.clone()
            };
            let mut stubs: Vec<String> = Vec::new();
            if fs::symlink_metadata(fsops::secure_join(rootfs, &cwd)?).is_err() {
                fsops::mkdir_all_in(rootfs, &cwd, (0, 0))?;
            }
            let user = hako_engine::user::resolve(rootfs, &config.user)?;
            let mut env = config.env.clone();
            if config.env_get("PATH").is_none() {
                env.insert(0, format!("PATH={DEFAULT_PATH}"));
            }
            // Like docker: HOME from the user's passwd entry unless the image sets it.
            if config.env_get("HOME").is_none() && !arg_env.iter().any(|(k, _)| k == "HOME") {
                env.push(format!("HOME={}", home_of(rootfs, user.uid)?));
            }
            env.extend(arg_env.iter().map(|(k, v)| format!("{k}={v}")));
            // The first ssh mount is the agent SSH_AUTH_SOCK names.
            if let Some(e) = mounts.iter().find_map(|m| m.env()) {
                env.push(e);
            }
            let mut extra = Vec::new();
            if network != "none" {
                for f in ["/etc/resolv.conf", "/etc/hosts"] {
                    if f == "/etc/hosts" && !self.opts.run.add_hosts.is_empty() {
                        let hosts = o.dir.join("hosts");
                        fs::write(&hosts, hosts_with(&self.opts.run.add_hosts))
                            .ctx(|| format!("writing {}", hosts.display()))?;
                        extra.push(run::bind(f, &hosts, true));
                    } else if Path::new(f).exists() {
                        extra.push(run::bind(f, Path::new(f), true));
                    }
                }
            }
            let mut keep = crate::mounts::Keep::default();
            for m in &mounts {
                extra.push(m.mount(self, o, &mut keep)?);
            }
            if let Some((n, body)) = &script {
                let dir = o.dir.join("pipes");
                fs::create_dir_all(&dir).ctx(|| format!("creating {}", dir.display()))?;
                let f = dir.join(n);
                fs::write(&f, body).ctx(|| format!("writing heredoc {n}"))?;
                use std::os::unix::fs::PermissionsExt;
                fs::set_permissions(&f, fs::Permissions::from_mode(0o755))
                    .ctx(|| format!("making heredoc {n} executable"))?;
                extra.push(run::bind("/dev/pipes", &dir, true));
            }
            let p = run::Process {
                args: argv.clone(),
                env,
                cwd,
                uid: user.uid,
                gid: user.gid,
                additional_gids: user.additional_gids,
                host_network: network != "none",
                mounts: extra,
                insecure,
                shm_size: self.opts.run.shm_size,
                ulimits: self.opts.run.ulimits.clone(),
            };
            // Mount points (and their parents) the runtime will create.
            for m in run::all_mounts(&p) {
                let dst = m.destination().to_string_lossy().into_owned();
                let mut prefix = String::new();
                for seg in dst.split('/').filter(|s| !s.is_empty()) {
                    prefix.push('/');
                    prefix.push_str(seg);
                    if fs::symlink_metadata(fsops::secure_join(rootfs, &prefix)?).is_err()
                        && !stubs.contains(&prefix)
                    {
                        stubs.push(prefix.clone());
                    }
                }
            }
            let cid = format!("hako-build-{}-{id}", std::process::id());
            let code = run::run(
                &self.opts.runtime,
                &self.runtime_root,
                &o.dir,
                &cid,
                &p,
                &|l| self.progress.log(id, t.elapsed(), l),
            )?;
            drop(keep);
            if code != 0 {
                return Err(Error::RunFailed {
                    step: step_name.clone(),
                    command: shown_cmd.clone(),
                    code,
                });
            }
            Ok(stubs)
        })
    }
}

/// The home directory of `uid` in the image's /etc/passwd ("/" without
/// one), read inside the root filesystem only (the image is untrusted).
fn home_of(rootfs: &Path, uid: u32) -> Result<String> {
    Ok(hako_engine::user::home_of(rootfs, uid)?)
}

/// The host's /etc/hosts with `--add-host NAME:IP` entries after it (the
/// steps share the host's network, so `host-gateway` is the host's loopback).
fn hosts_with(add: &[String]) -> String {
    let mut text = fs::read_to_string("/etc/hosts").unwrap_or_default();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    for h in add {
        if let Some((name, ip)) = h.split_once(':') {
            let ip = if ip == "host-gateway" {
                "127.0.0.1"
            } else {
                ip
            };
            text.push_str(&format!("{ip}\t{name}\n"));
        }
    }
    text
}
