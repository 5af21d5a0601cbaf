"""Hostile input over real sockets (issue 5): SMTP smuggling.

Only `<CRLF>.<CRLF>` ends DATA (RFC 5321 §4.1.1.4); a bare CR or LF is not a line end
(§2.3.8), and buudien refuses a message holding one (550 5.5.2, like Postfix's
`smtpd_forbid_bare_newline`). Each attack sends a first transaction whose data holds a
fake ending followed by a complete second, pipelined transaction, then the real end:
the recipient's maildrop (read back over POP3) never holds more than one message, and
never the smuggled one. The same bytes inside a BDAT chunk (RFC 3030) are refused too,
so no message with bare line ends is stored or relayed to a next hop that might read
them as an ending.
"""

from __future__ import annotations

import base64
import socket
import tempfile
import time
from pathlib import Path

import pytest

from conftest import PASSWORD, launch, stop_and_clean
from test_smtp import RawSmtp, Reply, header_block, mailbox

# Every ending a smuggling attack uses in place of <CRLF>.<CRLF>. All but "nul-dot"
# hold a bare CR or LF; "nul-dot" is a line "<NUL>." between CRLFs: plain data.
ENDINGS = {
    "lf-dot-lf": b"\n.\n",
    "lf-dot-cr": b"\n.\r",
    "cr-dot-lf": b"\r.\n",
    "cr-dot-cr": b"\r.\r",
    "lf-dot-crlf": b"\n.\r\n",
    "cr-dot-crlf": b"\r.\r\n",
    "nul-dot": b"\r\n\x00.\r\n",
    "crlf-dot-crcrlf": b"\r\n.\r\r\n",
    "crcrlf-dot-crcrlf": b"\r\r\n.\r\r\n",
}
BARE = {name for name, e in ENDINGS.items() if name != "nul-dot"}


@pytest.fixture(scope="module")
def srv(buudien_bin):
    """One buudien with its SMTP, submission and submissions listeners."""
    root = Path(tempfile.mkdtemp(prefix="buudien-e2e-hostile-smtp-"))
    server = launch(buudien_bin, root, smtp=True)
    try:
        yield server
    finally:
        stop_and_clean(server)


def attack(sender: str, rcpt: str, ending: bytes) -> bytes:
    """The data of a carrier message with a second transaction smuggled inside, the
    real end, and QUIT."""
    return (
        b"From: " + sender.encode() + b"\r\nSubject: smuggling carrier\r\n\r\nfirst part"
        + ending
        + b"MAIL FROM:<evil@elsewhere.test>\r\nRCPT TO:<" + rcpt.encode() + b">\r\n"
        b"DATA\r\nFrom: evil@elsewhere.test\r\nSubject: smuggled\r\n\r\nsmuggled\r\n"
    )


def check_outcome(variant: str, replies: list[Reply], box: list[bytes]) -> None:
    """One reply to the end of the data, then 221 to QUIT: never the replies of a
    second transaction. A bare CR/LF is refused and nothing is stored; the NUL variant
    is one ordinary message whose body holds the would-be commands."""
    assert replies, "no reply to the end of the data"
    first, rest = replies[0], replies[1:]
    assert [r.code for r in rest] == [221], replies
    assert len(box) <= 1, box
    for m in box:
        assert b"Subject: smuggled" not in header_block(m), m
        assert b"Subject: smuggling carrier" in header_block(m), m
    if variant in BARE:
        assert first.code == 550, replies
        assert first.text.startswith(b"5.5.2 "), replies
        assert box == [], box
    else:
        assert first.code == 250, replies
        (m,) = box
        body = m.split(b"\r\n\r\n", 1)[1]
        assert b"\r\nMAIL FROM:<evil@elsewhere.test>\r\n" in body, m


@pytest.mark.parametrize("variant", list(ENDINGS))
def test_data_smuggling_port_25(srv, variant):
    user, pw = srv.new_user("smug")
    c = RawSmtp(srv.smtp_port)
    try:
        assert c.cmd("EHLO client.test").code == 250
        c.send(f"MAIL FROM:<a@elsewhere.test>\r\nRCPT TO:<{user}>\r\nDATA\r\n".encode())
        codes = [c.reply().code for _ in range(3)]
        assert codes == [250, 250, 354], codes
        c.send(attack("a@elsewhere.test", user, ENDINGS[variant]) + b".\r\nQUIT\r\n")
        replies = c.replies_until_eof()
    finally:
        c.close()
    check_outcome(variant, replies, mailbox(srv, user, pw))


