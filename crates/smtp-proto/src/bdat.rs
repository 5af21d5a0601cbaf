//! The BDAT chunk receiver (RFC 3030 §2, §4): exactly `size` octets follow the
//! `BDAT size [LAST]` line, taken as they are. Nothing inside a chunk is interpreted:
//! `<CRLF>.<CRLF>` in a chunk is data, not an end.
//!
//! Even when the chunk is refused (no transaction, too big, an earlier chunk failed),
//! its octets are read and thrown away, so that the next command is found where the
//! client put it (RFC 3030 §4.2: the server must be prepared to discard chunks
//! already in the pipeline). Only a chunk size that cannot be skipped in reasonable
//! time ([`ChunkCheck::Absurd`]) ends the connection instead.

/// What to do with a chunk, decided from its size before reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkCheck {
    /// Read and keep it.
    Accept,
    /// The message would pass the size limit: read and discard it, reply `552 5.3.4`.
    TooBig,
    /// The size is beyond any message this server takes (over twice the limit, or over
    /// 4 GiB): reply and close the connection without reading it.
    Absurd,
}

/// Decides what to do with a chunk of `size` octets when `received` octets of the
/// message have been accepted so far and the limit is `max_message_size`.
pub fn check_chunk(size: u64, received: u64, max_message_size: u64) -> ChunkCheck {
    if size > u64::from(u32::MAX) || size > max_message_size.saturating_mul(2) {
        ChunkCheck::Absurd
    } else if received.saturating_add(size) > max_message_size {
        ChunkCheck::TooBig
    } else {
        ChunkCheck::Accept
    }
}

/// Receives one chunk: exactly `size` octets, stored or discarded.
#[derive(Debug, Clone)]
pub struct BdatReceiver {
    remaining: u64,
    store: bool,
}

impl BdatReceiver {
    /// A receiver for a chunk of `size` octets; `store` false throws them away.
    pub fn new(size: u64, store: bool) -> Self {
        BdatReceiver {
            remaining: size,
            store,
        }
    }

    /// Takes at most the rest of the chunk from `input` (appending it to `out` when
    /// storing); returns how many bytes of `input` it used. The bytes after that
    /// belong to the next command.
    pub fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) -> usize {
        let take = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(input.len());
        if self.store {
            out.extend_from_slice(input.get(..take).unwrap_or_default());
        }
        self.remaining = self
            .remaining
            .saturating_sub(u64::try_from(take).unwrap_or(u64::MAX));
        take
    }

    /// Octets of the chunk still to come.
    pub fn remaining(&self) -> u64 {
        self.remaining
    }

    /// True once the whole chunk has been read.
    pub fn is_done(&self) -> bool {
        self.remaining == 0
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn exact_octets_with_terminator_inside() {
        let chunk = b"Subject: x\r\n\r\n.\r\nstill data\r\n.\r\n";
        let mut input = chunk.to_vec();
        input.extend_from_slice(b"BDAT 0 LAST\r\n");
        let mut r = BdatReceiver::new(chunk.len() as u64, true);
        let mut out = Vec::new();
        let used = r.feed(&input, &mut out);
        assert_eq!(used, chunk.len());
        assert!(r.is_done());
        assert_eq!(out, chunk);
        assert_eq!(&input[used..], b"BDAT 0 LAST\r\n");
    }

    #[test]
    fn split_and_discarded() {
        let mut r = BdatReceiver::new(10, false);
        let mut out = Vec::new();
        assert_eq!(r.feed(b"12345", &mut out), 5);
        assert_eq!(r.remaining(), 5);
        assert_eq!(r.feed(b"6789", &mut out), 4);
        assert_eq!(r.feed(b"0QUIT", &mut out), 1);
        assert!(r.is_done());
        assert!(out.is_empty());
        assert_eq!(r.feed(b"more", &mut out), 0);
    }

    #[test]
    fn zero_chunk_is_done_at_once() {
        let r = BdatReceiver::new(0, true);
        assert!(r.is_done());
    }

    #[test]
    fn chunk_checks() {
        assert_eq!(check_chunk(100, 0, 1000), ChunkCheck::Accept);
        assert_eq!(check_chunk(100, 900, 1000), ChunkCheck::Accept);
        assert_eq!(check_chunk(101, 900, 1000), ChunkCheck::TooBig);
        assert_eq!(check_chunk(2000, 0, 1000), ChunkCheck::TooBig);
        assert_eq!(check_chunk(2001, 0, 1000), ChunkCheck::Absurd);
        assert_eq!(
            check_chunk(u64::from(u32::MAX) + 1, 0, u64::MAX),
            ChunkCheck::Absurd
        );
        assert_eq!(
            check_chunk(u64::MAX, u64::MAX, u64::MAX),
            ChunkCheck::Absurd
        );
    }
}
