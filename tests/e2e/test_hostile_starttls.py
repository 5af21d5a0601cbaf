"""Hostile input over real sockets (issue 5): STARTTLS command injection (the
CVE-2011-0411 class) on SMTP (port 25 and submission), POP3 and IMAP.

The client sends the STARTTLS command and a second command in ONE write, before the
handshake. The server must answer only the STARTTLS (RFC 3207 §4.2, RFC 2595 §4,
RFC 9051 §6.2.1): the injected command gets no reply, neither in plaintext nor over
TLS, and has no effect; after the handshake the session starts over (SMTP needs a new
EHLO, POP3 and IMAP are still unauthenticated).
"""

from __future__ import annotations

import base64
import select
import socket
import ssl
import tempfile
from pathlib import Path

import pytest

from conftest import PASSWORD, TIMEOUT, launch, stop_and_clean

QUIET = 0.5  # seconds to wait for a reply that must not come


@pytest.fixture(scope="module")
def srv(buudien_bin):
    """One buudien with SMTP, submission, POP3 and IMAP listeners."""
    root = Path(tempfile.mkdtemp(prefix="buudien-e2e-hostile-tls-"))
    server = launch(buudien_bin, root, smtp=True)
    try:
        yield server
    finally:
        stop_and_clean(server)


class Wire:
    """A socket read one byte at a time, so nothing past the STARTTLS reply is read
    into a buffer before the socket is wrapped in TLS."""

    def __init__(self, port: int):
        self.sock: socket.socket = socket.create_connection(("127.0.0.1", port),
                                                            timeout=TIMEOUT)

    def line(self) -> bytes:
        out = b""
        while not out.endswith(b"\n"):
            b = self.sock.recv(1)
            if not b:
                raise EOFError(f"connection closed after {out!r}")
            out += b
        return out

    def smtp_reply(self) -> list[bytes]:
        lines = [self.line()]
        while lines[-1][3:4] == b"-":
            lines.append(self.line())
        return lines

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def plaintext_silence(self) -> bytes:
        """Whatever arrives in plaintext within QUIET seconds (expected: nothing)."""
        r, _, _ = select.select([self.sock], [], [], QUIET)
        if not r:
            return b""
        return self.sock.recv(65536) or b"<EOF>"

    def starttls(self, ctx: ssl.SSLContext) -> None:
        self.sock = ctx.wrap_socket(self.sock, server_hostname="localhost")
        assert self.sock.version() in ("TLSv1.2", "TLSv1.3"), self.sock.version()

    def tls_silence(self) -> bytes:
        """Whatever application data arrives over TLS within QUIET seconds."""
        self.sock.settimeout(QUIET)
        try:
            return self.sock.recv(65536) or b"<EOF>"
        except (TimeoutError, socket.timeout):
            return b""
        finally:
            self.sock.settimeout(TIMEOUT)

    def close(self) -> None:
        self.sock.close()


def check_silence(w: Wire, ctx: ssl.SSLContext) -> None:
    """Nothing answers the injected command: not in plaintext, not over TLS."""
    extra = w.plaintext_silence()
    assert extra == b"", f"answered the injected command in plaintext: {extra!r}"
    w.starttls(ctx)
    extra = w.tls_silence()
    assert extra == b"", f"answered the injected command over TLS: {extra!r}"


