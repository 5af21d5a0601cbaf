//! Blob files: `blobs/xx/yy/<sha256 hex>` under the data directory. A blob is written
//! to `tmp/`, fsynced, and renamed into place with its directory fsynced (or the
//! rename may not survive a crash).

use buudien_store::{BlobId, Result};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where a blob's file lives.
pub fn path(dir: &Path, blob: &BlobId) -> PathBuf {
    let hex = blob.to_hex();
    dir.join("blobs").join(&hex[..2]).join(&hex[2..4]).join(hex)
}

/// A written, fsynced temporary file not yet in place. Removed on drop unless placed.
pub struct TempBlob {
    path: Option<PathBuf>,
}

impl TempBlob {
    /// Writes the concatenation of `parts` to a new file under `tmp/` and fsyncs it.
    pub fn write_parts(dir: &Path, parts: &[&[u8]]) -> Result<TempBlob> {
        let name = format!("{}.{:016x}.tmp", std::process::id(), rand::random::<u64>());
        let path = dir.join("tmp").join(name);
        let mut tmp = TempBlob {
            path: Some(path.clone()),
        };
        let mut f = File::create_new(&path)?;
        for part in parts {
            f.write_all(part)?;
        }
        f.sync_all()?;
        let _ = &mut tmp;
        Ok(tmp)
    }

    /// Renames the file to the blob's place and fsyncs the directories touched.
    pub fn place(mut self, dir: &Path, blob: &BlobId) -> Result<()> {
        let dest = path(dir, blob);
        if let Some(parent) = dest.parent() {
            ensure_dir(parent)?;
        }
        if let Some(src) = self.path.take() {
            fs::rename(&src, &dest)?;
        }
        if let Some(parent) = dest.parent() {
            File::open(parent)?.sync_all()?;
        }
        Ok(())
    }
}

impl Drop for TempBlob {
    fn drop(&mut self) {
        if let Some(p) = self.path.take() {
            let _ = fs::remove_file(p);
        }
    }
}

/// Creates `dir` (and missing parents), fsyncing each parent whose entry was added.
fn ensure_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        ensure_dir(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(()),
        Err(e) => return Err(e.into()),
    }
    if let Some(parent) = dir.parent() {
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

/// Deletes a blob's file; a file already gone is fine.
pub fn remove(dir: &Path, blob: &BlobId) -> Result<()> {
    match fs::remove_file(path(dir, blob)) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// A temporary file younger than this may belong to a delivery still running in
/// another process (`buudien deliver` beside `serve`), so it is left alone.
const TMP_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes files under `tmp/` older than an hour (left by a crashed writer); returns
/// how many.
pub fn clean_tmp(dir: &Path) -> Result<usize> {
    let mut n = 0;
    for entry in fs::read_dir(dir.join("tmp"))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        let old = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_none_or(|age| age >= TMP_GRACE);
        if meta.is_file() && old {
            fs::remove_file(entry.path())?;
            n += 1;
        }
    }
    Ok(n)
}
