"""Bad bytes (hostile input and crashes issue): NUL, invalid UTF-8, 8-bit octets
without SMTPUTF8 / UTF8=ACCEPT and invalid modified UTF-7 in protocol syntax get the
protocol's error and the session goes on; message content with 8-bit octets, Latin-1
and even NUL is stored and returned byte for byte; a client pipelining 200,000
commands without reading is held back by TCP (server memory flat, other users served);
every protocol cuts off a client after a run of bad commands.

Expected replies (the RFC sections are cited in the crates):
- SMTP: a line with NUL or garbage `500 5.5.2` (RFC 5321 §4.2.4); an 8-bit address
  without SMTPUTF8 `553 5.6.7` (RFC 6531 §3.5); invalid UTF-8 in an address, even with
  SMTPUTF8, `501 5.1.7` / `501 5.1.3`; 20 bad commands `421 4.7.0`, close.
- POP3: `-ERR` for NUL, controls and invalid UTF-8 (RFC 1939 §3, RFC 6856 §2); 10 bad
  commands in a row `-ERR`, close.
- IMAP: `BAD` for NUL and invalid UTF-8 (RFC 9051 §9 QUOTED-CHAR, RFC 6855 §3); `NO`
  for a name that is not valid modified UTF-7 on CREATE / SELECT (RFC 3501 §5.1.3);
  10 invalid commands in a row `* BYE`, close. A NUL in a message goes out as 0x80 in
  a BODY[] literal (RFC 9051 §4.3: literals carry no NUL) and as itself in a BINARY[]
  literal8 (RFC 3516 §4.3).
"""

from __future__ import annotations

import re
import socket
import threading
import time

import pytest

from conftest import PASSWORD, TIMEOUT, RawPop
from test_hostile_input import rss_kib
from test_smtp import RawSmtp


# --- raw clients ----------------------------------------------------------------------

