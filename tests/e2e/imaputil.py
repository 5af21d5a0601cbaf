"""Helpers for the IMAP tests: a small parser for imaplib's raw FETCH data (atoms,
quoted strings, literals, lists, NIL), IDLE (imaplib before Python 3.14 has none),
response codes, and a module-scoped server with SMTP listeners too."""

from __future__ import annotations

import imaplib
import re
import socket
import tempfile
import time
from pathlib import Path

import pytest

from conftest import DOMAIN, TIMEOUT, launch, stop_and_clean

# --- a server with IMAP and SMTP --------------------------------------------------


@pytest.fixture(scope="module")
def imap_server(buudien_bin):
    """One buudien for a test module: POP3, IMAP, IMAPS, SMTP, submission(s)."""
    root = Path(tempfile.mkdtemp(prefix="buudien-e2e-imap-"))
    srv = launch(buudien_bin, root, smtp=True)
    try:
        yield srv
    finally:
        stop_and_clean(srv)


# --- checking replies -------------------------------------------------------------


def ok(result, what: str = "command"):
    """Asserts an imaplib (typ, data) is OK and returns data."""
    typ, data = result
    assert typ == "OK", f"{what}: {typ} {data!r}"
    return data


def pop_code(m: imaplib.IMAP4, name: str) -> list:
    """Takes the collected response-code data for `name` (e.g. COPYUID) off imaplib."""
    return m.untagged_responses.pop(name, [])


def pop_untagged(m: imaplib.IMAP4, name: str) -> list:
    return m.untagged_responses.pop(name, [])


def appended_uid(m: imaplib.IMAP4, mailbox: str, msg: bytes, flags: str | None = None) -> int:
    """APPENDs `msg` (sent as is, CRLF expected) and returns its UID from APPENDUID
    (RFC 4315 §3, part of IMAP4rev2)."""
    pop_code(m, "APPENDUID")
    typ, data = m.append(mailbox, flags, None, msg)
    assert typ == "OK", f"APPEND: {typ} {data!r}"
    codes = pop_code(m, "APPENDUID")
    assert codes, f"APPEND OK without APPENDUID: {data!r}"
    _validity, uid = codes[-1].split()
    return int(uid)


def copyuid(m: imaplib.IMAP4) -> tuple[int, list[int], list[int]]:
    """The last COPYUID (RFC 4315 §3): (uidvalidity, source uids, destination uids)."""
    codes = pop_code(m, "COPYUID")
    assert codes, "no COPYUID response code"
    validity, src, dst = codes[-1].split()
    return int(validity), uid_set(src), uid_set(dst)


def uid_set(text: bytes) -> list[int]:
    out = []
    for part in text.decode().split(","):
        lo, _, hi = part.partition(":")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


# --- parsing FETCH data -----------------------------------------------------------


class Literal(bytes):
    """A string that came as a literal."""


_NIL = object()


def _tokens(text: bytes):
    i = 0
    n = len(text)
    while i < n:
        c = text[i:i + 1]
        if c in b" \r\n":
            i += 1
        elif c in b"()":
            yield c
            i += 1
        elif c == b'"':
            j = i + 1
            buf = bytearray()
            while j < n and text[j:j + 1] != b'"':
                if text[j:j + 1] == b"\\":
                    j += 1
                buf += text[j:j + 1]
                j += 1
            yield bytes(buf)
            i = j + 1
        else:
            j = i
            depth = 0
            while j < n:
                ch = text[j:j + 1]
                if ch == b"[":
                    depth += 1
                elif ch == b"]":
                    depth -= 1
                elif depth == 0 and ch in b" ()\r\n":
                    break
                j += 1
            atom = text[i:j]
            yield _NIL if atom.upper() == b"NIL" else ("atom", atom)
            i = j


def _stream(data: list) -> list:
    """imaplib's FETCH data (bytes and (head, literal) tuples) as one token list."""
    out: list = []
    for item in data:
        if item is None:
            continue
        if isinstance(item, tuple):
            head, lit = item
            head = re.sub(rb"~?\{\d+\+?\}$", b"", head)
            out.extend(_tokens(head))
            out.append(Literal(lit))
        else:
            out.extend(_tokens(item))
    return out


def _value(tokens: list, pos: int):
    t = tokens[pos]
    if t == b"(":
        items = []
        pos += 1
        while tokens[pos] != b")":
            v, pos = _value(tokens, pos)
            items.append(v)
        return items, pos + 1
    if t is _NIL:
        return None, pos + 1
    if isinstance(t, tuple):
        return t[1], pos + 1
    return bytes(t) if not isinstance(t, Literal) else t, pos + 1


def parse_fetch(data: list) -> dict[int, dict[str, object]]:
    """{sequence number: {ITEM NAME: value}} from imaplib FETCH data. Lists are
    Python lists, NIL is None, strings and atoms are bytes."""
    tokens = _stream(data)
    out: dict[int, dict[str, object]] = {}
    pos = 0
    while pos < len(tokens):
        seq = tokens[pos]
        assert isinstance(seq, tuple), f"expected a message number at {tokens[pos:pos + 3]}"
        items, pos = _value(tokens, pos + 1)
        assert isinstance(items, list), items
        d = out.setdefault(int(seq[1]), {})
        for k, v in zip(items[::2], items[1::2]):
            d[k.decode().upper()] = v
    return out


