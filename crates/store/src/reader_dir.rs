//! The index folder as a reader sees it: readers need read access only.
//!
//! tantivy takes a lock file while it opens segments and reads the writer's list of
//! managed files; both fail for a reader that may not write the folder (another
//! account, a read-only mount, a backup). A reader never deletes anything, so where
//! the lock cannot be created it goes on without it (`Snapshot::open` checks that the
//! segments it opened are those of the metadata it read, and retries), and an
//! unreadable list of managed files reads as none.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tantivy::directory::error::{DeleteError, LockError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    Directory, DirectoryLock, FileHandle, Lock, MmapDirectory, WatchCallback, WatchHandle, WritePtr,
};

#[derive(Debug, Clone)]
pub(crate) struct ReaderDirectory {
    inner: MmapDirectory,
}

impl ReaderDirectory {
    pub(crate) fn open(path: &Path) -> tantivy::Result<ReaderDirectory> {
        Ok(ReaderDirectory {
            inner: MmapDirectory::open(path)?,
        })
    }
}

fn may_not_write(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem
    )
}

impl Directory for ReaderDirectory {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        self.inner.get_file_handle(path)
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        self.inner.delete(path)
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        self.inner.exists(path)
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        self.inner.open_write(path)
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        match self.inner.atomic_read(path) {
            // The writer's bookkeeping, of no use to a reader.
            Err(OpenReadError::IoError { io_error, .. })
                if path == Path::new(".managed.json") && may_not_write(&io_error) =>
            {
                Err(OpenReadError::FileDoesNotExist(PathBuf::from(path)))
            }
            other => other,
        }
    }

    fn atomic_write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        self.inner.atomic_write(path, data)
    }

    fn sync_directory(&self) -> io::Result<()> {
        self.inner.sync_directory()
    }

    fn acquire_lock(&self, lock: &Lock) -> Result<DirectoryLock, LockError> {
        match self.inner.acquire_lock(lock) {
            Err(LockError::IoError(e)) if may_not_write(&e) => {
                Ok(DirectoryLock::from(Box::new(())))
            }
            other => other,
        }
    }

    fn watch(&self, watch_callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        self.inner.watch(watch_callback)
    }
}