class RawImap:
    """A bare IMAP connection that reads responses as bytes, literals included
    (`{n}` and `~{n}`)."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.greeting = self.line()
        assert self.greeting.startswith(b"* OK"), self.greeting

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError(f"server closed the connection; unparsed: {self.buf[:200]!r}")
        self.buf += chunk

    def line(self) -> bytes:
        """One response line, with any literal it announces appended."""
        out = b""
        while True:
            while b"\n" not in self.buf:
                self._fill()
            line, self.buf = self.buf.split(b"\n", 1)
            out += line + b"\n"
            m = re.search(rb"~?\{(\d+)\}\r$", line)
            if not m:
                return out
            n = int(m.group(1))
            while len(self.buf) < n:
                self._fill()
            out += self.buf[:n]
            self.buf = self.buf[n:]

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def cmd(self, tag: bytes, command: bytes) -> bytes:
        """Sends `tag command` and returns everything up to the tagged line."""
        self.send(tag + b" " + command + b"\r\n")
        return self.until(tag)

    def until(self, tag: bytes) -> bytes:
        out = b""
        while True:
            line = self.line()
            out += line
            if line.startswith(tag + b" "):
                return out

    def login(self, user: str, password: str = PASSWORD) -> None:
        r = self.cmd(b"l", f'LOGIN {user} "{password}"'.encode())
        assert b"l OK" in r, r

    def close(self) -> None:
        self.sock.close()


def tagged(r: bytes, tag: bytes) -> bytes:
    """The tagged line of a response."""
    return [line for line in r.split(b"\r\n") if line.startswith(tag + b" ")][-1]


def pop_bytes(lines: list[bytes]) -> bytes:
    """A POP3 multi-line body (lines with CRLF, as RawPop.multiline gives them) with
    the dot-stuffing undone (RFC 1939 §3)."""
    return b"".join(line[1:] if line.startswith(b".") else line for line in lines)


def eof_or_reset(sock: socket.socket, wait: float = TIMEOUT) -> bytes:
    """Everything the server still sends until it closes; fails if it does not."""
    sock.settimeout(wait)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return data
            data += chunk
    except ConnectionResetError:
        return data
    except socket.timeout:
        raise AssertionError(f"server did not close; got {data[-300:]!r}")


# --- SMTP -----------------------------------------------------------------------------

def test_smtp_bad_bytes_in_commands(launcher):
    srv = launcher()
    user, _ = srv.new_user("sb")
    s = RawSmtp(srv.smtp_port)
    r = s.cmd(b"NOOP\x00")
    assert r.code == 500 and b"5.5.2" in r.lines[0], r
    r = s.cmd(b"\x00\x00\x00\x00")
    assert r.code == 500, r
    r = s.cmd(b"\xff\xfe\xfd garbage")
    assert r.code == 500 and b"5.5.2" in r.lines[0], r
    r = s.cmd(b"EHLO client\x00.test")
    assert r.code == 500, r
    r = s.cmd("EHLO client.test")
    assert r.code == 250 and any(b"SMTPUTF8" in line for line in r.lines), r
    # RFC 6531 §3.5: an 8-bit address without SMTPUTF8 is 553 5.6.7.
    r = s.cmd("MAIL FROM:<jöran@example.org>".encode())
    assert r.code == 553 and b"5.6.7" in r.lines[0], r
    # Invalid UTF-8 (Latin-1) is refused even with SMTPUTF8: 501 5.1.7.
    r = s.cmd(b"MAIL FROM:<j\xf6ran@example.org> SMTPUTF8")
    assert r.code == 501 and b"5.1.7" in r.lines[0], r
    r = s.cmd(b"MAIL FROM:<a\x00b@example.org>")
    assert r.code == 500, r
    r = s.cmd("MAIL FROM:<sender@example.org>")
    assert r.code == 250, r
    r = s.cmd(f"RCPT TO:<jöran.{user}>".encode())
    assert r.code == 553 and b"5.6.7" in r.lines[0], r
    r = s.cmd(b"RCPT TO:<j\xf6ran@example.test>")
    assert r.code == 501 and b"5.1.3" in r.lines[0], r
    # The transaction is still usable.
    r = s.cmd(f"RCPT TO:<{user}>")
    assert r.code == 250, r
    r = s.cmd("RSET")
    assert r.code == 250, r
    # With SMTPUTF8, a valid UTF-8 sender is fine; invalid UTF-8 still is not.
    r = s.cmd("MAIL FROM:<jöran@example.org> SMTPUTF8".encode())
    assert r.code == 250, r
    r = s.cmd(b"RCPT TO:<j\xf6ran@example.test>")
    assert r.code == 501, r
    r = s.cmd(f"RCPT TO:<{user}>")
    assert r.code == 250, r
    r = s.cmd("RSET")
    assert r.code == 250, r
    r = s.cmd("QUIT")
    assert r.code == 221, r


def test_smtp_bad_commands_limit(launcher):
    """20 bad commands (Postfix's smtpd_hard_error_limit is the model): 421, close."""
    srv = launcher()
    s = RawSmtp(srv.smtp_port)
    codes = []
    for i in range(19):
        codes.append(s.cmd(b"XYZZY\x00" if i % 2 else b"\xff\xfe").code)
    assert set(codes) == {500}, codes
    r = s.cmd(b"\x80\x81")
    assert r.code == 500, r
    r = s.reply()
    assert r.code == 421 and b"4.7.0" in r.lines[0], r
    assert s.replies_until_eof() == []


def body_bytes() -> bytes:
    """A body with every octet but CR and LF, Latin-1 text, a NUL, a line starting with
    a dot, CRLF line ends only (bare CR/LF are refused: RFC 5321 §2.3.8)."""
    octets = bytes(b for b in range(256) if b not in (0x0D, 0x0A))
    lines = [octets[i:i + 60] for i in range(0, len(octets), 60)]
    lines += [
        "Grüße aus Köln, naïve café".encode("latin-1"),
        b"NUL here: \x00 and there\x00",
        b".a line starting with a dot",
        b"..two dots",
        b"\xff\xfe\xfd invalid UTF-8 \xc3\x28 \xe2\x82",
        b"",
    ]
    return b"\r\n".join(lines) + b"\r\n"


def send_raw_message(srv, rcpt: str, msg: bytes) -> None:
    s = RawSmtp(srv.smtp_port)
    assert s.cmd("EHLO client.test").code == 250
    assert s.cmd("MAIL FROM:<latin@example.org> BODY=8BITMIME").code == 250
    assert s.cmd(f"RCPT TO:<{rcpt}>").code == 250
    assert s.cmd("DATA").code == 354
    stuffed = b"".join(
        (b"." + line if line.startswith(b".") else line)
        for line in msg.splitlines(keepends=True)
    )
    s.send(stuffed + b".\r\n")
    r = s.reply()
    assert r.code == 250, r
    assert s.cmd("QUIT").code == 221


def test_eight_bit_latin1_and_nul_body_byte_exact(launcher):
    srv = launcher()
    user, pw = srv.new_user("eb")
    body = body_bytes()
    head = (b"From: latin@example.org\r\nTo: " + user.encode()
            + b"\r\nSubject: =?iso-8859-1?q?Gr=FC=DFe?= =?broken?x?zz?= =?utf-8?b?@@@?=\r\n"
            + b"Content-Type: text/plain; charset=iso-8859-1\r\n"
            + b"Content-Transfer-Encoding: 8bit\r\n\r\n")
    msg = head + body
    send_raw_message(srv, user, msg)

    # POP3 RETR: the stored message ends with exactly what was sent (the server
    # prepends its trace fields only).
    deadline = time.monotonic() + 10
    while True:
        p = RawPop(srv.pop3_port)
        p.cmd(f"USER {user}")
        r = p.cmd(f"PASS {pw}")
        if r.startswith(b"+OK") or time.monotonic() > deadline:
            break
        p.close()
        time.sleep(0.1)
    assert r.startswith(b"+OK"), r
    assert p.cmd("RETR 1").startswith(b"+OK")
    got = pop_bytes(p.multiline())
    assert got.endswith(msg), (got[-400:], msg[-400:])
    assert p.cmd("QUIT").startswith(b"+OK")
    p.close()

    m = RawImap(srv.imap_port)
    m.login(user, pw)
    assert b"s OK" in m.cmd(b"s", b"SELECT INBOX")
    # BODY[TEXT]: byte for byte, but a NUL goes out as 0x80 (RFC 9051 §4.3).
    r = m.cmd(b"f1", b"FETCH 1 BODY.PEEK[TEXT]")
    assert tagged(r, b"f1").startswith(b"f1 OK"), r
    assert (b"{%d}\r\n" % len(body)) + body.replace(b"\x00", b"\x80") in r, r[:300]
    # BODY[]: the whole stored message, ending with what was sent.
    r = m.cmd(b"f2", b"FETCH 1 BODY.PEEK[]")
    assert tagged(r, b"f2").startswith(b"f2 OK"), r
    assert msg.replace(b"\x00", b"\x80") + b")\r\n" in r, r[-300:]
    # BINARY[1] (RFC 3516): literal8 carries the NUL as it is.
    r = m.cmd(b"f3", b"FETCH 1 BINARY.PEEK[1]")
    assert tagged(r, b"f3").startswith(b"f3 OK"), r
    assert (b"~{%d}\r\n" % len(body)) + body in r, r[:300]
    # Broken encoded words and an 8-bit body still parse: ENVELOPE, BODYSTRUCTURE OK.
    r = m.cmd(b"f4", b"FETCH 1 (ENVELOPE BODYSTRUCTURE)")
    assert tagged(r, b"f4").startswith(b"f4 OK"), r
    assert b"ENVELOPE (" in r and b"BODYSTRUCTURE (" in r, r
    assert b"logout OK" in m.cmd(b"logout", b"LOGOUT")
    m.close()


def test_broken_mime_parses_leniently(launcher):
    srv = launcher()
    user, pw = srv.new_user("bm")
    msg = (b"From: =?utf-8?q?broken\r\nTo: <" + user.encode() + b">\r\n"
           b"Subject: =?unknown-charset?B?////?= =?utf-8?Q?=ZZ=?=\r\n"
           b"MIME-Version: 1.0\r\n"
           b"Content-Type: multipart/mixed; boundary=\"never-closed\r\n\r\n"
           b"--never-closed\r\nContent-Type: text/plain; charset=\"\r\n\r\n"
           b"caf\xe9 \x00\r\n--never-closed\r\nContent-Type: message/rfc822\r\n\r\n"
           b"not a message at all\xff\r\n")
    send_raw_message(srv, user, msg)
    m = RawImap(srv.imap_port)
    m.login(user, pw)
    assert b"s OK" in m.cmd(b"s", b"SELECT INBOX")
    r = m.cmd(b"f", b"FETCH 1 (ENVELOPE BODYSTRUCTURE BODY.PEEK[1] BODY.PEEK[HEADER])")
    assert tagged(r, b"f").startswith(b"f OK"), r
    r = m.cmd(b"g", b"FETCH 1 BODY.PEEK[]")
    assert tagged(r, b"g").startswith(b"g OK"), r
    assert msg.replace(b"\x00", b"\x80") in r
    m.close()


# --- POP3 -----------------------------------------------------------------------------

def test_pop3_bad_bytes_in_commands(launcher):
    srv = launcher()
    user, pw = srv.new_user("pb")
    p = RawPop(srv.pop3_port)
    for line in [b"NOOP\x00", b"USER a\x00b", b"\x00\x01\x02", b"USER \xff\xfe",
                 b"CAPA\x1b[2J", b"\xc3\x28"]:
        r = p.cmd(line)
        assert r.startswith(b"-ERR"), (line, r)
    assert p.cmd("CAPA").startswith(b"+OK")
    p.multiline()
    p.login(user, pw)
    assert p.cmd(b"STAT\x00").startswith(b"-ERR")
    assert p.cmd(b"LIST \xff").startswith(b"-ERR")
    assert p.cmd("STAT").startswith(b"+OK 0 0")
    assert p.cmd("QUIT").startswith(b"+OK")
    p.close()


def test_pop3_bad_commands_limit(launcher):
    srv = launcher()
    p = RawPop(srv.pop3_port)
    for _ in range(9):
        assert p.cmd(b"FOO\x00").startswith(b"-ERR")
    last = p.cmd(b"\xff")
    assert last.startswith(b"-ERR") and b"too many" in last, last
    assert eof_or_reset(p.sock) == b""


# --- IMAP -----------------------------------------------------------------------------

def test_imap_bad_bytes_in_commands(launcher):
    srv = launcher()
    user, pw = srv.new_user("ib")
    m = RawImap(srv.imap_port)
    r = m.cmd(b"a", b"NOOP\x00")
    assert tagged(r, b"a").startswith(b"a BAD"), r
    m.send(b"\xff\xfe\x00\r\n")
    assert m.line().startswith(b"* BAD"), "an untagged BAD for a line without a tag"
    r = m.cmd(b"b", b"CAPABILITY")
    assert tagged(r, b"b").startswith(b"b OK"), r
    m.login(user, pw)
    cases = [
        # RFC 3501 §5.1.3: not valid modified UTF-7 -> NO.
        (b"CREATE &Jjo", b"NO"),
        (b"CREATE \"&AGE-&AGE-\"", b"NO"),
        (b"SELECT &Jjo", b"NO"),
        (b"SELECT \"&-&\"", b"NO"),
        # NUL in a quoted string, invalid UTF-8: BAD (RFC 9051 §9, RFC 6855 §3).
        (b"CREATE \"a\x00b\"", b"BAD"),
        (b"CREATE \"b\xe4d\"", b"BAD"),
        (b"SELECT \"\xff\xfe\"", b"BAD"),
        (b"RENAME \xff\xfe x", b"BAD"),
        (b"FETCH\x001 FLAGS", b"BAD"),
    ]
    for i, (command, want) in enumerate(cases):
        tag = b"c%d" % i
        r = m.cmd(tag, command)
        assert tagged(r, tag).startswith(tag + b" " + want), (command, r)
    # Valid modified UTF-7 works, and the session is fine.
    r = m.cmd(b"d", b"CREATE &AMk-t&AOk-")
    assert tagged(r, b"d").startswith(b"d OK"), r
    r = m.cmd(b"e", b"SELECT &AMk-t&AOk-")
    assert tagged(r, b"e").startswith(b"e OK"), r
    r = m.cmd(b"f", b"LIST \"\" *")
    assert b"&AMk-t&AOk-" in r and tagged(r, b"f").startswith(b"f OK"), r
    # After ENABLE UTF8=ACCEPT, invalid UTF-8 is still BAD and '&' is plain.
    r = m.cmd(b"g", b"ENABLE UTF8=ACCEPT")
    assert tagged(r, b"g").startswith(b"g OK"), r
    r = m.cmd(b"h", b"CREATE \"\xc3\x28\"")
    assert tagged(r, b"h").startswith(b"h BAD"), r
    r = m.cmd(b"i", "CREATE \"Café\"".encode())
    assert tagged(r, b"i").startswith(b"i OK"), r
    r = m.cmd(b"j", b"NOOP")
    assert tagged(r, b"j").startswith(b"j OK"), r
    m.close()


@pytest.mark.parametrize("bad", [b"\xff\x00 garbage", b"a FETCH 1 FLAGS"])
def test_imap_bad_commands_limit(launcher, bad):
    """10 invalid commands in a row (unparsable, or not allowed in the state): BYE."""
    srv = launcher()
    user, pw = srv.new_user("il")
    m = RawImap(srv.imap_port)
    m.login(user, pw)
    for _ in range(9):
        m.send(bad + b"\r\n")
        assert b"BAD" in m.line()
    m.send(bad + b"\r\n")
    said = m.line() + m.buf + eof_or_reset(m.sock)
    assert b"BAD" in said and b"* BYE" in said, said


def test_imap_good_command_resets_the_bad_count(launcher):
    srv = launcher()
    user, pw = srv.new_user("ir")
    m = RawImap(srv.imap_port)
    m.login(user, pw)
    for round_ in range(3):
        for i in range(9):
            r = m.cmd(b"x%d" % i, b"FETCH 1 FLAGS")
            assert b"BAD" in r, r
        r = m.cmd(b"n%d" % round_, b"NOOP")
        assert b"OK" in r, r
    m.close()


# --- pipelining flood -----------------------------------------------------------------

FLOOD = 200_000


class Flooder:
    """Sends FLOOD pipelined commands on one connection without reading a reply, in
    64 KiB writes from a thread, counting what went out."""

    def __init__(self, sock: socket.socket, command: bytes, times: int = FLOOD):
        self.sock = sock
        self.payload = command * times
        self.sent = 0
        self.error: Exception | None = None
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        try:
            self.sock.settimeout(None)
            view = memoryview(self.payload)
            while self.sent < len(self.payload):
                self.sent += self.sock.send(view[self.sent:self.sent + 65536])
        except OSError as e:
            self.error = e

    def stalled(self, wait: float = 1.0) -> bool:
        """True when nothing more went out for `wait` seconds and some is left."""
        before = self.sent
        time.sleep(wait)
        return self.sent == before and self.sent < len(self.payload)


def small_buffer_socket(port: int) -> socket.socket:
    """A client socket with small kernel buffers, so that a server which stops reading
    shows within a few hundred KiB."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32 * 1024)
    s.settimeout(TIMEOUT)
    s.connect(("127.0.0.1", port))
    return s


def recv_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            raise EOFError(data)
        data += chunk
    return data


def read_until(sock: socket.socket, last: bytes) -> bytes:
    """Lines up to and including one that starts with `last`."""
    out = b""
    while True:
        line = recv_line(sock)
        out += line
        if line.startswith(last):
            return out


@pytest.mark.parametrize("service", ["imap", "pop3"])
def test_pipelined_flood_is_held_back_by_tcp(launcher, service):
    """200,000 pipelined commands (NOOP and CAPABILITY / CAPA, in turn), no reply
    read: the server writes its buffered replies out before it reads again, so once
    the client takes no replies the server stops reading, TCP holds the client back,
    memory stays flat, and another user is served meanwhile. Once the client reads,
    every reply comes, in order."""
    srv = launcher()
    user, pw = srv.new_user("pf")
    other, opw = srv.new_user("po")
    pid = srv.proc.pid
    port = srv.imap_port if service == "imap" else srv.pop3_port
    s = small_buffer_socket(port)
    recv_line(s)  # greeting
    if service == "imap":
        s.sendall(f'l LOGIN {user} "{pw}"\r\n'.encode())
        read_until(s, b"l OK")
        command = b"a NOOP\r\nb CAPABILITY\r\n"
        s.sendall(command)
        reply = read_until(s, b"a OK") + read_until(s, b"b OK")
    else:
        s.sendall(f"USER {user}\r\n".encode())
        assert recv_line(s).startswith(b"+OK")
        s.sendall(f"PASS {pw}\r\n".encode())
        assert recv_line(s).startswith(b"+OK")
        command = b"NOOP\r\nCAPA\r\n"
        s.sendall(command)
        reply = recv_line(s) + read_until(s, b".\r\n")
    before = rss_kib(pid)
    f = Flooder(s, command, FLOOD // 2)
    deadline = time.monotonic() + 30
    while not f.stalled():
        assert time.monotonic() < deadline, f"never held back ({f.sent} octets sent)"
    assert f.error is None, f.error
    total = len(f.payload)
    sent_at_stall = f.sent
    assert f.sent < total, "everything went out: the server read without writing"
    during = rss_kib(pid)
    # Another user is served while the flooder's replies wait.
    start = time.monotonic()
    m = srv.imap(other, opw)
    typ, data = m.select("INBOX")
    assert typ == "OK", data
    m.logout()
    p = srv.pop(other, opw)
    assert p.stat() == (0, 0)
    p.quit()
    served_in = time.monotonic() - start
    assert served_in < 5, served_in
    assert during - before < 32 * 1024, f"RSS grew by {during - before} KiB"
    # The flooder now reads: every reply arrives, in order, and then the session works.
    s.settimeout(60)
    got = 0
    buf = b""
    want = len(reply) * (FLOOD // 2)
    while got < want:
        chunk = s.recv(1 << 20)
        assert chunk, f"closed after {got} of {want} octets of replies"
        buf += chunk
        keep = len(buf) - len(buf) % len(reply)
        assert buf[:keep] == reply * (keep // len(reply)), buf[:200]
        got += keep
        buf = buf[keep:]
    f.thread.join(timeout=30)
    assert f.sent == total and f.error is None
    after = rss_kib(pid)
    print(f"{service}: {FLOOD} pipelined commands held back at {sent_at_stall >> 10} KiB; "
          f"RSS {before} -> {during} -> {after} KiB; other user served in {served_in:.2f} s")
    s.close()


def test_smtp_pipelined_flood_is_cut_off(launcher):
    """SMTP: NOOP and RSET are junk commands; after 100 of them (Limits::max_junk_commands)
    the server says 421 and closes, with its memory flat."""
    srv = launcher()
    user, pw = srv.new_user("sf")
    pid = srv.proc.pid
    before = rss_kib(pid)
    s = small_buffer_socket(srv.smtp_port)
    recv_line(s)
    f = Flooder(s, b"NOOP\r\nRSET\r\n", FLOOD // 2)
    said = eof_or_reset(s, 30)
    f.thread.join(timeout=30)
    assert not f.thread.is_alive()
    assert b"421 4.7.0" in said, said[-300:]
    assert said.count(b"250 ") <= 100, said.count(b"250 ")
    assert f.sent < len(f.payload)
    assert rss_kib(pid) - before < 32 * 1024
    m = srv.imap(user, pw)
    assert m.select("INBOX")[0] == "OK"
    m.logout()