# --- SMTP -------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["smtp", "submission"])
@pytest.mark.parametrize("injected", ["noop", "mail"])
def test_smtp_starttls_injection(srv, service, injected):
    user, _ = srv.new_user("tlsinj")
    port = srv.smtp_port if service == "smtp" else srv.submission_port
    extra = (b"NOOP\r\n" if injected == "noop"
             else f"MAIL FROM:<a@elsewhere.test>\r\nRCPT TO:<{user}>\r\n".encode())
    w = Wire(port)
    try:
        assert w.line().startswith(b"220 "), "greeting"
        w.send(b"EHLO client.test\r\n")
        ehlo = w.smtp_reply()
        assert ehlo[-1].startswith(b"250 ") and any(b"STARTTLS" in l for l in ehlo), ehlo
        w.send(b"STARTTLS\r\n" + extra)  # one write
        r = w.smtp_reply()
        assert r[0].startswith(b"220 "), r
        check_silence(w, srv.tls_context())
        # The session starts over: EHLO is needed again (RFC 3207 §4.2)...
        w.send(b"MAIL FROM:<a@elsewhere.test>\r\n")
        r = w.smtp_reply()
        assert r[0].startswith(b"503 "), r
        w.send(b"EHLO client.test\r\n")
        ehlo = w.smtp_reply()
        assert ehlo[-1].startswith(b"250 ") and len(ehlo) > 1, ehlo
        assert not any(b"STARTTLS" in l.upper() for l in ehlo[1:]), ehlo
        # ...and no transaction was opened by injected MAIL: RCPT needs MAIL first.
        w.send(f"RCPT TO:<{user}>\r\n".encode())
        r = w.smtp_reply()
        assert r[0].startswith(b"503 "), r
        w.send(b"NOOP\r\n")
        assert w.smtp_reply()[0].startswith(b"250 ")
        w.send(b"QUIT\r\n")
        assert w.smtp_reply()[0].startswith(b"221 ")
    finally:
        w.close()


def test_submission_starttls_injected_auth_not_run(srv):
    """An AUTH pipelined behind STARTTLS is dropped: after TLS, MAIL still needs AUTH
    (and a new EHLO)."""
    user, _ = srv.new_user("tlsauth")
    token = base64.b64encode(f"\0{user}\0{PASSWORD}".encode())
    w = Wire(srv.submission_port)
    try:
        assert w.line().startswith(b"220 ")
        w.send(b"EHLO client.test\r\n")
        assert w.smtp_reply()[-1].startswith(b"250 ")
        w.send(b"STARTTLS\r\nEHLO client.test\r\nAUTH PLAIN " + token + b"\r\n")
        assert w.smtp_reply()[0].startswith(b"220 ")
        check_silence(w, srv.tls_context())
        w.send(b"EHLO client.test\r\n")
        assert w.smtp_reply()[-1].startswith(b"250 ")
        w.send(f"MAIL FROM:<{user}>\r\n".encode())
        r = w.smtp_reply()
        assert r[0].startswith(b"530 "), f"MAIL without AUTH accepted: {r!r}"
        # AUTH over TLS itself works: the account was fine all along.
        w.send(b"AUTH PLAIN " + token + b"\r\n")
        assert w.smtp_reply()[0].startswith(b"235 ")
        w.send(b"QUIT\r\n")
        assert w.smtp_reply()[0].startswith(b"221 ")
    finally:
        w.close()


# --- POP3 -------------------------------------------------------------------------


@pytest.mark.parametrize("injected", ["capa", "login"])
def test_pop3_stls_injection(srv, injected):
    user, _ = srv.new_user("popinj")
    extra = (b"CAPA\r\n" if injected == "capa"
             else f"USER {user}\r\nPASS {PASSWORD}\r\n".encode())
    w = Wire(srv.pop3_port)
    try:
        assert w.line().startswith(b"+OK")
        w.send(b"STLS\r\n" + extra)  # one write
        r = w.line()
        assert r.startswith(b"+OK"), r
        check_silence(w, srv.tls_context())
        # Still in AUTHORIZATION: no USER was given, nothing is logged in.
        w.send(b"STAT\r\n")
        r = w.line()
        assert r.startswith(b"-ERR"), f"STAT answered: {r!r}"
        w.send(f"PASS {PASSWORD}\r\n".encode())
        r = w.line()
        assert r.startswith(b"-ERR"), f"PASS without USER answered: {r!r}"
        w.send(b"CAPA\r\n")
        assert w.line().startswith(b"+OK")
        caps = []
        while (line := w.line()) != b".\r\n":
            caps.append(line.strip().upper())
        assert b"STLS" not in caps and b"USER" in caps, caps
        # A login over TLS works.
        w.send(f"USER {user}\r\n".encode())
        assert w.line().startswith(b"+OK")
        w.send(f"PASS {PASSWORD}\r\n".encode())
        r = w.line()
        assert r.startswith(b"+OK"), r
        w.send(b"QUIT\r\n")
        assert w.line().startswith(b"+OK")
    finally:
        w.close()


