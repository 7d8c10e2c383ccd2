//! Test doubles shared by the buffer's and the write-ahead appender's tests.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use super::{Fs, SegmentFile, StdFs};

/// A filesystem whose writes fail (as on a full disk) while `full` is set.
#[derive(Clone, Default)]
pub struct FlakyFs {
    pub full: Arc<AtomicBool>,
}

struct FlakyFile {
    inner: Arc<dyn SegmentFile>,
    full: Arc<AtomicBool>,
}

fn no_space() -> io::Error {
    io::Error::new(io::ErrorKind::StorageFull, "no space left on device")
}

impl Fs for FlakyFs {
    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn SegmentFile>> {
        if self.full.load(Ordering::SeqCst) {
            return Err(no_space());
        }
        Ok(Arc::new(FlakyFile {
            inner: StdFs.create_new(path)?,
            full: self.full.clone(),
        }))
    }
    fn open_append(&self, path: &Path) -> io::Result<Arc<dyn SegmentFile>> {
        StdFs.open_append(path)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        StdFs.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        StdFs.sync_dir(dir)
    }
}

impl SegmentFile for FlakyFile {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        if self.full.load(Ordering::SeqCst) {
            // A full disk takes part of a write before refusing the rest.
            self.inner.append(&buf[..buf.len() / 2])?;
            return Err(no_space());
        }
        self.inner.append(buf)
    }
    fn sync(&self) -> io::Result<()> {
        self.inner.sync()
    }
    fn truncate(&self, len: u64) -> io::Result<()> {
        self.inner.truncate(len)
    }
}
