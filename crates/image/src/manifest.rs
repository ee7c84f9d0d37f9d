//! Manifests, indexes and configs: OCI types from `oci-spec`, plus the Docker
//! schema2 media types (same JSON shape), and platform selection.

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest};

use crate::digest::Digest;
use crate::error::{Error, Result};

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";
pub const DOCKER_LAYER: &str = "application/vnd.docker.image.rootfs.diff.tar";
pub const DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";
pub const DOCKER_LAYER_ZSTD: &str = "application/vnd.docker.image.rootfs.diff.tar.zstd";
pub const DOCKER_FOREIGN_LAYER_GZIP: &str =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";

/// How a layer blob is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Zstd,
}

impl Compression {
    /// From a layer media type (OCI or Docker).
    pub fn from_media_type(media_type: &str) -> Result<Self> {
        match media_type {
            OCI_LAYER
            | DOCKER_LAYER
            | "application/vnd.oci.image.layer.nondistributable.v1.tar" => Ok(Compression::None),
            OCI_LAYER_GZIP
            | DOCKER_LAYER_GZIP
            | DOCKER_FOREIGN_LAYER_GZIP
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip" => {
                Ok(Compression::Gzip)
            }
            OCI_LAYER_ZSTD
            | DOCKER_LAYER_ZSTD
            | "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd" => {
                Ok(Compression::Zstd)
            }
            other => Err(Error::Invalid(format!(
                "unsupported layer media type {other:?}"
            ))),
        }
    }

    /// Guess from the first bytes of a stream (for archives and imports that carry no media type).
    pub fn sniff(head: &[u8]) -> Self {
        if head.starts_with(&[0x1f, 0x8b]) {
            Compression::Gzip
        } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Compression::Zstd
        } else {
            Compression::None
        }
    }

    /// The OCI layer media type for this compression.
    pub fn oci_media_type(self) -> &'static str {
        match self {
            Compression::None => OCI_LAYER,
            Compression::Gzip => OCI_LAYER_GZIP,
            Compression::Zstd => OCI_LAYER_ZSTD,
        }
    }
}

/// A parsed manifest-like document.
#[derive(Debug, Clone)]
pub enum Document {
    // Boxed: both are large and documents are moved around.
    Manifest(Box<ImageManifest>),
    Index(Box<ImageIndex>),
}

/// The media type a manifest document declares, falling back to its shape.
pub fn document_media_type(bytes: &[u8]) -> Result<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
        layers: Option<serde_json::Value>,
    }
    let p: Probe =
        serde_json::from_slice(bytes).map_err(|e| Error::json("reading a manifest", e))?;
    Ok(match (p.media_type, p.manifests, p.layers) {
        (Some(mt), _, _) => mt,
        (None, Some(_), _) => OCI_INDEX.to_string(),
        (None, None, Some(_)) => OCI_MANIFEST.to_string(),
        (None, None, None) => {
            return Err(Error::Invalid(
                "document is neither a manifest nor an index".into(),
            ))
        }
    })
}

/// Parse a manifest or index (OCI or Docker schema2).
pub fn parse_document(bytes: &[u8], what: &str) -> Result<(String, Document)> {
    let media_type = document_media_type(bytes)?;
    let doc = match media_type.as_str() {
        OCI_MANIFEST | DOCKER_MANIFEST => Document::Manifest(
            serde_json::from_slice(bytes)
                .map_err(|e| Error::json(format!("parsing manifest {what}"), e))?,
        ),
        OCI_INDEX | DOCKER_MANIFEST_LIST => Document::Index(
            serde_json::from_slice(bytes)
                .map_err(|e| Error::json(format!("parsing index {what}"), e))?,
        ),
        "application/vnd.docker.distribution.manifest.v1+json"
        | "application/vnd.docker.distribution.manifest.v1+prettyjws" => {
            return Err(Error::Invalid(format!(
                "manifest {what}: Docker schema1 manifests are not supported"
            )))
        }
        other => {
            return Err(Error::Invalid(format!(
                "manifest {what}: unsupported media type {other:?}"
            )))
        }
    };
    Ok((media_type, doc))
}

/// Parse an image config.
pub fn parse_config(bytes: &[u8], what: &str) -> Result<ImageConfiguration> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::json(format!("parsing image config {what}"), e))
}

/// The digest of a descriptor, refusing algorithms hako cannot verify.
pub fn descriptor_digest(d: &Descriptor) -> Result<Digest> {
    Digest::from_oci(d.digest())
}

/// A platform to select from an index: `os/arch[/variant]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlatformSpec {
    pub os: String,
    pub architecture: String,
    pub variant: Option<String>,
}

impl PlatformSpec {
    /// The platform of this machine, in GOOS/GOARCH terms.
    pub fn host() -> Self {
        let (architecture, variant) = match std::env::consts::ARCH {
            "x86_64" => ("amd64", None),
            "aarch64" => ("arm64", Some("v8")),
            "arm" => ("arm", Some("v7")),
            "x86" => ("386", None),
            "powerpc64" => ("ppc64le", None),
            "s390x" => ("s390x", None),
            "riscv64" => ("riscv64", None),
            other => (other, None),
        };
        PlatformSpec {
            os: "linux".into(),
            architecture: architecture.into(),
            variant: variant.map(str::to_string),
        }
    }