# --- IMAP -------------------------------------------------------------------------


@pytest.mark.parametrize("injected", ["noop", "login"])
def test_imap_starttls_injection(srv, injected):
    user, _ = srv.new_user("imapinj")
    extra = (b"b NOOP\r\n" if injected == "noop"
             else f'b LOGIN "{user}" "{PASSWORD}"\r\n'.encode())
    w = Wire(srv.imap_port)
    try:
        assert w.line().startswith(b"* OK")
        w.send(b"a STARTTLS\r\n" + extra)  # one write
        r = w.line()
        assert r.startswith(b"a OK"), r
        check_silence(w, srv.tls_context())
        # Still not authenticated: SELECT is refused.
        w.send(b"c SELECT INBOX\r\n")
        r = w.line()
        assert r.startswith((b"c BAD", b"c NO")), f"SELECT ran: {r!r}"
        w.send(b"d CAPABILITY\r\n")
        cap = w.line()
        assert cap.startswith(b"* CAPABILITY") and b"STARTTLS" not in cap.upper(), cap
        assert b"AUTH=PLAIN" in cap.upper(), cap
        assert w.line().startswith(b"d OK")
        w.send(f'e LOGIN "{user}" "{PASSWORD}"\r\n'.encode())
        r = w.line()
        while r.startswith(b"* "):
            r = w.line()
        assert r.startswith(b"e OK"), r
        w.send(b"f LOGOUT\r\n")
        r = w.line()
        assert r.startswith(b"* BYE"), r
    finally:
        w.close()


# --- commands before the STARTTLS in the same write ---------------------------------


@pytest.mark.parametrize("service", ["smtp", "submission"])
def test_smtp_commands_before_starttls_answered_after_dropped(srv, service):
    """EHLO, STARTTLS and NOOP in one write: EHLO and STARTTLS are answered, in order;
    the NOOP behind them is dropped (the cut is at the end of the STARTTLS line, not
    at the start of the buffer)."""
    port = srv.smtp_port if service == "smtp" else srv.submission_port
    w = Wire(port)
    try:
        assert w.line().startswith(b"220 ")
        w.send(b"EHLO client.test\r\nSTARTTLS\r\nNOOP\r\n")
        ehlo = w.smtp_reply()
        assert ehlo[-1].startswith(b"250 ") and any(b"STARTTLS" in l for l in ehlo), ehlo
        assert w.smtp_reply()[0].startswith(b"220 ")
        check_silence(w, srv.tls_context())
        w.send(b"EHLO client.test\r\n")
        assert w.smtp_reply()[-1].startswith(b"250 ")
        w.send(b"QUIT\r\n")
        assert w.smtp_reply()[0].startswith(b"221 ")
    finally:
        w.close()


def test_pop3_commands_before_stls_answered_after_dropped(srv):
    w = Wire(srv.pop3_port)
    try:
        assert w.line().startswith(b"+OK")
        w.send(b"NOOP\r\nSTLS\r\nCAPA\r\n")
        # NOOP is a TRANSACTION-state command: an error here, but answered.
        assert w.line().startswith(b"-ERR")
        assert w.line().startswith(b"+OK")
        check_silence(w, srv.tls_context())
        w.send(b"QUIT\r\n")
        assert w.line().startswith(b"+OK")
    finally:
        w.close()


def test_imap_commands_before_starttls_answered_after_dropped(srv):
    w = Wire(srv.imap_port)
    try:
        assert w.line().startswith(b"* OK")
        w.send(b"a NOOP\r\nb STARTTLS\r\nc NOOP\r\n")
        assert w.line().startswith(b"a OK")
        assert w.line().startswith(b"b OK")
        check_silence(w, srv.tls_context())
        w.send(b"d NOOP\r\n")
        assert w.line().startswith(b"d OK")
        w.send(b"e LOGOUT\r\n")
        assert w.line().startswith(b"* BYE")
    finally:
        w.close()
