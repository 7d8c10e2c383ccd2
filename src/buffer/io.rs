//! The narrow filesystem edge of the writer, so tests can make writes fail (disk full, I/O
//! errors) without a full disk. Readers read files directly: their failures are damaged bytes,
//! which tests make by editing real files.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;
use std::sync::Arc;

/// Creates, removes and syncs the writer's files.
pub trait Fs: Send + Sync + 'static {
    /// Creates `path`, failing if it exists.
    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn SegmentFile>>;
    /// Opens an existing file for appending (recovery seals a segment with it).
    fn open_append(&self, path: &Path) -> io::Result<Arc<dyn SegmentFile>>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, removals, renames) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// One file being appended to. Shared between the writer and the background syncer, so every
/// method takes `&self`.
pub trait SegmentFile: Send + Sync {
    /// Appends all of `buf` with as few system calls as the OS allows (one, normally).
    fn append(&self, buf: &[u8]) -> io::Result<()>;
    /// Makes what was appended durable (`fdatasync`).
    fn sync(&self) -> io::Result<()>;
    /// Cuts the file to `len` bytes (undoing a partial append).
    fn truncate(&self, len: u64) -> io::Result<()>;
}

/// The real filesystem.
#[derive(Clone, Copy, Debug, Default)]
pub struct StdFs;

impl Fs for StdFs {
    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn SegmentFile>> {
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .open(path)?;
        Ok(Arc::new(file))
    }

    fn open_append(&self, path: &Path) -> io::Result<Arc<dyn SegmentFile>> {
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(Arc::new(file))
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

impl SegmentFile for File {
    fn append(&self, buf: &[u8]) -> io::Result<()> {
        (&*self).write_all(buf)
    }

    fn sync(&self) -> io::Result<()> {
        self.sync_data()
    }

    fn truncate(&self, len: u64) -> io::Result<()> {
        self.set_len(len)
    }
}
