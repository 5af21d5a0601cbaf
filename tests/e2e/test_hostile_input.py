"""Endless lines: a peer that sends 100 MB without a line end gets the protocol's
error for the over-long line while the server discards the rest, its memory flat, and
a real user is served meanwhile."""

import socket
import threading
import time

import pytest

from conftest import TIMEOUT

CHUNK = b"A" * (1 << 20)
TOTAL = 100  # MiB


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def flood(port: int, prefix: bytes) -> tuple[int, bytes]:
    """Sends `prefix` then up to TOTAL MiB without a line end; returns how many MiB
    went out before the server closed, and what it said."""
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    said = b""
    sent = 0
    try:
        said += s.recv(4096)  # greeting
        s.sendall(prefix)
        for _ in range(TOTAL):
            s.sendall(CHUNK)
            sent += 1
    except OSError:
        pass
    try:
        s.settimeout(5)
        while True:
            data = s.recv(65536)
            if not data:
                break
            said += data
    except OSError:
        pass
    s.close()
    return sent, said


@pytest.mark.parametrize("service,prefix,answer", [
    ("imap", b"a LOGIN ", b"BAD"),
    ("pop3", b"USER ", b"-ERR"),
    ("smtp", b"EHLO ", b"500"),
])
def test_endless_line_is_refused_with_memory_flat(launcher, service, prefix, answer):
    srv = launcher()
    user, pw = srv.new_user("fl")
    port = {"imap": srv.imap_port, "pop3": srv.pop3_port, "smtp": srv.smtp_port}[service]
    pid = srv.proc.pid
    before = rss_kib(pid)
    result = {}
    t = threading.Thread(target=lambda: result.update(out=flood(port, prefix)))
    t.start()
    # A real user is served while the flood runs.
    time.sleep(0.2)
    m = srv.imap(user, pw)
    typ, data = m.select("INBOX")
    assert typ == "OK", data
    m.logout()
    t.join(timeout=120)
    assert not t.is_alive(), "the flood never ended"
    sent, said = result["out"]
    after = rss_kib(pid)
    assert answer in said, said[:300]
    assert after - before < 64 * 1024, f"RSS grew by {after - before} KiB after {sent} MiB"
    print(f"{service}: refused; {sent} MiB sent; RSS {before} -> {after} KiB")


def test_hundred_thousand_header_lines(launcher):
    """100k header fields (about 2.4 MB) are over the header limits (1 MiB, 10,000
    fields): refused with 552 5.3.4 after DATA, the session goes on. 9,000 fields
    (under both) are delivered, parsed once and fetched. Times are printed (linear
    parsing keeps them to a fraction of a second per MiB); only generous bounds are
    asserted."""
    import smtplib
    srv = launcher()
    user, pw = srv.new_user("hh")

    def letter(n: int, subject: str) -> str:
        head = "".join(f"X-Filler-{i}: value {i}\r\n" for i in range(n))
        return (f"From: a@example.net\r\nTo: {user}\r\nSubject: {subject}\r\n{head}"
                "\r\nbody\r\n")

    with smtplib.SMTP("127.0.0.1", srv.smtp_port, timeout=120) as s:
        big = letter(100_000, "too many headers")
        start = time.monotonic()
        s.ehlo()
        s.mail("a@example.net")
        s.rcpt(user)
        code, text = s.data(big)
        refused_in = time.monotonic() - start
        assert (code, text[:5]) == (552, b"5.3.4"), (code, text)
        assert b"header too large" in text, text
        many = letter(9_000, "many headers")
        start = time.monotonic()
        s.sendmail("a@example.net", [user], many)
        took = time.monotonic() - start
    m = srv.imap(user, pw)
    typ, data = m.select("INBOX")
    assert typ == "OK" and data[0] == b"1", data
    typ, data = m.fetch("1", "(ENVELOPE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert typ == "OK", data
    assert b"many headers" in data[0][0] + data[0][1], data
    m.logout()
    print(f"100k header lines ({len(big) >> 10} KiB): refused in {refused_in:.2f} s; "
          f"9,000 ({len(many) >> 10} KiB): accepted in {took:.2f} s")
    assert refused_in < 60 and took < 60
