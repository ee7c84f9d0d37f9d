//! Downloads over http(s): ADD of a URL, a remote build context.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::cache;
use crate::error::{Error, IoContext, Result};

/// Download `url` into a new file in `dir`: (the URL's file name, the file).
pub fn fetch(url: &str, dir: &Path) -> Result<(String, PathBuf)> {
    let name = url
        .split(['?', '#'])
        .next()
        .unwrap_or("")
        .rsplit('/')
        .find(|s| !s.is_empty() && !s.contains(':'))
        .unwrap_or("download")
        .to_string();
    let resp = reqwest::blocking::Client::builder()
        .timeout(std::time::Duration::from_secs(300))
        .build()
        .and_then(|c| c.get(url).send())
        .map_err(|e| Error::Invalid(format!("{url}: cannot fetch: {e}")))?;
    if !resp.status().is_success() {
        return Err(Error::Invalid(format!(
            "{url}: cannot fetch: HTTP {}",
            resp.status()
        )));
    }
    fs::create_dir_all(dir).ctx(|| format!("creating {}", dir.display()))?;
    let path = dir.join(cache::hex(url.as_bytes()));
    let mut f = fs::File::create(&path).ctx(|| format!("creating {}", path.display()))?;
    let mut resp = resp;
    std::io::copy(&mut resp, &mut f).map_err(|e| Error::io(format!("{url}: downloading"), e))?;
    // docker: downloaded files are 0600 root-owned.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600))
        .ctx(|| format!("changing mode of {}", path.display()))?;
    Ok((name, path))
}
