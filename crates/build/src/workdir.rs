//! The WORKDIR step: the directory and its missing parents are created,
//! owned by the USER (as buildkit does), as a layer of their own (none when
//! the directory exists), cached like every step.
//!
//! The directories are looked up through the layer chain and written into
//! an empty upper directory without mounting anything ([`crate::chainview`]),
//! so N nested WORKDIRs no longer mount N overlays of up to N layers. A
//! path the chain alone cannot resolve (a symlink, a whiteout or a file on
//! the way) is created on the mounted overlay as before.

use std::time::Instant;

use crate::chainview::{Chain, Found};
use crate::error::{IoContext, Result};
use crate::executor::Cx;
use crate::fsops;
use crate::state::{Layer, State};

impl Cx<'_> {
    pub(crate) fn workdir(
        &self,
        name: &str,
        st: &mut State,
        key: &mut String,
        dir: &str,
    ) -> Result<()> {
        let user = st.config.user.clone();
        self.layer_by(name, st, key, format!("WORKDIR {dir}"), b"", |st, id, t| {
            if let Some(layer) = self.workdir_unmounted(st, dir, &user)? {
                return Ok(layer);
            }
            self.workdir_mounted(st, dir, &user, id, t)
        })
    }

    fn workdir_mounted(
        &self,
        st: &State,
        dir: &str,
        user: &str,
        id: usize,
        t: Instant,
    ) -> Result<Option<Layer>> {
        self.on_overlay(st, false, id, t, |o, _, _| {
            let owner = if user.is_empty() {
                (0, 0)
            } else {
                let u = hako_engine::user::resolve(&o.rootfs, user)?;
                (u.uid, u.gid)
            };
            fsops::mkdir_all_in(&o.rootfs, dir, owner)?;
            Ok(Vec::new())
        })
    }

    /// The WORKDIR layer made without a mount; None when only the mounted
    /// view can resolve the path (or the user's passwd/group files).
    fn workdir_unmounted(
        &self,
        st: &State,
        dir: &str,
        user: &str,
    ) -> Result<Option<Option<Layer>>> {
        let comps: Vec<&str> = dir.split('/').filter(|s| !s.is_empty()).collect();
        let chain = self.chain_view(st)?;
        let levels = match chain.lookup(&comps)? {
            Found::Path { levels, file: None } => levels,
            _ => return Ok(None),
        };
        if levels.len() == comps.len() {
            // It exists: nothing changes, no layer.
            return Ok(Some(None));
        }
        let owner = if user.is_empty() {
            (0, 0)
        } else {
            let (Some(passwd), Some(group)) =
                (etc_file(&chain, "passwd")?, etc_file(&chain, "group")?)
            else {
                return Ok(None);
            };
            let u = hako_engine::user::resolve_in(&passwd, &group, user)?;
            (u.uid, u.gid)
        };
        std::fs::create_dir_all(&self.work).ctx(|| format!("creating {}", self.work.display()))?;
        let tmp = tempfile::Builder::new()
            .prefix("dirs-")
            .tempdir_in(&self.work)
            .ctx(|| format!("creating a step directory in {}", self.work.display()))?;
        let upper = tmp.path().join("upper");
        std::fs::create_dir(&upper).ctx(|| format!("creating {}", upper.display()))?;
        chain.mkdirs(&upper, &comps, &levels, owner)?;
        Ok(Some(self.commit(st, &upper)?))
    }
}

/// `/etc/NAME` of the chain: its content (empty when missing), or None when
/// only the mounted view can tell.
fn etc_file(chain: &Chain<'_>, name: &str) -> Result<Option<Vec<u8>>> {
    match chain.lookup(&["etc", name])? {
        Found::Path {
            file: Some(l),
            levels: _,
        } => Ok(Some(
            hako_engine::inroot::read_file(
                chain.layer_dir(l),
                &format!("/etc/{name}"),
                hako_engine::inroot::MAX_ETC_FILE,
            )?
            .unwrap_or_default(),
        )),
        Found::Path { levels, file: None } if levels.len() < 2 => Ok(Some(Vec::new())),
        _ => Ok(None),
    }
}
