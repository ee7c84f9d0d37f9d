//! Random access to the members of a tar file: one pass records where each
//! member's data starts, then members are read by seeking.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use crate::error::{show, tar_io, Error, IoContext, Result};

#[derive(Debug, Clone)]
struct Member {
    offset: u64,
    size: u64,
    /// For symlinks and hardlinks: the member they point at.
    link: Option<String>,
}

/// An indexed tar file.
pub struct TarIndex {
    path: PathBuf,
    members: HashMap<String, Member>,
}

/// "./a//b/" → "a/b".
fn normalise(name: &str) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in Path::new(name).components() {
        match c {
            Component::Normal(s) => parts.push(s.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    parts.join("/")
}

impl TarIndex {
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).ctx(|| format!("opening {}", show(path)))?;
        let mut archive = tar::Archive::new(file);
        let mut members = HashMap::new();
        for entry in archive
            .entries_with_seek()
            .map_err(tar_io)
            .ctx(|| format!("reading tar {}", show(path)))?
        {
            let entry = entry
                .map_err(tar_io)
                .ctx(|| format!("reading tar {}", show(path)))?;
            let name = normalise(&String::from_utf8_lossy(&entry.path_bytes()));
            let kind = entry.header().entry_type();
            let link = match kind {
                tar::EntryType::Symlink => entry.link_name_bytes().map(|l| {
                    // Symlinks are relative to the member's directory.
                    let dir = Path::new(&name)
                        .parent()
                        .map(|p| p.to_string_lossy().into_owned())
                        .unwrap_or_default();
                    normalise(&format!("{dir}/{}", String::from_utf8_lossy(&l)))
                }),
                tar::EntryType::Link => entry
                    .link_name_bytes()
                    .map(|l| normalise(&String::from_utf8_lossy(&l))),
                _ => None,
            };
            members.insert(
                name,
                Member {
                    offset: entry.raw_file_position(),
                    size: entry.size(),
                    link,
                },
            );
        }
        Ok(TarIndex {
            path: path.to_path_buf(),
            members,
        })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.members.contains_key(&normalise(name))
    }

    fn member(&self, name: &str) -> Result<&Member> {
        let mut current = normalise(name);
        // Follow links a bounded number of times (a loop is an error, not a hang).
        for _ in 0..16 {
            let m = self.members.get(&current).ok_or_else(|| {
                Error::not_found(format!("member {name} in archive {}", show(&self.path)))
            })?;
            match &m.link {
                Some(target) => current = target.clone(),
                None => return Ok(m),
            }
        }
        Err(Error::Invalid(format!(
            "member {name} in archive {}: too many links",
            show(&self.path)
        )))
    }
}

impl super::Source for TarIndex {
    fn open(&self, name: &str) -> Result<(Box<dyn Read + '_>, u64)> {
        let m = self.member(name)?;
        let mut file = File::open(&self.path).ctx(|| format!("opening {}", show(&self.path)))?;
        file.seek(SeekFrom::Start(m.offset))
            .ctx(|| format!("reading member {name} of {}", show(&self.path)))?;
        Ok((Box::new(file.take(m.size)), m.size))
    }
}