    /// Parse `os/arch[/variant]`.
    pub fn parse(s: &str) -> Result<Self> {
        let parts: Vec<&str> = s.split('/').collect();
        match parts.as_slice() {
            [os, arch] if !os.is_empty() && !arch.is_empty() => Ok(PlatformSpec {
                os: os.to_string(),
                architecture: arch.to_string(),
                variant: None,
            }),
            [os, arch, variant] if !os.is_empty() && !arch.is_empty() && !variant.is_empty() => {
                Ok(PlatformSpec {
                    os: os.to_string(),
                    architecture: arch.to_string(),
                    variant: Some(variant.to_string()),
                })
            }
            _ => Err(Error::Invalid(format!(
                "invalid platform {s:?}: expected os/arch[/variant]"
            ))),
        }
    }

    fn matches(&self, d: &Descriptor) -> bool {
        let Some(p) = d.platform() else { return false };
        if p.os().to_string() != self.os || p.architecture().to_string() != self.architecture {
            return false;
        }
        match (&self.variant, p.variant()) {
            (None, _) => true,
            (Some(want), Some(have)) => want == have,
            // arm64 manifests often omit the (only) variant v8.
            (Some(want), None) => self.architecture == "arm64" && want == "v8",
        }
    }
}

impl std::fmt::Display for PlatformSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if let Some(v) = &self.variant {
            write!(f, "/{v}")?;
        }
        Ok(())
    }
}

/// Pick the manifest for `platform` from an index; the first exact match
/// wins, and a variant-less request matches any variant.
pub fn select_platform<'a>(
    index: &'a ImageIndex,
    platform: &PlatformSpec,
) -> Result<&'a Descriptor> {
    index
        .manifests()
        .iter()
        .filter(|d| {
            let mt = d.media_type().to_string();
            mt == OCI_MANIFEST || mt == DOCKER_MANIFEST
        })
        .find(|d| platform.matches(d))
        .ok_or_else(|| {
            let have: Vec<String> = index
                .manifests()
                .iter()
                .filter_map(|d| d.platform().as_ref())
                .map(|p| format!("{}/{}", p.os(), p.architecture()))
                .collect();
            Error::not_found(format!(
                "a manifest for platform {platform} (the index has: {})",
                if have.is_empty() {
                    "none".to_string()
                } else {
                    have.join(", ")
                }
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = r#"{
      "schemaVersion": 2,
      "mediaType": "application/vnd.docker.distribution.manifest.list.v2+json",
      "manifests": [
        {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "size": 1,
         "digest": "sha256:1111111111111111111111111111111111111111111111111111111111111111",
         "platform": {"architecture": "arm", "os": "linux", "variant": "v6"}},
        {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "size": 1,
         "digest": "sha256:2222222222222222222222222222222222222222222222222222222222222222",
         "platform": {"architecture": "arm", "os": "linux", "variant": "v7"}},
        {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "size": 1,
         "digest": "sha256:3333333333333333333333333333333333333333333333333333333333333333",
         "platform": {"architecture": "amd64", "os": "linux"}},
        {"mediaType": "application/vnd.docker.distribution.manifest.v2+json", "size": 1,
         "digest": "sha256:4444444444444444444444444444444444444444444444444444444444444444",
         "platform": {"architecture": "arm64", "os": "linux"}}
      ]
    }"#;

    fn pick(p: &str) -> Result<String> {
        let (mt, doc) = parse_document(INDEX.as_bytes(), "test").unwrap();
        assert_eq!(mt, DOCKER_MANIFEST_LIST);
        let Document::Index(index) = doc else {
            panic!("not an index")
        };
        select_platform(&index, &PlatformSpec::parse(p).unwrap())
            .map(|d| d.digest().to_string()[7..8].to_string())
    }

    #[test]
    fn selects_by_os_arch_and_variant() {
        assert_eq!(pick("linux/amd64").unwrap(), "3");
        assert_eq!(pick("linux/arm/v7").unwrap(), "2");
        assert_eq!(pick("linux/arm").unwrap(), "1");
        assert_eq!(pick("linux/arm64/v8").unwrap(), "4");
        let err = pick("linux/s390x").unwrap_err().to_string();
        assert!(err.contains("linux/amd64"), "{err}");
    }

    #[test]
    fn sniffs_compression() {
        assert_eq!(Compression::sniff(&[0x1f, 0x8b, 8]), Compression::Gzip);
        assert_eq!(
            Compression::sniff(&[0x28, 0xb5, 0x2f, 0xfd]),
            Compression::Zstd
        );
        assert_eq!(Compression::sniff(b"bin/"), Compression::None);
        assert_eq!(
            Compression::from_media_type(DOCKER_LAYER_GZIP).unwrap(),
            Compression::Gzip
        );
        assert!(Compression::from_media_type("text/plain").is_err());
    }
}