@pytest.mark.parametrize("variant", list(ENDINGS))
def test_data_smuggling_split_across_segments(srv, variant):
    """The fake ending arrives one octet per TCP segment (Nagle off, a pause between
    writes), so the server reads it across many reads: the outcome is the same."""
    user, pw = srv.new_user("segsmug")
    c = RawSmtp(srv.smtp_port)
    try:
        c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        assert c.cmd("EHLO client.test").code == 250
        c.send(f"MAIL FROM:<a@elsewhere.test>\r\nRCPT TO:<{user}>\r\nDATA\r\n".encode())
        codes = [c.reply().code for _ in range(3)]
        assert codes == [250, 250, 354], codes
        data = attack("a@elsewhere.test", user, ENDINGS[variant]) + b".\r\nQUIT\r\n"
        start = data.index(b"first part") + len(b"first part")
        stop = start + len(ENDINGS[variant]) + len(b"MAIL FROM")
        c.send(data[:start])
        for i in range(start, stop):
            time.sleep(0.02)
            c.send(data[i:i + 1])
        time.sleep(0.02)
        c.send(data[stop:])
        replies = c.replies_until_eof()
    finally:
        c.close()
    check_outcome(variant, replies, mailbox(srv, user, pw))


def submission_client(srv, user: str) -> RawSmtp:
    """Port 587: EHLO, STARTTLS, EHLO, AUTH PLAIN as `user`."""
    c = RawSmtp(srv.submission_port)
    assert c.cmd("EHLO client.test").code == 250
    assert c.cmd("STARTTLS").code == 220
    c.starttls(srv.tls_context())
    assert c.cmd("EHLO client.test").code == 250
    token = base64.b64encode(f"\0{user}\0{PASSWORD}".encode()).decode()
    r = c.cmd(f"AUTH PLAIN {token}")
    assert r.code == 235, r
    return c


@pytest.mark.parametrize("variant", list(ENDINGS))
def test_data_smuggling_submission(srv, variant):
    user, pw = srv.new_user("subsmug")
    c = submission_client(srv, user)
    try:
        c.send(f"MAIL FROM:<{user}>\r\nRCPT TO:<{user}>\r\nDATA\r\n".encode())
        codes = [c.reply().code for _ in range(3)]
        assert codes == [250, 250, 354], codes
        c.send(attack(user, user, ENDINGS[variant]) + b".\r\nQUIT\r\n")
        replies = c.replies_until_eof()
    finally:
        c.close()
    check_outcome(variant, replies, mailbox(srv, user, pw))


@pytest.mark.parametrize("variant", list(ENDINGS))
def test_bdat_smuggling_port_25(srv, variant):
    """The same bytes as one BDAT LAST chunk (CHUNKING is offered; BINARYMIME is not,
    so the content must be CRLF lines, RFC 3030 §3): the chunk size ends the data, so
    nothing in it is a command, and a bare CR/LF is refused as over DATA."""
    user, pw = srv.new_user("bdsmug")
    c = RawSmtp(srv.smtp_port)
    try:
        ehlo = c.cmd("EHLO client.test")
        assert ehlo.code == 250 and any(l[4:].upper() == b"CHUNKING" for l in ehlo.lines), ehlo
        chunk = attack("a@elsewhere.test", user, ENDINGS[variant])
        c.send(f"MAIL FROM:<a@elsewhere.test>\r\nRCPT TO:<{user}>\r\n".encode()
               + b"BDAT %d LAST\r\n" % len(chunk) + chunk + b"QUIT\r\n")
        codes = [c.reply().code for _ in range(2)]
        assert codes == [250, 250], codes
        replies = c.replies_until_eof()
    finally:
        c.close()
    check_outcome(variant, replies, mailbox(srv, user, pw))


def test_bdat_bare_newline_split_across_chunks(srv):
    """A bare LF whose CR-less line starts in one chunk and whose "." ends the next is
    still seen: the check runs on the whole message at LAST. A CRLF split across two
    chunks is not bare."""
    user, pw = srv.new_user("bdsplit")
    c = RawSmtp(srv.smtp_port)
    try:
        assert c.cmd("EHLO client.test").code == 250
        assert c.cmd("MAIL FROM:<a@elsewhere.test>").code == 250
        assert c.cmd(f"RCPT TO:<{user}>").code == 250
        for chunk, last in ((b"Subject: split bare\r\n\r\nline\n", False), (b".\nx\r\n", True)):
            c.send(b"BDAT %d%s\r\n" % (len(chunk), b" LAST" if last else b"") + chunk)
            r = c.reply()
        assert r.code == 550 and r.text.startswith(b"5.5.2 "), r
        # A CRLF split between two chunks is a line end, not a bare CR and a bare LF.
        assert c.cmd("MAIL FROM:<a@elsewhere.test>").code == 250
        assert c.cmd(f"RCPT TO:<{user}>").code == 250
        for chunk, last in ((b"Subject: split crlf\r\n\r\nline\r", False), (b"\n.\r\n", True)):
            c.send(b"BDAT %d%s\r\n" % (len(chunk), b" LAST" if last else b"") + chunk)
            r = c.reply()
        assert r.code == 250, r
        assert c.cmd("QUIT").code == 221
    finally:
        c.close()
    (m,) = mailbox(srv, user, pw)
    assert b"Subject: split crlf" in header_block(m), m
    assert m.endswith(b"\r\n\r\nline\r\n.\r\n"), m
