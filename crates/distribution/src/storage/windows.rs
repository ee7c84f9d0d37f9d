//! Stored objects read as read-only memory mappings, a window at a time.
//!
//! Each window becomes one body chunk for the HTTP layer with no read copy: over TLS the
//! encryption reads the mapping; on plain HTTP each window is registered with `zerocopy`
//! and leaves with sendfile(2), so the mapping is never even touched. A reader holds one
//! or two windows at a time, which bounds the mapped bytes a transfer adds to the RSS.

use std::fs::File;
use std::sync::Arc;

/// Bytes per window (and so per body chunk handed to the HTTP layer).
pub(crate) const WINDOW: u64 = 2 << 20;

/// One open object.
pub(crate) struct Object {
    file: Arc<File>,
    size: u64,
}

impl Object {
    pub(crate) fn new(file: File) -> std::io::Result<Object> {
        let size = file.metadata()?.len();
        Ok(Object {
            file: Arc::new(file),
            size,
        })
    }

    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// The object's bytes from `at`, up to `end` and at most `WINDOW` of them, mapped.
    pub(crate) fn window(&self, at: u64, end: u64) -> std::io::Result<bytes::Bytes> {
        let len = end.min(self.size).saturating_sub(at).min(WINDOW) as usize;
        if len == 0 {
            return Ok(bytes::Bytes::new());
        }
        // SAFETY: stored objects are never rewritten or truncated in place: whole-object
        // writes go to a temporary name and are renamed over, blobs arrive by renaming a
        // finished upload, and deletion unlinks (which leaves existing mappings intact).
        // So mapped bytes cannot change or vanish under a reader.
        let map = unsafe {
            memmap2::MmapOptions::new()
                .offset(at)
                .len(len)
                .map(&*self.file)?
        };
        // Start reading a window of a blob that is not cached yet.
        let _ = map.advise(memmap2::Advice::WillNeed);
        let registration =
            crate::zerocopy::register(map.as_ptr(), map.len(), self.file.clone(), at);
        Ok(bytes::Bytes::from_owner(Window {
            _registration: registration,
            map,
        }))
    }
}

/// A mapped window. The registration is declared first so that it is dropped (and the
/// address forgotten) before the memory is unmapped.
struct Window {
    _registration: crate::zerocopy::Registration,
    map: memmap2::Mmap,
}

impl AsRef<[u8]> for Window {
    fn as_ref(&self) -> &[u8] {
        &self.map
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn windows_stop_at_the_window_size_and_the_range_end() {
        let data: Vec<u8> = (0..(WINDOW as usize * 2 + 100))
            .map(|i| (i % 251) as u8)
            .collect();
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(&data).unwrap();
        let o = Object::new(File::open(f.path()).unwrap()).unwrap();
        let end = data.len() as u64;
        let a = o.window(10, end).unwrap();
        assert_eq!(&a[..], &data[10..10 + WINDOW as usize]);
        let b = o.window(WINDOW * 2, end).unwrap();
        assert_eq!(&b[..], &data[WINDOW as usize * 2..]);
        let c = o.window(WINDOW + 5, WINDOW + 9).unwrap();
        assert_eq!(&c[..], &data[WINDOW as usize + 5..WINDOW as usize + 9]);
        assert!(o.window(end, end + 10).unwrap().is_empty());
    }
}
