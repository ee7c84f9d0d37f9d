//! The five capability sets of process.capabilities.

use crate::error::{Error, Result};
use caps::{CapSet, Capability, CapsHashSet};
use oci_spec::runtime::{Capabilities, LinuxCapabilities};
use std::str::FromStr;

fn convert(set: &Option<Capabilities>) -> Result<CapsHashSet> {
    let mut out = CapsHashSet::new();
    for c in set.iter().flatten() {
        let name = serde_json::to_value(c)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let cap = Capability::from_str(&name)
            .map_err(|e| Error::Spec(format!("capability {name:?}: {e}")))?;
        out.insert(cap);
    }
    Ok(out)
}

/// The parsed sets, converted before fork so a bad name fails `create`.
#[derive(Debug, Clone, Default)]
pub struct CapSets {
    pub bounding: CapsHashSet,
    pub effective: CapsHashSet,
    pub permitted: CapsHashSet,
    pub inheritable: CapsHashSet,
    pub ambient: CapsHashSet,
}

impl CapSets {
    pub fn from_spec(c: &LinuxCapabilities) -> Result<CapSets> {
        Ok(CapSets {
            bounding: convert(c.bounding())?,
            effective: convert(c.effective())?,
            permitted: convert(c.permitted())?,
            inheritable: convert(c.inheritable())?,
            ambient: convert(c.ambient())?,
        })
    }

    /// Drops from the bounding set everything not listed. Must run while we
    /// still have CAP_SETPCAP, i.e. before switching user.
    pub fn drop_bounding(&self) -> Result<()> {
        let known = caps::runtime::procfs_all_supported(None).unwrap_or_else(|_| caps::all());
        for cap in known {
            if !self.bounding.contains(&cap) {
                caps::drop(None, CapSet::Bounding, cap).map_err(|e| {
                    Error::Other(format!("dropping {cap} from the bounding set: {e}"))
                })?;
            }
        }
        Ok(())
    }

    /// Sets inheritable, effective, permitted and ambient, in the order capset(2)
    /// accepts: inheritable while permitted is still full, effective before
    /// permitted shrinks under it, ambient last (it needs both).
    pub fn apply(&self) -> Result<()> {
        let set = |s: CapSet, v: &CapsHashSet, name: &str| {
            caps::set(None, s, v)
                .map_err(|e| Error::Other(format!("setting the {name} capability set: {e}")))
        };
        set(CapSet::Inheritable, &self.inheritable, "inheritable")?;
        set(CapSet::Effective, &self.effective, "effective")?;
        set(CapSet::Permitted, &self.permitted, "permitted")?;
        caps::clear(None, CapSet::Ambient)
            .map_err(|e| Error::Other(format!("clearing the ambient capability set: {e}")))?;
        for cap in &self.ambient {
            // Like runc: an ambient cap that is not also inheritable and permitted
            // cannot be raised; skip it rather than fail the container.
            if self.inheritable.contains(cap) && self.permitted.contains(cap) {
                caps::raise(None, CapSet::Ambient, *cap)
                    .map_err(|e| Error::Other(format!("raising ambient {cap}: {e}")))?;
            }
        }
        Ok(())
    }
}
