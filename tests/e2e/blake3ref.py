"""BLAKE3 (the hash mode only) in plain Python, for tests that name blobs as buudien
does (blob ids are the BLAKE3 hash of a message's bytes). Written from the BLAKE3
specification (§2 and §5.1); slow (about a megabyte a second), so for test messages
only. `blake3_hex(b"abc")` is the specification's test vector."""

import struct

_IV = (0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A,
       0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19)
_PERM = (2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8)
_CHUNK_START, _CHUNK_END, _PARENT, _ROOT = 1, 2, 4, 8
_M = 0xFFFFFFFF


def _compress(cv, words, counter, block_len, flags):
    s = list(cv) + list(_IV[:4]) + [counter & _M, (counter >> 32) & _M, block_len, flags]
    m = list(words)

    def g(a, b, c, d, x, y):
        s[a] = (s[a] + s[b] + x) & _M
        v = s[d] ^ s[a]
        s[d] = ((v >> 16) | (v << 16)) & _M
        s[c] = (s[c] + s[d]) & _M
        v = s[b] ^ s[c]
        s[b] = ((v >> 12) | (v << 20)) & _M
        s[a] = (s[a] + s[b] + y) & _M
        v = s[d] ^ s[a]
        s[d] = ((v >> 8) | (v << 24)) & _M
        s[c] = (s[c] + s[d]) & _M
        v = s[b] ^ s[c]
        s[b] = ((v >> 7) | (v << 25)) & _M

    for r in range(7):
        g(0, 4, 8, 12, m[0], m[1])
        g(1, 5, 9, 13, m[2], m[3])
        g(2, 6, 10, 14, m[4], m[5])
        g(3, 7, 11, 15, m[6], m[7])
        g(0, 5, 10, 15, m[8], m[9])
        g(1, 6, 11, 12, m[10], m[11])
        g(2, 7, 8, 13, m[12], m[13])
        g(3, 4, 9, 14, m[14], m[15])
        if r < 6:
            m = [m[i] for i in _PERM]
    for i in range(8):
        s[i] ^= s[i + 8]
        s[i + 8] ^= cv[i]
    return s


def _words(block: bytes):
    return struct.unpack("<16I", block.ljust(64, b"\0"))


def _chunk_output(data: bytes, counter: int):
    """The last block of a chunk, not yet compressed: (cv, words, counter, len, flags)."""
    cv = _IV
    blocks = [data[i:i + 64] for i in range(0, len(data), 64)] or [b""]
    for i, block in enumerate(blocks[:-1]):
        flags = _CHUNK_START if i == 0 else 0
        cv = tuple(_compress(cv, _words(block), counter, 64, flags)[:8])
    last = blocks[-1]
    flags = _CHUNK_END | (_CHUNK_START if len(blocks) == 1 else 0)
    return (cv, _words(last), counter, len(last), flags)


def _cv(out):
    return tuple(_compress(*out)[:8])


def _parent(left, right):
    return (_IV, tuple(left) + tuple(right), 0, 64, _PARENT)


def blake3_hex(data: bytes) -> str:
    chunks = [data[i:i + 1024] for i in range(0, len(data), 1024)] or [b""]
    stack = []
    for n, chunk in enumerate(chunks[:-1]):
        cv = _cv(_chunk_output(chunk, n))
        total = n + 1
        while total & 1 == 0:
            cv = _cv(_parent(stack.pop(), cv))
            total >>= 1
        stack.append(cv)
    out = _chunk_output(chunks[-1], len(chunks) - 1)
    while stack:
        out = _parent(stack.pop(), _cv(out))
    cv, words, counter, block_len, flags = out
    root = _compress(cv, words, counter, block_len, flags | _ROOT)
    return struct.pack("<8I", *root[:8]).hex()
