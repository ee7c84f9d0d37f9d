//! The content store: blobs by digest under `<root>/blobs/<alg>/<hex>`.
//!
//! Every blob is verified against its digest on the way in, written to a
//! temporary name under `<root>/ingest`, fsynced and renamed, so a crash
//! never leaves a torn or unverified blob under its final name.

use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::digest::{self, Algorithm, Digest, HashingWriter};
use crate::error::{show, Error, IoContext, Result};

/// Content-addressed blob storage.
#[derive(Debug, Clone)]
pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

impl ContentStore {
    /// Open (creating if needed) the content store under `root`.
    pub fn open(root: &Path) -> Result<Self> {
        let blobs = root.join("blobs");
        let ingest = root.join("ingest");
        for dir in [blobs.join("sha256"), blobs.join("sha512"), ingest.clone()] {
            fs::create_dir_all(&dir)
                .ctx(|| format!("creating content store directory {}", show(&dir)))?;
        }
        Ok(ContentStore { blobs, ingest })
    }

    /// Where the blob with this digest lives (whether or not it exists).
    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.blobs
            .join(digest.algorithm().name())
            .join(digest.hex())
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    /// Size in bytes of a stored blob.
    pub fn size(&self, digest: &Digest) -> Result<u64> {
        let path = self.path(digest);
        match fs::metadata(&path) {
            Ok(m) => Ok(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(Error::not_found(format!("blob {digest}")))
            }
            Err(e) => Err(Error::io(format!("reading blob {digest}"), e)),
        }
    }

