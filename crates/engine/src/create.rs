//! `create`: record a container, mount its root filesystem from the image
//! and write its OCI bundle. Nothing runs yet.

use std::fs;
use std::path::Path;

use hako_image::ImageStore;

use crate::clock;
use crate::config;
use crate::engine::Engine;
use crate::error::{Context, Result};
use crate::fsutil::{write_atomic, write_replace};
use crate::mounts;
use crate::names;
use crate::network;
use crate::options::CreateOptions;
use crate::record::{Container, State};
use crate::runtime;
use crate::spec;

impl Engine {
    /// Create a container from `o.image` with the user's options merged into
    /// the image's configuration.
    pub fn create(&self, images: &mut ImageStore, o: &CreateOptions) -> Result<Container> {
        let runtime_name = o.runtime.as_deref().unwrap_or(runtime::DEFAULT);
        let runtime_path = runtime::resolve(runtime_name)?;
        let rec = images
            .find(&o.image)
            .ctx(|| format!("finding image {}", o.image))?;
        let image = images
            .load_image(&rec)
            .ctx(|| format!("loading image {}", o.image))?;
        // The network must exist now (the default one is made on first use).
        if let Some(n) = o
            .network
            .as_deref()
            .filter(|n| !network::is_special_mode(n))
        {
            let net = self.network(n)?;
            if let Some(ip) = o.ip {
                network::check_requested_ip(&net, ip)?;
            }
        } else if o.network.is_none() {
            self.default_network()?;
        }
        let id = names::new_id();
        let name = match &o.name {
            Some(n) => names::validate(n)?,
            None => names::generate(&id),
        };
        let mut config = config::merge(&image.config, o, &id)?;
        config.healthcheck = config::healthcheck(&image.config_json, &o.health)?;
        let mut host = config::host_config(o, &runtime_path.to_string_lossy())?;
        // `container:NAME` is recorded by id (a rename must not break it), and the
        // container goes by the other's hostname, as with docker.
        if let Some(target) = host.network_mode.strip_prefix("container:") {
            let t = self.find(target)?;
            host.network_mode = format!("container:{}", t.id);
            config.hostname = t.config.hostname.clone();
        }
        for mode in [&mut host.ipc_mode, &mut host.pid_mode] {
            if let Some(target) = mode.strip_prefix("container:") {
                let t = self.find(target)?;
                *mode = format!("container:{}", t.id);
            }
        }
        for (image, destination) in &o.image_mounts {
            let r = images
                .find(image)
                .ctx(|| format!("finding image {image} to mount at {destination}"))?;
            host.image_mounts.push(crate::record::ImageMount {
                image: r.id.to_string(),
                destination: destination.clone(),
            });
        }
        self.add_volumes_from(&mut host)?;
        mounts::plan(&mut host, &config.volumes)?;
        let mut c = Container {
            config,
            host,
            id,
            name,
            image: o.image.clone(),
            image_id: rec.id.to_string(),
            created: clock::now(),
            state: State::created(),
        };
        // Held until the bundle is complete: an `rm -f` racing this create
        // (it can find the record as soon as it is inserted) waits, then
        // removes the whole of it, mount and directory included, instead of
        // removing a half-made container whose mount this create then adds.
        let _lock = self.lock(&c.id)?;
        // Volumes are made and the container recorded under the volume
        // lock: from then on `volume rm` and `prune` see it using them.
        let made = {
            let _volumes = self.volume_lock()?;
            let made = self.resolve_volumes(&mut c.host)?;
            // Recorded first: the name is claimed before any work, and a crash
            // later leaves a record that `rm` can clean up.
            if let Err(e) = self.db.insert(&c) {
                for name in &made {
                    if let Ok(v) = self.volume(name) {
                        let _ = self.remove_volume_locked(&v);
                    }
                }
                return Err(e);
            }
            made
        };
        if let Err(e) = self.make_bundle(images, &c) {
            let dir = self.container_dir(&c.id);
            let _ = crate::image_mounts::release(images, &dir, &c);
            let _ = images.unmount(&dir.to_string_lossy());
            let _ = fs::remove_dir_all(&dir);
            let _ = self.db.delete(&c.id);
            let _ = fs::remove_file(self.root.join("containers").join(format!(".{}.lock", c.id)));
            if let Ok(_volumes) = self.volume_lock() {
                for name in &made {
                    if let Ok(v) = self.volume(name) {
                        if !self.volume_in_use(name).unwrap_or(true) {
                            let _ = self.remove_volume_locked(&v);
                        }
                    }
                }
            }
            return Err(e);
        }
        self.container_event(&c, "create", &[]);
        Ok(c)
    }

