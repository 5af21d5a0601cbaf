//! Where the literals of one APPEND wait until the command is complete (RFC 9051
//! §6.3.12, RFC 3502 MULTIAPPEND): small messages in memory, the rest in one unnamed
//! temporary file per command, so a session holds at most [`MEMORY_BUDGET`] octets of
//! message data however many or large its messages are.

use buudien_store::MessageSource;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

/// A message up to this size stays in memory (while the budget allows).
const SMALL: u64 = 64 * 1024;

/// Message octets one APPEND keeps in memory at most.
pub(crate) const MEMORY_BUDGET: usize = 1024 * 1024;

/// Octets gathered before they are written to the file.
const WRITE_AT: usize = 64 * 1024;

/// One message's place in the spool.
enum Item {
    Memory(Vec<u8>),
    File { offset: u64, len: u64 },
}

/// The spooled literals of the current APPEND command.
pub(crate) struct Spool {
    dir: Option<PathBuf>,
    file: Option<std::fs::File>,
    /// Octets written to the file.
    written: u64,
    /// Octets waiting to be written to the file (the current message's tail).
    pending: Vec<u8>,
    /// Octets held in memory by `Item::Memory`.
    in_memory: usize,
    items: Vec<Item>,
    /// The current message goes to the file.
    current_in_file: bool,
    /// Writing to the file failed: the APPEND will fail.
    failed: Option<std::io::Error>,
}

impl Spool {
    /// An empty spool whose file (if one is needed) goes to `dir`, or the system's
    /// temporary directory.
    pub(crate) fn new(dir: Option<PathBuf>) -> Spool {
        Spool {
            dir,
            file: None,
            written: 0,
            pending: Vec::new(),
            in_memory: 0,
            items: Vec::new(),
            current_in_file: false,
            failed: None,
        }
    }

    /// Forgets everything (the command failed or ended).
    pub(crate) fn clear(&mut self) {
        self.file = None;
        self.written = 0;
        self.pending.clear();
        self.in_memory = 0;
        self.items.clear();
        self.current_in_file = false;
        self.failed = None;
    }

    /// A literal of `size` octets begins.
    pub(crate) fn begin(&mut self, size: u64) {
        if let Err(e) = self.finish_current() {
            self.failed.get_or_insert(e);
        }
        let fits = size <= SMALL
            && self
                .in_memory
                .saturating_add(usize::try_from(size).unwrap_or(usize::MAX))
                <= MEMORY_BUDGET;
        if fits {
            self.in_memory += usize::try_from(size).unwrap_or(0);
            self.items.push(Item::Memory(Vec::new()));
            self.current_in_file = false;
        } else {
            self.items.push(Item::File {
                offset: self.written,
                len: 0,
            });
            self.current_in_file = true;
        }
    }

    /// More octets of the current literal. A write error is kept and reported by
    /// [`Spool::take`].
    pub(crate) fn chunk(&mut self, bytes: &[u8]) {
        match self.items.last_mut() {
            Some(Item::Memory(m)) => m.extend_from_slice(bytes),
            Some(Item::File { len, .. }) => {
                *len = len.saturating_add(bytes.len() as u64);
                self.pending.extend_from_slice(bytes);
                if self.pending.len() >= WRITE_AT
                    && self.failed.is_none()
                    && let Err(e) = self.write_pending()
                {
                    self.failed = Some(e);
                }
                if self.failed.is_some() {
                    self.pending.clear();
                }
            }
            None => {}
        }
    }

    /// Writes the waiting octets to the file, creating it on first use.
    fn write_pending(&mut self) -> std::io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let file = match &mut self.file {
            Some(f) => f,
            None => {
                let dir = self.dir.clone().unwrap_or_else(std::env::temp_dir);
                self.file.insert(tempfile::tempfile_in(dir)?)
            }
        };
        file.write_all(&self.pending)?;
        self.written = self.written.saturating_add(self.pending.len() as u64);
        self.pending.clear();
        Ok(())
    }

    fn finish_current(&mut self) -> std::io::Result<()> {
        if self.current_in_file {
            self.write_pending()?;
            self.current_in_file = false;
        }
        Ok(())
    }

    /// The spooled messages in order, as the store takes them.
    pub(crate) fn take(&mut self) -> std::io::Result<Vec<MessageSource>> {
        if let Some(e) = self.failed.take() {
            self.clear();
            return Err(e);
        }
        if let Err(e) = self.finish_current() {
            self.clear();
            return Err(e);
        }
        let file = self.file.take().map(Arc::new);
        let items = std::mem::take(&mut self.items);
        self.clear();
        let mut out = Vec::with_capacity(items.len());
        for item in items {
            out.push(match (item, &file) {
                (Item::Memory(m), _) => MessageSource::Bytes(m),
                (Item::File { offset, len }, Some(f)) => MessageSource::File {
                    file: Arc::clone(f),
                    offset,
                    len,
                },
                // An empty literal never created the file.
                (Item::File { .. }, None) => MessageSource::Bytes(Vec::new()),
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    fn bytes(src: &MessageSource) -> Vec<u8> {
        match src {
            MessageSource::Bytes(b) => b.clone(),
            MessageSource::File { file, offset, len } => {
                let mut b = vec![0; usize::try_from(*len).unwrap()];
                file.read_exact_at(&mut b, *offset).unwrap();
                b
            }
        }
    }

    #[test]
    fn small_in_memory_large_in_one_file() {
        let mut s = Spool::new(None);
        let big = vec![b'x'; 200_000];
        s.begin(5);
        s.chunk(b"hello");
        s.begin(big.len() as u64);
        for c in big.chunks(4096) {
            s.chunk(c);
        }
        s.begin(3);
        s.chunk(b"abc");
        s.begin(big.len() as u64);
        for c in big.chunks(1000) {
            s.chunk(c);
        }
        let got = s.take().unwrap();
        assert_eq!(got.len(), 4);
        assert!(matches!(got[0], MessageSource::Bytes(_)));
        assert!(matches!(got[1], MessageSource::File { offset: 0, .. }));
        assert!(matches!(
            got[3],
            MessageSource::File {
                offset: 200_000,
                ..
            }
        ));
        assert_eq!(bytes(&got[0]), b"hello");
        assert_eq!(bytes(&got[1]), big);
        assert_eq!(bytes(&got[2]), b"abc");
        assert_eq!(bytes(&got[3]), big);
    }

    #[test]
    fn memory_is_budgeted() {
        let mut s = Spool::new(None);
        for _ in 0..40 {
            s.begin(60_000);
            s.chunk(&[b'y'; 60_000]);
        }
        assert!(s.in_memory <= MEMORY_BUDGET);
        let got = s.take().unwrap();
        assert!(got.iter().any(|m| matches!(m, MessageSource::File { .. })));
        assert!(got.iter().all(|m| bytes(m).len() == 60_000));
    }
}
