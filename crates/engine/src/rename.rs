//! `rename`: a new name for a container, running or not; its entries in
//! the /etc/hosts of other containers follow.

use crate::engine::Engine;
use crate::error::Result;
use crate::names;

impl Engine {
    pub fn rename(&self, what: &str, new_name: &str) -> Result<()> {
        let new_name = names::validate(new_name)?;
        let c = self.get(what)?;
        let _lock = self.lock(&c.id)?;
        self.db.rename(&c.id, &new_name)?;
        let mut renamed = c.clone();
        renamed.name = new_name.clone();
        self.container_event(&renamed, "rename", &[("oldName", format!("/{}", c.name))]);
        self.refresh_hosts()
    }
}
