//! The store-wide lock: shared for builds and reads, exclusive for prune.

use fs4::fs_std::FileExt;

use super::error::IoContext;
use super::{Result, Store};

/// A held lock on the store; released on drop.
#[derive(Debug)]
pub struct Lock {
    file: fs_err::File,
}

impl Store {
    fn lock_file(&self) -> Result<(fs_err::File, std::path::PathBuf)> {
        let path = self.root.join("lock");
        let file = fs_err::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)
            .at(&path)?;
        Ok((file, path))
    }

    /// Waits for, then holds, a shared lock (many builds at once).
    pub fn lock_shared(&self) -> Result<Lock> {
        let (file, path) = self.lock_file()?;
        FileExt::lock_shared(file.file()).at(path)?;
        Ok(Lock { file })
    }

    /// Waits for, then holds, the exclusive lock (no build runs meanwhile).
    pub fn lock_exclusive(&self) -> Result<Lock> {
        let (file, path) = self.lock_file()?;
        FileExt::lock_exclusive(file.file()).at(path)?;
        Ok(Lock { file })
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let _ = FileExt::unlock(self.file.file());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exclusive_waits_for_shared() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let shared = store.lock_shared().unwrap();
        let also_shared = store.lock_shared().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let s2 = store.clone();
        let t = std::thread::spawn(move || {
            let _x = s2.lock_exclusive().unwrap();
            tx.send(()).unwrap();
        });
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert!(
            rx.try_recv().is_err(),
            "exclusive lock taken while shared locks were held"
        );
        drop(shared);
        drop(also_shared);
        rx.recv_timeout(std::time::Duration::from_secs(5)).unwrap();
        t.join().unwrap();
    }
}
