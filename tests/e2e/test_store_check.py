"""Damaged message files (hostile input and crashes): the store checks a blob's size
against its index on every read and quarantines a damaged one instead of failing the
session, and `buudien check` verifies every blob (exists, size, SHA-256).

One message's blob file is truncated, another's has a byte flipped (same size), a
third is sound. Then:
- `buudien check` exits 1 and names both (wrong-size, wrong-hash), not the third;
- IMAP FETCH 1:3 answers the readable messages and ends with a tagged
  `NO [SERVERBUG]` (RFC 9051 §6.4.5, §7.1); the session goes on. The flipped one is
  served as it is: a read checks the size only (hashing every read would cost a
  second full read), so only `check` finds it;
- POP3 RETR of the truncated one answers `-ERR [SYS/PERM]` (RFC 3206 §4) and the
  session goes on;
- `check` lists the one the read quarantined as `quarantined`, `check --quarantine`
  sets the other aside, and the next `check` lists both as quarantined and exits 0.

A damaged text index (the FTS5 tables behind SEARCH BODY/TEXT): `check` reports it,
SEARCH answers by reading the messages meanwhile, the server rebuilds the index when
it finds it damaged, and EXPUNGE afterwards leaves no stale answer (an expunged
email's entry is removed by the indexer later, and matches no message meanwhile).
"""

from __future__ import annotations

import socket
import sqlite3
import time
from pathlib import Path

import pytest

from blake3ref import blake3_hex
from conftest import TIMEOUT, message

# `buudien check` verifies the SQLite store's blob files (it refuses PostgreSQL, as
# test_cluster.py checks); the test damages those files in data_dir.
pytestmark = pytest.mark.sqlite_only(
    reason="damages blob files in data_dir/blobs and runs `buudien check`, which is "
           "for the SQLite store only")


# These tests damage blob files: every message gets one (small messages are otherwise
# kept in the database; crates/store-sqlite/tests/check.rs checks those).
FILES = "\n[store]\ninline_max = 0\n"


def blob_of(data: Path, marker: bytes) -> Path:
    """The blob file (blobs/xx/yy/<id hex>) whose contents hold `marker`."""
    found = [p for p in (data / "blobs").glob("*/*/*") if marker in p.read_bytes()]
    assert len(found) == 1, found
    return found[0]


