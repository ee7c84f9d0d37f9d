//! `--systemd-cgroup` paths: "slice:prefix:name" expanded to the cgroup path
//! systemd would give the unit.
//!
//! No systemd runs on these machines, so hako does not ask systemd to create a
//! transient scope over D-Bus as runc does: it computes the same path systemd would
//! use and manages the directories through cgroupfs directly. Containers thereby
//! land where tools that expect systemd naming (podman, kubelet's systemd driver)
//! look for them.

use std::path::PathBuf;

use super::CgroupError;

/// Expands "slice:prefix:name" into "/<slice path>/<prefix>-<name>.scope".
/// An empty slice means "system.slice"; a name ending in ".slice" is used as is.
pub fn expand(spec: &str) -> Result<PathBuf, CgroupError> {
    let bad = |reason: String| CgroupError::InvalidPath {
        path: spec.to_string(),
        reason,
    };
    let parts: Vec<&str> = spec.split(':').collect();
    let [slice, prefix, name] = parts.as_slice() else {
        return Err(bad(
            "with --systemd-cgroup the path must be \"slice:prefix:name\"".into(),
        ));
    };
    if name.is_empty() {
        return Err(bad("the unit name (third field) is empty".into()));
    }
    for part in [slice, prefix, name] {
        if part.contains('/') {
            return Err(bad(format!("{part:?} must not contain '/'")));
        }
    }
    let slice = if slice.is_empty() {
        "system.slice"
    } else {
        slice
    };
    let mut path = slice_path(slice).map_err(bad)?;
    let unit = if name.ends_with(".slice") {
        // A slice as the unit itself: it nests like any slice, under the parent.
        return Ok(path.join(name));
    } else if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    path.push(unit);
    Ok(path)
}

/// "a-b-c.slice" → "/a.slice/a-b.slice/a-b-c.slice"; "-.slice" is the root.
pub fn slice_path(slice: &str) -> Result<PathBuf, String> {
    if slice == "-.slice" {
        return Ok(PathBuf::from("/"));
    }
    let base = slice
        .strip_suffix(".slice")
        .ok_or_else(|| format!("slice {slice:?} must end in \".slice\""))?;
    if base.is_empty() || base.starts_with('-') || base.ends_with('-') || base.contains("--") {
        return Err(format!("slice {slice:?} is not a valid slice name"));
    }
    let mut path = PathBuf::from("/");
    let mut prefix = String::new();
    for component in base.split('-') {
        if !prefix.is_empty() {
            prefix.push('-');
        }
        prefix.push_str(component);
        path.push(format!("{prefix}.slice"));
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_scopes_and_nested_slices() {
        assert_eq!(
            expand("system.slice:docker:abc").unwrap(),
            PathBuf::from("/system.slice/docker-abc.scope")
        );
        assert_eq!(
            expand("machine-libpod_pod.slice:libpod:c1").unwrap(),
            PathBuf::from("/machine.slice/machine-libpod_pod.slice/libpod-c1.scope")
        );
        assert_eq!(
            expand("a-b-c.slice:p:n").unwrap(),
            PathBuf::from("/a.slice/a-b.slice/a-b-c.slice/p-n.scope")
        );
        assert_eq!(
            expand(":hako:x").unwrap(),
            PathBuf::from("/system.slice/hako-x.scope")
        );
        assert_eq!(expand("-.slice::x").unwrap(), PathBuf::from("/x.scope"));
        assert_eq!(
            expand("user.slice:p:sub.slice").unwrap(),
            PathBuf::from("/user.slice/sub.slice")
        );
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "/a/b",
            "a:b",
            "system.slice:p:",
            "foo:p:n",
            "a--b.slice:p:n",
            "-a.slice:p:n",
            "s.slice:p:a/b",
        ] {
            let err = expand(bad).unwrap_err().to_string();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }
}
