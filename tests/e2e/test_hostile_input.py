"""Endless lines: a peer that sends 100 MB without a line end gets the protocol's
error for the over-long line, and once the same line has gone on for
MAX_OVERLONG_SKIP (1 MiB, in each *-proto crate's framing module) past the limit, the
server closes the connection (SMTP 421, POP3 -ERR, IMAP * BYE): it is cut off well
before 100 MiB are sent, with memory flat, while a real user is served. A line merely
a bit over the limit gets the error and the session goes on."""

import socket
import threading
import time

from conftest import RawPop

import pytest

from conftest import TIMEOUT

CHUNK = b"A" * (1 << 20)
TOTAL = 100  # MiB
# The skip bound (1 MiB) plus what kernel socket buffers on loopback can hold.
CUT_OFF_WITHIN = 32  # MiB


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


def flood(port: int, prefix: bytes) -> tuple[int, bytes, bool]:
    """Sends `prefix` then up to TOTAL MiB without a line end while a second thread
    reads what the server says; returns how many MiB went out before the server
    closed, what it said, and whether it closed (end of stream or reset)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    said = bytearray()
    closed = threading.Event()

    def reader():
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    break
                said.extend(data)
        except OSError:
            pass
        closed.set()

    sent = 0
    said.extend(s.recv(4096))  # greeting
    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        s.sendall(prefix)
        for _ in range(TOTAL):
            s.sendall(CHUNK)
            sent += 1
    except OSError:
        pass
    closed.wait(timeout=TIMEOUT)
    s.close()
    t.join(timeout=5)
    return sent, bytes(said), closed.is_set()


@pytest.mark.parametrize("service,prefix,answer,bye", [
    ("imap", b"a LOGIN ", b"a BAD", b"* BYE"),
    ("pop3", b"USER ", b"-ERR", b"-ERR line too long, closing"),
    ("smtp", b"EHLO ", b"500", b"421 4.7.0"),
])
def test_endless_line_is_cut_off_with_memory_flat(launcher, service, prefix, answer, bye):
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
    sent, said, closed = result["out"]
    after = rss_kib(pid)
    assert answer in said, said[:300]
    assert bye in said, said[-300:]
    assert said.index(answer) < said.index(bye), said
    assert closed, "the server never closed the connection"
    assert sent < CUT_OFF_WITHIN, f"cut off only after {sent} MiB"
    assert after - before < 64 * 1024, f"RSS grew by {after - before} KiB after {sent} MiB"
    print(f"{service}: cut off after {sent} MiB sent; RSS {before} -> {after} KiB")


def test_a_line_a_bit_over_the_limit_is_refused_and_the_session_goes_on(launcher):
    """Just over each limit (SMTP 2048, POP3 255, IMAP 64 KiB), and even half a MiB
    over: the error, then the next command is served on the same connection."""
    from test_bad_bytes import RawImap
    from test_smtp import RawSmtp
    srv = launcher()
    user, pw = srv.new_user("lo")
    for extra in (10, 512 * 1024):
        s = RawSmtp(srv.smtp_port)
        s.send(b"EHLO " + b"a" * (2048 + extra) + b"\r\n")
        assert s.reply().code == 500
        assert s.cmd("NOOP").code == 250
        assert s.cmd("QUIT").code == 221

        p = RawPop(srv.pop3_port)
        assert p.cmd(b"USER " + b"b" * (255 + extra)).startswith(b"-ERR")
        p.login(user, pw)
        assert p.cmd("STAT").startswith(b"+OK")
        assert p.cmd("QUIT").startswith(b"+OK")
        p.close()

        m = RawImap(srv.imap_port)
        m.send(b"a LOGIN " + b"c" * (64 * 1024 + extra) + b"\r\n")
        assert m.line().startswith(b"a BAD")
        m.login(user, pw)
        assert b"b OK" in m.cmd(b"b", b"SELECT INBOX")
        assert b"c OK" in m.cmd(b"c", b"LOGOUT")
        m.close()


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



@pytest.mark.parametrize("service", ["imap", "smtp"])
def test_endless_literal_or_data_is_cut_off(launcher, service):
    """The same bound for the other ways to send without end: an IMAP
    non-synchronizing literal of 100 GB is refused and not read (BAD [TOOBIG], then
    * BYE: RFC 7888 §4), and SMTP DATA that goes on past twice max_message_size
    without its end gets 552 5.3.4 and the connection closes."""
    srv = launcher(sections='\n[smtp]\nmax_message_size = "1M"\n')
    user, pw = srv.new_user("fe")
    if service == "imap":
        port, prefix = srv.imap_port, b"a APPEND INBOX {100000000000+}\r\n"
        answer, bye = b"a BAD [TOOBIG]", b"* BYE"
    else:
        port = srv.smtp_port
        prefix = (b"EHLO client.test\r\nMAIL FROM:<a@example.net>\r\n"
                  b"RCPT TO:<" + user.encode() + b">\r\nDATA\r\n")
        answer, bye = b"354 ", b"552 5.3.4 message far too big; closing connection"
    pid = srv.proc.pid
    before = rss_kib(pid)
    sent, said, closed = flood(port, prefix)
    after = rss_kib(pid)
    assert answer in said and bye in said, said[-300:]
    assert closed and sent < CUT_OFF_WITHIN, (closed, sent)
    assert after - before < 64 * 1024
    m = srv.imap(user, pw)
    assert m.select("INBOX") == ("OK", [b"0"])
    m.logout()
    print(f"{service}: cut off after {sent} MiB sent; RSS {before} -> {after} KiB")