    /// Open a stored blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        match File::open(self.path(digest)) {
            Ok(f) => Ok(f),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(Error::not_found(format!("blob {digest}")))
            }
            Err(e) => Err(Error::io(format!("opening blob {digest}"), e)),
        }
    }

    /// Read a (small) blob whole, verifying it again: manifests and configs
    /// are read this way and a flipped bit on disk must not go unnoticed.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut data = Vec::new();
        self.open_blob(digest)?
            .read_to_end(&mut data)
            .ctx(|| format!("reading blob {digest}"))?;
        let mut h = digest.algorithm().hasher();
        h.update(&data);
        digest::verify(
            &format!("stored blob {digest}"),
            digest,
            &h.finish(),
            None,
            0,
        )?;
        Ok(data)
    }

    /// Start writing a blob. With `expected`, the content must hash to that
    /// digest (and have that size if given); without, it is hashed with `algorithm`.
    pub fn writer(
        &self,
        expected: Option<(Digest, Option<u64>)>,
        algorithm: Algorithm,
    ) -> Result<BlobWriter> {
        let temp = NamedTempFile::with_prefix_in("blob-", &self.ingest)
            .ctx(|| format!("creating a temporary blob in {}", show(&self.ingest)))?;
        let file = temp
            .reopen()
            .ctx(|| format!("opening temporary blob {}", show(temp.path())))?;
        let algorithm = expected
            .as_ref()
            .map(|(d, _)| d.algorithm())
            .unwrap_or(algorithm);
        Ok(BlobWriter {
            store: self.clone(),
            out: HashingWriter::new(BufWriter::with_capacity(1 << 20, file), algorithm),
            temp,
            expected,
        })
    }

    /// Store a blob announced as `digest` (and `size`, when known) from a
    /// reader: the API a registry client uses while pulling. Nothing is left
    /// in the store unless the content verifies.
    pub fn ingest(&self, digest: &Digest, size: Option<u64>, mut reader: impl Read) -> Result<()> {
        if self.contains(digest) {
            // Already stored, but the incoming copy is still checked: a
            // truncated or substituted stream (or a wrong announced size)
            // is an error even when a good copy is here, or a name would
            // end up pointing at a descriptor nobody verified.
            return self.verify_stream(digest, size, reader);
        }
        let mut w = self.writer(Some((digest.clone(), size)), digest.algorithm())?;
        io::copy(&mut reader, &mut w).ctx(|| format!("writing blob {digest}"))?;
        w.commit()?;
        Ok(())
    }

    /// Read `reader` to its end and check it hashes to `digest` (and has
    /// `size` bytes, when given), storing nothing.
    pub fn verify_stream(
        &self,
        digest: &Digest,
        size: Option<u64>,
        reader: impl Read,
    ) -> Result<()> {
        let (actual, n, _) = digest::HashingReader::new(reader, digest.algorithm())
            .finish()
            .ctx(|| format!("reading blob {digest}"))?;
        digest::verify(&format!("blob {digest}"), digest, &actual, size, n)
    }

    /// Check that a blob a descriptor names is stored with the size the
    /// descriptor gives. Stored blobs were verified against their digest on
    /// the way in (they are named by it), so this completes the check of a
    /// descriptor before a name may point at what refers to it.
    pub fn check_descriptor(&self, what: &str, digest: &Digest, size: u64) -> Result<()> {
        let stored = match self.size(digest) {
            Ok(s) => s,
            Err(Error::NotFound { .. }) => {
                return Err(Error::Invalid(format!(
                    "{what}: blob {digest} is not in the store"
                )))
            }
            Err(e) => return Err(e),
        };
        digest::verify(
            &format!("{what}: blob {digest}"),
            digest,
            digest,
            Some(size),
            stored,
        )
    }

    /// Store bytes, returning their sha256 digest.
    pub fn put(&self, data: &[u8]) -> Result<Digest> {
        let d = Digest::sha256_of(data);
        if !self.contains(&d) {
            self.ingest(&d, Some(data.len() as u64), data)?;
        }
        Ok(d)
    }

    /// Remove a blob (garbage collection only).
    pub fn delete(&self, digest: &Digest) -> Result<()> {
        match fs::remove_file(self.path(digest)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("removing blob {digest}"), e)),
        }
    }

    /// Every blob in the store.
    pub fn list(&self) -> Result<Vec<Digest>> {
        let mut out = Vec::new();
        for alg in [Algorithm::Sha256, Algorithm::Sha512] {
            let dir = self.blobs.join(alg.name());
            for entry in fs::read_dir(&dir).ctx(|| format!("listing {}", show(&dir)))? {
                let entry = entry.ctx(|| format!("listing {}", show(&dir)))?;
                if let Some(name) = entry.file_name().to_str() {
                    // Anything not named like a digest is not ours to judge; skip it.
                    if let Ok(d) = Digest::new(alg, name) {
                        out.push(d);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Remove leftovers of interrupted writes. Only call while no writer can
    /// be active (under the exclusive store lock).
    pub fn clean_ingest(&self) -> Result<usize> {
        let mut n = 0;
        for entry in fs::read_dir(&self.ingest).ctx(|| format!("listing {}", show(&self.ingest)))? {
            let entry = entry.ctx(|| format!("listing {}", show(&self.ingest)))?;
            let path = entry.path();
            let res = if path.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            res.ctx(|| format!("removing interrupted write {}", show(&path)))?;
            n += 1;
        }
        Ok(n)
    }

    /// Directory for temporary files on the same filesystem as the blobs.
    pub fn ingest_dir(&self) -> &Path {
        &self.ingest
    }
}

/// A blob being written. Dropped without [`BlobWriter::commit`], it leaves nothing behind.
pub struct BlobWriter {
    store: ContentStore,
    out: HashingWriter<BufWriter<File>>,
    temp: NamedTempFile,
    expected: Option<(Digest, Option<u64>)>,
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

impl BlobWriter {
    /// Verify, fsync and move the blob to its final name; returns its digest.
    pub fn commit(self) -> Result<Digest> {
        let (actual, size, buf) = self.out.finish();
        let what = match &self.expected {
            Some((d, _)) => format!("blob {d}"),
            None => format!("blob {actual}"),
        };
        let file = buf
            .into_inner()
            .map_err(|e| Error::io(format!("writing {what}"), e.into_error()))?;
        if let Some((expected, expected_size)) = &self.expected {
            digest::verify(&what, expected, &actual, *expected_size, size)?;
        }
        file.sync_all().ctx(|| format!("syncing {what}"))?;
        let dest = self.store.path(&actual);
        self.temp
            .persist(&dest)
            .map_err(|e| Error::io(format!("storing {what} as {}", show(&dest)), e.error))?;
        sync_dir(dest.parent().expect("blob paths have a parent"))?;
        Ok(actual)
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.out.count()
    }
}

/// Reads from `inner` and writes every byte read into `out` as well: how a
/// stream is stored while it is being unpacked.
pub struct TeeReader<'a, R> {
    pub inner: R,
    pub out: &'a mut BlobWriter,
}

impl<R: Read> Read for TeeReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.out.write_all(&buf[..n])?;
        Ok(n)
    }
}

/// fsync a directory so a rename into it survives a crash.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    let f = File::open(dir).ctx(|| format!("opening directory {}", show(dir)))?;
    f.sync_all()
        .ctx(|| format!("syncing directory {}", show(dir)))
}
