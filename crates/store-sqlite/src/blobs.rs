//! Blob files: `blobs/xx/yy/<id hex>` under the data directory. A blob is written
//! to `tmp/`, fsynced, and renamed into place with its directory fsynced (or the
//! rename may not survive a crash) before any row that refers to it commits; the
//! directory fsyncs of one transaction run together ([`sync_dirs`]).

use crate::faults::{Faults, Point};
use buudien_store::{BlobId, Result, StoreError};
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
    /// On failure the file is removed (by the drop of the half-made `TempBlob`).
    pub fn write_parts(dir: &Path, faults: &Faults, parts: &[&[u8]]) -> Result<TempBlob> {
        let name = format!("{}.{:016x}.tmp", std::process::id(), rand::random::<u64>());
        let path = dir.join("tmp").join(name);
        let mut f = File::create_new(&path)?;
        let tmp = TempBlob { path: Some(path) };
        faults.check(Point::BlobWrite)?;
        for part in parts {
            f.write_all(part)?;
        }
        faults.check(Point::BlobFsync)?;
        f.sync_all()?;
        Ok(tmp)
    }

    /// Renames the file to the blob's place and fsyncs the directories touched. When
    /// the rename fails the temporary file is removed; when the directory fsync fails
    /// the placed file stays (the caller removes it if no row took it, as the group
    /// commit does, see `group`).
    #[cfg(test)]
    pub fn place(self, dir: &Path, faults: &Faults, blob: &BlobId) -> Result<()> {
        self.place_unsynced(dir, faults, blob)?;
        sync_dirs(dir, faults, &[*blob])
    }

    /// Renames the file to the blob's place (creating its directories, durably) but
    /// leaves the fsync of its directory to [`sync_dirs`], which the caller must run
    /// before it commits a row that refers to the blob: several placements then share
    /// their directory fsyncs. When the rename fails the temporary file is removed.
    pub fn place_unsynced(mut self, dir: &Path, faults: &Faults, blob: &BlobId) -> Result<()> {
        let dest = path(dir, blob);
        if let Some(parent) = dest.parent() {
            ensure_dir(parent)?;
        }
        if let Some(src) = &self.path {
            faults.check(Point::BlobRename)?;
            fs::rename(src, &dest)?;
            self.path = None;
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

/// Most directory fsyncs run at once by [`sync_dirs`].
const SYNC_THREADS: usize = 8;

/// Fsyncs the directories of `placed` blobs (each once), so that their renames survive
/// a crash. Several directories are synced at once: the file system then commits
/// their entries together (one journal commit for many, on ext4 and xfs).
pub fn sync_dirs(dir: &Path, faults: &Faults, placed: &[BlobId]) -> Result<()> {
    let mut dirs: Vec<PathBuf> = placed
        .iter()
        .filter_map(|b| path(dir, b).parent().map(Path::to_path_buf))
        .collect();
    dirs.sort();
    dirs.dedup();
    for _ in &dirs {
        faults.check(Point::DirFsync)?;
    }
    let sync = |d: &PathBuf| -> Result<()> { Ok(File::open(d)?.sync_all()?) };
    if dirs.len() <= 1 {
        return dirs.iter().try_for_each(sync);
    }
    let chunk = dirs.len().div_ceil(SYNC_THREADS);
    std::thread::scope(|s| {
        let handles: Vec<_> = dirs
            .chunks(chunk)
            .map(|part| s.spawn(move || part.iter().try_for_each(sync)))
            .collect();
        handles.into_iter().try_for_each(|h| {
            h.join()
                .unwrap_or_else(|_| Err(StoreError::Io("directory fsync thread failed".into())))
        })
    })
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

/// Calls `f` with the blob files of each leaf directory (`blobs/xx/yy/`) that holds
/// any, one directory at a time (at most 65,536 of them, each as big as the files
/// in it), so memory stays bounded by one directory. Names that are not a blob's
/// lower-case hex are left out.
pub fn each_placed(dir: &Path, mut f: impl FnMut(Vec<BlobId>) -> Result<()>) -> Result<()> {
    let subdirs = |d: &Path| -> Result<Vec<PathBuf>> {
        let mut v = Vec::new();
        for e in fs::read_dir(d)? {
            let e = e?;
            if e.file_type()?.is_dir() {
                v.push(e.path());
            }
        }
        Ok(v)
    };
    for top in subdirs(&dir.join("blobs"))? {
        for leaf in subdirs(&top)? {
            let mut ids = Vec::new();
            for e in fs::read_dir(&leaf)? {
                let e = e?;
                let name = e.file_name();
                let Some(name) = name.to_str() else { continue };
                if let Some(id) = BlobId::from_hex(name).filter(|id| id.to_hex() == name)
                    && e.file_type()?.is_file()
                {
                    ids.push(id);
                }
            }
            if !ids.is_empty() {
                f(ids)?;
            }
        }
    }
    Ok(())
}

/// A temporary file younger than this may belong to a delivery still running in
/// another process (`buudien deliver` beside `serve`), so it is left alone unless its
/// writer is known to be gone.
const TMP_GRACE: std::time::Duration = std::time::Duration::from_secs(3600);

/// Removes files under `tmp/` left by a crashed writer; returns how many. A file is
/// left if it is older than an hour, or if its name (`<pid>.<random>.tmp`, see
/// [`TempBlob::write_parts`]) names a process that no longer runs, so the files of a
/// server killed mid-delivery go at its restart instead of an hour later.
///
/// Whether a process runs is read from `/proc` (Linux); without it only the age
/// counts. A writer in another PID namespace looks gone: its file is removed, its
/// rename then fails and it reports a temporary error (the sender retries), so
/// nothing is lost.
pub fn clean_tmp(dir: &Path) -> Result<usize> {
    let procfs = Path::new("/proc/self").exists();
    let mut n = 0;
    for entry in fs::read_dir(dir.join("tmp"))? {
        let entry = entry?;
        let meta = entry.metadata()?;
        if !meta.is_file() {
            continue;
        }
        let old = meta
            .modified()
            .ok()
            .and_then(|m| m.elapsed().ok())
            .is_none_or(|age| age >= TMP_GRACE);
        let orphan = procfs
            && writer_pid(&entry.file_name().to_string_lossy())
                .is_some_and(|pid| pid != std::process::id() && !running(pid));
        if old || orphan {
            match fs::remove_file(entry.path()) {
                Ok(()) => n += 1,
                // Its writer placed or removed it meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(n)
}

/// The writer's process id in a temporary blob's name (`<pid>.<hex>.tmp`).
fn writer_pid(name: &str) -> Option<u32> {
    let (pid, rest) = name.split_once('.')?;
    if !rest.ends_with(".tmp") || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// True when process `pid` runs (in this PID namespace), per `/proc`.
fn running(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writer_pid_reads_only_our_names() {
        assert_eq!(writer_pid("1234.00000000deadbeef.tmp"), Some(1234));
        assert_eq!(writer_pid("1234.tmp"), None);
        assert_eq!(writer_pid("x1234.00ff.tmp"), None);
        assert_eq!(writer_pid(".00ff.tmp"), None);
        assert_eq!(writer_pid("1234.00ff"), None);
        assert_eq!(writer_pid("99999999999999999999.00ff.tmp"), None);
    }

    #[test]
    fn clean_tmp_removes_files_of_dead_writers_only() -> Result<()> {
        let dir = tempfile::tempdir()?;
        fs::create_dir_all(dir.path().join("tmp"))?;
        // A process that ran and is gone: its pid is free (until reused).
        let mut child = std::process::Command::new("true").spawn()?;
        let dead = child.id();
        child.wait()?;
        let ours = TempBlob::write_parts(dir.path(), &Faults::default(), &[b"live"])?;
        let gone = dir.path().join("tmp").join(format!("{dead}.00ff.tmp"));
        let foreign = dir.path().join("tmp").join("notes.txt");
        fs::write(&gone, b"crashed")?;
        fs::write(&foreign, b"kept: young and not ours")?;
        let removed = clean_tmp(dir.path())?;
        if Path::new("/proc/self").exists() && !running(dead) {
            assert_eq!(removed, 1);
            assert!(!gone.exists());
        }
        assert!(foreign.exists());
        // The live writer's file stays and can still be placed.
        ours.place(dir.path(), &Faults::default(), &BlobId([7; 32]))?;
        assert!(path(dir.path(), &BlobId([7; 32])).exists());
        Ok(())
    }
}

/// A blob file read on the calling thread: each read is a plain `read(2)`, which for
/// mail the page cache holds takes microseconds, where `tokio::fs::File` handed
/// every 64 KiB chunk to the blocking pool and back (a POP3 RETR of 1 MiB was 16
/// such hand-offs). A read the disk must serve blocks the thread for that read, as
/// it does in a server with a process per session.
pub struct HereFile(pub File);

impl tokio::io::AsyncRead for HereFile {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        use std::io::Read;
        let n = loop {
            match self.0.read(buf.initialize_unfilled()) {
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        buf.advance(n);
        std::task::Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod here_tests {
    use super::HereFile;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn reads_a_file_to_its_end_in_small_reads() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(&p, &data).unwrap();
        let mut r = HereFile(std::fs::File::open(&p).unwrap());
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = r.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, data);
    }
}
