"""SMTP with real peers (issue 3): smtplib and raw sockets on port 25, swaks on the
submission ports, Debian's Postfix as the remote MTA (smarthost path, MX path through
dnsmasq, bounces, and Postfix relaying into buudien), a scripted SMTP server for retries,
queue commands and kill -9. Everything received is read back over POP3: one store.

Ports: every server listens on free loopback ports; "25", "587" and "465" below mean
its `smtp`, `submission` and `submissions` listeners.
"""

from __future__ import annotations

import email
import email.policy
import os
import poplib
import re
import select
import shutil
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

from conftest import DOMAIN, PASSWORD, TIMEOUT, Server, launch
from peers import REJECTED, wait_until

MAX_SIZE = 1 << 20  # [smtp] max_message_size = "1M" on the shared server
MAX_RCPTS = 100  # the smallest limit the issue allows


# --- helpers ----------------------------------------------------------------------------


def uid() -> str:
    return uuid.uuid4().hex[:10]


def mail(subject: str, frm: str, to: str, body: str = "Hello.\r\n",
         headers: str | None = None) -> bytes:
    """A small message with CRLF line ends; `headers` replaces the default set."""
    if headers is None:
        headers = (f"From: {frm}\r\nTo: {to}\r\nSubject: {subject}\r\n"
                   f"Message-ID: <{uid()}@client.test>\r\n"
                   f"Date: Thu, 01 Jan 2026 00:00:00 +0000\r\n")
    return (headers + "\r\n" + body).encode()


def header_block(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0] + b"\r\n"


def headers_of(raw: bytes) -> email.message.Message:
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def unfolded(msg: email.message.Message, name: str) -> list[str]:
    return [re.sub(r"\s+", " ", str(v)) for v in msg.get_all(name) or []]


def status_of(text: bytes | str) -> str:
    """The enhanced status code at the start of a reply text ("" if none)."""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    m = re.match(r"\s*([245]\.\d{1,3}\.\d{1,3})\b", text)
    return m.group(1) if m else ""


def mailbox(srv: Server, user: str, password: str = PASSWORD,
            utf8: bool = False) -> list[bytes]:
    """Every message in the user's maildrop over POP3 (nothing deleted), retrying
    briefly while another session holds the maildrop lock. `utf8` enables RFC 6856
    UTF8 mode first: without it, header fields with raw UTF-8 come as the ASCII
    surrogate (RFC 2047 encoded-words)."""
    deadline = time.monotonic() + 10
    while True:
        p = poplib.POP3("127.0.0.1", srv.pop3_port, timeout=TIMEOUT)
        try:
            if utf8:  # RFC 6856: in the AUTHORIZATION state
                assert p.utf8().startswith(b"+OK")
            p.user(user)
            p.pass_(password)
        except poplib.error_proto as e:
            p.close()
            if b"[IN-USE]" in e.args[0] and time.monotonic() < deadline:
                time.sleep(0.1)
                continue
            raise
        try:
            count, _ = p.stat()
            return [b"\r\n".join(p.retr(i)[1]) + b"\r\n" for i in range(1, count + 1)]
        finally:
            p.quit()


def wait_message(srv: Server, user: str, needle: bytes, timeout: float = 30,
                 password: str = PASSWORD) -> bytes:
    """The first message in the user's INBOX containing `needle`, waiting for it."""
    return wait_until(
        lambda: next((m for m in mailbox(srv, user, password) if needle in m), None),
        f"a message containing {needle!r} in the INBOX of {user}", timeout=timeout,
        interval=0.3,
    )


def smtp(srv: Server, helo: str = "client.test") -> smtplib.SMTP:
    s = smtplib.SMTP("127.0.0.1", srv.smtp_port, local_hostname=helo, timeout=TIMEOUT)
    s.ehlo()
    return s


def submission(srv: Server, user: str | None = None, password: str = PASSWORD,
               implicit: bool = False) -> smtplib.SMTP:
    """A submission client as Thunderbird sets it up: STARTTLS on 587 (or implicit TLS
    on 465) with the certificate verified, then AUTH PLAIN."""
    if implicit:
        s = smtplib.SMTP_SSL("127.0.0.1", srv.submissions_port, local_hostname="client.test",
                             timeout=TIMEOUT, context=srv.tls_context())
    else:
        s = smtplib.SMTP("127.0.0.1", srv.submission_port, local_hostname="client.test",
                         timeout=TIMEOUT)
        s.ehlo()
        s.starttls(context=srv.tls_context())
    s.ehlo()
    if user is not None:
        s.user, s.password = user, password
        code, text = s.auth("PLAIN", s.auth_plain)
        assert code == 235, (code, text)
    return s


def submit(srv: Server, user: str, rcpts: list[str], msg: bytes,
           password: str = PASSWORD, sender: str | None = None) -> None:
    with submission(srv, user, password) as s:
        refused = s.sendmail(sender or user, rcpts, msg)
        assert refused == {}, refused


class Reply:
    def __init__(self, code: int, lines: list[bytes]):
        self.code = code
        self.lines = lines

    @property
    def text(self) -> bytes:
        return self.lines[0][4:] if self.lines else b""

    def __repr__(self) -> str:
        return f"Reply({self.code}, {self.lines!r})"