def fetch_uid(m: imaplib.IMAP4, uid: int, items: str) -> dict[str, object]:
    """UID FETCH of one message: {ITEM: value}."""
    data = ok(m.uid("FETCH", str(uid), items), f"UID FETCH {uid} {items}")
    for d in parse_fetch(data).values():
        if int(d.get("UID", b"0")) == uid:
            return d
    raise AssertionError(f"no FETCH response for UID {uid}: {data!r}")


def body_of(m: imaplib.IMAP4, uid: int, section: str = "BODY.PEEK[]") -> bytes:
    """The bytes of one section of one message."""
    d = fetch_uid(m, uid, f"({section})")
    key = section.replace(".PEEK", "").upper()
    assert key in d, f"{key} not in {list(d)}"
    value = d[key]
    assert isinstance(value, bytes), value
    return value


def all_uids(m: imaplib.IMAP4) -> list[int]:
    """The UIDs of the selected mailbox, by UID FETCH 1:* (no SEARCH needed)."""
    data = ok(m.uid("FETCH", "1:*", "(UID)"), "UID FETCH 1:* (UID)")
    return sorted(int(d["UID"]) for d in parse_fetch(data).values() if "UID" in d)


def uid_search(m: imaplib.IMAP4, *criteria: str) -> list[int]:
    """UID SEARCH, accepting the IMAP4rev1 SEARCH or the IMAP4rev2 ESEARCH reply."""
    pop_untagged(m, "SEARCH")
    pop_untagged(m, "ESEARCH")
    typ, data = m.uid("SEARCH", *criteria)
    assert typ == "OK", f"UID SEARCH {' '.join(criteria)}: {typ} {data!r}"
    found: list[int] = []
    for line in pop_untagged(m, "SEARCH") + [d for d in data if d]:
        if isinstance(line, bytes) and re.fullmatch(rb"[\d ]*", line):
            found.extend(int(x) for x in line.split())
    for line in pop_untagged(m, "ESEARCH"):
        mo = re.search(rb"\bALL (\S+)", line)
        if mo:
            found.extend(uid_set(mo.group(1)))
    return sorted(set(found))


# --- IDLE (RFC 2177, RFC 9051 §6.3.13) --------------------------------------------


class Idle:
    """`with Idle(m) as idle: ... idle.wait_for(rb"EXISTS")`: IDLE on an imaplib
    connection, reading untagged lines until one matches, then DONE."""

    def __init__(self, m: imaplib.IMAP4):
        self.m = m
        self.lines: list[bytes] = []

    def __enter__(self):
        self.tag = self.m._new_tag()
        self.m.send(self.tag + b" IDLE\r\n")
        first = self.m.readline()
        assert first.startswith(b"+"), f"IDLE answered {first!r}"
        return self

    def wait_for(self, pattern: bytes, timeout: float = 5.0) -> tuple[bytes, float]:
        """The first untagged line matching `pattern` and the seconds it took."""
        start = time.monotonic()
        deadline = start + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(
                    f"no {pattern!r} within {timeout} s of IDLE; got {self.lines!r}"
                )
            self.m.sock.settimeout(left)
            try:
                line = self.m.readline()
            except (socket.timeout, TimeoutError):
                raise AssertionError(
                    f"no {pattern!r} within {timeout} s of IDLE; got {self.lines!r}"
                ) from None
            finally:
                self.m.sock.settimeout(TIMEOUT)
            if not line:
                raise AssertionError(f"server closed the connection during IDLE: {self.lines!r}")
            self.lines.append(line)
            if re.search(pattern, line):
                return line, time.monotonic() - start

    def __exit__(self, *exc):
        if exc[0] is not None:
            return False
        self.m.send(b"DONE\r\n")
        while True:
            line = self.m.readline()
            assert line, "connection closed after DONE"
            if line.startswith(self.tag + b" "):
                assert line.split()[1] == b"OK", line
                return False
            self.lines.append(line)


def mail(subject: str, body: str = "Hello.\r\n", sender: str = "sender@example.org",
         to: str = f"someone@{DOMAIN}", extra: str = "") -> bytes:
    """A small message with CRLF line ends (what APPEND stores byte for byte)."""
    return (
        f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
        f"Date: Tue, 24 Nov 2026 10:00:00 +0000\r\n"
        f"Message-ID: <{re.sub(r'[^A-Za-z0-9]', '-', subject)}@example.org>\r\n"
        f"{extra}\r\n{body}"
    ).encode()


__all__ = [
    "Idle", "Literal", "TIMEOUT", "all_uids", "appended_uid", "body_of", "copyuid", "fetch_uid",
    "imap_server", "mail", "ok", "parse_fetch", "pop_code", "pop_untagged", "uid_search",
    "uid_set",
]
