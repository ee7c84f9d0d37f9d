//! Content digests (sha256 and sha512) and readers/writers that hash what
//! passes through them, so content is verified while it streams.

use std::fmt;
use std::io::{self, Read, Write};
use std::str::FromStr;

use sha2::{Digest as _, Sha256, Sha512};

use crate::error::{Error, Result};

/// A supported digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Algorithm {
    Sha256,
    Sha512,
}

impl Algorithm {
    /// Name as used in digests and in the blob directory layout.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "sha256",
            Algorithm::Sha512 => "sha512",
        }
    }

    fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha256 => 64,
            Algorithm::Sha512 => 128,
        }
    }

    /// A fresh hasher of this algorithm.
    pub fn hasher(self) -> Hasher {
        match self {
            Algorithm::Sha256 => Hasher::Sha256(Sha256::new()),
            Algorithm::Sha512 => Hasher::Sha512(Box::new(Sha512::new())),
        }
    }
}

/// A validated content digest, `algorithm:lowercase-hex`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    algorithm: Algorithm,
    hex: String,
}

impl Digest {
    /// Build from parts, validating the hex.
    pub fn new(algorithm: Algorithm, hex: &str) -> Result<Self> {
        let full = format!("{}:{hex}", algorithm.name());
        if hex.len() != algorithm.hex_len() {
            return Err(Error::InvalidDigest {
                digest: full,
                reason: format!(
                    "{} digests have {} hex digits",
                    algorithm.name(),
                    algorithm.hex_len()
                ),
            });
        }
        if !hex
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Err(Error::InvalidDigest {
                digest: full,
                reason: "not lowercase hexadecimal".into(),
            });
        }
        Ok(Digest {
            algorithm,
            hex: hex.to_string(),
        })
    }

    /// The sha256 digest of `data`.
    pub fn sha256_of(data: &[u8]) -> Digest {
        let mut h = Algorithm::Sha256.hasher();
        h.update(data);
        h.finish()
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }

    /// The hex part alone.
    pub fn hex(&self) -> &str {
        &self.hex
    }

    /// The first 12 hex digits, as `docker images` shows image ids.
    pub fn short(&self) -> &str {
        &self.hex[..12]
    }

    /// As an oci-spec digest (for descriptors).
    pub fn to_oci(&self) -> oci_spec::image::Digest {
        oci_spec::image::Digest::from_str(&self.to_string())
            .expect("a validated sha256/sha512 digest is a valid OCI digest")
    }

    /// From an oci-spec digest, refusing algorithms other than sha256/sha512.
    pub fn from_oci(d: &oci_spec::image::Digest) -> Result<Self> {
        d.to_string().parse()
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.algorithm.name(), self.hex)
    }
}

impl FromStr for Digest {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let (alg, hex) = s.split_once(':').ok_or_else(|| Error::InvalidDigest {
            digest: s.to_string(),
            reason: "expected algorithm:hex".into(),
        })?;
        let algorithm = match alg {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            other => {
                return Err(Error::InvalidDigest {
                    digest: s.to_string(),
                    reason: format!("unsupported algorithm {other:?} (sha256 and sha512 are)"),
                })
            }
        };
        Digest::new(algorithm, hex)
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// An incremental hasher of either algorithm.
#[derive(Clone)]
pub enum Hasher {
    Sha256(Sha256),
    // Boxed: the sha512 state is twice the size and rarely used.
    Sha512(Box<Sha512>),
}

impl Hasher {
    pub fn update(&mut self, data: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(data),
            Hasher::Sha512(h) => h.update(data),
        }
    }

    pub fn finish(self) -> Digest {
        let (algorithm, bytes) = match self {
            Hasher::Sha256(h) => (Algorithm::Sha256, h.finalize().to_vec()),
            Hasher::Sha512(h) => (Algorithm::Sha512, h.finalize().to_vec()),
        };
        let hex = bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        Digest { algorithm, hex }
    }
}

/// A reader that hashes and counts every byte read through it.
pub struct HashingReader<R> {
    inner: R,
    hasher: Hasher,
    count: u64,
}

impl<R: Read> HashingReader<R> {
    pub fn new(inner: R, algorithm: Algorithm) -> Self {
        HashingReader {
            inner,
            hasher: algorithm.hasher(),
            count: 0,
        }
    }

    /// Bytes read so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The inner reader, abandoning the hash.
    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Read the rest of the stream (so the hash covers all of it) and return
    /// the digest and the total length.
    pub fn finish(mut self) -> io::Result<(Digest, u64, R)> {
        io::copy(&mut self, &mut io::sink())?;
        Ok((self.hasher.finish(), self.count, self.inner))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }
}

/// A writer that hashes and counts every byte written through it.
pub struct HashingWriter<W> {
    inner: W,
    hasher: Hasher,
    count: u64,
}

impl<W: Write> HashingWriter<W> {
    pub fn new(inner: W, algorithm: Algorithm) -> Self {
        HashingWriter {
            inner,
            hasher: algorithm.hasher(),
            count: 0,
        }
    }

    /// Bytes written so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn finish(self) -> (Digest, u64, W) {
        (self.hasher.finish(), self.count, self.inner)
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Compare a computed digest/size with the expected ones.
pub fn verify(
    what: &str,
    expected: &Digest,
    actual: &Digest,
    expected_size: Option<u64>,
    actual_size: u64,
) -> Result<()> {
    if expected != actual {
        return Err(Error::DigestMismatch {
            what: what.to_string(),
            expected: expected.to_string(),
            actual: actual.to_string(),
        });
    }
    if let Some(size) = expected_size {
        if size != actual_size {
            return Err(Error::SizeMismatch {
                what: what.to_string(),
                expected: size,
                actual: actual_size,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_sha256_and_sha512() {
        assert_eq!(
            Digest::sha256_of(b"").to_string(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let mut h = Algorithm::Sha512.hasher();
        h.update(b"abc");
        assert!(h
            .finish()
            .to_string()
            .starts_with("sha512:ddaf35a193617aba"));
    }

    #[test]
    fn parse_rejects_bad_digests() {
        assert!("sha256:abc".parse::<Digest>().is_err());
        assert!("md5:d41d8cd98f00b204e9800998ecf8427e"
            .parse::<Digest>()
            .is_err());
        assert!(format!("sha256:{}", "A".repeat(64))
            .parse::<Digest>()
            .is_err());
        let ok: Digest = format!("sha512:{}", "0".repeat(128)).parse().unwrap();
        assert_eq!(ok.algorithm(), Algorithm::Sha512);
    }

    #[test]
    fn hashing_reader_hashes_the_whole_stream() {
        let data = vec![7u8; 100_000];
        let mut r = HashingReader::new(&data[..], Algorithm::Sha256);
        let mut first = [0u8; 10];
        r.read_exact(&mut first).unwrap();
        let (d, n, _) = r.finish().unwrap();
        assert_eq!(n, 100_000);
        assert_eq!(d, Digest::sha256_of(&data));
    }
}
