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
        self.refresh_hosts()
    }
}