class RawSmtp:
    """A bare SMTP connection, for exact bytes on the wire (pipelining, smuggling,
    STARTTLS injection)."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.buf = b""
        self.greeting = self.reply()
        assert self.greeting.code == 220, self.greeting

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _line(self) -> bytes:
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError(f"connection closed; unparsed: {self.buf!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line + b"\n"

    def reply(self) -> Reply:
        lines = []
        while True:
            line = self._line()
            lines.append(line.rstrip(b"\r\n"))
            if len(line) >= 4 and line[3:4] != b"-":
                return Reply(int(line[:3]), lines)

    def cmd(self, line: bytes | str) -> Reply:
        if isinstance(line, str):
            line = line.encode()
        self.send(line + b"\r\n")
        return self.reply()

    def replies_until_eof(self) -> list[Reply]:
        out = []
        while True:
            try:
                out.append(self.reply())
            except (EOFError, ConnectionResetError):
                return out

    def pending(self, wait: float) -> bytes:
        """Whatever the server sends within `wait` seconds (without a request)."""
        data = self.buf
        self.buf = b""
        end = time.monotonic() + wait
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return data
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                return data
            chunk = self.sock.recv(65536)
            if not chunk:
                return data
            data += chunk

    def starttls(self, ctx: ssl.SSLContext) -> None:
        assert self.buf == b"", f"plaintext left before TLS: {self.buf!r}"
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")

    def close(self) -> None:
        self.sock.close()


def queue_list(srv: Server) -> str:
    return srv.cli("queue", "list").stdout.decode()


def queued_id(srv: Server, rcpt: str) -> str | None:
    """The id of the queued message with `rcpt` as a pending recipient, if any.

    `queue list` prints a line per message (id first) and an indented line per
    recipient (address, state, attempts, next attempt, last reply)."""
    current = None
    for line in queue_list(srv).splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            current = line.split()[0]
        elif current and rcpt in line.split() and "pending" in line.split():
            return current
    return None


def deferred_id(srv: Server, rcpt: str) -> str | None:
    """The id of the queued message once a failed attempt for `rcpt` is recorded
    (pending, at least one attempt, a last reply): acting on the queue before that
    races with the attempt still in flight."""
    current = None
    for line in queue_list(srv).splitlines():
        if not line.strip():
            continue
        if not line[0].isspace():
            current = line.split()[0]
            continue
        fields = line.split()
        m = re.search(r"\b(\d+) attempts?\b", line)
        if current and rcpt in fields and "pending" in fields and m and int(m.group(1)) >= 1:
            return current
    return None


def dsn_fields(raw: bytes) -> tuple[email.message.Message, str]:
    """Checks the RFC 3464 structure of a DSN and returns it with the text of its
    delivery-status part."""
    msg = headers_of(raw)
    assert msg.get_content_type() == "multipart/report", header_block(raw)
    report_type = msg.get_param("report-type")
    assert report_type in ("delivery-status", "global-delivery-status"), report_type
    parts = msg.get_payload()
    types = [p.get_content_type() for p in parts]
    assert types[0] == "text/plain" or types[0].startswith("text/"), types
    status_type = f"message/{report_type}"
    assert status_type in types, types
    assert any(t in types for t in ("message/rfc822", "text/rfc822-headers",
                                    "message/global", "message/global-headers")), types
    status = parts[types.index(status_type)]
    payload = status.get_payload()
    if isinstance(payload, list):  # compat32 parses the blocks as header sets
        text = "\n".join(str(block) for block in payload)
    else:
        text = str(payload)
    return msg, text


def swaks_cmd() -> str:
    path = shutil.which("swaks")
    if path is None:
        pytest.fail("swaks is not installed (test.sh installs it)")
    r = subprocess.run([path, "--support"], capture_output=True, text=True,
                       timeout=TIMEOUT)
    support = r.stdout + r.stderr
    for feature in ("=== TLS supported", "=== Basic AUTH supported"):
        if feature not in support:
            pytest.fail(f"swaks lacks {feature[4:]} (test.sh installs "
                        f"libio-socket-ssl-perl):\n{support}")
    return path


def swaks(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [swaks_cmd(), "--server", "127.0.0.1", "--helo", "client.test",
         "--timeout", "15", *args],
        capture_output=True, text=True, timeout=60,
    )


# --- the shared server ------------------------------------------------------------------


@pytest.fixture(scope="module")
def mta(buudien_bin, dns_peer):
    """One buudien with all SMTP listeners, MX lookups through dnsmasq (remote.test's
    MX is the Postfix peer's address, port 25), a 1 MiB size limit and 100 recipients."""
    root = Path(tempfile.mkdtemp(prefix="buudien-e2e-smtp-"))
    sections = f"""
[smtp]
max_message_size = "1M"
max_recipients = {MAX_RCPTS}
subaddress_separator = "+"
allow_plaintext_auth = false

[queue]
retry = ["1s", "2s"]
expire = "5d"
mx_port = 25

[dns]
servers = ["{dns_peer.host}:{dns_peer.port}"]
"""
    try:
        srv = launch(buudien_bin, root, smtp=True, sections=sections)
    except BaseException:
        if os.environ.get("BUUDIEN_E2E_KEEP") != "1":
            shutil.rmtree(root, ignore_errors=True)
        raise
    try:
        yield srv
    finally:
        code = srv.stop()
        if code == 0:
            shutil.rmtree(root, ignore_errors=True)
        assert code == 0, f"buudien serve exited {code} after SIGTERM:\n{srv.log()}"


def canary_goes_through(srv: Server, fake, user: str) -> None:
    """Sends one more message through the queue and waits for it at `fake`: the queue
    has run since whatever the test did before (better than sleeping)."""
    submit(srv, user, ["canary@remote.test"], mail("canary", user, "canary@remote.test"))
    srv.cli("queue", "flush")
    wait_until(lambda: any("canary@remote.test" in t.recipients for t in fake.delivered()),
               "the canary message at the fake SMTP server", timeout=20, interval=0.1)


def smarthost_sections(host: str, port: int, retry: str = '["1s", "1s"]',
                       tls: str | None = "none") -> str:
    tls_line = f'smarthost_tls = "{tls}"\n' if tls else ""
    return f"""
[smtp]
max_message_size = "50M"

[queue]
smarthost = "{host}:{port}"
{tls_line}retry = {retry}
expire = "5d"
"""


# --- port 25: inbound -------------------------------------------------------------------


def test_ehlo_keywords(mta):
    with smtp(mta) as s:
        f = s.esmtp_features
        for kw in ("pipelining", "size", "8bitmime", "enhancedstatuscodes", "smtputf8",
                   "chunking", "dsn", "starttls"):
            assert kw in f, f"EHLO lacks {kw.upper()}: {f}"
        assert "binarymime" not in f
        assert f["size"].strip() == str(MAX_SIZE), f["size"]
        s.starttls(context=mta.tls_context())
        s.ehlo()
        assert "starttls" not in s.esmtp_features, "STARTTLS offered again after TLS"


def test_inbound_delivery_read_over_pop3(mta):
    user, pw = mta.new_user("in")
    subject = f"inbound {uid()}"
    msg = mail(subject, "sender@elsewhere.test", user, body="Line one.\r\n.dot line\r\n")
    with smtp(mta) as s:
        assert s.sendmail("sender@elsewhere.test", [user], msg) == {}
    # 250 means durable: the message is there now, without waiting.
    (stored,) = mailbox(mta, user, pw)
    assert stored.endswith(msg), stored
    trace = headers_of(stored[: len(stored) - len(msg)] + b"\r\n")
    assert unfolded(trace, "Return-Path") == ["<sender@elsewhere.test>"], header_block(stored)
    (received,) = unfolded(trace, "Received")
    assert "client.test" in received and f"mail.{DOMAIN}" in received, received
    assert stored.startswith((b"Return-Path:", b"Received:")), stored[:200]


def test_alias_and_subaddress(mta):
    user, pw = mta.new_user("al")
    alias = f"alias-{uid()}@{DOMAIN}"
    mta.cli("alias", "add", alias, user)
    local, domain = user.split("@")
    tagged = f"{local}+newsletter@{domain}"
    with smtp(mta) as s:
        assert s.sendmail("a@elsewhere.test", [alias], mail("to alias", "a@elsewhere.test",
                                                             alias)) == {}
        assert s.sendmail("a@elsewhere.test", [tagged], mail("to tag", "a@elsewhere.test",
                                                              tagged)) == {}
        # One message for the same account under three names: stored once.
        assert s.sendmail("a@elsewhere.test", [user, tagged, alias],
                          mail("three names", "a@elsewhere.test", user)) == {}
    box = mailbox(mta, user, pw)
    subjects = sorted(headers_of(m)["Subject"] for m in box)
    assert subjects == ["three names", "to alias", "to tag"], subjects


def test_unknown_local_user(mta):
    with smtp(mta) as s:
        assert s.mail("a@elsewhere.test")[0] == 250
        code, text = s.rcpt(f"nosuch-{uid()}@{DOMAIN}")
        assert code == 550 and status_of(text) == "5.1.1", (code, text)


def test_no_open_relay(mta):
    tag = uid()
    attempts = {
        f"relay{tag}@remote.test": ("5.7.1",),
        f"@{DOMAIN}:relay{tag}@remote.test": ("5.7.1",),  # source route
        f"relay{tag}%remote.test@{DOMAIN}": ("5.7.1", "5.1.1"),  # percent hack
        f"relay{tag}@[127.0.0.2]": ("5.7.1",),  # address literal
        f'"relay{tag}@remote.test"@{DOMAIN}': ("5.7.1", "5.1.1"),
    }
    with smtp(mta) as s:
        for rcpt, statuses in attempts.items():
            assert s.mail("a@elsewhere.test")[0] == 250
            code, text = s.docmd(f"RCPT TO:<{rcpt}>")
            assert code in (550, 554) and status_of(text) in statuses, (rcpt, code, text)
            s.rset()
        # A bang path is a local part like any other: unknown user, never relayed.
        assert s.mail("a@elsewhere.test")[0] == 250
        code, text = s.docmd(f"RCPT TO:<remote.test!relay{tag}@{DOMAIN}>")
        assert 500 <= code < 600, (code, text)
    assert f"relay{tag}" not in queue_list(mta)


def test_size_limits(mta):
    user, pw = mta.new_user("sz")
    with smtp(mta) as s:
        code, text = s.docmd(f"MAIL FROM:<a@elsewhere.test> SIZE={MAX_SIZE + 1}")
        assert code == 552 and status_of(text) == "5.3.4", (code, text)
        # Declared small, sent big: refused after the data ends, nothing stored.
        big = mail("too big", "a@elsewhere.test", user, body=("x" * 76 + "\r\n") * 14000)
        assert len(big) > MAX_SIZE
        assert s.mail("a@elsewhere.test", ["SIZE=1000"])[0] == 250
        assert s.rcpt(user)[0] == 250
        code, text = s.data(big)
        assert code == 552 and status_of(text) == "5.3.4", (code, text)
        # The session goes on: a message that fits.
        assert s.sendmail("a@elsewhere.test", [user], mail("fits", "a@elsewhere.test",
                                                           user)) == {}
    box = mailbox(mta, user, pw)
    assert [headers_of(m)["Subject"] for m in box] == ["fits"]


def test_recipient_limit(mta):
    user, pw = mta.new_user("rc")
    local, domain = user.split("@")
    with smtp(mta) as s:
        assert s.mail("a@elsewhere.test")[0] == 250
        for i in range(MAX_RCPTS):
            code, text = s.rcpt(f"{local}+{i}@{domain}")
            assert code == 250, (i, code, text)
        code, text = s.rcpt(f"{local}+over@{domain}")
        assert code == 452 and status_of(text) == "4.5.3", (code, text)
        code, text = s.data(mail("many rcpts", "a@elsewhere.test", user))
        assert code == 250, (code, text)
    assert len(mailbox(mta, user, pw)) == 1


def test_loop_refused(mta):
    user, pw = mta.new_user("loop")
    hops = "".join(f"Received: from hop{i}.test by hop{i + 1}.test; "
                   "Thu, 01 Jan 2026 00:00:00 +0000\r\n" for i in range(101))
    msg = (hops + f"From: a@elsewhere.test\r\nTo: {user}\r\nSubject: looping\r\n"
           "\r\nround and round\r\n").encode()
    with smtp(mta) as s:
        assert s.mail("a@elsewhere.test")[0] == 250
        assert s.rcpt(user)[0] == 250
        code, text = s.data(msg)
    assert code == 554 and status_of(text) == "5.4.6", (code, text)
    assert mailbox(mta, user, pw) == []


def test_quota_checked_at_rcpt(mta):
    user, _ = mta.new_user("quota", quota="10K")
    with smtp(mta) as s:
        assert s.mail("a@elsewhere.test", ["SIZE=50000"])[0] == 250
        code, text = s.rcpt(user)
        assert code == 452 and status_of(text) == "4.2.2", (code, text)


def test_command_limits(mta):
    c = RawSmtp(mta.smtp_port)
    try:
        assert c.cmd("EHLO client.test").code == 250
        # Command lines up to at least 2048 octets.
        r = c.cmd("NOOP " + "x" * 2000)
        assert r.code == 250, r
        # Bad commands: the connection is closed after 20.
        c.send(b"FROBNICATE\r\n" * 30)
        replies = c.replies_until_eof()
    finally:
        c.close()
    assert 20 <= len(replies) <= 22, [r.code for r in replies]
    assert all(r.code >= 400 for r in replies), replies


def test_bdat_chunk_read_and_dropped_on_error(mta):
    c = RawSmtp(mta.smtp_port)
    try:
        assert c.cmd("EHLO client.test").code == 250
        chunk = b"QUIT\r\nQUIT\r\n"
        c.send(b"BDAT %d\r\n" % len(chunk) + chunk)  # no MAIL: an error ...
        r = c.reply()
        assert r.code == 503, r
        # ... and the chunk's octets were read and dropped, not run as commands.
        assert c.cmd("NOOP").code == 250
        # An absurd chunk size: one reply, the connection closed, NOOP never parsed.
        c.send(b"BDAT 99999999999999999999999999\r\nNOOP\r\n")
        replies = c.replies_until_eof()
    finally:
        c.close()
    assert len(replies) == 1 and replies[0].code >= 400, replies


def test_8bitmime_smtputf8_stored_as_received(mta):
    user, pw = mta.new_user("u8")
    sender = "jöran@elsewhere.test"
    msg = (
        f"From: Jöran Đặng <{sender}>\r\nTo: {user}\r\n"
        f"Subject: Grüße, thế giới {uid()}\r\nMessage-ID: <{uid()}@client.test>\r\n"
        "Date: Thu, 01 Jan 2026 00:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
        "\r\nXin chào — 8-bit body ✓ ñ ß 日本\r\n"
        + "long line " + "é" * 600 + "\r\n"  # over 998 octets: accepted as is
    ).encode()
    with smtp(mta) as s:
        assert s.has_extn("smtputf8") and s.has_extn("8bitmime")
        assert s.sendmail(sender, [user], msg,
                          mail_options=["BODY=8BITMIME", "SMTPUTF8"]) == {}
    (stored,) = mailbox(mta, user, pw, utf8=True)
    assert stored.endswith(msg), stored[-400:]
    trace = header_block(stored[: len(stored) - len(msg)] + b"\r\n")
    assert b"Return-Path: <" + sender.encode() + b">\r\n" in trace, trace


SMUGGLING = {
    "lf-dot-lf": b"\n.\n",
    "cr-dot-cr": b"\r.\r",
    "lf-dot-crlf": b"\n.\r\n",
    "cr-dot-crlf": b"\r.\r\n",
    "crlf-dot-lf": b"\r\n.\n",
    "crlf-dot-cr": b"\r\n.\r",
}


@pytest.mark.parametrize("variant", list(SMUGGLING))
def test_smuggling_never_two_messages(mta, variant):
    user, pw = mta.new_user("smug")
    c = RawSmtp(mta.smtp_port)
    try:
        assert c.cmd("EHLO client.test").code == 250
        c.send(f"MAIL FROM:<a@elsewhere.test>\r\nRCPT TO:<{user}>\r\nDATA\r\n".encode())
        codes = [c.reply().code for _ in range(3)]
        assert codes == [250, 250, 354], codes
        c.send(
            b"From: a@elsewhere.test\r\nSubject: smuggling carrier\r\n\r\nfirst part"
            + SMUGGLING[variant]
            + b"MAIL FROM:<evil@elsewhere.test>\r\nRCPT TO:<" + user.encode() + b">\r\n"
            b"DATA\r\nFrom: evil@elsewhere.test\r\nSubject: smuggled\r\n\r\nsmuggled\r\n"
            b".\r\nQUIT\r\n"
        )
        replies = c.replies_until_eof()
    finally:
        c.close()
    # One reply to the end of the data (250, or a refusal of the bare CR/LF), then
    # 221 to QUIT (or a hang-up): never the replies of a second transaction.
    assert replies, "no reply to the end of data"
    first, rest = replies[0], replies[1:]
    assert first.code == 250 or 500 <= first.code < 600, replies
    assert [r.code for r in rest] in ([], [221]), replies
    box = mailbox(mta, user, pw)
    assert len(box) <= 1, box
    for m in box:
        assert b"Subject: smuggled" not in header_block(m), m
        assert b"Subject: smuggling carrier" in header_block(m), m


def test_bdat_dot_is_data_and_sequence_errors(mta):
    user, pw = mta.new_user("bdat")
    c = RawSmtp(mta.smtp_port)
    try:
        assert c.cmd("EHLO client.test").code == 250
        assert c.cmd("MAIL FROM:<a@elsewhere.test>").code == 250
        assert c.cmd(f"RCPT TO:<{user}>").code == 250
        chunk1 = (b"From: a@elsewhere.test\r\nSubject: bdat carrier\r\n\r\nbefore\r\n"
                  b".\r\nMAIL FROM:<evil@elsewhere.test>\r\nRCPT TO:<x@x>\r\nDATA\r\n")
        chunk2 = b"after\r\n"
        c.send(b"BDAT %d\r\n" % len(chunk1) + chunk1)
        r = c.reply()
        assert r.code == 250, r
        c.send(b"BDAT %d LAST\r\n" % len(chunk2) + chunk2)
        r = c.reply()
        assert r.code == 250, r
        # DATA inside a BDAT transaction: 503.
        assert c.cmd("MAIL FROM:<a@elsewhere.test>").code == 250
        assert c.cmd(f"RCPT TO:<{user}>").code == 250
        c.send(b"BDAT 5\r\nabcde")
        assert c.reply().code == 250
        r = c.cmd("DATA")
        assert r.code == 503, r
        assert c.cmd("RSET").code == 250
        assert c.cmd("QUIT").code == 221
    finally:
        c.close()
    (stored,) = mailbox(mta, user, pw)
    assert stored.endswith(chunk1 + chunk2), stored


@pytest.mark.parametrize("service", ["smtp", "submission"])
def test_starttls_injection_discarded(mta, service):
    port = mta.smtp_port if service == "smtp" else mta.submission_port
    c = RawSmtp(port)
    try:
        assert c.cmd("EHLO client.test").code == 250
        c.send(b"STARTTLS\r\nRSET\r\n")  # one write: RSET rides along in plaintext
        r = c.reply()
        assert r.code == 220, r
        extra = c.pending(1.0)
        assert extra == b"", f"replied to the injected command before TLS: {extra!r}"
        c.starttls(mta.tls_context())
        c.send(b"EHLO client.test\r\n")
        r = c.reply()
        # The first reply inside TLS is EHLO's (multi-line), not one to the RSET.
        assert r.code == 250 and len(r.lines) > 1, r
        assert not any(b"STARTTLS" in line.upper() for line in r.lines[1:]), r
        assert c.cmd("NOOP").code == 250
        assert c.cmd("QUIT").code == 221
    finally:
        c.close()


def test_enhanced_status_codes(mta):
    user, _ = mta.new_user("esc")
    c = RawSmtp(mta.smtp_port)
    try:
        assert c.cmd("EHLO client.test").code == 250
        replies = [c.cmd("NOOP"), c.cmd("MAIL FROM:<a@elsewhere.test>"),
                   c.cmd(f"RCPT TO:<{user}>"), c.cmd(f"RCPT TO:<nosuch-{uid()}@{DOMAIN}>")]
        data = c.cmd("DATA")
        assert data.code == 354 and not status_of(data.text), data  # never on 3xx
        c.send(b"Subject: esc\r\n\r\nx\r\n.\r\n")
        replies += [c.reply(), c.cmd("RSET"), c.cmd("VRFY someone"), c.cmd("FROB"),
                    c.cmd("QUIT")]
    finally:
        c.close()
    for r in replies:
        assert status_of(r.text)[:1] == str(r.code)[0], r


# --- submission (587, 465) ----------------------------------------------------------------


def test_submission_starttls_auth_plain_like_thunderbird(mta):
    user, pw = mta.new_user("tb")
    friend, fpw = mta.new_user("tbf")
    subject = f"from thunderbird {uid()}"
    with smtplib.SMTP("127.0.0.1", mta.submission_port, local_hostname="client.test",
                      timeout=TIMEOUT) as s:
        s.ehlo()
        assert s.has_extn("starttls")
        s.starttls(context=mta.tls_context())  # verified: the test's own certificate
        s.ehlo()
        mechs = s.esmtp_features.get("auth", "").upper().split()
        assert "PLAIN" in mechs and "LOGIN" in mechs, s.esmtp_features
        s.user, s.password = user, pw
        assert s.auth("PLAIN", s.auth_plain)[0] == 235
        # No Message-ID and no Date: submission adds them (RFC 6409 §8).
        msg = mail(subject, user, friend,
                   headers=f"From: {user}\r\nTo: {friend}\r\nSubject: {subject}\r\n")
        assert s.sendmail(user, [friend], msg) == {}
    stored = wait_message(mta, friend, subject.encode(), timeout=10, password=fpw)
    h = headers_of(stored)
    assert h["Message-ID"] and re.match(r"<[^@>]+@[^>]+>", h["Message-ID"].strip()), h
    assert h["Date"], header_block(stored)
    received = unfolded(h, "Received")[0]
    assert re.search(r"TLS|ESMTPS", received), received
    assert "ESMTPSA" in received or user in received, received


def test_swaks_submission_587_starttls(mta):
    user, pw = mta.new_user("sw")
    friend, fpw = mta.new_user("swf")
    subject = f"swaks 587 {uid()}"
    r = swaks("--port", str(mta.submission_port), "--tls", "--auth", "PLAIN",
              "--auth-user", user, "--auth-password", pw,
              "--from", user, "--to", friend, "--header", f"Subject: {subject}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "<~  250" in r.stdout  # the transaction ran inside TLS
    wait_message(mta, friend, subject.encode(), timeout=10, password=fpw)


def test_swaks_submissions_465_implicit_tls(mta):
    user, pw = mta.new_user("sws")
    friend, fpw = mta.new_user("swsf")
    subject = f"swaks 465 {uid()}"
    r = swaks("--port", str(mta.submissions_port), "--tlsc", "--auth", "LOGIN",
              "--auth-user", user, "--auth-password", pw,
              "--from", user, "--to", friend, "--header", f"Subject: {subject}")
    assert r.returncode == 0, r.stdout + r.stderr
    wait_message(mta, friend, subject.encode(), timeout=10, password=fpw)


def test_swaks_wrong_password(mta):
    user, _ = mta.new_user("swbad")
    r = swaks("--port", str(mta.submission_port), "--tls", "--auth", "PLAIN",
              "--auth-user", user, "--auth-password", "not the password",
              "--from", user, "--to", user)
    assert r.returncode != 0, r.stdout
    assert "535 5.7.8" in r.stdout, r.stdout


def test_mail_before_auth(mta):
    user, _ = mta.new_user("noauth")
    r = swaks("--port", str(mta.submission_port), "--tls", "--from", user, "--to", user)
    assert r.returncode != 0, r.stdout
    assert "530 5.7.0" in r.stdout, r.stdout
    with submission(mta, implicit=True) as s:
        code, text = s.mail(user)
        assert code == 530 and status_of(text) == "5.7.0", (code, text)


def test_sender_must_be_the_users(mta):
    user, pw = mta.new_user("snd")
    other, _ = mta.new_user("victim")
    alias = f"snd-alias-{uid()}@{DOMAIN}"
    mta.cli("alias", "add", alias, user)
    local, domain = user.split("@")

    r = swaks("--port", str(mta.submission_port), "--tls", "--auth", "PLAIN",
              "--auth-user", user, "--auth-password", pw, "--from", other, "--to", user)
    assert r.returncode != 0, r.stdout
    assert re.search(r"55[03] 5\.7\.1", r.stdout), r.stdout

    with submission(mta, user, pw) as s:
        for spoof in (other, "ceo@bank.test", f"{local}x@{domain}"):
            code, text = s.mail(spoof)
            assert code in (550, 553) and status_of(text) == "5.7.1", (spoof, code, text)
            s.rset()
        for own in (user, f"{local}+tag@{domain}", alias, ""):
            code, text = s.mail(own)
            assert code == 250, (own, code, text)
            s.rset()
        # The From header is checked too.
        with pytest.raises(smtplib.SMTPDataError) as e:
            s.sendmail(user, [user], mail("forged from", other, user))
        assert e.value.smtp_code in (550, 553) and status_of(e.value.smtp_error) == "5.7.1"


# --- Postfix as the remote MTA -------------------------------------------------------------


def test_smarthost_delivers_to_postfix(launcher, postfix_peer):
    srv = launcher(smarthost_sections(postfix_peer.address, postfix_peer.relay_port,
                                      tls=None), name="smarthost")
    user, pw = srv.new_user("sh")
    subject = f"via smarthost {uid()}"
    submit(srv, user, ["bob@remote.test"], mail(subject, user, "bob@remote.test"))
    got = postfix_peer.wait_for("bob@remote.test", subject.encode())
    h = headers_of(got)
    # Postfix's virtual agent adds the only Return-Path: none on relayed copies.
    assert len(h.get_all("Return-Path") or []) == 1, header_block(got)
    assert any(f"mail.{DOMAIN}" in r for r in unfolded(h, "Received")), header_block(got)
    assert h["Return-Path"].strip() == f"<{user}>"


def test_mx_path_delivers_to_postfix_over_starttls(mta, postfix_peer):
    user, pw = mta.new_user("mx")
    subject = f"via MX {uid()}"
    submit(mta, user, ["carol@remote.test", "dave@implicit.test"],
           mail(subject, user, "carol@remote.test"))
    for rcpt in ("carol@remote.test", "dave@implicit.test"):  # MX, then implicit MX (A)
        got = postfix_peer.wait_for(rcpt, subject.encode())
        top = unfolded(headers_of(got), "Received")[0]
        assert "by mx.remote.test (Postfix)" in top, top
        assert "(using TLS" in top, f"opportunistic STARTTLS not used: {top}"


def test_remote_rejection_comes_back_as_dsn(mta, postfix_peer):
    user, pw = mta.new_user("dsn")
    subject = f"half rejected {uid()}"
    submit(mta, user, ["erin@remote.test", REJECTED], mail(subject, user, "erin@remote.test"))
    postfix_peer.wait_for("erin@remote.test", subject.encode())
    dsn = wait_message(mta, user, b"multipart/report", timeout=30, password=pw)
    msg, status = dsn_fields(dsn)
    assert unfolded(msg, "Return-Path") == ["<>"], header_block(dsn)  # from MAIL FROM:<>
    final = rf"(?im)^Final-Recipient:\s*rfc822;\s*{re.escape(REJECTED)}\s*$"
    assert re.search(final, status), status
    assert re.search(r"(?im)^Action:\s*failed\s*$", status), status
    assert re.search(r"(?im)^Status:\s*5\.1\.1\s*$", status), status
    assert re.search(r"(?im)^Diagnostic-Code:\s*smtp;\s*550", status), status
    assert "erin@remote.test" not in status, "the delivered recipient is not in the DSN"
    assert subject.encode() in dsn, "the original headers are returned"
    # Only one DSN, and nothing else came back.
    time.sleep(2)
    assert len([m for m in mailbox(mta, user, pw) if b"multipart/report" in m]) == 1


def test_null_mx_bounces(mta):
    user, pw = mta.new_user("nullmx")
    subject = f"to a null MX {uid()}"
    submit(mta, user, ["someone@nullmx.test"], mail(subject, user, "someone@nullmx.test"))
    dsn = wait_message(mta, user, b"multipart/report", timeout=30, password=pw)
    _, status = dsn_fields(dsn)
    assert re.search(r"(?im)^Status:\s*5\.1\.10\s*$", status), status  # RFC 7505 §4.3
    assert subject.encode() in dsn


def test_postfix_relays_into_buudien(mta, postfix_peer):
    user, pw = mta.new_user("pf")
    postfix_peer.route(DOMAIN, "127.0.0.1", mta.smtp_port)
    subject = f"from postfix {uid()}"
    postfix_peer.sendmail("bob@remote.test", [user],
                          f"From: bob@remote.test\nTo: {user}\nSubject: {subject}\n\n"
                          "Sent with Postfix's sendmail.\n".encode())
    got = wait_message(mta, user, subject.encode(), timeout=30, password=pw)
    h = headers_of(got)
    assert unfolded(h, "Return-Path") == ["<bob@remote.test>"], header_block(got)
    received = unfolded(h, "Received")
    assert len(received) >= 2, received  # buudien's on top of Postfix's own
    assert "mx.remote.test" in received[0], received[0]
    assert re.search(r"TLS|ESMTPS", received[0]), f"Postfix did not use STARTTLS: {received[0]}"
    assert b"Sent with Postfix's sendmail.\r\n" in got


# --- the queue: retries, commands, bounces, kill -9 ------------------------------------


def test_retry_after_4xx(launcher, fake_smtp):
    fake = fake_smtp(defer_first=2)
    srv = launcher(smarthost_sections("127.0.0.1", fake.port), name="retry")
    user, _ = srv.new_user("rt")
    rcpt = f"retry-{uid()}@remote.test"
    submit(srv, user, [rcpt], mail("retried", user, rcpt))
    # Pending in the queue while the peer defers ...
    wait_until(lambda: queued_id(srv, rcpt), f"{rcpt} pending in `queue list`", timeout=5,
               interval=0.05)
    # ... then delivered once, on the third attempt.
    (tx,) = fake.wait_delivered(1, timeout=20)
    assert tx.recipients == [rcpt] and tx.sender == user
    assert b"Subject: retried\r\n" in tx.data
    assert fake.attempts() == 3, fake.transcript
    time.sleep(2)
    assert len(fake.delivered()) == 1
    assert queued_id(srv, rcpt) is None, queue_list(srv)


def test_queue_flush(launcher, fake_smtp):
    fake = fake_smtp(defer_all=True)
    srv = launcher(smarthost_sections("127.0.0.1", fake.port, retry='["1h"]'), name="flush")
    user, _ = srv.new_user("fl")
    rcpt = f"flush-{uid()}@remote.test"
    submit(srv, user, [rcpt], mail("flushed", user, rcpt))
    fake.wait_attempts(1, timeout=15)
    qid = wait_until(lambda: deferred_id(srv, rcpt), f"the deferral of {rcpt} recorded",
                     timeout=10)
    assert "next attempt" in queue_list(srv)
    fake.defer_all = False
    time.sleep(1)
    assert fake.delivered() == [], "retried before the 1h schedule without a flush"
    srv.cli("queue", "flush", qid)
    (tx,) = fake.wait_delivered(1, timeout=20)
    assert tx.recipients == [rcpt]
    wait_until(lambda: queued_id(srv, rcpt) is None, "the flushed message to leave the queue",
               timeout=5)


def test_queue_flush_all(launcher, fake_smtp):
    fake = fake_smtp(defer_all=True)
    srv = launcher(smarthost_sections("127.0.0.1", fake.port, retry='["1h"]'), name="flushall")
    user, _ = srv.new_user("fa")
    rcpts = [f"flushall-{uid()}@remote.test" for _ in range(2)]
    for rcpt in rcpts:
        submit(srv, user, [rcpt], mail(f"flush all {rcpt}", user, rcpt))
    fake.wait_attempts(2, timeout=15)
    for rcpt in rcpts:
        wait_until(lambda r=rcpt: deferred_id(srv, r), f"the deferral of {rcpt} recorded",
                   timeout=10)
    fake.defer_all = False
    srv.cli("queue", "flush")
    txs = fake.wait_delivered(2, timeout=20)
    assert sorted(r for t in txs for r in t.recipients) == sorted(rcpts)


def test_queue_bounce_sends_dsn(launcher, fake_smtp):
    fake = fake_smtp(defer_all=True)
    srv = launcher(smarthost_sections("127.0.0.1", fake.port, retry='["1h"]'), name="bounce")
    user, pw = srv.new_user("bo")
    rcpt = f"bounce-{uid()}@remote.test"
    subject = f"to be bounced {uid()}"
    submit(srv, user, [rcpt], mail(subject, user, rcpt))
    fake.wait_attempts(1, timeout=15)
    qid = wait_until(lambda: deferred_id(srv, rcpt), f"the deferral of {rcpt} recorded",
                     timeout=10)
    srv.cli("queue", "bounce", qid)
    dsn = wait_message(srv, user, b"multipart/report", timeout=30, password=pw)
    _, status = dsn_fields(dsn)
    assert re.search(rf"(?im)^Final-Recipient:\s*rfc822;\s*{re.escape(rcpt)}\s*$", status), status
    assert re.search(r"(?im)^Action:\s*failed\s*$", status), status
    assert re.search(r"(?im)^Status:\s*5\.\d{1,3}\.\d{1,3}\s*$", status), status
    assert subject.encode() in dsn
    assert queued_id(srv, rcpt) is None, queue_list(srv)
    fake.defer_all = False
    canary_goes_through(srv, fake, user)
    assert [t.recipients for t in fake.delivered()] == [["canary@remote.test"]], \
        "a bounced message was still delivered"


def test_queue_remove(launcher, fake_smtp):
    fake = fake_smtp(defer_all=True)
    srv = launcher(smarthost_sections("127.0.0.1", fake.port, retry='["1h"]'), name="remove")
    user, pw = srv.new_user("rm")
    rcpt = f"remove-{uid()}@remote.test"
    submit(srv, user, [rcpt], mail("to be removed", user, rcpt))
    fake.wait_attempts(1, timeout=15)
    qid = wait_until(lambda: deferred_id(srv, rcpt), f"the deferral of {rcpt} recorded",
                     timeout=10)
    srv.cli("queue", "remove", qid)
    assert qid not in queue_list(srv)
    fake.defer_all = False
    srv.cli("queue", "flush")
    canary_goes_through(srv, fake, user)
    assert [t.recipients for t in fake.delivered()] == [["canary@remote.test"]], \
        "a removed message was still delivered"
    assert mailbox(srv, user, pw) == [], "remove is silent: no DSN"


def test_5xx_at_end_of_data_bounces_with_diagnostic(launcher, fake_smtp):
    fake = fake_smtp(reject_data="554 5.7.26 fake: content refused")
    srv = launcher(smarthost_sections("127.0.0.1", fake.port), name="reject")
    user, pw = srv.new_user("rj")
    rcpt = f"refused-{uid()}@remote.test"
    subject = f"refused content {uid()}"
    submit(srv, user, [rcpt], mail(subject, user, rcpt))
    dsn = wait_message(srv, user, b"multipart/report", timeout=30, password=pw)
    _, status = dsn_fields(dsn)
    assert re.search(r"(?im)^Status:\s*5\.7\.26\s*$", status), status
    assert re.search(r"(?im)^Diagnostic-Code:\s*smtp;\s*554 5\.7\.26", status), status
    assert fake.attempts() == 1, "a 5xx is final: no retry"


def test_kill9_with_deferred_work_then_restart(launcher, fake_smtp):
    """Nothing is lost, and no 250 was given before the kill: exactly one delivery."""
    fake = fake_smtp(defer_first=1)
    srv = launcher(smarthost_sections("127.0.0.1", fake.port, retry='["2s"]'), name="kill-defer")
    user, _ = srv.new_user("kd")
    rcpt = f"kill-defer-{uid()}@remote.test"
    submit(srv, user, [rcpt], mail("survives kill -9", user, rcpt))
    fake.wait_attempts(1, timeout=15)
    srv.kill9()
    assert queued_id(srv, rcpt), f"not in the queue after kill -9:\n{queue_list(srv)}"
    srv.start()
    (tx,) = fake.wait_delivered(1, timeout=30)
    assert tx.recipients == [rcpt]
    time.sleep(2)
    assert len(fake.delivered()) == 1, fake.transcript


def test_kill9_during_slow_delivery_then_restart(launcher, fake_smtp):
    """Killed while the remote sits on the end of data: delivered after the restart, at
    least once and at most twice (the remote may have taken the first copy)."""
    fake = fake_smtp(data_delay=4.0)
    srv = launcher(smarthost_sections("127.0.0.1", fake.port, retry='["1s"]'), name="kill-slow")
    user, _ = srv.new_user("ks")
    rcpt = f"kill-slow-{uid()}@remote.test"
    submit(srv, user, [rcpt], mail("survives a slow kill -9", user, rcpt))
    wait_until(lambda: any(t.data is not None for t in fake.transactions),
               "the message data at the slow peer", timeout=15, interval=0.05)
    srv.kill9()
    fake.data_delay = 0.0
    srv.start()
    wait_until(lambda: queued_id(srv, rcpt) is None and fake.delivered(),
               "delivery after the restart", timeout=30, interval=0.2)
    time.sleep(2)
    copies = [t for t in fake.transactions if t.data is not None and rcpt in t.recipients]
    assert 1 <= len(copies) <= 2, fake.transcript
    assert all(b"Subject: survives a slow kill -9\r\n" in t.data for t in copies)


def test_dsn_parameters_passed_on(launcher, fake_smtp):
    fake = fake_smtp(extensions=("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES", "DSN"))
    srv = launcher(smarthost_sections("127.0.0.1", fake.port), name="dsnparams")
    user, pw = srv.new_user("dp")
    rcpt = f"params-{uid()}@remote.test"
    with submission(srv, user, pw) as s:
        assert s.sendmail(user, [rcpt], mail("with DSN parameters", user, rcpt),
                          mail_options=["RET=HDRS", "ENVID=env-4711"],
                          rcpt_options=["NOTIFY=FAILURE,DELAY", f"ORCPT=rfc822;{rcpt}"]) == {}
    (tx,) = fake.wait_delivered(1, timeout=20)
    assert re.search(r"(?i)\bRET=HDRS\b", tx.mail_params), tx.mail_params
    assert "ENVID=env-4711" in tx.mail_params, tx.mail_params
    params = tx.rcpt_params[rcpt]
    m = re.search(r"(?i)\bNOTIFY=(\S+)", params)
    assert m and set(m.group(1).upper().split(",")) == {"FAILURE", "DELAY"}, params
    assert re.search(rf"(?i)\bORCPT=rfc822;{re.escape(rcpt)}(\s|$)", params), params


def test_success_notify_through_hop_without_dsn_is_relayed(launcher, fake_smtp):
    fake = fake_smtp()  # no DSN extension
    srv = launcher(smarthost_sections("127.0.0.1", fake.port), name="relayed")
    user, pw = srv.new_user("rl")
    rcpt = f"relayed-{uid()}@remote.test"
    subject = f"tell me when delivered {uid()}"
    with submission(srv, user, pw) as s:
        assert s.sendmail(user, [rcpt], mail(subject, user, rcpt),
                          mail_options=["ENVID=env-relayed"],
                          rcpt_options=["NOTIFY=SUCCESS"]) == {}
    (tx,) = fake.wait_delivered(1, timeout=20)
    assert not re.search(r"(?i)\b(ENVID|RET)=", tx.mail_params), tx.mail_params
    assert not re.search(r"(?i)\b(NOTIFY|ORCPT)=", tx.rcpt_params[rcpt]), tx.rcpt_params
    dsn = wait_message(srv, user, b"multipart/report", timeout=30, password=pw)
    _, status = dsn_fields(dsn)
    assert re.search(r"(?im)^Action:\s*relayed\s*$", status), status
    assert re.search(r"(?im)^Status:\s*2\.\d{1,3}\.\d{1,3}\s*$", status), status
    assert re.search(r"(?im)^Original-Envelope-Id:\s*env-relayed\s*$", status), status


def test_smtputf8_to_hop_without_smtputf8_bounces(launcher, fake_smtp):
    fake = fake_smtp(extensions=("PIPELINING", "8BITMIME", "ENHANCEDSTATUSCODES"))
    srv = launcher(smarthost_sections("127.0.0.1", fake.port), name="noutf8")
    user, pw = srv.new_user("nu")
    rcpt = f"jöran-{uid()}@remote.test"
    subject = f"needs SMTPUTF8 {uid()}"
    msg = (f"From: {user}\r\nTo: {rcpt}\r\nSubject: {subject} ✓\r\n"
           "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n"
           "Content-Transfer-Encoding: 8bit\r\n\r\nGrüße\r\n").encode()
    with submission(srv, user, pw) as s:
        assert s.sendmail(user, [rcpt], msg, mail_options=["SMTPUTF8", "BODY=8BITMIME"]) == {}
    dsn = wait_message(srv, user, b"multipart/report", timeout=30, password=pw)
    _, status = dsn_fields(dsn)
    assert re.search(r"(?im)^Status:\s*5\.6\.7\s*$", status), status
    assert fake.delivered() == []


def test_8bit_to_hop_without_8bitmime(launcher, fake_smtp):
    """Converted to 7 bits (the body decodes to the original) or bounced; never sent
    as 8-bit data to a hop that did not offer 8BITMIME."""
    fake = fake_smtp(extensions=("PIPELINING", "ENHANCEDSTATUSCODES", "SIZE 100000000"))
    srv = launcher(smarthost_sections("127.0.0.1", fake.port), name="no8bit")
    user, pw = srv.new_user("n8")
    rcpt = f"seven-{uid()}@remote.test"
    text = "Xin chào, thế giới — Grüße ✓\r\n" * 3
    msg = (f"From: {user}\r\nTo: {rcpt}\r\nSubject: eight bits\r\nMIME-Version: 1.0\r\n"
           "Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n"
           f"\r\n{text}").encode()
    with submission(srv, user, pw) as s:
        assert s.sendmail(user, [rcpt], msg, mail_options=["BODY=8BITMIME"]) == {}

    def outcome():
        if fake.delivered():
            return "delivered"
        if any(b"multipart/report" in m for m in mailbox(srv, user, pw)):
            return "bounced"
        return None

    result = wait_until(outcome, "delivery or a bounce", timeout=30, interval=0.3)
    if result == "delivered":
        (tx,) = fake.delivered()
        assert "8BITMIME" not in tx.mail_params.upper(), tx.mail_params
        assert all(b < 0x80 for b in tx.data), "8-bit data sent to a 7-bit hop"
        body = headers_of(tx.data)
        assert body["Content-Transfer-Encoding"].strip().lower() in (
            "quoted-printable", "base64"), body["Content-Transfer-Encoding"]
        assert body.get_payload(decode=True).decode("utf-8") == text
    else:
        dsn = wait_message(srv, user, b"multipart/report", password=pw)
        _, status = dsn_fields(dsn)
        assert re.search(r"(?im)^Status:\s*5\.6\.\d{1,3}\s*$", status), status