class RawImap:
    """A bare IMAP connection: whole responses up to the tagged line."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.file = self.sock.makefile("rb")
        self.file.readline()
        self.n = 0

    def cmd(self, text: str) -> bytes:
        self.n += 1
        tag = f"t{self.n}".encode()
        self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        out = b""
        while True:
            line = self.file.readline(1 << 20)
            assert line, f"connection closed after {out!r}"
            out += line
            if line.startswith(tag + b" "):
                return out

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def test_damaged_blobs_are_reported_refused_and_quarantined(launcher):
    srv = launcher(smtp=False, sections=FILES)
    user, pw = srv.new_user("ck")
    msgs = [message(f"store check {name}", f"body of the {name} message\n")
            for name in ("truncated", "flipped", "sound")]
    for m in msgs:
        srv.deliver(user, m)
    truncated = blob_of(srv.data, b"store check truncated")
    flipped = blob_of(srv.data, b"store check flipped")
    sound = blob_of(srv.data, b"store check sound")
    # A blob file is named by the BLAKE3 hash of its bytes.
    assert sound.name == blake3_hex(sound.read_bytes())
    raw = truncated.read_bytes()
    truncated.write_bytes(raw[: len(raw) // 2])
    raw = bytearray(flipped.read_bytes())
    at = raw.index(b"body of the")
    raw[at] ^= 0x20
    flipped.write_bytes(bytes(raw))

    # 1. check names both and exits 1.
    r = srv.cli("check", check=False)
    out = r.stdout.decode()
    assert r.returncode == 1, (r.returncode, out, r.stderr)
    assert f"wrong-size {truncated.name}" in out, out
    assert f"wrong-hash {flipped.name}" in out, out
    assert sound.name not in out, out
    assert user in out, out  # whose message it is
    assert b"2 problems" in r.stderr, r.stderr

    # 2. IMAP: the readable messages are served, the damaged one gets NO [SERVERBUG].
    imap = RawImap(srv.imap_port)
    assert b" OK" in imap.cmd(f'LOGIN {user} "{pw}"')
    assert b" OK" in imap.cmd("SELECT INBOX")
    r = imap.cmd("FETCH 1:3 (UID BODY.PEEK[])")
    assert b"* 1 FETCH" not in r, r
    assert b"* 2 FETCH" in r and b"* 3 FETCH" in r, r
    assert b"store check sound" in r, r
    assert r.splitlines()[-1].startswith(b"t3 NO [SERVERBUG]"), r
    r = imap.cmd("FETCH 1 BODY.PEEK[]")
    assert r.startswith(b"t4 NO [SERVERBUG]"), r
    r = imap.cmd("FETCH 3 BODY.PEEK[]")
    assert b"store check sound" in r and b"t5 OK" in r, r
    assert imap.cmd("NOOP").startswith(b"t6 OK"), "the session goes on"
    imap.cmd("LOGOUT")
    imap.close()
    assert not truncated.exists(), "the read quarantined the truncated blob"
    assert any((srv.data / "quarantine").iterdir())

    # 3. POP3: -ERR [SYS/PERM], and the session goes on.
    pop = srv.raw()
    pop.login(user, pw)
    r = pop.cmd("RETR 1")
    assert r.startswith(b"-ERR [SYS/PERM]"), r
    r = pop.cmd("TOP 1 0")
    assert r.startswith(b"-ERR [SYS/PERM]"), r
    assert pop.cmd("RETR 3").startswith(b"+OK"), "the next message is served"
    assert any(b"store check sound" in line for line in pop.multiline())
    assert pop.cmd("NOOP").startswith(b"+OK")
    assert pop.cmd("QUIT").startswith(b"+OK")
    pop.close()

    # 4. The one the read set aside is listed as quarantined; --quarantine sets the
    # other aside; then the check is clean apart from the quarantined list.
    r = srv.cli("check", check=False)
    out = r.stdout.decode()
    assert r.returncode == 1, (out, r.stderr)
    assert f"quarantined {truncated.name}" in out, out
    assert f"wrong-hash {flipped.name}" in out, out
    r = srv.cli("check", "--quarantine", check=False)
    out = r.stdout.decode()
    assert r.returncode == 1, (out, r.stderr)
    assert f"wrong-hash {flipped.name}" in out and "quarantined now" in out, out
    assert not flipped.exists()
    r = srv.cli("check", check=False)
    out = r.stdout.decode()
    assert r.returncode == 0, (out, r.stderr)
    assert f"quarantined {truncated.name}" in out, out
    assert f"quarantined {flipped.name}" in out, out
    assert "0 problems, 2 quarantined" in out, out
    names = sorted(p.name.split(".")[0] for p in (srv.data / "quarantine").iterdir())
    assert names == sorted([truncated.name, flipped.name]), names

    # 5. Now quarantined, the flipped one is refused too; the sound one still served.
    pop = srv.raw()
    pop.login(user, pw)
    assert pop.cmd("RETR 2").startswith(b"-ERR [SYS/PERM]")
    assert pop.cmd("RETR 3").startswith(b"+OK")
    pop.multiline()
    assert pop.cmd("QUIT").startswith(b"+OK")
    pop.close()
    assert "panicked" not in srv.log()


def indexed(data: Path) -> int:
    """Emails in the text index (`emails.text_state = 1`), read beside the server."""
    db = sqlite3.connect(f"file:{data / 'buudien.sqlite'}?mode=ro", uri=True, timeout=10)
    try:
        return db.execute("SELECT count(*) FROM emails WHERE text_state = 1").fetchone()[0]
    finally:
        db.close()


def wait_for(what: str, cond, srv, limit: float = 30) -> None:
    deadline = time.monotonic() + limit
    while not cond():
        assert time.monotonic() < deadline, f"{what} within {limit} s:\n{srv.log()}"
        time.sleep(0.2)


def test_a_damaged_text_index_is_rebuilt_by_the_server(launcher):
    srv = launcher(smtp=False)
    user, pw = srv.new_user("fts")
    words = ("marmalade", "pumpernickel", "quince")
    for w in words:
        srv.deliver(user, message(f"text index {w}", f"a note about {w} jam\n"))
    wait_for("the background indexer indexing 3 emails", lambda: indexed(srv.data) == 3, srv)
    assert srv.stop() == 0

    # Garbage over FTS5's structure record: FTS5 can no longer even open its table.
    db = sqlite3.connect(srv.data / "buudien.sqlite")
    with db:
        n = db.execute("UPDATE email_text_data SET block = x'ffffffffffffffff' "
                       "WHERE id = 10").rowcount
    db.close()
    assert n == 1
    r = srv.cli("check", check=False)
    out = r.stdout.decode()
    assert r.returncode == 1, (out, r.stderr)
    assert "text-index damaged" in out, out

    srv.start()
    imap = RawImap(srv.imap_port)
    assert b" OK" in imap.cmd(f'LOGIN {user} "{pw}"')
    assert b" OK" in imap.cmd("SELECT INBOX")
    # SEARCH reads the messages while the index is unusable: still the right answer.
    r = imap.cmd("UID SEARCH BODY pumpernickel")
    assert b"* SEARCH 2\r\n" in r and r.splitlines()[-1].startswith(b"t3 OK"), r
    wait_for("the server rebuilding the index",
             lambda: "text index was damaged: rebuilt it" in srv.log(), srv)
    wait_for("the indexer indexing the 3 emails again", lambda: indexed(srv.data) == 3, srv)
    assert b" OK" in imap.cmd("UID STORE 3 +FLAGS (\\Deleted)")
    r = imap.cmd("EXPUNGE")
    assert b"* 3 EXPUNGE" in r and r.splitlines()[-1].startswith(b"t5 OK"), r
    for w, want in zip(words, (b"* SEARCH 1\r\n", b"* SEARCH 2\r\n", b"* SEARCH\r\n")):
        r = imap.cmd(f"UID SEARCH BODY {w}")
        assert want in r, (w, r)
    imap.cmd("LOGOUT")
    imap.close()
    r = srv.cli("check", check=False)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "text-index" not in r.stdout.decode()
    assert "panicked" not in srv.log()