    fn make_bundle(&self, images: &mut ImageStore, c: &Container) -> Result<()> {
        let dir = self.container_dir(&c.id);
        fs::create_dir_all(&dir)
            .ctx(|| format!("creating container directory {}", dir.display()))?;
        images
            .mount_with(&c.image_id, &dir, c.host.volatile_rootfs)
            .ctx(|| format!("mounting the root filesystem of container {}", c.name))?;
        crate::image_mounts::ensure(images, &dir, c)?;
        write_etc_files(&dir, c)?;
        for b in &c.host.binds {
            // Docker creates a missing bind source as a directory.
            if !Path::new(&b.source).exists() {
                fs::create_dir_all(&b.source)
                    .ctx(|| format!("creating bind mount source {}", b.source))?;
            }
        }
        self.prepare_mounts(c, &dir.join("rootfs"))?;
        // CNI networks and `none` have a namespace file of their own (set up at start);
        // `container:` is pointed at the other's at start; host has none.
        let mode = c.host.network_mode.as_str();
        let netns =
            (mode == "none" || !network::is_special_mode(mode)).then(|| self.netns_path(&c.id));
        let spec = spec::build(
            &c.id,
            &dir,
            &self.volumes_dir(),
            &c.config,
            &c.host,
            netns.as_deref(),
        )?;
        let json = serde_json::to_vec_pretty(&spec).expect("runtime spec serialises");
        write_atomic(&dir.join("config.json"), &json)?;
        if c.host.log_config.readable() {
            fs::File::create(self.log_path(&c.id))
                .ctx(|| format!("creating the log of container {}", c.name))?;
        }
        Ok(())
    }
}

/// /etc/hostname, /etc/hosts and /etc/resolv.conf, bind-mounted into the
/// container so the image's own files stay untouched.
pub(crate) fn write_etc_files(dir: &Path, c: &Container) -> Result<()> {
    let h = &c.config.hostname;
    if c.host.network_mode == "host" {
        let hosts = fs::read("/etc/hosts").unwrap_or_default();
        write_replace(&dir.join("hosts"), &hosts)?;
    } else {
        write_replace(&dir.join("hostname"), format!("{h}\n").as_bytes())?;
        let hosts = format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{h}\n"
        );
        write_replace(&dir.join("hosts"), hosts.as_bytes())?;
    }
    write_resolv_conf(dir, c, None)
}

/// /etc/resolv.conf of the container; `dns` is the network's own server
/// (user networks), which then answers in place of the host's resolvers.
pub(crate) fn write_resolv_conf(dir: &Path, c: &Container, dns: Option<&str>) -> Result<()> {
    let host = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    write_replace(
        &dir.join("resolv.conf"),
        resolv_conf(&host, c, dns).as_bytes(),
    )
}

/// The container's /etc/resolv.conf: the host's, with `--dns*` replacing its
/// parts. In a network namespace of its own a loopback nameserver of the
/// host (a local caching resolver) is unreachable, so it is dropped, and with
/// none left docker's public defaults are used.
fn resolv_conf(host: &str, c: &Container, dns: Option<&str>) -> String {
    let h = &c.host;
    if h.network_mode == "host"
        && h.dns.is_empty()
        && h.dns_search.is_empty()
        && h.dns_options.is_empty()
    {
        return host.to_string();
    }
    let field = |key: &str| -> Vec<String> {
        host.lines()
            .filter_map(|l| l.trim().strip_prefix(key))
            .filter(|rest| rest.starts_with([' ', '\t']))
            .flat_map(|rest| {
                rest.split_whitespace()
                    .map(str::to_string)
                    .collect::<Vec<_>>()
            })
            .collect()
    };
    let mut servers = if let (true, Some(d)) = (h.dns.is_empty(), dns) {
        vec![d.to_string()]
    } else if h.dns.is_empty() {
        field("nameserver")
            .into_iter()
            .filter(|s| h.network_mode == "host" || !s.starts_with("127.") && s != "::1")
            .collect()
    } else {
        h.dns.clone()
    };
    if servers.is_empty() && h.network_mode != "none" {
        servers = vec!["8.8.8.8".into(), "8.8.4.4".into()];
    }
    let search = if h.dns_search.is_empty() {
        field("search")
    } else {
        h.dns_search.clone()
    };
    let options = if h.dns_options.is_empty() {
        field("options")
    } else {
        h.dns_options.clone()
    };
    let mut out = String::new();
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}
